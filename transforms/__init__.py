"""featurebridge's library: feature spec, Arrow readers with rejected rows,
the TFT preprocessing_fn builder, Beam PTransforms (analyze, apply a
transform_fn, predict, cross-language Rows), export for serving, constants
and provenance. Errors derive from `FeaturebridgeError` (transforms.errors);
artifact names and loaders live in transforms.layout.

Names are re-exported lazily (PEP 562) so that ``import featurebridge.transforms.spec`` does
not pay for importing TensorFlow.
"""

import importlib

from featurebridge.transforms import tft_concurrency as _tft_concurrency

# Flink and Spark run TFT's traces concurrently in one worker; see tft_concurrency.
_tft_concurrency.install()

_M = "featurebridge.transforms."
_EXPORTS = {
    # errors: every error about what featurebridge was given is a FeaturebridgeError
    **{name: _M + "errors" for name in (
        "ArtifactError", "CountMismatchError", "EmptyDataError", "FeaturebridgeError", "InputError",
        "ModelDirError", "OutputExistsError", "SpecError", "TrainingError", "UsageError",
    )},
    # the artifact layout and its loaders
    "load_analyzed": _M + "layout",
    "load_serving_info": _M + "layout",
    "serving_dir": _M + "layout",
    # spec
    "FeatureSpec": _M + "spec",
    "load_spec": _M + "spec",
    # reading raw files; rows against the spec
    "ReadRawData": _M + "io",
    "ReadResult": _M + "io",
    "read_file": _M + "io",
    "RejectedRow": _M + "validation",
    "arrow_schema_for": _M + "validation",
    "table_to_batch": _M + "validation",
    # preprocessing_fns
    "build_preprocessing_fn": _M + "preprocessing",
    "load_preprocessing_fn": _M + "user_fn",
    "raw_feature_spec": _M + "graph_rules",
    # analyze; apply a transform_fn
    "AnalyzeAndTransform": _M + "analyze",
    "AnalyzeToDirectory": _M + "analyze",
    "tensor_adapter_config": _M + "analyze",
    "TransformBatches": _M + "transform_batches",
    "compute_constants": _M + "constants_json",
    "StagedOutput": _M + "staging",
    "OutputLock": _M + "staging",
    "OutputLockedError": _M + "staging",
    # cross-language (Row-based)
    "AnalyzeAndTransformRows": _M + "xlang",
    "PredictRows": _M + "xlang",
    "TransformRows": _M + "xlang",
    # train, export, serve, predict
    "train_model": _M + "train",
    "export_serving_model": _M + "export",
    "serving_spec": _M + "serving",
    "load_serving_spec": _M + "serving",
    "Predict": _M + "predict",
    "ServingModelHandler": _M + "predict",
    "prediction_fields": _M + "predict",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'featurebridge.transforms' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
