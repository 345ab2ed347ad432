"""Feature spec -> TFT ``preprocessing_fn``.

The returned function is traced by TFT: its analyzers (means, variances,
quantiles, vocabularies) run as one full pass on Beam, and their results are
baked into the transform_fn graph as constants. That same graph later sits
inside the serving model, so there is one definition of every feature.

Missing values are filled inside the graph according to the column's policy,
so serving fills them the same way. The rules every preprocessing_fn shares
(raw inputs, dropping missing values, the split, timestamp parts) live in
featurebridge.transforms.graph_rules, loading a user's function and checking
its outputs against the contract (docs/serving.md) in
featurebridge.transforms.user_fn; both are re-exported here.
"""

from __future__ import annotations

from typing import Callable, Dict, Mapping

import tensorflow as tf
import tensorflow_transform as tft

from featurebridge.transforms.graph_rules import (
    SPLIT_BUCKETS,
    as_string,
    drop_missing,
    raw_feature_spec,
    split_bucket,
    timestamp_part,
    to_dense,
    with_shared_rules,
)
from featurebridge.transforms.ops import LabelOp, bucketize_epsilon, fill_for, fill_vocabulary_name, label_vocabulary_name, ops_of
from featurebridge.transforms.spec import SPLIT_FEATURE, Column, Cross, FeatureSpec
from featurebridge.transforms.user_fn import check_outputs, checked_preprocessing_fn, load_preprocessing_fn

# The shared rules and the user-function loader are re-exported: callers import them from here.
__all__ = [
    "CONSTANTS_PREFIX",
    "SPLIT_FEATURE",
    "SPLIT_BUCKETS",
    "drop_missing",
    "split_bucket",
    "timestamp_part",
    "with_shared_rules",
    "cross_tensor",
    "as_string",
    "fill_value",
    "label_tensor",
    "to_dense",
    "build_constants_fn",
    "build_preprocessing_fn",
    "bucketize_epsilon",
    "fill_vocabulary_name",
    "label_vocabulary_name",
    "load_preprocessing_fn",
    "check_outputs",
    "checked_preprocessing_fn",
    "raw_feature_spec",
]

# Key prefix of `build_constants_fn`'s outputs.
CONSTANTS_PREFIX = "__constant__"


def fill_value(column: Column, x: tf.SparseTensor):
    """The value that replaces a missing one, computed by plain TFT analyzers
    where the policy needs the data (mean, median, most frequent)."""
    return fill_for(column).tft_graph(x)


def _filled_inputs(spec: FeatureSpec, inputs: Mapping[str, tf.SparseTensor]) -> Dict[str, tf.Tensor]:
    filled = {}
    for column in spec.columns:
        with tf.name_scope(f"raw_{column.name}"):
            x = inputs[column.name]
            filled[column.name] = to_dense(x, fill_value(column, x))
    return filled


def cross_tensor(cross: Cross, filled: Mapping[str, tf.Tensor]) -> tf.Tensor:
    """Hash bucket of the crossed (filled) values, joined as text."""
    parts = [as_string(filled[c]) for c in cross.columns]
    joined = tf.strings.join(parts, separator="_X_")
    return tft.hash_strings(joined, cross.hash_buckets, name=cross.output)


def build_preprocessing_fn(spec: FeatureSpec) -> Callable[[Mapping], Dict[str, tf.Tensor]]:
    """Builds the TFT preprocessing_fn for `spec` with plain TFT analyzers
    (each op's `tft_graph`): the oracle of the one-pass analyzer
    (`featurebridge.transforms.one_pass`) and the `--analyzer tft` path.

    Missing values are filled per the column's policy before any transform, so
    analyzers see filled data (a mean fill does not change the mean; it does
    lower the variance). Dense outputs have shape [batch]; text outputs are
    SparseTensors of ids (and weights for tf-idf).

    Edge cases: on an empty analysis dataset TFT's analyzers would produce
    default constants, so callers must refuse empty input first (the analyze
    pipeline does). Values unseen at analysis map to OOV buckets
    (`num_oov_buckets`) or -1 when there are none.
    """
    by_column = ops_of(spec)

    def preprocessing_fn(inputs):
        outputs: Dict[str, tf.Tensor] = {}
        filled = _filled_inputs(spec, inputs)
        for column in spec.columns:
            for op in by_column[column.name]:
                outputs.update(op.tft_graph(filled[column.name]))
        for cross in spec.crosses:
            outputs[cross.output] = cross_tensor(cross, filled)
        if spec.label:
            outputs[spec.label.column] = label_tensor(spec, filled[spec.label.column])
        return outputs

    return preprocessing_fn


def label_tensor(spec: FeatureSpec, y: tf.Tensor) -> tf.Tensor:
    """The training label from the filled label column `y` (see `LabelOp`),
    string classes from a plain TFT vocabulary."""
    return LabelOp(spec.label, spec.column(spec.label.column)).tft_graph(y)


def build_constants_fn(spec: FeatureSpec) -> Callable[[Mapping], Dict[str, tf.Tensor]]:
    """A preprocessing_fn whose outputs are the numeric analyzer results the
    spec uses (fill values, mean/variance, min/max, quantile boundaries),
    broadcast over the batch, keyed ``__constant__/<output>/<stat>``.

    It runs the same TFT analyzers on the same filled inputs as
    `build_preprocessing_fn`, so the values equal those baked into the
    transform_fn; they are written to constants.json, never used for features.
    """
    by_column = ops_of(spec)

    def constants_fn(inputs):
        outputs: Dict[str, tf.Tensor] = {}
        size = next(iter(inputs.values())).dense_shape[0]

        def emit(key: str, value: tf.Tensor) -> None:
            value = tf.reshape(tf.cast(value, tf.float32), [1, -1])
            outputs[f"{CONSTANTS_PREFIX}/{key}"] = tf.tile(value, tf.stack([size, 1]))

        filled = _filled_inputs(spec, inputs)
        for column in spec.columns:
            if column.missing.policy in ("mean", "median") or (
                column.missing.policy == "constant" and column.storage != "string"
            ):
                emit(f"{column.name}/fill", fill_value(column, inputs[column.name]))
            if column.storage == "string":
                continue
            for op in by_column[column.name]:
                for key, value in op.tft_results(filled[column.name]).items():
                    emit(key, value)
        if not outputs:
            outputs[f"{CONSTANTS_PREFIX}/none"] = tf.zeros(tf.stack([size, 1]), tf.float32)
        return outputs

    return constants_fn
