"""Feature spec -> TFT ``preprocessing_fn``.

The returned function is traced by TFT: its analyzers (means, variances,
quantiles, vocabularies) run as one full pass on Beam, and their results are
baked into the transform_fn graph as constants. That same graph later sits
inside the serving model, so there is one definition of every feature.

Missing values are filled inside the graph according to the column's policy,
so serving fills them the same way. The rules every preprocessing_fn shares
(raw inputs, dropping missing values, the split, timestamp parts) live in
featurebridge.transforms.graph_rules, loading a user's function in
featurebridge.transforms.user_fn; both are re-exported here.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Mapping

import tensorflow as tf
import tensorflow_transform as tft

from featurebridge.transforms.graph_rules import (
    SPLIT_BUCKETS,
    TF_TYPES,
    as_string,
    drop_missing,
    raw_feature_spec,
    split_bucket,
    timestamp_part,
    to_dense,
    with_shared_rules,
)
from featurebridge.transforms.spec import SPLIT_FEATURE, TIMESTAMP_PARTS, Column, Cross, FeatureSpec, Transform
from featurebridge.transforms.user_fn import load_preprocessing_fn

# The shared rules and the user-function loader are re-exported: callers import them from here.
__all__ = [
    "CONSTANTS_PREFIX",
    "SPLIT_FEATURE",
    "SPLIT_BUCKETS",
    "drop_missing",
    "split_bucket",
    "timestamp_part",
    "with_shared_rules",
    "apply_transform",
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
    "raw_feature_spec",
]

# Key prefix of `build_constants_fn`'s outputs.
CONSTANTS_PREFIX = "__constant__"


def fill_vocabulary_name(column: str) -> str:
    """The vocabulary file of a most_frequent fill of `column`."""
    return f"fill_most_frequent_{column}"


def label_vocabulary_name(column: str) -> str:
    """The vocabulary file of a multiclass string label (class id = line number)."""
    return f"label_{column}"


def bucketize_epsilon(num_buckets: int) -> float:
    """The quantile sketch's error bound we use for `num_buckets` buckets."""
    return min(1.0 / num_buckets, 0.01)


def fill_value(column: Column, x: tf.SparseTensor):
    """The value that replaces a missing one, computed by TFT analyzers where
    the policy needs the data (mean, median, most frequent)."""
    policy = column.missing.policy
    dtype = TF_TYPES[column.storage]
    name = f"fill_{column.name}"
    if policy == "constant":
        return tf.constant(column.missing.value, dtype=dtype)
    if policy == "reject":
        # Rows with a missing value never reach the graph on the Beam path; at
        # serving the same row gets a neutral value rather than failing the batch.
        return tf.constant("" if column.storage == "string" else 0, dtype=dtype)
    if policy == "mean":
        value = tft.mean(tf.cast(x.values, tf.float32), name=name)
    elif policy == "median":
        boundaries = tft.quantiles(
            tf.cast(x.values, tf.float32), num_buckets=2, epsilon=0.001, name=name
        )
        value = tf.reshape(boundaries, [-1])[0]
    else:  # most_frequent
        as_text = x.values if column.storage == "string" else tf.strings.as_string(x.values)
        path = tft.vocabulary(
            as_text, top_k=1, vocab_filename=fill_vocabulary_name(column.name), name=name
        )
        # A one-line asset read per batch is cheaper than a lookup table here.
        top = tf.strings.split(tf.io.read_file(path), "\n")[0]
        if column.storage == "string":
            return top
        return tf.cast(tf.strings.to_number(top, tf.float64), dtype)
    if column.type == "int":
        return tf.cast(tf.round(value), tf.int64)
    return tf.cast(value, dtype)


def _tokens(text: tf.Tensor, separator: str) -> tf.SparseTensor:
    """Lower-cased tokens; punctuation is treated as a separator."""
    lowered = tf.strings.lower(text)
    if separator == " ":
        cleaned = tf.strings.regex_replace(lowered, r"[^\w\s]", " ")
        return tf.strings.split(cleaned).to_sparse()
    return tf.strings.split(lowered, sep=separator).to_sparse()


def apply_transform(t: Transform, x: tf.Tensor, outputs: Dict[str, tf.Tensor]) -> None:
    """Adds transform `t` of the filled dense column `x` to `outputs`, under
    `t.output` (tf-idf: `_index` and `_weight`)."""
    o = t.options
    name = t.output
    numeric = None if x.dtype == tf.string else tf.cast(x, tf.float32)
    if t.type == "zscore":
        outputs[name] = tft.scale_to_z_score(numeric, name=name)
    elif t.type == "scale_0_1":
        outputs[name] = tft.scale_to_0_1(numeric, name=name)
    elif t.type == "min_max":
        outputs[name] = tft.scale_by_min_max(
            numeric, output_min=o["output_min"], output_max=o["output_max"], name=name
        )
    elif t.type == "bucketize":
        outputs[name] = tft.bucketize(
            numeric, o["num_buckets"], epsilon=bucketize_epsilon(o["num_buckets"]), name=name
        )
    elif t.type == "vocabulary":
        outputs[name] = tft.compute_and_apply_vocabulary(
            as_string(x),
            top_k=o["top_k"],
            frequency_threshold=o["frequency_threshold"],
            num_oov_buckets=o["num_oov_buckets"],
            vocab_filename=name,
            store_frequency=True,
            name=name,
        )
    elif t.type == "hash":
        outputs[name] = tft.hash_strings(as_string(x), o["hash_buckets"], name=name)
    elif t.type == "log1p":
        outputs[name] = tf.math.log1p(numeric, name=name)
    elif t.type == "clip":
        low = -math.inf if o["min"] is None else float(o["min"])
        high = math.inf if o["max"] is None else float(o["max"])
        outputs[name] = tf.clip_by_value(numeric, low, high, name=name)
    elif t.type == "identity":
        outputs[name] = tf.identity(x, name=name)
    elif t.type in TIMESTAMP_PARTS:
        outputs[name] = tf.identity(timestamp_part(x, t.type), name=name)
    elif t.type in ("ngrams", "bag_of_words", "tfidf"):
        tokens = _tokens(x, o["separator"])
        ngram_range = tuple(o["ngram_range"])
        joiner = " " if o["separator"] == " " else o["separator"]
        with tf.name_scope(name):
            if t.type == "bag_of_words":
                grams = tft.bag_of_words(tokens, ngram_range, separator=joiner)
            else:
                grams = tft.ngrams(tokens, ngram_range, separator=joiner)
        if t.type == "tfidf":
            ids = tft.compute_and_apply_vocabulary(
                grams,
                top_k=o["vocab_size"],
                num_oov_buckets=1,
                vocab_filename=name,
                store_frequency=True,
                name=name,
            )
            index, weight = tft.tfidf(ids, o["vocab_size"] + 1, name=f"{name}_tfidf")
            outputs[name + "_index"] = index
            outputs[name + "_weight"] = weight
        else:
            outputs[name] = tft.compute_and_apply_vocabulary(
                grams,
                top_k=o["top_k"],
                num_oov_buckets=o["num_oov_buckets"],
                vocab_filename=name,
                store_frequency=True,
                name=name,
            )
    else:  # The spec parser only admits known types.
        raise AssertionError(f"unhandled transform type {t.type!r}")


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
    """Builds the TFT preprocessing_fn for `spec`.

    Missing values are filled per the column's policy before any transform, so
    analyzers see filled data (a mean fill does not change the mean; it does
    lower the variance). Dense outputs have shape [batch]; text outputs are
    SparseTensors of ids (and weights for tf-idf).

    Edge cases: on an empty analysis dataset TFT's analyzers would produce
    default constants, so callers must refuse empty input first (the analyze
    pipeline does). Values unseen at analysis map to OOV buckets
    (`num_oov_buckets`) or -1 when there are none.
    """

    def preprocessing_fn(inputs):
        outputs: Dict[str, tf.Tensor] = {}
        filled = _filled_inputs(spec, inputs)
        for column in spec.columns:
            for t in column.transforms:
                apply_transform(t, filled[column.name], outputs)
        for cross in spec.crosses:
            outputs[cross.output] = cross_tensor(cross, filled)
        if spec.label:
            outputs[spec.label.column] = label_tensor(spec, filled[spec.label.column])
        return outputs

    return preprocessing_fn


def label_tensor(spec: FeatureSpec, y: tf.Tensor) -> tf.Tensor:
    """The training label from the filled label column `y`: float for
    regression, 0/1 for binary (a string is 1 when it equals `positive`),
    class ids for multiclass (string classes by frequency; unseen -> -1)."""
    label = spec.label
    kind = label.kind
    if kind == "regression":
        return tf.cast(y, tf.float32)
    if kind == "binary":
        if y.dtype == tf.string:
            return tf.cast(tf.equal(y, label.positive), tf.int64)
        return tf.cast(y, tf.int64)
    if y.dtype == tf.string:  # multiclass, string classes -> ids by frequency
        return tft.compute_and_apply_vocabulary(
            y,
            num_oov_buckets=0,
            default_value=-1,
            vocab_filename=label_vocabulary_name(label.column),
            store_frequency=True,
            name=f"label_{label.column}",
        )
    return tf.cast(y, tf.int64)


def build_constants_fn(spec: FeatureSpec) -> Callable[[Mapping], Dict[str, tf.Tensor]]:
    """A preprocessing_fn whose outputs are the numeric analyzer results the
    spec uses (fill values, mean/variance, min/max, quantile boundaries),
    broadcast over the batch, keyed ``__constant__/<output>/<stat>``.

    It runs the same TFT analyzers on the same filled inputs as
    `build_preprocessing_fn`, so the values equal those baked into the
    transform_fn; they are written to constants.json, never used for features.
    """

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
            x = tf.cast(filled[column.name], tf.float32)
            for t in column.transforms:
                if t.type == "zscore":
                    emit(f"{t.output}/mean", tft.mean(x, name=f"{t.output}_mean"))
                    emit(f"{t.output}/var", tft.var(x, name=f"{t.output}_var"))
                elif t.type in ("scale_0_1", "min_max"):
                    emit(f"{t.output}/min", tft.min(x, name=f"{t.output}_min"))
                    emit(f"{t.output}/max", tft.max(x, name=f"{t.output}_max"))
                elif t.type == "bucketize":
                    n = t.options["num_buckets"]
                    emit(
                        f"{t.output}/boundaries",
                        tft.quantiles(x, n, epsilon=bucketize_epsilon(n), name=f"{t.output}_q"),
                    )
        if not outputs:
            outputs[f"{CONSTANTS_PREFIX}/none"] = tf.zeros(tf.stack([size, 1]), tf.float32)
        return outputs

    return constants_fn
