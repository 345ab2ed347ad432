"""Loading a user's own preprocessing_fn (``--preprocessing_fn module:function``).

The function is imported, not called: featurebridge.transforms.analyze wraps
it with the shared graph rules (`graph_rules.with_shared_rules`) before TFT
traces it. This module imports no TensorFlow, so a bad reference fails fast on
the launcher.
"""

from __future__ import annotations

import importlib
from typing import Callable

from featurebridge.transforms.errors import UsageError

__all__ = ["load_preprocessing_fn"]


def load_preprocessing_fn(reference: str) -> Callable:
    """Imports a user's ``module:function`` preprocessing_fn.

    Raises:
      UsageError (a ValueError): if the reference is malformed, the module cannot be
        imported, or the attribute is not callable.
    """
    module_name, sep, attr = reference.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(
            f"--preprocessing_fn must look like 'package.module:function'; got {reference!r}."
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UsageError(
            f"Cannot import module {module_name!r} for --preprocessing_fn: {e}. "
            "Make it importable (install it, or add its folder to PYTHONPATH)."
        ) from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise UsageError(f"{module_name!r} has no callable {attr!r} for --preprocessing_fn.")
    return fn

