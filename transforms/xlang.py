"""Row-based PTransforms that cross the language boundary.

Each takes and returns schema'd Beam Rows (the portable ``beam:coder:row:v1``
coder), never pickled Python objects, and takes only Row-encodable
configuration (strings), so a Java pipeline can call it through the expansion
service. Configuration is validated in the constructor, which runs on the
expansion side: a bad spec or path fails the ``Expand`` call, not a worker.

- `AnalyzeAndTransformRows(spec, output_dir)`: raw Rows -> analyze artifacts
  in ``output_dir`` + transformed Rows + rejected Rows.
- `TransformRows(analyzed_dir)`: raw Rows -> transformed Rows with an
  existing transform_fn.
- `PredictRows(model_dir)`: raw Rows -> Rows with the serving model's outputs.

Input Rows carry the spec's raw columns by name (other fields are ignored);
every field may be null, which means a missing value. Rows are converted to
Arrow RecordBatches with the file readers' rules (`featurebridge.transforms.io.table_to_batch`),
so the same values are rejected for the same reasons.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.typehints.row_type import RowTypeConstraint

from featurebridge.transforms import io as fb_io
from featurebridge.transforms.spec import SPLIT_FEATURE, TIMESTAMP_PARTS, FeatureSpec, SpecError

__all__ = [
    "AnalyzeAndTransformRows",
    "PredictRows",
    "REJECTED_ROW_TYPE",
    "TransformRows",
    "XLANG_CLASSES",
    "raw_row_type",
    "transformed_row_type",
]

_LOG = logging.getLogger(__name__)

# The Python types of raw Row fields; Java sees DOUBLE, INT64, STRING, BOOLEAN
# (all nullable). A timestamp travels as its ISO 8601 text.
_RAW_PY_TYPES = {"float": float, "int": int, "string": str, "bool": bool, "timestamp": str}
_STORED_PY_TYPES = {"float": float, "int": int, "string": str}

REJECTED_ROW_TYPE = RowTypeConstraint.from_fields(
    [
        ("source", str),
        ("row", int),
        ("column", Optional[str]),
        ("value", Optional[str]),
        ("reason", str),
    ]
)

DEFAULT_BATCH_SIZE = 1000


def raw_row_type(spec: FeatureSpec) -> RowTypeConstraint:
    """The Row schema the transforms accept for `spec`: one nullable field per raw column."""
    return RowTypeConstraint.from_fields([(c.name, Optional[_RAW_PY_TYPES[c.type]]) for c in spec.columns])


def _output_fields_from_spec(spec: FeatureSpec) -> List[Tuple[str, type]]:
    """The transformed features' Row fields, derived from the spec alone (the
    transform_fn does not exist yet when analyze-and-transform is expanded)."""
    fields: List[Tuple[str, type]] = []
    for column in spec.columns:
        for t in column.transforms:
            if t.type in ("zscore", "scale_0_1", "min_max", "log1p", "clip"):
                fields.append((t.output, float))
            elif t.type in ("bucketize", "vocabulary", "hash") or t.type in TIMESTAMP_PARTS:
                fields.append((t.output, int))
            elif t.type == "identity":
                fields.append((t.output, _STORED_PY_TYPES[column.storage]))
            elif t.type in ("ngrams", "bag_of_words"):
                fields.append((t.output, Sequence[int]))
            elif t.type == "tfidf":
                fields += [(t.output + "_index", Sequence[int]), (t.output + "_weight", Sequence[float])]
            else:  # The spec parser admits only known types.
                raise AssertionError(f"unhandled transform type {t.type!r}")
    fields += [(x.output, int) for x in spec.crosses]
    if spec.label:
        fields.append((spec.label.column, float if spec.label.kind == "regression" else int))
    return fields


def _output_fields_from_feature_spec(feature_spec: Mapping) -> List[Tuple[str, type]]:
    """Row fields from TFT's transformed feature spec (FixedLen [] -> scalar, else a list)."""
    import tensorflow as tf

    def py(dtype):
        return {tf.float32: float, tf.float64: float, tf.int64: int, tf.string: str}[dtype]

    fields = []
    for name, feature in feature_spec.items():
        if isinstance(feature, tf.io.FixedLenFeature) and not list(feature.shape):
            fields.append((name, py(feature.dtype)))
        else:
            fields.append((name, Sequence[py(feature.dtype)]))
    return fields


def _with_key(spec: FeatureSpec, feature_fields: Sequence[Tuple[str, type]]) -> List[Tuple[str, type]]:
    fields = []
    if spec.key:
        fields.append((spec.key, Optional[_RAW_PY_TYPES[spec.column(spec.key).type]]))
    return fields + list(feature_fields)


def transformed_row_type(spec: FeatureSpec) -> RowTypeConstraint:
    """The Row schema `AnalyzeAndTransformRows` outputs for `spec`: the key
    column (if the spec has one, passed through), each transformed feature in
    spec order, then the transformed label."""
    return RowTypeConstraint.from_fields(_with_key(spec, _output_fields_from_spec(spec)))


# ---------------------------------------------------------------------------
# Config validation (expansion side).


def _require_text(value, field: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SpecError(f"{field}: expected {what} as a non-empty string; got {type(value).__name__} {value!r:.80}.")
    return value


def _local_dir(value, field: str) -> str:
    """An absolute local path without '..' segments (workers and the service
    must agree on it; relative paths would depend on each one's cwd)."""
    value = _require_text(value, field, "a directory path")
    if "://" in value:
        raise SpecError(f"{field}: {value!r} is a URL; pass an absolute path on a filesystem the workers share.")
    if not os.path.isabs(value) or ".." in value.replace("\\", "/").split("/"):
        raise SpecError(f"{field}: {value!r} must be an absolute path without '..' segments.")
    return os.path.normpath(value)


def _parse_spec(text) -> FeatureSpec:
    text = _require_text(text, "spec", "the feature spec as YAML or JSON text")
    return FeatureSpec.from_text(text, source="spec")


def _input_field_names(pcoll) -> Optional[List[str]]:
    """Field names of a schema'd PCollection, or None when its type is unknown."""
    from apache_beam.typehints import schemas

    try:
        return [name for name, _ in schemas.named_fields_from_element_type(pcoll.element_type)]
    except (TypeError, ValueError, AttributeError, KeyError):
        return None


def _check_input_fields(pcoll, required: Sequence[str], transform: str) -> None:
    names = _input_field_names(pcoll)
    if names is None:
        return
    missing = [c for c in required if c not in names]
    if missing:
        raise ValueError(
            f"{transform}: the input Rows lack field(s) {missing} that the feature spec "
            f"needs; they have {names[:50]}. Send one field per raw column (nullable)."
        )


# ---------------------------------------------------------------------------
# Rows -> Arrow batches.


def _column_array(values: List[object]) -> pa.Array:
    """One raw column as Arrow: native types when uniform, else text to parse."""
    values = [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else v for v in values]
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())


class _RowsToBatches(beam.DoFn):
    """Buffers Rows and emits RecordBatches, rejected rows and per-batch stats.

    Each batch is its own "source" (``rows:<id>``) with rows numbered from 1, so
    the analyze pass can reconcile read == used + rejected per source.
    """

    def __init__(self, spec_json: str, columns: Sequence[str], batch_size: int, include_position: bool = False):
        self._spec_json = spec_json
        self._columns = list(columns)
        self._batch_size = batch_size
        self._include_position = include_position

    def setup(self):
        full = FeatureSpec.from_text(self._spec_json)
        import dataclasses

        self._spec = dataclasses.replace(full, columns=tuple(c for c in full.columns if c.name in self._columns))

    def start_bundle(self):
        self._buffer = []

    def process(self, row):
        self._buffer.append(row)
        if len(self._buffer) >= self._batch_size:
            yield from self._flush()

    def finish_bundle(self):
        from apache_beam.transforms.window import GlobalWindow
        from apache_beam.utils.windowed_value import WindowedValue

        for out in self._flush():
            if isinstance(out, beam.pvalue.TaggedOutput):
                yield beam.pvalue.TaggedOutput(out.tag, WindowedValue(out.value, 0, [GlobalWindow()]))
            else:
                yield WindowedValue(out, 0, [GlobalWindow()])

    def _flush(self):
        rows, self._buffer = self._buffer, []
        if not rows:
            return
        table = pa.table({c: _column_array([getattr(r, c, None) for r in rows]) for c in self._columns})
        source = f"rows:{uuid.uuid4().hex[:12]}"
        batch, rejected = fb_io.table_to_batch(table, self._spec, source=source, include_position=self._include_position)
        for r in rejected:
            yield beam.pvalue.TaggedOutput("rejected", r)
        if batch is not None:
            yield batch
        used = batch.num_rows if batch is not None else 0
        present = dict.fromkeys(self._spec.column_names, 0)
        if batch is not None:
            fb_io.count_present(batch, present)
        yield beam.pvalue.TaggedOutput(
            "stats", {"source": source, "read": len(rows), "used": used, "rejected": len(rejected), "present": present}
        )


def _rejected_to_row(r: fb_io.RejectedRow):
    return beam.Row(source=r.source, row=int(r.row), column=r.column, value=r.value, reason=r.reason)


def _rows_to_batches(rows, spec: FeatureSpec, columns: Sequence[str], batch_size: int, include_position=False):
    return rows | "RowsToBatches" >> beam.ParDo(
        _RowsToBatches(spec.to_json(), columns, batch_size, include_position)
    ).with_outputs("rejected", "stats", main="batches")


# ---------------------------------------------------------------------------
# Applying a transform_fn to batches.


def _sparse_inputs(batch: pa.RecordBatch, spec: FeatureSpec, absent: Sequence[str]):
    """RecordBatch of large_list columns -> {column: SparseTensor [n, 1]}."""
    import tensorflow as tf

    n = batch.num_rows
    dtypes = {"float": tf.float32, "int": tf.int64, "string": tf.string}
    out = {}
    # dtypes below are keyed by how a column is stored (a bool is an int 0/1).
    for column in spec.columns:
        if column.name in absent:
            out[column.name] = tf.SparseTensor(
                tf.zeros([0, 2], tf.int64), tf.constant([], dtypes[column.storage]), [n, 1]
            )
            continue
        arr = batch.column(column.name)
        offsets = arr.offsets.to_numpy()
        counts = np.diff(offsets)
        values = arr.flatten().to_numpy(zero_copy_only=False)
        rows = np.repeat(np.arange(n, dtype=np.int64), counts)
        indices = np.stack([rows, np.zeros_like(rows)], axis=1)
        out[column.name] = tf.SparseTensor(indices, tf.constant(values, dtypes[column.storage]), [n, 1])
    return out


def _py_value(v, kind):
    if kind is str:
        return v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v)
    return kind(v)


def _tensor_to_columns(tensor, n: int, kind, is_list: bool) -> List[object]:
    """A transformed tensor -> one Python value (or list) per row."""
    import tensorflow as tf

    if isinstance(tensor, tf.SparseTensor):
        rows = tensor.indices.numpy()[:, 0]
        values = tensor.values.numpy()
        order = np.argsort(rows, kind="stable")
        rows, values = rows[order], values[order]
        bounds = np.searchsorted(rows, np.arange(n + 1))
        return [[_py_value(v, kind) for v in values[bounds[i] : bounds[i + 1]]] for i in range(n)]
    array = tensor.numpy()
    if is_list:
        return [[_py_value(v, kind) for v in np.ravel(array[i])] for i in range(n)]
    return [_py_value(v, kind) for v in array.reshape(n)]


def _value_kind(field_type) -> Tuple[type, bool]:
    """(Python element type, is_list) of a Row field type such as
    Optional[int], Sequence[float] or str."""
    import typing

    args = [a for a in typing.get_args(field_type) if a is not type(None)]
    if typing.get_origin(field_type) is typing.Union and args:
        return _value_kind(args[0])
    origin = typing.get_origin(field_type)
    if origin is not None and args and issubclass(origin, (list, tuple, Sequence)):
        return args[0], True
    return field_type, False


class _ApplyTransformFn(beam.DoFn):
    """Applies the transform_fn in ``analyzed_dir`` to RecordBatches and emits
    output Rows. The graph is loaded once per worker (and per directory)."""

    def __init__(self, spec_json: str, fields: Sequence[Tuple[str, type]], absent: Sequence[str]):
        self._spec_json = spec_json
        self._fields = list(fields)
        self._absent = list(absent)
        self._loaded: Dict[str, object] = {}

    def setup(self):
        self._spec = FeatureSpec.from_text(self._spec_json)

    def _transform_output(self, analyzed_dir: str):
        if analyzed_dir not in self._loaded:
            import tensorflow_transform as tft

            _LOG.info("Loading transform_fn from %s", analyzed_dir)
            self._loaded[analyzed_dir] = tft.TFTransformOutput(analyzed_dir)
        return self._loaded[analyzed_dir]

    def process(self, batch: pa.RecordBatch, analyzed_dir: str):
        n = batch.num_rows
        if n == 0:
            return
        output = self._transform_output(analyzed_dir)
        transformed = output.transform_raw_features(_sparse_inputs(batch, self._spec, self._absent))
        key = self._spec.key
        columns = {}
        for name, field_type in self._fields:
            kind, is_list = _value_kind(field_type)
            if name == key:
                # The key passes through untransformed (it is not a feature).
                cells = batch.column(key).to_pylist()
                columns[name] = [_py_value(v[0], kind) if v else None for v in cells]
            else:
                columns[name] = _tensor_to_columns(transformed[name], n, kind, is_list)
        names = [f for f, _ in self._fields]
        for i in range(n):
            yield beam.Row(**{f: columns[f][i] for f in names})


# ---------------------------------------------------------------------------
# The cross-language transforms.


class AnalyzeAndTransformRows(beam.PTransform):
    """Raw Rows -> analyze artifacts in `output_dir`, transformed Rows and rejected Rows.

    Runs the same analyze pass as ``featurebridge analyze`` (transform_fn/,
    transformed_metadata/, transformed/, rejected/, constants.json,
    manifest.json, written atomically into `output_dir`), then applies the new
    transform_fn to the usable rows.

    Input: Rows with one field per raw column of the spec (nullable; a null or
    empty string is a missing value, handled by the column's policy).
    Outputs: ``{"output": Rows with the key column (if any), each transformed
    feature and the transformed label; "rejected": Rows (source, row, column,
    value, reason)}``. Rows that cannot be used are in "rejected" only.

    Args:
      spec: the feature spec as YAML or JSON text.
      output_dir: an absolute path on a filesystem the workers share; must not exist.
      batch_size: rows per Arrow batch.

    Raises:
      SpecError: the spec is invalid, or `output_dir` is not an absolute path
        (the message names the field).
      OutputExistsError: `output_dir` already exists.
      Pipeline failure EmptyDataError: no usable rows.
    """

    def __init__(self, spec: str, output_dir: str, batch_size: int = DEFAULT_BATCH_SIZE):
        super().__init__()
        from featurebridge.transforms.outputs import OutputExistsError

        self._spec = _parse_spec(spec)
        self._output_dir = _local_dir(output_dir, "output_dir")
        if os.path.exists(self._output_dir):
            raise OutputExistsError(
                f"output_dir: {output_dir!r} already exists. Choose a new directory; "
                "cross-language runs never overwrite."
            )
        if not isinstance(batch_size, int) or batch_size < 1:
            raise SpecError(f"batch_size: expected a positive integer; got {batch_size!r}.")
        self._batch_size = batch_size
        parent, name = os.path.split(self._output_dir)
        self._staging = os.path.join(parent, f".{name}.staging-{uuid.uuid4().hex[:12]}")
        self._fields = _with_key(self._spec, _output_fields_from_spec(self._spec))
        self.output_type = RowTypeConstraint.from_fields(self._fields)

    def expand(self, rows):
        from featurebridge.transforms import provenance
        from featurebridge.transforms.analyze import AnalyzeToDirectory

        columns = self._spec.column_names
        _check_input_fields(rows, columns, "AnalyzeAndTransformRows")
        parsed = _rows_to_batches(rows, self._spec, columns, self._batch_size)
        manifest = {
            "job": "analyze (cross-language rows)",
            "started": provenance.utc_now(),
            "inputs": [],
            "input_format": "beam rows",
            "spec": self._spec.to_dict(),
            "spec_source": "spec",
            "versions": provenance.package_versions(),
        }
        read = fb_io.ReadResult(
            parsed.batches,
            parsed.rejected | "RejectedJson" >> beam.Map(lambda r: r.to_json()),
            parsed.stats,
        )
        finished = read | "AnalyzeToDirectory" >> AnalyzeToDirectory(
            self._spec, self._staging, self._output_dir, manifest=manifest
        )
        transformed = (
            parsed.batches
            | "ApplyTransformFn"
            >> beam.ParDo(
                _ApplyTransformFn(self._spec.to_json(), self._fields, ()), beam.pvalue.AsSingleton(finished)
            ).with_output_types(self.output_type)
        )
        rejected = parsed.rejected | "RejectedRows" >> beam.Map(_rejected_to_row).with_output_types(REJECTED_ROW_TYPE)
        return {"output": transformed, "rejected": rejected}


def _load_analyzed(analyzed_dir: str) -> Tuple[FeatureSpec, List[Tuple[str, type]]]:
    """Reads the spec (manifest.json) and transformed schema of an analyze output."""
    manifest_path = os.path.join(analyzed_dir, "manifest.json")
    if not os.path.isdir(os.path.join(analyzed_dir, "transform_fn")) or not os.path.exists(manifest_path):
        raise SpecError(
            f"analyzed_dir: {analyzed_dir!r} is not an analyze output (no transform_fn/ "
            "or manifest.json). Pass the --output of `featurebridge analyze`."
        )
    with open(manifest_path, encoding="utf-8") as f:
        manifest = json.load(f)
    if manifest.get("preprocessing_fn"):
        raise SpecError(
            f"analyzed_dir: {analyzed_dir!r} was made with a custom preprocessing_fn "
            f"({manifest['preprocessing_fn']}); cross-language transform supports spec-built "
            "transform_fns only."
        )
    spec = FeatureSpec.from_dict(manifest["spec"], source=manifest_path)
    import tensorflow_transform as tft

    feature_spec = tft.TFTransformOutput(analyzed_dir).transformed_feature_spec()
    feature_spec.pop(SPLIT_FEATURE, None)  # the train/eval bucket is not a feature
    return spec, _output_fields_from_feature_spec(dict(sorted(feature_spec.items())))


class TransformRows(beam.PTransform):
    """Raw Rows -> transformed Rows with the transform_fn in `analyzed_dir`.

    Input: Rows with one field per raw column of the analyzed spec; the label
    field may be left out (the output then has no label). Null or empty values
    are missing and are filled by the baked-in policies.
    Outputs: ``{"output": Rows (key column if any, then each transformed
    feature in name order), "rejected": Rows (source, row, column, value,
    reason)}`` for values the readers would also reject (bad numbers, a
    missing value whose policy is reject).

    Args:
      analyzed_dir: an absolute path to a `featurebridge analyze` output.
      batch_size: rows per Arrow batch.

    Raises:
      SpecError: `analyzed_dir` is not an absolute path to an analyze output.
    """

    def __init__(self, analyzed_dir: str, batch_size: int = DEFAULT_BATCH_SIZE):
        super().__init__()
        self._dir = _local_dir(analyzed_dir, "analyzed_dir")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise SpecError(f"batch_size: expected a positive integer; got {batch_size!r}.")
        self._batch_size = batch_size
        self._spec, self._features = _load_analyzed(self._dir)

    def expand(self, rows):
        spec = self._spec
        names = _input_field_names(rows)
        absent: List[str] = []
        if spec.label and names is not None and spec.label.column not in names:
            absent = [spec.label.column]
        required = [c for c in spec.column_names if c not in absent]
        _check_input_fields(rows, required, "TransformRows")
        fields = _with_key(spec, [(n, t) for n, t in self._features if n not in absent])
        output_type = RowTypeConstraint.from_fields(fields)
        parsed = _rows_to_batches(rows, spec, required, self._batch_size)
        directory = rows.pipeline | "AnalyzedDir" >> beam.Create([self._dir])
        transformed = (
            parsed.batches
            | "ApplyTransformFn"
            >> beam.ParDo(
                _ApplyTransformFn(spec.to_json(), fields, absent),
                beam.pvalue.AsSingleton(directory),
            ).with_output_types(output_type)
        )
        rejected = parsed.rejected | "RejectedRows" >> beam.Map(_rejected_to_row).with_output_types(REJECTED_ROW_TYPE)
        return {"output": transformed, "rejected": rejected}


_PREDICTION_TYPES = {"string": Optional[str], "int": int, "float": float, "float_list": Sequence[float]}
# Beam Row field names cannot start with "_": the position columns are renamed.
_POSITION_FIELDS = {fb_io.SOURCE_COLUMN: "input_source", fb_io.ROW_COLUMN: "input_row"}


def _prediction_row(fields: Sequence[str]):
    def convert(d: Dict[str, object]):
        return beam.Row(**{_POSITION_FIELDS.get(f, f): d[f] for f in fields})

    return convert


class PredictRows(beam.PTransform):
    """Raw Rows -> Rows with the serving model's predictions (`featurebridge.transforms.predict.Predict`).

    Input: Rows with one field per raw column of the model's spec (the label is
    not needed; extra fields are ignored). Null or empty values are missing and
    are filled inside the model by the spec's policies.
    Outputs: ``{"output": Rows (key column if any, input_source, input_row,
    then the model outputs: probability and class_id for binary,
    probabilities and class_id for multiclass, prediction for regression);
    "rejected": Rows (source, row, column, value, reason)}``. ``input_source``
    and ``input_row`` name the batch and row a prediction came from, as in
    the rejected output.

    Args:
      model_dir: an absolute path to a `featurebridge train` output (or its serving/).
      batch_size: rows per Arrow batch.

    Raises:
      SpecError: `model_dir` is not an absolute path.
      ModelDirError: `model_dir` holds no featurebridge serving model.
    """

    def __init__(self, model_dir: str, batch_size: int = DEFAULT_BATCH_SIZE):
        super().__init__()
        from featurebridge.transforms.predict import load_serving_spec, prediction_fields

        self._dir = _local_dir(model_dir, "model_dir")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise SpecError(f"batch_size: expected a positive integer; got {batch_size!r}.")
        self._batch_size = batch_size
        self._spec = load_serving_spec(self._dir)
        self._fields = prediction_fields(self._dir)
        typed = []
        for name, kind in self._fields:
            if name == self._spec.key:
                typed.append((name, Optional[_RAW_PY_TYPES[kind]]))
            else:
                typed.append((_POSITION_FIELDS.get(name, name), _PREDICTION_TYPES[kind]))
        self.output_type = RowTypeConstraint.from_fields(typed)

    def expand(self, rows):
        from featurebridge.transforms.predict import Predict

        columns = self._spec.column_names
        _check_input_fields(rows, columns, "PredictRows")
        parsed = _rows_to_batches(rows, self._spec, columns, self._batch_size, include_position=True)
        predictions = (
            parsed.batches
            | "Predict" >> Predict(self._dir)
            | "ToRows" >> beam.Map(_prediction_row([f for f, _ in self._fields])).with_output_types(self.output_type)
        )
        rejected = parsed.rejected | "RejectedRows" >> beam.Map(_rejected_to_row).with_output_types(REJECTED_ROW_TYPE)
        return {"output": predictions, "rejected": rejected}


# Fully-qualified names a Java PythonExternalTransform may construct.
XLANG_CLASSES = {
    "featurebridge.transforms.xlang.AnalyzeAndTransformRows": AnalyzeAndTransformRows,
    "featurebridge.transforms.xlang.TransformRows": TransformRows,
    "featurebridge.transforms.xlang.PredictRows": PredictRows,
}
