"""The graph rules every preprocessing_fn shares: raw inputs, missing values,
the train/eval split and timestamp parts, as TensorFlow ops.

Raw inputs are ``tf.SparseTensor`` of shape [batch, 1] (`raw_feature_spec`; an
empty row means the value is missing). `with_shared_rules` wraps every
preprocessing_fn (the spec's, the fast analyzer's and a user's) so that the
graph itself drops the values that mean "missing" (NaN, empty or blank
strings, the column's null markers, unparseable timestamps) before anything
else sees them: the readers, the Beam transform, `featurebridge predict` and
every serving signature then agree on every row. Nothing here is learned from
data, so these ops need no analyzer pass.
"""

from __future__ import annotations

from typing import Callable, Dict, Mapping

import tensorflow as tf
import tensorflow_transform as tft

from featurebridge.transforms.spec import SPLIT_FEATURE, TIMESTAMP_PARTS, TIMESTAMP_PATTERN, Column, FeatureSpec

__all__ = [
    "SPLIT_BUCKETS",
    "TF_TYPES",
    "as_string",
    "drop_missing",
    "raw_feature_spec",
    "split_bucket",
    "timestamp_part",
    "to_dense",
    "with_shared_rules",
]

# The TF dtype of each storage type (spec.STORAGE_TYPES).
TF_TYPES = {"float": tf.float32, "int": tf.int64, "string": tf.string}
SPLIT_BUCKETS = 100


def raw_feature_spec(spec: FeatureSpec) -> Dict[str, tf.io.VarLenFeature]:
    """The raw features as TF parsing specs: every column is a VarLenFeature so
    a missing value (an absent feature in a tf.Example) is representable."""
    return {c.name: tf.io.VarLenFeature(TF_TYPES[c.storage]) for c in spec.columns}


def to_dense(x: tf.SparseTensor, default) -> tf.Tensor:
    """[batch, 1] sparse -> [batch] dense, `default` where the value is missing."""
    dense = tft.sparse_tensor_to_dense_with_shape(x, [None, 1], default_value=default)
    return tf.reshape(dense, [-1])


def as_string(x: tf.Tensor) -> tf.Tensor:
    """`x` as text: a string tensor unchanged, numbers via tf.strings.as_string."""
    return x if x.dtype == tf.string else tf.strings.as_string(x)


def _present_mask(column: Column, values: tf.Tensor) -> tf.Tensor:
    """True where a raw value is a real value, False where it means missing."""
    if column.storage == "float":
        return tf.logical_not(tf.math.is_nan(values))
    if column.storage != "string":
        return tf.ones_like(values, tf.bool)
    stripped = tf.strings.strip(values)
    present = tf.greater(tf.strings.length(stripped), 0)
    if column.null_markers:
        markers = tf.constant(list(column.null_markers), tf.string)
        is_marker = tf.reduce_any(tf.equal(tf.expand_dims(stripped, 1), tf.expand_dims(markers, 0)), axis=1)
        present = tf.logical_and(present, tf.logical_not(is_marker))
    if column.type == "timestamp":
        present = tf.logical_and(present, tf.strings.regex_full_match(stripped, TIMESTAMP_PATTERN))
    return present


def drop_missing(spec: FeatureSpec, inputs: Mapping[str, object]) -> Dict[str, object]:
    """`inputs` with every value that means "missing" removed from the raw
    sparse tensors: a float NaN, an empty or blank string, one of the
    column's null markers, a timestamp that is not ISO 8601 (and, with the
    spec's `input.skip_initial_space`, strings lose their leading spaces). The same rule the
    readers apply, so rows read from files and rows sent to a serving
    signature are filled by the same policy. Inputs the spec does not declare,
    and dense ones, pass through unchanged."""
    out = dict(inputs)
    for column in spec.columns:
        x = inputs.get(column.name)
        if isinstance(x, tf.SparseTensor):
            with tf.name_scope(f"present_{column.name}"):
                if spec.input.skip_initial_space and column.storage == "string":
                    x = tf.SparseTensor(x.indices, tf.strings.regex_replace(x.values, r"^\s+", ""), x.dense_shape)
                out[column.name] = tf.sparse.retain(x, _present_mask(column, x.values))
    return out


def split_bucket(spec: FeatureSpec, inputs: Mapping[str, object]) -> tf.Tensor:
    """The train/eval bucket (0..SPLIT_BUCKETS-1) of each row: a fingerprint of
    the raw key value, or, without a key, of the raw values of every column
    but the label. It depends on nothing learned from the data, so two runs
    over the same rows split them the same way, on any runner."""
    label = spec.label.column if spec.label else None
    names = [spec.key] if spec.key else [c.name for c in spec.columns if c.name != label]
    parts = []
    for name in names:
        x = inputs[name]
        text = tf.SparseTensor(x.indices, as_string(x.values), x.dense_shape)
        parts.append(to_dense(text, ""))
    joined = tf.strings.join(parts, separator="\x1f") if len(parts) > 1 else parts[0]
    return tf.strings.to_hash_bucket_fast(joined, SPLIT_BUCKETS, name="split_bucket")


def with_shared_rules(spec: FeatureSpec, preprocessing_fn: Callable, split: bool = True) -> Callable:
    """Wraps a preprocessing_fn: its inputs lose their missing values
    (`drop_missing`) and, with `split`, its outputs gain `SPLIT_FEATURE`."""

    def wrapped(inputs):
        present = drop_missing(spec, inputs)
        outputs = dict(preprocessing_fn(present))
        if split:
            outputs[SPLIT_FEATURE] = split_bucket(spec, present)
        return outputs

    return wrapped


def _days_from_civil(year: tf.Tensor, month: tf.Tensor, day: tf.Tensor) -> tf.Tensor:
    """Days since 1970-01-01 of a proleptic Gregorian date (int64 tensors)."""
    y = year - tf.cast(month <= 2, tf.int64)
    era = tf.math.floordiv(y, 400)
    yoe = y - era * 400
    mp = tf.math.floormod(month + 9, 12)
    doy = tf.math.floordiv(153 * mp + 2, 5) + day - 1
    doe = yoe * 365 + tf.math.floordiv(yoe, 4) - tf.math.floordiv(yoe, 100) + doy
    return era * 146097 + doe - 719468


def timestamp_part(text: tf.Tensor, part: str) -> tf.Tensor:
    """An int64 part of ISO 8601 timestamps (see spec.TIMESTAMP_PARTS): the
    wall-clock time as written. A value that is not ISO 8601 (only a fill of
    "" can be, as the readers and `drop_missing` remove the others) counts as
    1970-01-01 00:00."""
    if part not in TIMESTAMP_PARTS:
        raise ValueError(f"unknown timestamp part {part!r}; one of {list(TIMESTAMP_PARTS)}")
    text = tf.strings.strip(text)
    valid = tf.strings.regex_full_match(text, TIMESTAMP_PATTERN)
    text = tf.where(valid, text, tf.fill(tf.shape(text), "1970-01-01"))
    # A date alone reads as midnight: the padding supplies its hour and minute.
    text = tf.strings.join([text, " 00:00"])

    def number(pos: int, width: int) -> tf.Tensor:
        return tf.strings.to_number(tf.strings.substr(text, pos, width), tf.int64)

    if part == "hour":
        return number(11, 2)
    if part == "minute":
        return number(14, 2)
    year, month, day = number(0, 4), number(5, 2), number(8, 2)
    if part == "year":
        return year
    if part == "month":
        return month
    if part == "day":
        return day
    days = _days_from_civil(year, month, day)
    if part == "day_of_week":
        return tf.math.floormod(days + 3, 7)  # 1970-01-01 was a Thursday (3).
    return days - _days_from_civil(year, tf.ones_like(month), tf.ones_like(day)) + 1

