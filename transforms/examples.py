"""Raw rows -> the serving model's inputs (see `featurebridge.transforms.serving`).

Two encodings of the same rows:

- serialized raw tf.Examples, as ``serving_default`` and TF Serving read them
  (`rows_to_examples` from Python dicts, `batch_to_examples` from Arrow
  batches; one encoder behind both);
- ragged tensors straight from Arrow arrays, for the raw-lists function
  (`batch_to_raw_lists`): no Python object per row.

A missing value is left out (an absent feature, an empty row), so the model's
transform graph fills it by the column's policy in every encoding.

Needs TensorFlow only (not TFT), so Beam workers that call a model
(featurebridge predict) stay light.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import tensorflow as tf

from featurebridge.transforms.serving import RAW_DTYPES, raw_signature_columns, serving_columns
from featurebridge.transforms.spec import BOOL_SPELLINGS, FeatureSpec

__all__ = ["batch_to_examples", "batch_to_raw_lists", "rows_to_examples", "serving_columns"]


def _feature(ctype: str, values) -> tf.train.Feature:
    if ctype == "float":
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))
    if ctype == "bool":
        values = [BOOL_SPELLINGS.get(v.strip().lower(), v) if isinstance(v, str) else int(v) for v in values]
        ctype = "int"
    if ctype == "int":
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
    return tf.train.Feature(
        bytes_list=tf.train.BytesList(value=[v if isinstance(v, bytes) else str(v).encode() for v in values])
    )


def _encode(columns: Sequence[Tuple[str, str, Sequence[Optional[list]]]], num_rows: int) -> List[bytes]:
    """The encoder: (feature key, value type, per-row value lists) -> one
    serialized tf.Example per row; an empty or None list is left out."""
    out = []
    for i in range(num_rows):
        feats = {key: _feature(ctype, values[i]) for key, ctype, values in columns if values[i]}
        out.append(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())
    return out


def rows_to_examples(spec: FeatureSpec, rows: Iterable[Mapping[str, object]]) -> List[bytes]:
    """Serialized raw tf.Examples from dicts of Python values keyed by spec
    name (None, a NaN float or a missing key = missing value; the label and
    unknown keys are dropped). Features are keyed by the columns' file names,
    as serving_default reads them. No rows give an empty list."""
    rows = list(rows)
    by_name = {c.name: c for c in spec.columns}

    def present(v) -> bool:
        return v is not None and not (isinstance(v, float) and np.isnan(v))

    columns = []
    for name in serving_columns(spec):
        values = [[row.get(name)] if present(row.get(name)) else None for row in rows]
        columns.append((by_name[name].source, by_name[name].type, values))
    return _encode(columns, len(rows))


def batch_to_examples(spec: FeatureSpec, batch: pa.RecordBatch) -> List[bytes]:
    """Serialized raw tf.Examples from a RecordBatch in `arrow_schema_for(spec)`
    layout (an empty list is a missing value, a column the batch lacks is
    missing in every row; position columns are ignored). An empty batch
    gives an empty list."""
    by_name = {c.name: c for c in spec.columns}
    columns = [
        (by_name[n].source, by_name[n].storage, batch.column(n).to_pylist())
        for n in serving_columns(spec)
        if n in batch.schema.names
    ]
    return _encode(columns, batch.num_rows)


def _ragged(column: Optional[pa.Array], dtype: tf.DType, num_rows: int) -> tf.RaggedTensor:
    """One Arrow list column -> a ragged [num_rows, None] tensor of `dtype`
    (a null list is an empty row; None = the column is absent: all rows empty)."""
    if column is None:
        values = np.zeros([0], dtype.as_numpy_dtype if dtype != tf.string else object)
        splits = np.zeros([num_rows + 1], np.int64)
    else:
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False)
        splits = np.zeros([num_rows + 1], np.int64)
        np.cumsum(lengths, out=splits[1:])
        flat = pc.list_flatten(column)  # respects slicing, skips null lists
        values = flat.to_numpy(zero_copy_only=False)
        if dtype != tf.string:
            values = values.astype(dtype.as_numpy_dtype, copy=False)
    return tf.RaggedTensor.from_row_splits(tf.constant(values, dtype), tf.constant(splits), validate=False)


def batch_to_raw_lists(spec: FeatureSpec, batch: pa.RecordBatch) -> Dict[str, tf.RaggedTensor]:
    """The raw-lists function's inputs from a RecordBatch in
    `arrow_schema_for(spec)` layout: one ragged [rows, None] tensor per
    serving_raw column, built from the Arrow buffers (an empty or null list
    is a missing value; a column the batch lacks is missing in every row).
    Gives the same predictions as `batch_to_examples` through serving_default."""
    by_name = {c.name: c for c in spec.columns}
    names = set(batch.schema.names)
    return {
        n: _ragged(batch.column(n) if n in names else None, RAW_DTYPES[by_name[n].storage], batch.num_rows)
        for n in raw_signature_columns(spec)
    }
