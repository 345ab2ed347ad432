"""Schema'd Beam Rows <-> Arrow RecordBatches, for the cross-language stages.

A Java pipeline sends and receives Rows (the portable ``beam:coder:row:v1``
coder). Inside, featurebridge works on Arrow RecordBatches like everywhere
else: `RowsToBatches` buffers Rows into batches with the file readers' rules
(`featurebridge.transforms.io.table_to_batch`, so the same values are rejected
for the same reasons), and `BatchesToRows` turns transformed batches back into
Rows of a declared type.

Row schemas:
- raw input: one nullable field per raw column (`raw_row_type`);
- transformed output: the key column (if the spec has one), then each
  transformed feature, then the transformed label (`transformed_row_type`);
- rejected: source, row, column, value, reason (`REJECTED_ROW_TYPE`).
"""

from __future__ import annotations

import dataclasses
import typing
import uuid
from typing import List, Mapping, Optional, Sequence, Tuple

import apache_beam as beam
import pyarrow as pa
from apache_beam.typehints.row_type import RowTypeConstraint

from featurebridge.transforms import validation
from featurebridge.transforms.errors import InputError
from featurebridge.transforms.ops import op_for
from featurebridge.transforms.spec import FeatureSpec

__all__ = [
    "BatchesToRows",
    "KEY_PASSTHROUGH",
    "REJECTED_ROW_TYPE",
    "RAW_PY_TYPES",
    "RowsToBatches",
    "check_input_fields",
    "input_field_names",
    "output_fields_from_feature_spec",
    "output_fields_from_spec",
    "raw_row_type",
    "rejected_to_row",
    "transformed_row_type",
    "with_key",
]

# The Python types of raw Row fields; Java sees DOUBLE, INT64, STRING, BOOLEAN
# (all nullable). A timestamp travels as its ISO 8601 text.
RAW_PY_TYPES = {"float": float, "int": int, "string": str, "bool": bool, "timestamp": str}
_STORED_PY_TYPES = {"float": float, "int": int, "string": str}

# A copy of the key column that TFT passes through the transform untouched
# (tft_beam.Context(passthrough_keys=...)): TFT refuses passthrough keys that
# are also graph inputs, and the key is one.
KEY_PASSTHROUGH = "__featurebridge_key__"

REJECTED_ROW_TYPE = RowTypeConstraint.from_fields(
    [
        ("source", str),
        ("row", int),
        ("column", Optional[str]),
        ("value", Optional[str]),
        ("reason", str),
    ]
)


def raw_row_type(spec: FeatureSpec) -> RowTypeConstraint:
    """The Row schema the transforms accept for `spec`: one nullable field per raw column."""
    return RowTypeConstraint.from_fields([(c.name, Optional[RAW_PY_TYPES[c.type]]) for c in spec.columns])


def output_fields_from_spec(spec: FeatureSpec) -> List[Tuple[str, type]]:
    """The transformed features' Row fields, derived from the spec alone (the
    transform_fn does not exist yet when analyze-and-transform is expanded)."""
    fields: List[Tuple[str, type]] = []
    for column in spec.columns:
        for t in column.transforms:
            fields += op_for(t, column).row_fields(_STORED_PY_TYPES[column.storage])
    fields += [(x.output, int) for x in spec.crosses]
    if spec.label:
        fields.append((spec.label.column, float if spec.label.kind == "regression" else int))
    return fields


def output_fields_from_feature_spec(feature_spec: Mapping) -> List[Tuple[str, type]]:
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


def with_key(spec: FeatureSpec, feature_fields: Sequence[Tuple[str, type]]) -> List[Tuple[str, type]]:
    """`feature_fields` preceded by the spec's key column, if it has one."""
    fields = []
    if spec.key:
        fields.append((spec.key, Optional[RAW_PY_TYPES[spec.column(spec.key).type]]))
    return fields + list(feature_fields)


def transformed_row_type(spec: FeatureSpec) -> RowTypeConstraint:
    """The Row schema `AnalyzeAndTransformRows` outputs for `spec`: the key
    column (if the spec has one, passed through), each transformed feature in
    spec order, then the transformed label."""
    return RowTypeConstraint.from_fields(with_key(spec, output_fields_from_spec(spec)))


def input_field_names(pcoll) -> Optional[List[str]]:
    """Field names of a schema'd PCollection, or None when its type is unknown."""
    from apache_beam.typehints import schemas

    try:
        return [name for name, _ in schemas.named_fields_from_element_type(pcoll.element_type)]
    except (TypeError, ValueError, AttributeError, KeyError):
        return None


def check_input_fields(pcoll, required: Sequence[str], transform: str) -> None:
    """Fails expansion when a schema'd input lacks a field the spec needs.

    Raises:
      InputError: naming the missing fields and the fields the Rows have.
    """
    names = input_field_names(pcoll)
    if names is None:
        return
    missing = [c for c in required if c not in names]
    if missing:
        raise InputError(
            f"{transform}: the input Rows lack field(s) {missing} that the feature spec "
            f"needs; they have {names[:50]}. Send one field per raw column (nullable)."
        )


def rejected_to_row(r: validation.RejectedRow) -> beam.Row:
    """A rejected row as a `REJECTED_ROW_TYPE` Row."""
    return beam.Row(source=r.source, row=int(r.row), column=r.column, value=r.value, reason=r.reason)


def _column_array(values: List[object]) -> pa.Array:
    """One raw column as Arrow: native types when uniform, else text to parse."""
    values = [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else v for v in values]
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):  # mixed types; an int beyond int64
        return pa.array([None if v is None else str(v) for v in values], pa.string())


class _RowsToBatchesFn(beam.DoFn):
    """Buffers Rows and emits RecordBatches, rejected rows and per-batch stats.

    Each batch is its own "source" (``rows:<id>``) with rows numbered from 1, so
    the analyze pass can reconcile read == used + rejected per source.
    """

    def __init__(self, spec_json: str, columns: Sequence[str], batch_size: int, include_position: bool,
                 pass_key: bool):
        self._spec_json = spec_json
        self._columns = list(columns)
        self._batch_size = batch_size
        self._include_position = include_position
        self._pass_key = pass_key

    def setup(self):
        self._full = FeatureSpec.from_text(self._spec_json, trusted=True)
        self._spec = dataclasses.replace(
            self._full, columns=tuple(c for c in self._full.columns if c.name in self._columns)
        )
        self._absent = [c for c in self._full.columns if c.name not in self._columns]
        # The full spec's batch schema, for batches that must carry every column.
        self._schema = validation.arrow_schema_for(self._full, self._include_position)

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
        batch, rejected = validation.table_to_batch(table, self._spec, source=source, include_position=self._include_position)
        for r in rejected:
            yield beam.pvalue.TaggedOutput("rejected", r)
        if batch is not None:
            yield self._complete(batch)
        used = batch.num_rows if batch is not None else 0
        present = dict.fromkeys(self._spec.column_names, 0)
        missing_by_marker: dict = {}
        if batch is not None:
            import numpy as np

            from featurebridge.transforms.data_stats import count_missing_markers

            validation.count_present(batch, present)
            # Rows are numbered from 1 (table_to_batch's first_row); the used ones count.
            keep = ~np.isin(np.arange(1, table.num_rows + 1), [r.row for r in rejected]) if rejected else None
            count_missing_markers(table, self._spec, keep, into=missing_by_marker, batch=batch)
        yield beam.pvalue.TaggedOutput(
            "stats", {"source": source, "read": len(rows), "used": used, "rejected": len(rejected), "present": present,
                      "missing_by_marker": missing_by_marker}
        )

    def _complete(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Adds the columns the Rows left out (all missing), in the full spec's
        column order (TFT's tensor adapter finds columns by position), and the
        key's passthrough copy last."""
        if not self._absent and not self._pass_key:
            return batch
        schema = self._schema
        arrays = [
            batch.column(field.name) if field.name in batch.schema.names else pa.nulls(batch.num_rows, field.type)
            for field in schema
        ]
        if self._pass_key:
            schema = schema.append(pa.field(KEY_PASSTHROUGH, schema.field(self._full.key).type))
            arrays.append(batch.column(self._full.key))
        return pa.RecordBatch.from_arrays(arrays, schema=schema)


class RowsToBatches(beam.PTransform):
    """Rows -> ``batches`` (pa.RecordBatch), ``rejected`` (RejectedRow) and
    ``stats`` (one dict per batch: source, read, used, rejected, present).

    Args:
      spec: the feature spec the Rows follow.
      columns: the spec columns the Rows carry; the others (a label left out
        for transform or predict) become all-missing columns of the batch.
      batch_size: rows per batch.
      include_position: add the readers' source and row columns.
      pass_key: add `KEY_PASSTHROUGH`, a copy of the key column for TFT to pass
        through (the spec must have a key).
    """

    def __init__(self, spec: FeatureSpec, columns: Sequence[str], batch_size: int, include_position: bool = False,
                 pass_key: bool = False):
        super().__init__()
        self._fn = _RowsToBatchesFn(spec.to_json(), columns, batch_size, include_position, pass_key and bool(spec.key))

    def expand(self, rows):
        return rows | "RowsToBatches" >> beam.ParDo(self._fn).with_outputs("rejected", "stats", main="batches")


def _py_value(v, kind):
    if kind is str:
        return v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v)
    return kind(v)


def _value_kind(field_type) -> Tuple[type, bool]:
    """(Python element type, is_list) of a Row field type such as
    Optional[int], Sequence[float] or str."""
    args = [a for a in typing.get_args(field_type) if a is not type(None)]
    if typing.get_origin(field_type) is typing.Union and args:
        return _value_kind(args[0])
    origin = typing.get_origin(field_type)
    if origin is not None and args and issubclass(origin, (list, tuple, Sequence)):
        return args[0], True
    return field_type, False


def _cells(array: pa.Array, kind: type, is_list: bool) -> List[object]:
    """One Arrow column -> one Python value (or list) per row; a list column
    holds one value per row for a scalar field (None when empty)."""
    values = array.to_pylist()
    if not (pa.types.is_list(array.type) or pa.types.is_large_list(array.type)):
        values = [None if v is None else [v] for v in values] if is_list else values
        return [None if v is None else (_py_value(v, kind) if not is_list else [_py_value(x, kind) for x in v])
                for v in values]
    if is_list:
        return [[_py_value(x, kind) for x in (v or [])] for v in values]
    return [_py_value(v[0], kind) if v else None for v in values]


class _BatchToRowsFn(beam.DoFn):
    def __init__(self, fields: Sequence[Tuple[str, type]], key: Optional[str]):
        self._fields = list(fields)
        self._key = key

    def process(self, batch: pa.RecordBatch):
        n = batch.num_rows
        columns = {}
        for name, field_type in self._fields:
            kind, is_list = _value_kind(field_type)
            source = KEY_PASSTHROUGH if name == self._key else name
            columns[name] = _cells(batch.column(source), kind, is_list)
        names = [f for f, _ in self._fields]
        for i in range(n):
            yield beam.Row(**{f: columns[f][i] for f in names})


class BatchesToRows(beam.PTransform):
    """Transformed RecordBatches -> Rows with `fields` (name, type), in order.

    The key field, when `key` is given, comes from the batch's
    `KEY_PASSTHROUGH` column; an empty cell of a scalar field is None.
    """

    def __init__(self, fields: Sequence[Tuple[str, type]], key: Optional[str] = None):
        super().__init__()
        self._fields = list(fields)
        self._key = key
        self.output_type = RowTypeConstraint.from_fields(self._fields)

    def expand(self, batches):
        return batches | "BatchToRows" >> beam.ParDo(_BatchToRowsFn(self._fields, self._key)).with_output_types(
            self.output_type
        )
