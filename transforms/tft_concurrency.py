"""One TFT trace at a time per process, so TFT runs on engines that execute
stages concurrently (Flink, Spark) in one SDK worker.

TFT traces a preprocessing_fn (for each analysis phase and for the final
transform_fn) inside ``tensorflow_transform.annotators.object_tracker_scope``,
which keeps the tracker in a module global and asserts that no other trace is
active. Beam's DirectRunner runs one stage at a time, so that holds there. A
Flink or Spark job runs independent stages at the same time, and an SDK worker
processes their bundles on several threads: two traces then meet in one process
and the second fails with a bare ``AssertionError`` from TFT's ``CreateSavedModel``.

Worse, TensorFlow's resource tracker (``resource_tracker_scope``) is a
process-global stack too: a vocabulary's lookup table made in one thread's trace
can be registered with the other thread's tracker, and ``tf.saved_model.save``
then fails on an "untracked resource".

Loading a SavedModel that holds lookup tables (TFT's ``SavedModelLoader`` on
workers, our constants evaluation) restores those tables under the same global
tracker stack, so a load in one thread during a trace in another fails that
trace's save the same way.

`install` makes each of TFT's trace-and-save steps (``impl_helper.
trace_and_write_v2_saved_model``, ``trace_preprocessing_function``), every
``object_tracker_scope`` and every ``SavedModelLoader`` construction hold one
process-wide lock; `serialized` holds it around a load of our own. It costs nothing until TFT
is imported: if TFT is not loaded yet, a meta-path hook applies the wraps right
after each module is first imported. ``transforms/__init__`` installs it, so
every worker that unpickles any featurebridge object (the spec inside each
preprocessing_fn, the readers) has it before a trace can start. Traces are a
few seconds per job; serializing them costs the engines nothing measurable.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.abc
import sys
import threading

__all__ = ["install", "installed", "serialized"]

_TRACE_LOCK = threading.RLock()
_PATCHED_MARK = "_featurebridge_serialized"

# module -> the functions (or Class.method) in it that trace or load
# (looked up by attribute at each call).
_SERIALIZED = {
    "tensorflow_transform.annotators": ("object_tracker_scope",),
    "tensorflow_transform.impl_helper": ("trace_and_write_v2_saved_model", "trace_preprocessing_function"),
    "tensorflow_transform.saved.saved_transform_io_v2": ("SavedModelLoader.__init__",),
}


def serialized():
    """The process-wide lock TFT's traces hold: hold it around loading or
    running a SavedModel with lookup tables on a worker that may trace."""
    return _TRACE_LOCK


def _owner_and_name(module, dotted: str):
    """(the object holding the attribute, the attribute's name) for "f" or "Class.method"."""
    owner = module
    *path, name = dotted.split(".")
    for part in path:
        owner = getattr(owner, part)
    return owner, name


def _serialized_scope(original):
    @contextlib.contextmanager
    def scope(*args, **kwargs):
        with _TRACE_LOCK, original(*args, **kwargs):
            yield

    return scope


def _serialized_call(original):
    def call(*args, **kwargs):
        with _TRACE_LOCK:
            return original(*args, **kwargs)

    return call


def _patch(module) -> None:
    for dotted in _SERIALIZED[module.__name__]:
        owner, name = _owner_and_name(module, dotted)
        original = getattr(owner, name)
        if getattr(original, _PATCHED_MARK, False):
            continue
        wrap = _serialized_scope if name.endswith("_scope") else _serialized_call
        wrapped = functools.wraps(original)(wrap(original))
        setattr(wrapped, _PATCHED_MARK, True)
        setattr(owner, name, wrapped)


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself; wraps the real loader of TFT's annotators module."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in _SERIALIZED:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                loader = spec.loader
                exec_module = loader.exec_module

                class _Loader(importlib.abc.Loader):
                    def create_module(self, spec):
                        return loader.create_module(spec)

                    def exec_module(self, module):
                        exec_module(module)
                        _patch(module)

                spec.loader = _Loader()
                return spec
        return None


_HOOK = _PatchOnImport()


def install() -> None:
    """Serializes TFT's traces in this process (idempotent, thread-safe)."""
    for name in _SERIALIZED:
        module = sys.modules.get(name)
        if module is not None:
            _patch(module)
    if not all(name in sys.modules for name in _SERIALIZED) and _HOOK not in sys.meta_path:
        sys.meta_path.insert(0, _HOOK)


def installed() -> bool:
    """Whether TFT is loaded here with all its traces serialized."""
    return all(
        name in sys.modules and getattr(getattr(*_owner_and_name(sys.modules[name], fn)), _PATCHED_MARK, False)
        for name, fns in _SERIALIZED.items()
        for fn in fns
    )
