"""featurebridge's library: feature spec, Arrow readers with rejected rows,
the TFT preprocessing_fn builder, Beam PTransforms, constants and provenance.

Names are re-exported lazily (PEP 562) so that ``import transforms.spec`` does
not pay for importing TensorFlow.
"""

import importlib

from transforms import tft_concurrency as _tft_concurrency

# Flink and Spark run TFT's traces concurrently in one worker; see tft_concurrency.
_tft_concurrency.install()

_EXPORTS = {
    # spec
    "FeatureSpec": "transforms.spec",
    "SpecError": "transforms.spec",
    "load_spec": "transforms.spec",
    # io
    "InputError": "transforms.io",
    "ReadRawData": "transforms.io",
    "ReadResult": "transforms.io",
    "RejectedRow": "transforms.io",
    "arrow_schema_for": "transforms.io",
    "read_file": "transforms.io",
    "table_to_batch": "transforms.io",
    # preprocessing
    "build_preprocessing_fn": "transforms.preprocessing",
    "load_preprocessing_fn": "transforms.preprocessing",
    "raw_feature_spec": "transforms.preprocessing",
    # analyze
    "AnalyzeAndTransform": "transforms.analyze",
    "AnalyzeToDirectory": "transforms.analyze",
    "CountMismatchError": "transforms.analyze",
    "EmptyDataError": "transforms.analyze",
    "tensor_adapter_config": "transforms.analyze",
    # cross-language (Row-based)
    "AnalyzeAndTransformRows": "transforms.xlang",
    "PredictRows": "transforms.xlang",
    "TransformRows": "transforms.xlang",
    # constants, outputs
    "compute_constants": "transforms.constants",
    "OutputExistsError": "transforms.outputs",
    "StagedOutput": "transforms.outputs",
    # train, export, predict
    "TrainingError": "transforms.train",
    "train_model": "transforms.train",
    "export_serving_model": "transforms.export",
    "serving_spec": "transforms.export",
    "ModelDirError": "transforms.predict",
    "Predict": "transforms.predict",
    "ServingModelHandler": "transforms.predict",
    "load_serving_spec": "transforms.predict",
    "prediction_fields": "transforms.predict",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'transforms' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
