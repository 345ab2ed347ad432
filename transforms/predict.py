"""Batch predictions on Beam with the serving SavedModel, through RunInference.

`Predict` maps raw RecordBatches (``arrow_schema_for(spec, include_position=True)``)
to one dict per row: the row's key (when the spec has one), its source file
and row number, and the model's outputs, so every prediction joins back to
its input. The model is loaded once per worker process by RunInference and
called once per batch of rows with the batch's Arrow columns as ragged
tensors (`examples.batch_to_raw_lists`), through the model's raw-lists
function (`serving.RAW_LISTS_FUNCTION`): the serving_raw inputs, where an
empty row is a missing value. No tf.Example is built per row. A model
exported before that function existed is called through ``serving_default``
with serialized tf.Examples instead; both give the same predictions.

We use our own small ModelHandler rather than Beam's TFModelHandlerTensor
because that handler loads with ``tf.keras.models.load_model`` and calls the
model object; our export is a plain SavedModel whose entry points are its
signatures (no Keras needed to load it). Workers import TensorFlow, never
TFT or Keras.
"""

from __future__ import annotations

import logging
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference

from featurebridge.transforms.errors import ModelDirError
from featurebridge.transforms.io import ROW_COLUMN, SOURCE_COLUMN
from featurebridge.transforms.layout import load_serving_info, serving_dir
from featurebridge.transforms.serving import (
    EXAMPLES_INPUT,
    OUTPUT_FIELDS,
    RAW_LISTS_FUNCTION,
    SIGNATURE_DEFAULT,
    load_serving_spec,
)
from featurebridge.transforms.spec import FeatureSpec

__all__ = [
    "Predict",
    "ServingModelHandler",
    "prediction_fields",
    # Re-exported from layout, errors and serving for older importers.
    "ModelDirError",
    "load_serving_info",
    "load_serving_spec",
    "serving_dir",
]

_LOG = logging.getLogger(__name__)


def prediction_fields(model_dir: str) -> List[Tuple[str, str]]:
    """The fields of each output dict of `Predict`, in order, with their types:
    "string", "int", "float" or "float_list" (multiclass probabilities).

    The key column (if the spec has one) comes first with its column type,
    then ``__source__`` (string) and ``__row__`` (int), then the model outputs.

    Raises:
      ModelDirError: `model_dir` is not a featurebridge model.
    """
    info = load_serving_info(model_dir)
    spec = load_serving_spec(model_dir)
    fields: List[Tuple[str, str]] = []
    if spec.key:
        fields.append((spec.key, spec.column(spec.key).type))
    fields += [(SOURCE_COLUMN, "string"), (ROW_COLUMN, "int")]
    fields += list(OUTPUT_FIELDS[info["head"]["kind"]])
    return fields


def _rows_in(element) -> int:
    """BatchElements' size of an element: a RecordBatch's rows (1 for an example)."""
    return element.num_rows if isinstance(element, pa.RecordBatch) else 1


class ServingModelHandler(ModelHandler[object, PredictionResult, object]):
    """RunInference handler for our serving SavedModel.

    Elements are raw RecordBatches in ``arrow_schema_for(spec)`` layout (one
    PredictionResult per batch, whose inference is {output: array with one
    entry per row}), or serialized raw tf.Examples (one PredictionResult per
    example). A model call gets at most `max_batch_size` rows when every
    RecordBatch has at most that many (`Predict` slices them so).

    Args:
      model_dir: MODEL or MODEL/serving.
      min_batch_size, max_batch_size: RunInference's batching bounds, in rows.

    Raises:
      ModelDirError: at construction, if `model_dir` is not a model.
      ValueError: the batch sizes are not 1 <= min <= max.
    """

    def __init__(self, model_dir: str, min_batch_size: int = 1, max_batch_size: int = 1024):
        super().__init__()
        if min_batch_size < 1 or max_batch_size < min_batch_size:
            raise ValueError(
                f"Batch sizes must satisfy 1 <= min <= max; got min={min_batch_size}, max={max_batch_size}."
            )
        self._path = serving_dir(model_dir)
        self._spec_json = load_serving_spec(model_dir).to_json()
        self._spec: Optional[FeatureSpec] = None
        self._min = min_batch_size
        self._max = max_batch_size

    def load_model(self):
        import tensorflow as tf

        _LOG.info("Loading the serving model %s", self._path)
        return tf.saved_model.load(self._path)

    def _serving_spec(self) -> FeatureSpec:
        if self._spec is None:
            self._spec = FeatureSpec.from_text(self._spec_json)
        return self._spec

    def _call_on_batch(self, model, batch: pa.RecordBatch) -> Dict[str, np.ndarray]:
        """One model call on every row of `batch`: {output: array}."""
        import tensorflow as tf

        from featurebridge.transforms.examples import batch_to_examples, batch_to_raw_lists

        spec = self._serving_spec()
        raw_lists = getattr(model, RAW_LISTS_FUNCTION, None)
        if raw_lists is not None:
            outputs = raw_lists(batch_to_raw_lists(spec, batch))
        else:  # exported before the raw-lists function: the tf.Example path
            examples = tf.constant(batch_to_examples(spec, batch), tf.string)
            outputs = model.signatures[SIGNATURE_DEFAULT](**{EXAMPLES_INPUT: examples})
        return {k: v.numpy() for k, v in outputs.items()}

    def run_inference(self, batch: Sequence[object], model, inference_args=None) -> Iterable[PredictionResult]:
        import tensorflow as tf

        if not batch:
            return []
        if not isinstance(batch[0], pa.RecordBatch):  # serialized tf.Examples
            outputs = model.signatures[SIGNATURE_DEFAULT](**{EXAMPLES_INPUT: tf.constant(list(batch))})
            arrays = {k: v.numpy() for k, v in outputs.items()}
            return [PredictionResult(example, {k: a[i] for k, a in arrays.items()}) for i, example in enumerate(batch)]
        whole = batch[0] if len(batch) == 1 else pa.concat_batches(list(batch))
        arrays = self._call_on_batch(model, whole)
        results, start = [], 0
        for element in batch:
            end = start + element.num_rows
            results.append(PredictionResult(element, {k: a[start:end] for k, a in arrays.items()}))
            start = end
        return results

    def get_num_bytes(self, batch: Sequence[object]) -> int:
        return sum(x.nbytes if isinstance(x, pa.RecordBatch) else len(x) for x in batch)

    def get_metrics_namespace(self) -> str:
        return "featurebridge_predict"

    def batch_elements_kwargs(self) -> Dict[str, object]:
        return {"min_batch_size": self._min, "max_batch_size": self._max, "element_size_fn": _rows_in}


class _Slices(beam.DoFn):
    """RecordBatch -> slices of at most `max_rows` rows (none for an empty batch).

    Raises:
      ValueError: the batch has no position columns.
    """

    def __init__(self, max_rows: int):
        self._max_rows = max_rows

    def process(self, batch: pa.RecordBatch):
        names = batch.schema.names
        if SOURCE_COLUMN not in names or ROW_COLUMN not in names:
            raise ValueError(
                f"Predict needs batches with {SOURCE_COLUMN!r} and {ROW_COLUMN!r} columns; got "
                f"{names}. Read with ReadRawData(..., include_position=True)."
            )
        for start in range(0, batch.num_rows, self._max_rows):
            yield batch.slice(start, self._max_rows)


def _text(value) -> Optional[str]:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


class _ToRows(beam.DoFn):
    """PredictionResult of a RecordBatch -> one dict per row: key, source,
    row number, then the model outputs as Python values."""

    def __init__(self, key_field: Optional[str]):
        self._key_field = key_field

    def process(self, result: PredictionResult):
        batch = result.example
        names = batch.schema.names
        sources = batch.column(SOURCE_COLUMN).to_pylist()
        rows = batch.column(ROW_COLUMN).to_pylist()
        key_field = self._key_field
        keys = batch.column(key_field).to_pylist() if key_field and key_field in names else None
        outputs = {name: np.asarray(values) for name, values in result.inference.items()}
        for i in range(batch.num_rows):
            out: Dict[str, object] = {}
            if key_field:
                out[key_field] = _text(keys[i][0]) if keys is not None and keys[i] else None
            out[SOURCE_COLUMN] = _text(sources[i][0])
            out[ROW_COLUMN] = int(rows[i][0])
            for name, values in outputs.items():
                value = values[i]
                out[name] = value.tolist() if value.ndim else value.item()
            yield out


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
        self._max = max_batch_size

    @property
    def spec(self) -> FeatureSpec:
        """The raw columns the input batches carry (the spec without label)."""
        return self._spec

    def expand(self, batches):
        return (
            batches
            | "Slice" >> beam.ParDo(_Slices(self._max))
            | "RunInference" >> RunInference(self._handler)
            | "ToRows" >> beam.ParDo(_ToRows(self._spec.key))
        )
