"""Shared pytest fixtures. Fixtures that start real servers live beside the tests
that use them; this file keeps the process environment sane for all tests."""

import os
import sys

# The external worker pool starts workers with `python` from PATH: make it ours.
_VENV_BIN = os.path.dirname(sys.executable)
if not os.environ.get("PATH", "").startswith(_VENV_BIN):
    os.environ["PATH"] = _VENV_BIN + os.pathsep + os.environ.get("PATH", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def portable_cluster(tmp_path_factory):
    """A Beam job server + external SDK worker pool (separate processes) for the
    PortableRunner, shared by the session. Yields tests/portable_cluster.PortableCluster;
    use ``cluster.pipeline_flags()`` as the runner flags."""
    from tests.portable_cluster import portable_cluster as start_cluster

    with start_cluster(str(tmp_path_factory.mktemp("portable_cluster"))) as cluster:
        yield cluster
