"""Raw rows -> serialized raw tf.Examples, as the serving_default signature
and TF Serving read them. Needs TensorFlow only (not TFT), so Beam workers
that call a model (featurebridge predict) stay light."""

from __future__ import annotations

from typing import Iterable, List, Mapping

import numpy as np
import pyarrow as pa
import tensorflow as tf

from featurebridge.transforms.spec import BOOL_SPELLINGS, FeatureSpec

__all__ = ["batch_to_examples", "rows_to_examples", "serving_columns"]


def serving_columns(spec: FeatureSpec) -> List[str]:
    """The raw columns a serving request may carry: all but the label."""
    label = spec.label.column if spec.label else None
    return [c.name for c in spec.columns if c.name != label]




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


def rows_to_examples(spec: FeatureSpec, rows: Iterable[Mapping[str, object]]) -> List[bytes]:
    """Serialized raw tf.Examples from dicts of Python values keyed by spec
    name (None or a missing key = missing value; the label and unknown keys are
    dropped). Features are keyed by the columns' file names, as serving_default reads them."""
    types = {c.name: c.type for c in spec.columns}
    sources = {c.name: c.source for c in spec.columns}
    keep = serving_columns(spec)
    out = []
    for row in rows:
        feats = {}
        for name in keep:
            v = row.get(name)
            if v is None or (isinstance(v, float) and np.isnan(v)):
                continue
            feats[sources[name]] = _feature(types[name], [v])
        out.append(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())
    return out


def batch_to_examples(spec: FeatureSpec, batch: pa.RecordBatch) -> List[bytes]:
    """Serialized raw tf.Examples from a RecordBatch in `arrow_schema_for(spec)`
    layout (an empty list is a missing value; position columns are ignored)."""
    types = {c.name: c.storage for c in spec.columns}
    sources = {c.name: c.source for c in spec.columns}
    columns = {n: batch.column(n).to_pylist() for n in serving_columns(spec) if n in batch.schema.names}
    out = []
    for i in range(batch.num_rows):
        feats = {sources[n]: _feature(types[n], vals[i]) for n, vals in columns.items() if vals[i]}
        out.append(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())
    return out


