"""Where the checkout is, and the environment test subprocesses run with."""

import os
from typing import Dict, Optional

from featurebridge.pipelines import local_cluster

__all__ = ["REPO_ROOT", "worker_env"]

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def worker_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The product's service environment plus the checkout on PYTHONPATH, so
    SDK workers can import test-only modules (tests.user_preprocessing)."""
    return local_cluster.worker_env({"PYTHONPATH": REPO_ROOT, **(extra or {})})
