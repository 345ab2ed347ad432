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

With ``with_label=True`` each output dict also carries the row's raw label
under `LABEL_FIELD` (None where the label is missing or not a valid label), so
a caller can score the predictions without reading the rows again. The label
never costs a row its prediction: it is read as text, kept when missing, and
typed after the model call with the readers' own rules.

We use our own small ModelHandler rather than Beam's TFModelHandlerTensor
because that handler loads with ``tf.keras.models.load_model`` and calls the
model object; our export is a plain SavedModel whose entry points are its
signatures (no Keras needed to load it). Workers import TensorFlow, never
TFT or Keras.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference

from featurebridge.transforms.errors import UsageError
from featurebridge.transforms.io import ROW_COLUMN, SOURCE_COLUMN, table_to_batch
from featurebridge.transforms.layout import SERVING_INFO, load_serving_info, serving_dir
from featurebridge.transforms.serving import (
    EXAMPLES_INPUT,
    OUTPUT_FIELDS,
    RAW_LISTS_FUNCTION,
    SIGNATURE_DEFAULT,
    load_serving_spec,
)
from featurebridge.transforms.spec import Column, FeatureSpec, MissingPolicy

__all__ = [
    "LABEL_FIELD",
    "Predict",
    "ServingModelHandler",
    "prediction_fields",
]

_LOG = logging.getLogger(__name__)

# The field of `Predict(..., with_label=True)`'s output dicts that holds the
# row's raw label, and the input column it is read into (beside the position
# columns; it cannot clash with a model output or the key).
LABEL_FIELD = "__label__"


def _trained_spec(model_dir: str) -> FeatureSpec:
    """The spec the model was trained with, label included.

    Raises:
      ModelDirError: `model_dir` is not a featurebridge model.
    """
    source = os.path.join(serving_dir(model_dir), SERVING_INFO)
    return FeatureSpec.from_dict(load_serving_info(model_dir)["spec"], source=source, trusted=True)


def _label_column(model_dir: str) -> Column:
    """The spec's label column, as `Predict(with_label=True)` reads it: text
    under `LABEL_FIELD` from the label's file column, missing cells kept.

    Raises:
      ModelDirError: `model_dir` is not a featurebridge model.
      UsageError: the model has no label, or a column already uses `LABEL_FIELD`.
    """
    trained = _trained_spec(model_dir)
    if trained.label is None:
        raise UsageError(f"with_label needs a model trained with a label; {model_dir} has none. Predict without it.")
    if LABEL_FIELD in trained.column_names:
        raise UsageError(f"with_label reads the label as {LABEL_FIELD!r}, a name the spec already uses; rename that column.")
    label = trained.column(trained.label.column)
    # Text, never rejected: typing happens after the model call (`_LabelTyper`).
    return dataclasses.replace(label, name=LABEL_FIELD, type="string", missing=MissingPolicy("most_frequent"))


def prediction_fields(model_dir: str, with_label: bool = False) -> List[Tuple[str, str]]:
    """The fields of each output dict of `Predict`, in order, with their types:
    "string", "int", "float" or "float_list" (multiclass probabilities).

    The key column (if the spec has one) comes first with its column type,
    then ``__source__`` (string) and ``__row__`` (int), with `with_label`
    then `LABEL_FIELD` with the label column's type (None where the label is
    missing or invalid), then the model outputs.

    Raises:
      ModelDirError: `model_dir` is not a featurebridge model.
      UsageError: `with_label` and the model has no label.
    """
    info = load_serving_info(model_dir)
    spec = load_serving_spec(model_dir)
    fields: List[Tuple[str, str]] = []
    if spec.key:
        fields.append((spec.key, spec.column(spec.key).type))
    fields += [(SOURCE_COLUMN, "string"), (ROW_COLUMN, "int")]
    if with_label:
        _label_column(model_dir)  # raises when there is no label
        trained = _trained_spec(model_dir)
        fields.append((LABEL_FIELD, trained.column(trained.label.column).type))
    fields += list(OUTPUT_FIELDS[info["head"]["kind"]])
    return fields


def _row_outputs(model_dir: str) -> Tuple[str, ...]:
    """The model outputs a prediction row carries (`OUTPUT_FIELDS` of its head)."""
    return tuple(name for name, _ in OUTPUT_FIELDS[load_serving_info(model_dir)["head"]["kind"]])


def _rows_in(element) -> int:
    """BatchElements' size of an element: a RecordBatch's rows (1 for an example)."""
    return element.num_rows if isinstance(element, pa.RecordBatch) else 1


class ServingModelHandler(ModelHandler[object, PredictionResult, object]):
    """RunInference handler for our serving SavedModel.

    Elements are raw RecordBatches in ``arrow_schema_for(spec)`` layout (one
    PredictionResult per batch, whose inference is {output: array with one
    entry per row}), or serialized raw tf.Examples (one PredictionResult per
    example, whose inference is {output: value}). The outputs are the
    head's `serving.OUTPUT_FIELDS` (a classifier's include ``class_name``);
    TF Serving's [batch, n_classes] ``classes`` and ``scores`` are left out.
    A model call gets at most `max_batch_size` rows when every
    RecordBatch has at most that many (`Predict` slices them so).

    Args:
      model_dir: MODEL, MODEL/serving (its highest version) or a version
        directory MODEL/serving/<version>.
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
        self._outputs = _row_outputs(model_dir)
        self._spec: Optional[FeatureSpec] = None
        self._min = min_batch_size
        self._max = max_batch_size

    def load_model(self):
        import tensorflow as tf

        _LOG.info("Loading the serving model %s", self._path)
        return tf.saved_model.load(self._path)

    def _serving_spec(self) -> FeatureSpec:
        if self._spec is None:
            self._spec = FeatureSpec.from_text(self._spec_json, trusted=True)
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
        return {k: outputs[k].numpy() for k in self._outputs}

    def run_inference(self, batch: Sequence[object], model, inference_args=None) -> Iterable[PredictionResult]:
        import tensorflow as tf

        if not batch:
            return []
        if not isinstance(batch[0], pa.RecordBatch):  # serialized tf.Examples
            outputs = model.signatures[SIGNATURE_DEFAULT](**{EXAMPLES_INPUT: tf.constant(list(batch))})
            arrays = {k: outputs[k].numpy() for k in self._outputs}
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


def _typed_labels(label_spec: FeatureSpec, cells: pa.Array) -> List[object]:
    """The raw label of each row from its label text (`LABEL_FIELD`), typed as
    a read with the label types it (`io.table_to_batch` with the trained
    label column: its type, null markers and label checks): a Python value,
    None where the label is missing or would be rejected. No cells, no labels."""
    name = label_spec.label.column
    texts = [v[0].decode("utf-8", errors="replace") if v else None for v in cells.to_pylist()]
    typed, rejected = table_to_batch(pa.table({name: pa.array(texts, pa.string())}), label_spec, first_row=0)
    bad = {r.row for r in rejected}
    kept = iter(typed.column(name).to_pylist() if typed is not None else [])
    return [None if i in bad else _text(next(kept)[0]) for i in range(len(texts))]


class _ToRows(beam.DoFn):
    """PredictionResult of a RecordBatch -> one dict per row: key, source,
    row number, the label (with `trained_spec_json`), then the model outputs
    as Python values."""

    def __init__(self, key_field: Optional[str], trained_spec_json: Optional[str] = None):
        self._key_field = key_field
        self._trained_spec_json = trained_spec_json
        self._label_spec: Optional[FeatureSpec] = None

    def setup(self):
        if self._trained_spec_json is not None:
            trained = FeatureSpec.from_text(self._trained_spec_json, trusted=True)
            label = trained.column(trained.label.column)
            self._label_spec = dataclasses.replace(trained, columns=(label,), crosses=(), key=None)

    def process(self, result: PredictionResult):
        batch = result.example
        names = batch.schema.names
        sources = batch.column(SOURCE_COLUMN).to_pylist()
        rows = batch.column(ROW_COLUMN).to_pylist()
        key_field = self._key_field
        keys = batch.column(key_field).to_pylist() if key_field and key_field in names else None
        labels = None
        if self._label_spec is not None:
            labels = _typed_labels(self._label_spec, batch.column(LABEL_FIELD))
        outputs = {name: np.asarray(values) for name, values in result.inference.items()}
        for i in range(batch.num_rows):
            out: Dict[str, object] = {}
            if key_field:
                out[key_field] = _text(keys[i][0]) if keys is not None and keys[i] else None
            out[SOURCE_COLUMN] = _text(sources[i][0])
            out[ROW_COLUMN] = int(rows[i][0])
            if labels is not None:
                out[LABEL_FIELD] = labels[i]
            for name, values in outputs.items():
                value = values[i]
                if isinstance(value, bytes):  # class_name
                    out[name] = value.decode("utf-8", errors="replace")
                else:
                    out[name] = value.tolist() if value.ndim else value.item()
            yield out


class Predict(beam.PTransform):
    """Raw RecordBatches -> prediction dicts, one per row, via RunInference.

    Input: PCollection[pa.RecordBatch] in ``arrow_schema_for(spec,
    include_position=True)`` where spec is `Predict.spec` (read the rows with
    it; rows read with the label column are fine without `with_label`, it is
    ignored).
    Output: PCollection[dict] with the fields of `prediction_fields(model_dir,
    with_label)`.

    Missing raw values are filled inside the model by the spec's policies. An
    empty input gives an empty output.

    With `with_label`, `spec` also has a `LABEL_FIELD` column that reads the
    label's file column as text and keeps missing cells, so the label rejects
    no row: the same rows get predictions as without it. Each output dict's
    `LABEL_FIELD` is the row's raw label as a Python value of the label
    column's type (str, int or float), typed with the readers' rules; None
    where it is missing, a null marker, or a value a read with the label
    would reject (not a number, not a class id). A label cell the format
    itself cannot read (a nested JSON value, several tf.Example values)
    still rejects its row, as any such cell does.

    Args:
      model_dir: MODEL (the train output), MODEL/serving (its highest
        version) or a version directory MODEL/serving/<version>.
      min_batch_size, max_batch_size: rows per model call.
      with_label: expect the label in the input batches and pass it through.

    Raises:
      ModelDirError: at construction, if `model_dir` is not a model.
      UsageError: `with_label` and the model was trained without a label.
    """

    def __init__(
        self, model_dir: str, min_batch_size: int = 1, max_batch_size: int = 1024, with_label: bool = False
    ):
        super().__init__()
        self._model_dir = model_dir
        self._spec = load_serving_spec(model_dir)
        self._trained_json: Optional[str] = None
        if with_label:
            self._spec = dataclasses.replace(self._spec, columns=self._spec.columns + (_label_column(model_dir),))
            self._trained_json = _trained_spec(model_dir).to_json()
        self._handler = ServingModelHandler(model_dir, min_batch_size, max_batch_size)
        self._max = max_batch_size

    @property
    def spec(self) -> FeatureSpec:
        """The raw columns the input batches carry: the spec without its label,
        plus the label read as text under `LABEL_FIELD` when `with_label`."""
        return self._spec

    def expand(self, batches):
        return (
            batches
            | "Slice" >> beam.ParDo(_Slices(self._max))
            | "RunInference" >> RunInference(self._handler)
            | "ToRows" >> beam.ParDo(_ToRows(self._spec.key, self._trained_json))
        )
