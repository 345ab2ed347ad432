"""A user's own preprocessing_fn (``--preprocessing_fn module:function``):
loading it, and the contract its outputs must meet to train and serve.

The function is imported, not called: featurebridge.transforms.analyze wraps
it with the shared graph rules (`graph_rules.with_shared_rules`) before TFT
traces it. `load_preprocessing_fn` returns it wrapped by
`checked_preprocessing_fn`, which checks its outputs when TFT traces it
(before any data is read), so a wrong output fails the analyze run at its
start with a message naming the output, not training later. This module
imports no TensorFlow at import time, so a bad reference fails fast on the
launcher.

The contract (docs/serving.md, "Your own preprocessing_fn"):

- It returns a dict {name: tensor}. Names are free but the label's and
  ``__split_bucket__`` (added by featurebridge).
- Every feature output is a dense [batch] tensor (one value per row), or a
  2-D SparseTensor of int ids or strings (a bag of ids, e.g. n-grams).
  A dense [batch, k] tensor, a RaggedTensor or a SparseTensor of floats is
  refused: the model could not read it.
- With a label in the spec, the label output is named after the spec's
  label column and is dense [batch]: int class ids for binary (0/1) and
  multiclass (0..K-1), a number for regression.
- The model reads every output but the label and the split: floats (and
  ints without a vocabulary) as numbers, ints with a vocabulary or bucket
  domain as categories, strings hashed, sparse ids and strings as bags.
"""

from __future__ import annotations

import functools
import importlib
from typing import Callable, Mapping

from featurebridge.transforms.errors import UsageError

__all__ = ["check_outputs", "checked_preprocessing_fn", "load_preprocessing_fn"]

# featurebridge's own output (graph_rules.with_shared_rules adds it).
_SPLIT_FEATURE = "__split_bucket__"
_CONTRACT = "see docs/serving.md, \"Your own preprocessing_fn\""


def load_preprocessing_fn(reference: str, spec=None) -> Callable:
    """Imports a user's ``module:function`` preprocessing_fn, wrapped by
    `checked_preprocessing_fn` (with `spec`: its label is checked too).

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
    return checked_preprocessing_fn(fn, spec, reference)


def checked_preprocessing_fn(fn: Callable, spec=None, reference: str = "") -> Callable:
    """`fn`, whose outputs pass `check_outputs(outputs, spec, reference)`
    each time it is called (TFT calls it once, when it traces the graph)."""

    @functools.wraps(fn)
    def checked(inputs):
        outputs = fn(inputs)
        check_outputs(outputs, spec, reference or getattr(fn, "__name__", "preprocessing_fn"))
        return outputs

    return checked


def _shape(x) -> str:
    dims = x.shape.as_list() if x.shape.rank is not None else None
    return "unknown" if dims is None else "[" + ", ".join("batch" if d is None else str(d) for d in dims) + "]"


def check_outputs(outputs: object, spec=None, reference: str = "preprocessing_fn") -> None:
    """Checks a user's preprocessing_fn outputs against the contract (see the
    module docstring). An empty dict passes here; training then says there
    are no features.

    Args:
      outputs: what the function returned (traced tensors).
      spec: the FeatureSpec it runs with; None skips the label checks.
      reference: the function's name for messages.

    Raises:
      UsageError: the first output that breaks the contract, by name, with
        what it is and what to do.
    """
    import tensorflow as tf

    where = f"--preprocessing_fn {reference}"
    if not isinstance(outputs, Mapping):
        raise UsageError(f"{where} must return a dict {{name: tensor}}; got {type(outputs).__name__}. ({_CONTRACT})")
    label = spec.label.column if spec is not None and spec.label is not None else None
    for name, x in outputs.items():
        if not isinstance(name, str) or not name:
            raise UsageError(f"{where} returned an output named {name!r}; names must be non-empty strings.")
        if name == _SPLIT_FEATURE:
            raise UsageError(f"{where} returned {name!r}, a name featurebridge uses for the eval split; rename it.")
        if isinstance(x, tf.RaggedTensor):
            raise UsageError(
                f"{where}: output {name!r} is a RaggedTensor; the model reads dense [batch] tensors or "
                f"SparseTensors of ids. Return {name}.to_sparse() for ids or strings, or a dense [batch] tensor. "
                f"({_CONTRACT})"
            )
        if isinstance(x, tf.SparseTensor):
            if name == label:
                raise UsageError(
                    f"{where}: the label output {name!r} is a SparseTensor; it must be dense [batch]: "
                    "tft.sparse_tensor_to_dense_with_shape(y, [None, 1], default_value=0)[:, 0]."
                )
            if x.dtype.is_floating:
                raise UsageError(
                    f"{where}: output {name!r} is a SparseTensor of {x.dtype.name}; the model reads sparse "
                    "ids or strings (bags), never sparse numbers. Make it dense [batch]: "
                    f"tft.sparse_tensor_to_dense_with_shape({name}, [None, 1], default_value=0.0)[:, 0]. "
                    f"({_CONTRACT})"
                )
            if x.shape.rank not in (None, 2):
                raise UsageError(f"{where}: output {name!r} is a SparseTensor of shape {_shape(x)}; bags are [batch, n].")
            continue
        if not isinstance(x, tf.Tensor):
            raise UsageError(f"{where}: output {name!r} is a {type(x).__name__}, not a tensor. ({_CONTRACT})")
        if x.shape.rank != 1:
            fix = f"{name}[:, 0]" if x.shape.rank == 2 and x.shape[1] == 1 else "one output per column"
            raise UsageError(
                f"{where}: output {name!r} has shape {_shape(x)}; each output must be [batch] (one value "
                f"per row). Return {fix} instead. ({_CONTRACT})"
            )
    if label is None:
        return
    kind = spec.label.kind
    if label not in outputs:
        raise UsageError(
            f"{where} returns no {label!r}: the spec's label is column {label!r}, so training reads an output "
            f"of that name ({kind}: " + ("a number" if kind == "regression" else "int64 class ids") + "). "
            f"Add outputs[{label!r}] (or remove the spec's label to only transform). ({_CONTRACT})"
        )
    y = outputs[label]
    if kind != "regression" and not y.dtype.is_integer:
        raise UsageError(
            f"{where}: the label output {label!r} is {y.dtype.name}; a {kind} label must be int64 class ids "
            "(0/1 for binary, 0..K-1 for multiclass). Map strings with tft.compute_and_apply_vocabulary."
        )
    if kind == "regression" and not (y.dtype.is_integer or y.dtype.is_floating):
        raise UsageError(f"{where}: the label output {label!r} is {y.dtype.name}; a regression label must be a number.")
