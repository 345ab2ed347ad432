"""Batch predictions on Beam with the serving SavedModel, through RunInference.

`Predict` maps raw RecordBatches (``arrow_schema_for(spec, include_position=True)``)
to one dict per row: the row's key (when the spec has one), its source file
and row number, and the model's outputs, so every prediction joins back to
its input. The model is loaded once per worker process by RunInference and
called on batches of serialized raw tf.Examples through ``serving_default``,
the same path TF Serving takes.

We use our own small ModelHandler rather than Beam's TFModelHandlerTensor
because that handler loads with ``tf.keras.models.load_model`` and calls the
model object; our export is a plain SavedModel whose entry points are its
signatures (no Keras needed to load it).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult, RunInference

from featurebridge.transforms.errors import ModelDirError
from featurebridge.transforms.io import ROW_COLUMN, SOURCE_COLUMN
from featurebridge.transforms.spec import FeatureSpec

__all__ = [
    "ModelDirError",
    "Predict",
    "ServingModelHandler",
    "load_serving_info",
    "load_serving_spec",
    "prediction_fields",
    "serving_dir",
]

_LOG = logging.getLogger(__name__)

# Mirrors featurebridge.transforms.export (not imported: that module imports TFT, which
# workers running predictions do not need).
_SIGNATURE_DEFAULT = "serving_default"
_EXAMPLES_INPUT = "examples"
_SERVING_INFO_FILE = os.path.join("assets.extra", "featurebridge.json")



def serving_dir(model_dir: str) -> str:
    """The SavedModel directory for `model_dir` (MODEL/serving or MODEL itself).

    Raises:
      ModelDirError: neither holds saved_model.pb and featurebridge.json.
    """
    for candidate in (os.path.join(model_dir, "serving"), model_dir):
        if os.path.exists(os.path.join(candidate, "saved_model.pb")) and os.path.exists(
            os.path.join(candidate, _SERVING_INFO_FILE)
        ):
            return candidate
    raise ModelDirError(
        f"{model_dir!r} is not a featurebridge model: expected MODEL/serving/saved_model.pb "
        f"and {_SERVING_INFO_FILE}. Pass the --output of `featurebridge train`."
    )


def load_serving_info(model_dir: str) -> dict:
    """The export's description: spec, label head, signatures."""
    with open(os.path.join(serving_dir(model_dir), _SERVING_INFO_FILE), encoding="utf-8") as f:
        return json.load(f)


def load_serving_spec(model_dir: str) -> FeatureSpec:
    """The feature spec the model was trained with, minus its label: the
    columns a row to predict on may carry (the key column must be present).

    Raises:
      ModelDirError: `model_dir` is not a featurebridge model.
    """
    import dataclasses

    info = load_serving_info(model_dir)
    spec = FeatureSpec.from_dict(info["spec"], source=os.path.join(serving_dir(model_dir), _SERVING_INFO_FILE))
    label = spec.label.column if spec.label else None
    return dataclasses.replace(spec, columns=tuple(c for c in spec.columns if c.name != label), label=None)


def prediction_fields(model_dir: str) -> List[Tuple[str, str]]:
    """The fields of each output dict of `Predict`, in order, with their types:
    "string", "int", "float" or "float_list" (multiclass probabilities).

    The key column (if the spec has one) comes first with its column type,
    then ``__source__`` (string) and ``__row__`` (int), then the model outputs.
    """
    info = load_serving_info(model_dir)
    spec = load_serving_spec(model_dir)
    fields: List[Tuple[str, str]] = []
    if spec.key:
        fields.append((spec.key, spec.column(spec.key).type))
    fields += [(SOURCE_COLUMN, "string"), (ROW_COLUMN, "int")]
    kind = info["head"]["kind"]
    if kind == "binary":
        fields += [("probability", "float"), ("class_id", "int")]
    elif kind == "multiclass":
        fields += [("probabilities", "float_list"), ("class_id", "int")]
    else:
        fields += [("prediction", "float")]
    return fields


class ServingModelHandler(ModelHandler[bytes, PredictionResult, object]):
    """RunInference handler for our serving SavedModel: serialized raw
    tf.Examples in, one PredictionResult per example out.

    Args:
      model_dir: MODEL or MODEL/serving.
      min_batch_size, max_batch_size: RunInference's batching bounds.

    Raises:
      ModelDirError: at construction, if `model_dir` is not a model.
    """

    def __init__(self, model_dir: str, min_batch_size: int = 1, max_batch_size: int = 1024):
        super().__init__()
        if min_batch_size < 1 or max_batch_size < min_batch_size:
            raise ValueError(
                f"Batch sizes must satisfy 1 <= min <= max; got min={min_batch_size}, max={max_batch_size}."
            )
        self._path = serving_dir(model_dir)
        self._min = min_batch_size
        self._max = max_batch_size

    def load_model(self):
        import tensorflow as tf

        _LOG.info("Loading the serving model %s", self._path)
        return tf.saved_model.load(self._path)

    def run_inference(self, batch: Sequence[bytes], model, inference_args=None) -> Iterable[PredictionResult]:
        import tensorflow as tf

        outputs = model.signatures[_SIGNATURE_DEFAULT](**{_EXAMPLES_INPUT: tf.constant(list(batch))})
        arrays = {k: v.numpy() for k, v in outputs.items()}
        return [PredictionResult(example, {k: a[i] for k, a in arrays.items()}) for i, example in enumerate(batch)]

    def get_num_bytes(self, batch: Sequence[bytes]) -> int:
        return sum(len(x) for x in batch)

    def get_metrics_namespace(self) -> str:
        return "featurebridge_predict"

    def batch_elements_kwargs(self) -> Dict[str, int]:
        return {"min_batch_size": self._min, "max_batch_size": self._max}


class _ToKeyedExamples(beam.DoFn):
    """RecordBatch -> ((key, source, row), serialized raw tf.Example) per row."""

    def __init__(self, spec_json: str):
        self._spec_json = spec_json
        self._spec = None

    def setup(self):
        self._spec = FeatureSpec.from_text(self._spec_json)

    def process(self, batch):
        from featurebridge.transforms.examples import batch_to_examples

        spec = self._spec
        names = batch.schema.names
        if SOURCE_COLUMN not in names or ROW_COLUMN not in names:
            raise ValueError(
                f"Predict needs batches with {SOURCE_COLUMN!r} and {ROW_COLUMN!r} columns; got "
                f"{names}. Read with ReadRawData(..., include_position=True)."
            )
        examples = batch_to_examples(spec, batch)
        sources = batch.column(SOURCE_COLUMN).to_pylist()
        rows = batch.column(ROW_COLUMN).to_pylist()
        keys = batch.column(spec.key).to_pylist() if spec.key and spec.key in names else None
        for i, example in enumerate(examples):
            key = keys[i][0] if keys is not None and keys[i] else None
            if isinstance(key, bytes):
                key = key.decode("utf-8", errors="replace")
            source = sources[i][0]
            source = source.decode("utf-8", errors="replace") if isinstance(source, bytes) else source
            yield (key, source, int(rows[i][0])), example


def _to_row(key_field: Optional[str]):
    def convert(keyed) -> Dict[str, object]:
        (key, source, row), result = keyed
        out: Dict[str, object] = {}
        if key_field:
            out[key_field] = key
        out[SOURCE_COLUMN] = source
        out[ROW_COLUMN] = row
        for name, value in result.inference.items():
            value = np.asarray(value)
            out[name] = value.tolist() if value.ndim else value.item()
        return out

    return convert


class Predict(beam.PTransform):
    """Raw RecordBatches -> prediction dicts, one per row, via RunInference.

    Input: PCollection[pa.RecordBatch] in ``arrow_schema_for(spec,
    include_position=True)`` where spec is `load_serving_spec(model_dir)`
    (rows read with the label column are fine; it is ignored).
    Output: PCollection[dict] with the fields of `prediction_fields(model_dir)`.

    Missing raw values are filled inside the model by the spec's policies. An
    empty input gives an empty output.

    Args:
      model_dir: MODEL (the train output) or MODEL/serving.
      min_batch_size, max_batch_size: rows per model call.

    Raises:
      ModelDirError: at construction, if `model_dir` is not a model.
    """

    def __init__(self, model_dir: str, min_batch_size: int = 1, max_batch_size: int = 1024):
        super().__init__()
        self._model_dir = model_dir
        self._spec = load_serving_spec(model_dir)
        self._handler = ServingModelHandler(model_dir, min_batch_size, max_batch_size)

    @property
    def spec(self) -> FeatureSpec:
        """The raw columns the input batches carry (the spec without label)."""
        return self._spec

    def expand(self, batches):
        return (
            batches
            | "ToExamples" >> beam.ParDo(_ToKeyedExamples(self._spec.to_json()))
            | "RunInference" >> RunInference(KeyedModelHandler(self._handler))
            | "ToRows" >> beam.Map(_to_row(self._spec.key))
        )
