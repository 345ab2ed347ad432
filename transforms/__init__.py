"""featurebridge's library: feature spec, Arrow readers with rejected rows,
the TFT preprocessing_fn builder, Beam PTransforms, constants and provenance.

Names are re-exported lazily (PEP 562) so that ``import featurebridge.transforms.spec`` does
not pay for importing TensorFlow.
"""

import importlib

from featurebridge.transforms import tft_concurrency as _tft_concurrency

# Flink and Spark run TFT's traces concurrently in one worker; see tft_concurrency.
_tft_concurrency.install()

_EXPORTS = {
    # spec
    "FeatureSpec": "featurebridge.transforms.spec",
    "SpecError": "featurebridge.transforms.spec",
    "load_spec": "featurebridge.transforms.spec",
    # io
    "InputError": "featurebridge.transforms.io",
    "ReadRawData": "featurebridge.transforms.io",
    "ReadResult": "featurebridge.transforms.io",
    "RejectedRow": "featurebridge.transforms.io",
    "arrow_schema_for": "featurebridge.transforms.io",
    "read_file": "featurebridge.transforms.io",
    "table_to_batch": "featurebridge.transforms.io",
    # preprocessing
    "build_preprocessing_fn": "featurebridge.transforms.preprocessing",
    "load_preprocessing_fn": "featurebridge.transforms.preprocessing",
    "raw_feature_spec": "featurebridge.transforms.preprocessing",
    # analyze
    "AnalyzeAndTransform": "featurebridge.transforms.analyze",
    "AnalyzeToDirectory": "featurebridge.transforms.analyze",
    "CountMismatchError": "featurebridge.transforms.analyze",
    "EmptyDataError": "featurebridge.transforms.analyze",
    "tensor_adapter_config": "featurebridge.transforms.analyze",
    # cross-language (Row-based)
    "AnalyzeAndTransformRows": "featurebridge.transforms.xlang",
    "PredictRows": "featurebridge.transforms.xlang",
    "TransformRows": "featurebridge.transforms.xlang",
    # constants, outputs
    "compute_constants": "featurebridge.transforms.constants",
    "OutputExistsError": "featurebridge.transforms.outputs",
    "StagedOutput": "featurebridge.transforms.outputs",
    # train, export, predict
    "TrainingError": "featurebridge.transforms.train",
    "train_model": "featurebridge.transforms.train",
    "export_serving_model": "featurebridge.transforms.export",
    "serving_spec": "featurebridge.transforms.export",
    "ModelDirError": "featurebridge.transforms.predict",
    "Predict": "featurebridge.transforms.predict",
    "ServingModelHandler": "featurebridge.transforms.predict",
    "load_serving_spec": "featurebridge.transforms.predict",
    "prediction_fields": "featurebridge.transforms.predict",
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
