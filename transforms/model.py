"""The model: how transformed features enter it, the Keras model itself, and its loss.

`describe_features` decides from an analyze output how each transformed
feature feeds the model (numeric, categorical ids, hashed strings, bags of
ids); `build_model` makes the Keras model (linear, dnn or wide_and_deep) from
transformed features to logits; `head_for` reads the label head from the spec;
`loss_for` and `metrics_for` are what the model is compiled with.
The head and its outputs are the serving contract's
(`featurebridge.transforms.serving`).

The Keras here is Keras 2 (``tf_keras``), the one TFT's transform layer is
built on; importing tensorflow_transform makes ``tf.keras`` the same module.
We import it by name so that no import order can mix the two Keras versions.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from featurebridge.transforms.errors import TrainingError
from featurebridge.transforms.ops import LabelOp, label_vocabulary_name, op_for
from featurebridge.transforms.serving import Head
from featurebridge.transforms.spec import SPLIT_FEATURE, FeatureSpec

__all__ = [
    "FeatureInfo",
    "MODEL_TYPES",
    "build_model",
    "describe_features",
    "head_for",
    "loss_for",
    "metrics_for",
]

_LOG = logging.getLogger(__name__)

MODEL_TYPES = ("linear", "dnn", "wide_and_deep")
# A string feature that reaches the model untransformed is hashed into this many buckets.
_STRING_HASH_BUCKETS = 1000


@dataclasses.dataclass(frozen=True)
class FeatureInfo:
    """How one transformed feature enters the model.

    Attributes:
      name: the transformed feature name.
      kind: "numeric" (float, used as is after standardizing), "categorical"
        (int ids in [0, size)), "hashed_string" (strings hashed to `size`
        buckets), "bag" (sparse ids, a bag of embeddings), or "bag_weights"
        (the tf-idf weights paired with a bag; not an input by itself).
      size: the number of distinct ids including OOV buckets (categorical, bag).
      weights: for a bag, the name of its weight feature (tf-idf), or None.
    """

    name: str
    kind: str
    size: int = 0
    weights: Optional[str] = None


# ---------------------------------------------------------------------------
# What the transformed features are


def _int_domains(tft_output: tft.TFTransformOutput) -> Dict[str, int]:
    """{feature: max id + 1} for features whose schema has an int_domain."""
    sizes = {}
    for feature in tft_output.transformed_metadata.schema.feature:
        if feature.HasField("int_domain") and feature.int_domain.max > 0:
            sizes[feature.name] = int(feature.int_domain.max) + 1
    return sizes


def _spec_hints(spec: FeatureSpec, tft_output: tft.TFTransformOutput) -> Dict[str, Tuple[str, int, Optional[str]]]:
    """{output: (kind, size, weights)} that the spec tells us for sure."""
    hints: Dict[str, Tuple[str, int, Optional[str]]] = {}

    def vocabulary(name: str) -> Optional[Dict[str, int]]:
        try:
            return {"vocabulary_size": tft_output.vocabulary_size_by_name(name)}
        except (ValueError, OSError, tf.errors.NotFoundError):
            return None

    for column in spec.columns:
        for t in column.transforms:
            hints.update(op_for(t, column).model_hints(vocabulary))
    for cross in spec.crosses:
        hints[cross.output] = ("categorical", cross.hash_buckets, None)
    return hints


def describe_features(
    tft_output: tft.TFTransformOutput, spec: Optional[FeatureSpec] = None
) -> List[FeatureInfo]:
    """Decides how each transformed feature (except the label) enters the model.

    Sizes come from the spec where it fixes them (buckets, hash buckets,
    tf-idf), else from the vocabulary files plus OOV buckets, else from the
    transformed schema's int_domain. One extra id is reserved for a negative
    id (a vocabulary without OOV buckets maps unseen values to -1).

    Args:
      tft_output: the analyze output.
      spec: its feature spec; without one (a user's preprocessing_fn) the
        schema alone decides: ints with a domain are categorical, other ints
        and floats numeric.

    Returns:
      FeatureInfo per feature, sorted by name.
    """
    feature_spec = tft_output.transformed_feature_spec()
    feature_spec.pop(SPLIT_FEATURE, None)
    label = spec.label.column if spec is not None and spec.label else None
    hints = _spec_hints(spec, tft_output) if spec is not None else {}
    domains = _int_domains(tft_output)
    infos = []
    for name in sorted(feature_spec):
        if name == label:
            continue
        parsing = feature_spec[name]
        sparse = isinstance(parsing, tf.io.VarLenFeature)
        dtype = parsing.dtype
        if name in hints:
            kind, size, weights = hints[name]
            if kind == "categorical" and name in domains:
                size = max(size, domains[name])
            infos.append(FeatureInfo(name, kind, size + (1 if kind in ("categorical", "bag") else 0), weights))
        elif dtype == tf.string:
            infos.append(FeatureInfo(name, "bag" if sparse else "hashed_string", _STRING_HASH_BUCKETS))
        elif dtype == tf.int64 and name in domains:
            infos.append(FeatureInfo(name, "bag" if sparse else "categorical", domains[name] + 1))
        elif sparse:
            _LOG.warning("Feature %s is a sparse %s without a vocabulary; the model ignores it.", name, dtype.name)
        else:
            infos.append(FeatureInfo(name, "numeric"))
    if not any(i.kind != "bag_weights" for i in infos):
        raise TrainingError("The transformed data has no features besides the label; add transforms to the spec.")
    return infos


def head_for(spec: FeatureSpec, tft_output: tft.TFTransformOutput) -> Head:
    """The label head the spec asks for (a string multiclass label has one
    class per entry of its vocabulary; an int one is sized from the data by
    the trainer).

    Raises:
      TrainingError: the spec has no label.
    """
    if spec.label is None:
        raise TrainingError(
            f"The spec ({spec.source}) has no label, so there is nothing to train. Add "
            "`label: {column: NAME, kind: binary|multiclass|regression}` and re-run analyze."
        )
    kind = spec.label.kind
    if LabelOp(spec.label, spec.column(spec.label.column)).has_classes:
        classes = tft_output.vocabulary_size_by_name(label_vocabulary_name(spec.label.column))
        return Head(kind, spec.label.column, num_classes=classes)
    return Head(kind, spec.label.column, num_classes=1 if kind == "regression" else 2)


# ---------------------------------------------------------------------------
# The Keras model


def _batch_size(features) -> tf.Tensor:
    for x in features.values():
        if isinstance(x, tf.SparseTensor):
            continue
        return tf.shape(x, out_type=tf.int64)[0]
    return next(iter(features.values())).dense_shape[0]


class _FeatureModel(keras.Model):
    """Transformed features (a dict) -> logits [batch, units].

    linear: a weight per id of every categorical or bag feature plus a linear
    term on the standardized numerics. dnn: embeddings (one-hot for small
    vocabularies) and numerics through hidden layers. wide_and_deep: the sum
    of both.
    """

    def __init__(self, features, head: Head, model_type: str, numeric_stats, hidden_units=(64, 32), seed=0, l2=0.0):
        super().__init__(name=f"featurebridge_{model_type}")
        self._features = [f for f in features if f.kind != "bag_weights"]
        self._units = head.units
        self._model_type = model_type
        self._regression = (head.label_mean, head.label_std) if head.kind == "regression" else None
        self._numeric = [f.name for f in self._features if f.kind == "numeric"]
        init = keras.initializers.RandomNormal(stddev=0.05, seed=seed)
        # Tables of rare ids overfit first; an L2 penalty keeps their weights near 0.
        reg = keras.regularizers.l2(l2) if l2 else None
        wide = model_type in ("linear", "wide_and_deep")
        deep = model_type in ("dnn", "wide_and_deep")
        if self._numeric:
            self._num_mean = tf.constant([numeric_stats[n][0] for n in self._numeric], tf.float32)
            self._num_std = tf.constant([numeric_stats[n][1] for n in self._numeric], tf.float32)
        self._wide_tables = {}
        self._deep_tables = {}
        for f in self._features:
            if f.kind == "numeric":
                continue
            if wide:
                self._wide_tables[f.name] = self.add_weight(
                    name=f"wide_{f.name}", shape=(f.size, self._units), initializer="zeros", regularizer=reg
                )
            if deep:
                dim = min(f.size, 16) if f.size <= 16 else max(4, min(32, int(round(6 * f.size**0.25))))
                self._deep_tables[f.name] = self.add_weight(
                    name=f"embed_{f.name}", shape=(f.size, dim), initializer=init, regularizer=reg
                )
        self._wide_numeric = keras.layers.Dense(self._units, name="wide_numeric") if wide and self._numeric else None
        self._wide_bias = self.add_weight(name="wide_bias", shape=(self._units,), initializer="zeros") if wide else None
        if deep:
            self._hidden = [
                keras.layers.Dense(u, activation="relu", kernel_initializer=keras.initializers.GlorotUniform(seed=seed + i), name=f"hidden_{i}")
                for i, u in enumerate(hidden_units)
            ]
            self._deep_out = keras.layers.Dense(self._units, name="deep_logits")

    def get_config(self):
        # Serving loads the SavedModel's signatures, never this class, so the
        # config only records what the model is.
        return {"model_type": self._model_type, "units": self._units}

    def _ids(self, f: FeatureInfo, x):
        if f.kind == "hashed_string":
            return tf.strings.to_hash_bucket_fast(x, f.size)
        # Negative ids (unseen values without OOV buckets) share the reserved last id.
        return tf.where(x < 0, tf.cast(f.size - 1, x.dtype), tf.minimum(x, f.size - 1))

    def _bag(self, table, f: FeatureInfo, features, combiner):
        ids = features[f.name]
        if f.kind == "bag" and ids.dtype == tf.string:
            ids = tf.SparseTensor(ids.indices, tf.strings.to_hash_bucket_fast(ids.values, f.size), ids.dense_shape)
        else:
            ids = tf.SparseTensor(ids.indices, tf.clip_by_value(ids.values, 0, f.size - 1), ids.dense_shape)
        weights = features[f.weights] if f.weights else None
        return tf.nn.safe_embedding_lookup_sparse(table, ids, weights, combiner=combiner)

    def call(self, features, training=False):
        logits = []
        numeric = None
        if self._numeric:
            numeric = tf.stack([tf.cast(features[n], tf.float32) for n in self._numeric], axis=1)
            numeric = (numeric - self._num_mean) / self._num_std
        if self._wide_tables or self._wide_bias is not None:
            parts = [tf.broadcast_to(self._wide_bias, [_batch_size(features), self._units])]
            for f in self._features:
                if f.name not in self._wide_tables:
                    continue
                table = self._wide_tables[f.name]
                if f.kind == "bag":
                    parts.append(self._bag(table, f, features, "sum"))
                else:
                    parts.append(tf.gather(table, self._ids(f, features[f.name])))
            if self._wide_numeric is not None:
                parts.append(self._wide_numeric(numeric))
            logits.append(tf.add_n(parts))
        if self._deep_tables or (self._model_type != "linear" and numeric is not None):
            parts = [numeric] if numeric is not None else []
            for f in self._features:
                if f.name not in self._deep_tables:
                    continue
                table = self._deep_tables[f.name]
                if f.kind == "bag":
                    parts.append(self._bag(table, f, features, "sqrtn"))
                else:
                    parts.append(tf.gather(table, self._ids(f, features[f.name])))
            x = tf.concat(parts, axis=1)
            for layer in self._hidden:
                x = layer(x)
            logits.append(self._deep_out(x))
        out = tf.add_n(logits) if len(logits) > 1 else logits[0]
        if self._regression is not None:
            out = out * self._regression[1] + self._regression[0]
        return out


def build_model(
    features: Sequence[FeatureInfo],
    head: Head,
    model_type: str = "wide_and_deep",
    numeric_stats: Optional[Mapping[str, Tuple[float, float]]] = None,
    hidden_units: Sequence[int] = (64, 32),
    seed: int = 0,
    l2: float = 0.0,
) -> keras.Model:
    """A Keras model from transformed features to logits (regression: values).

    Raises:
      TrainingError: unknown model type.
    """
    if model_type not in MODEL_TYPES:
        raise TrainingError(f"--model {model_type!r} is unknown; choose one of {list(MODEL_TYPES)}.")
    stats = dict(numeric_stats or {})
    for f in features:
        stats.setdefault(f.name, (0.0, 1.0))
    return _FeatureModel(list(features), head, model_type, stats, tuple(hidden_units), seed, l2)


def loss_for(head: Head):
    """The training loss on logits: log loss (binary, multiclass) or MSE."""
    if head.kind == "binary":
        return keras.losses.BinaryCrossentropy(from_logits=True)
    if head.kind == "multiclass":
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return keras.losses.MeanSquaredError()


def metrics_for(head: Head) -> list:
    """The Keras metrics compiled into the model for its per-epoch curves
    (TensorBoard, metrics.json's per_epoch), on logits: binary auc, pr_auc
    and accuracy; multiclass accuracy; regression rmse and mae. Fresh
    objects on each call (a Keras metric holds state)."""
    if head.kind == "binary":
        return [
            keras.metrics.AUC(from_logits=True, name="auc"),
            keras.metrics.AUC(curve="PR", from_logits=True, name="pr_auc"),
            keras.metrics.BinaryAccuracy(threshold=0.0, name="accuracy"),  # logit 0 = probability 0.5
        ]
    if head.kind == "multiclass":
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    return [keras.metrics.RootMeanSquaredError(name="rmse"), keras.metrics.MeanAbsoluteError(name="mae")]
