"""Training on TFT-transformed examples: model inputs from the transformed
schema, a deterministic evaluation split, metrics against a trivial baseline.

The Keras here is Keras 2 (``tf_keras``), the one TFT's transform layer is
built on; importing tensorflow_transform makes ``tf.keras`` the same module.
We import it by name so that no import order can mix the two Keras versions.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import os
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from featurebridge.transforms.errors import TrainingError
from featurebridge.transforms.preprocessing import label_vocabulary_name
from featurebridge.transforms.spec import SPLIT_FEATURE, FeatureSpec

__all__ = [
    "FeatureInfo",
    "Head",
    "MODEL_TYPES",
    "TrainResult",
    "TrainingError",
    "baseline_metrics",
    "build_model",
    "describe_features",
    "evaluate_predictions",
    "load_analyzed",
    "make_dataset",
    "outputs_from_logits",
    "train_model",
    "transformed_files",
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


@dataclasses.dataclass(frozen=True)
class Head:
    """The label's kind and what the model outputs.

    Attributes:
      kind: "binary", "multiclass" or "regression".
      label: the transformed label feature name.
      num_classes: classes for multiclass (2 for binary, 1 for regression).
      label_mean, label_std: regression target scale (the model predicts in
        label units; these keep its raw output near unit scale).
    """

    kind: str
    label: str
    num_classes: int = 2
    label_mean: float = 0.0
    label_std: float = 1.0

    @property
    def units(self) -> int:
        return self.num_classes if self.kind == "multiclass" else 1

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class TrainResult:
    """What `train` returns.

    Attributes:
      model: the trained Keras model (transformed features -> logits).
      head: the label head.
      features: the model's inputs.
      metrics: {"model": {...}, "baseline": {...}, "rows": {"train", "eval"}}.
      history: per-epoch training loss.
    """

    model: keras.Model
    head: Head
    features: List[FeatureInfo]
    metrics: Dict[str, object]
    history: List[float]


# ---------------------------------------------------------------------------
# What the analyzed directory holds


def load_analyzed(analyzed_dir: str) -> Tuple[tft.TFTransformOutput, FeatureSpec]:
    """Opens an analyze output: the TFT output and the spec that made it.

    Raises:
      TrainingError: the directory is not an analyze output.
    """
    import json

    manifest_path = os.path.join(analyzed_dir, "manifest.json")
    if not os.path.exists(os.path.join(analyzed_dir, "transform_fn")) or not os.path.exists(manifest_path):
        raise TrainingError(
            f"{analyzed_dir!r} is not an analyze output (it needs transform_fn/ and "
            "manifest.json). Run `featurebridge analyze` first and pass its --output."
        )
    with open(manifest_path, encoding="utf-8") as f:
        manifest = json.load(f)
    if "spec" not in manifest:
        raise TrainingError(f"{manifest_path} has no 'spec' field; re-run `featurebridge analyze`.")
    spec = FeatureSpec.from_dict(manifest["spec"], source=manifest_path)
    return tft.TFTransformOutput(analyzed_dir), spec


def transformed_files(analyzed_dir: str) -> List[str]:
    """The transformed example shards, sorted.

    Raises:
      TrainingError: there are none.
    """
    files = sorted(glob.glob(os.path.join(analyzed_dir, "transformed", "*.tfrecord.gz")))
    if not files:
        raise TrainingError(
            f"No transformed examples under {os.path.join(analyzed_dir, 'transformed')!r}; "
            "the analyze run looks incomplete. Re-run `featurebridge analyze`."
        )
    return files


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

    def vocab_size(name: str, oov: int) -> Optional[int]:
        try:
            return tft_output.vocabulary_size_by_name(name) + oov
        except (ValueError, OSError, tf.errors.NotFoundError):
            return None

    for column in spec.columns:
        for t in column.transforms:
            o = t.options
            if t.type == "bucketize":
                hints[t.output] = ("categorical", o["num_buckets"], None)
            elif t.type == "hash":
                hints[t.output] = ("categorical", o["hash_buckets"], None)
            elif t.type == "vocabulary":
                size = vocab_size(t.output, o["num_oov_buckets"])
                if size:
                    hints[t.output] = ("categorical", size, None)
            elif t.type in ("ngrams", "bag_of_words"):
                size = vocab_size(t.output, o["num_oov_buckets"])
                if size:
                    hints[t.output] = ("bag", size, None)
            elif t.type == "tfidf":
                hints[t.output + "_index"] = ("bag", o["vocab_size"] + 1, t.output + "_weight")
                hints[t.output + "_weight"] = ("bag_weights", 0, None)
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


def _head_for(spec: FeatureSpec, tft_output: tft.TFTransformOutput) -> Head:
    if spec.label is None:
        raise TrainingError(
            f"The spec ({spec.source}) has no label, so there is nothing to train. Add "
            "`label: {column: NAME, kind: binary|multiclass|regression}` and re-run analyze."
        )
    kind = spec.label.kind
    if kind == "multiclass" and spec.column(spec.label.column).type == "string":
        classes = tft_output.vocabulary_size_by_name(label_vocabulary_name(spec.label.column))
        return Head(kind, spec.label.column, num_classes=classes)
    return Head(kind, spec.label.column, num_classes=1 if kind == "regression" else 2)


# ---------------------------------------------------------------------------
# Data


def make_dataset(
    files: Sequence[str],
    feature_spec: Mapping[str, object],
    split: str,
    batch_size: int,
    eval_percent: int = 20,
    shuffle_seed: Optional[int] = None,
    label: Optional[str] = None,
) -> tf.data.Dataset:
    """Batches of parsed transformed examples for one split.

    The split is decided by each row's `SPLIT_FEATURE`, a fingerprint of its
    raw key (or raw values) computed in the transform graph: it does not depend
    on shard order, on the number of workers, or on anything the analyzers
    learned, so two runs over the same input split it the same way. (Analyze
    outputs written before that feature existed fall back to a hash of the
    serialized example.)

    Args:
      files: transformed TFRecord (gzip) shards.
      feature_spec: tft_output.transformed_feature_spec().
      split: "train", "eval" or "all".
      batch_size: rows per batch.
      eval_percent: the share of rows in "eval" (0-99).
      shuffle_seed: shuffle "train" with this seed; None keeps file order.
      label: when given, yield (features, label) pairs instead of feature dicts.
    """
    ds = tf.data.TFRecordDataset(list(files), compression_type="GZIP")
    feature_spec = dict(feature_spec)
    split_spec = feature_spec.pop(SPLIT_FEATURE, None)
    if split != "all":
        if split_spec is not None:
            def bucket(r):
                return tf.io.parse_single_example(r, {SPLIT_FEATURE: split_spec})[SPLIT_FEATURE]
        else:
            def bucket(r):
                return tf.strings.to_hash_bucket_fast(r, 100)
        if split == "eval":
            ds = ds.filter(lambda r: bucket(r) < eval_percent)
        else:
            ds = ds.filter(lambda r: bucket(r) >= eval_percent)
    ds = ds.cache()
    if shuffle_seed is not None:
        ds = ds.shuffle(50_000, seed=shuffle_seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(lambda r: tf.io.parse_example(r, dict(feature_spec)))
    if label is not None:
        ds = ds.map(lambda f: (f, f.pop(label)))
    return ds.prefetch(tf.data.AUTOTUNE)


def _split_description(feature_spec: Mapping[str, object], spec: FeatureSpec, eval_percent: int) -> str:
    if SPLIT_FEATURE not in feature_spec:
        return f"rows whose example hash mod 100 < {eval_percent}"
    keyed = f"the key column {spec.key!r}" if spec.key else "the row's raw feature values"
    return f"rows whose fingerprint of {keyed}, mod 100, is < {eval_percent}"


def _scan(ds: tf.data.Dataset, head: Head, features: Sequence[FeatureInfo]):
    """One pass: row count, label values, numeric means/stds."""
    numeric = [f.name for f in features if f.kind == "numeric"]
    n = 0
    sums = np.zeros(len(numeric))
    squares = np.zeros(len(numeric))
    labels = []
    for batch, y in ds:
        y = y.numpy()
        labels.append(y)
        n += len(y)
        for i, name in enumerate(numeric):
            x = batch[name].numpy().astype(np.float64)
            sums[i] += x.sum()
            squares[i] += (x * x).sum()
    mean = sums / max(n, 1)
    std = np.sqrt(np.maximum(squares / max(n, 1) - mean * mean, 0.0))
    stats = {name: (float(mean[i]), float(std[i]) if std[i] > 1e-12 else 1.0) for i, name in enumerate(numeric)}
    return n, (np.concatenate(labels) if labels else np.array([])), stats


# ---------------------------------------------------------------------------
# Model


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


def outputs_from_logits(logits: tf.Tensor, head: Head) -> Dict[str, tf.Tensor]:
    """The prediction outputs, as the serving signatures return them.

    binary: probability [batch] float32, class_id [batch] int64.
    multiclass: probabilities [batch, classes], class_id [batch].
    regression: prediction [batch] float32.
    """
    if head.kind == "binary":
        p = tf.sigmoid(logits[:, 0])
        return {"probability": p, "class_id": tf.cast(p >= 0.5, tf.int64)}
    if head.kind == "multiclass":
        return {"probabilities": tf.nn.softmax(logits), "class_id": tf.argmax(logits, axis=1)}
    return {"prediction": logits[:, 0]}


def _loss(head: Head):
    if head.kind == "binary":
        return keras.losses.BinaryCrossentropy(from_logits=True)
    if head.kind == "multiclass":
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return keras.losses.MeanSquaredError()


# ---------------------------------------------------------------------------
# Metrics (numpy, so the model and the baseline are scored by the same code)


def _auc(y: np.ndarray, p: np.ndarray) -> Optional[float]:
    """ROC AUC by ranks (ties averaged); None when only one class is present."""
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p))
    sorted_p = p[order]
    i = 0
    while i < len(p):
        j = i
        while j + 1 < len(p) and sorted_p[j + 1] == sorted_p[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def evaluate_predictions(head: Head, y: np.ndarray, outputs: Mapping[str, np.ndarray]) -> Dict[str, float]:
    """Scores predictions (as from `outputs_from_logits`) against labels.

    Returns:
      binary: loss (log loss), auc, accuracy; multiclass: loss, accuracy;
      regression: loss (MSE), rmse, mae. An empty `y` gives {"rows": 0}.
    """
    y = np.asarray(y)
    if y.size == 0:
        return {"rows": 0}
    eps = 1e-7
    if head.kind == "binary":
        p = np.clip(np.asarray(outputs["probability"], np.float64), eps, 1 - eps)
        loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
        auc = _auc(y, p)
        return {"rows": int(y.size), "loss": float(loss), "auc": auc, "accuracy": float(np.mean((p >= 0.5) == (y == 1)))}
    if head.kind == "multiclass":
        probs = np.clip(np.asarray(outputs["probabilities"], np.float64), eps, 1.0)
        valid = (y >= 0) & (y < probs.shape[1])
        loss = -np.mean(np.log(probs[np.arange(y.size)[valid], y[valid]])) if valid.any() else float("nan")
        return {"rows": int(y.size), "loss": float(loss), "accuracy": float(np.mean(np.argmax(probs, 1) == y))}
    pred = np.asarray(outputs["prediction"], np.float64)
    err = pred - y.astype(np.float64)
    return {"rows": int(y.size), "loss": float(np.mean(err**2)), "rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err)))}


def baseline_metrics(head: Head, train_labels: np.ndarray, eval_labels: np.ndarray) -> Dict[str, object]:
    """Scores the trivial model: the training prior (binary, multiclass) or
    the training mean (regression), predicted for every eval row."""
    n = eval_labels.size
    if head.kind == "binary":
        prior = float(np.mean(train_labels == 1)) if train_labels.size else 0.5
        scores = evaluate_predictions(head, eval_labels, {"probability": np.full(n, prior)})
        scores["predicts"] = f"P(label=1) = {prior:.4f} (training prior) for every row"
    elif head.kind == "multiclass":
        counts = np.bincount(train_labels[train_labels >= 0].astype(int), minlength=head.num_classes)
        prior = counts / max(counts.sum(), 1)
        scores = evaluate_predictions(head, eval_labels, {"probabilities": np.tile(prior, (n, 1))})
        scores["predicts"] = f"class {int(np.argmax(prior))} (majority) for every row"
    else:
        mean = float(np.mean(train_labels)) if train_labels.size else 0.0
        scores = evaluate_predictions(head, eval_labels, {"prediction": np.full(n, mean)})
        scores["predicts"] = f"{mean:.4f} (training mean) for every row"
    return scores


def _predict(model: keras.Model, head: Head, ds: tf.data.Dataset):
    labels, outs = [], {}
    for features, y in ds:
        labels.append(y.numpy())
        for k, v in outputs_from_logits(model(features, training=False), head).items():
            outs.setdefault(k, []).append(v.numpy())
    if not labels:
        return np.array([]), {}
    return np.concatenate(labels), {k: np.concatenate(v) for k, v in outs.items()}


def _label_value_text(spec: FeatureSpec, tft_output: tft.TFTransformOutput, value) -> str:
    """A transformed label value as the user knows it (a string class's name)."""
    label = spec.label
    if label.kind == "regression":
        return f"{float(value):g}"
    if label.kind == "multiclass" and spec.column(label.column).type == "string":
        try:  # stored with frequencies: "300 high"
            entries = tft_output.vocabulary_by_name(label_vocabulary_name(label.column))
            name = entries[int(value)].decode("utf-8", "replace").split(" ", 1)[-1]
            return f"{name!r} (class id {int(value)})"
        except (ValueError, IndexError, OSError, tf.errors.NotFoundError):
            return f"class id {int(value)}"
    return str(int(value))


def _check_label_varies(spec: FeatureSpec, tft_output: tft.TFTransformOutput, train_labels: np.ndarray) -> None:
    """Refuses to train when every training label is the same value.

    Raises:
      TrainingError: naming the label column, the value, the row count and
        what to check (a string binary label's `positive:` value first).
    """
    n = int(train_labels.size)
    if n == 0 or not np.all(train_labels == train_labels[0]):
        return
    label = spec.label
    column = label.column
    if label.kind == "binary" and label.positive is not None and int(train_labels[0]) == 0:
        raise TrainingError(
            f"label column {column}: positive value {label.positive!r} matches none of {n} training rows; "
            "check its spelling and case against the column's values."
        )
    value = _label_value_text(spec, tft_output, train_labels[0])
    if label.kind == "binary" and label.positive is not None:
        value += f" (every row equals the positive value {label.positive!r})"
    hint = (
        "check the input data and any filter upstream (rows of the other values may be missing or rejected)"
        + (", and the label's `positive:` value in the spec" if label.positive is not None else "")
    )
    raise TrainingError(
        f"label column {column}: all {n} training rows have the same label, {value}, so the model "
        f"could only learn that constant; {hint}. Nothing was trained."
    )


def _multiclass_id_warnings(column: str, train_labels: np.ndarray, num_classes: int) -> List[str]:
    """Warnings for an int multiclass label whose ids in [0, num_classes) do
    not all occur in training (ids numbered from 1, or with gaps)."""
    seen = {int(v) for v in np.unique(train_labels)}
    missing_count = num_classes - sum(1 for v in seen if 0 <= v < num_classes)
    if missing_count <= 0:
        return []
    missing: List[int] = []
    for i in range(num_classes):
        if i not in seen:
            missing.append(i)
            if len(missing) == 10:
                break
    shown = ", ".join(str(i) for i in missing) + (f" (+{missing_count - 10} more)" if missing_count > 10 else "")
    return [
        f"label column {column}: {missing_count} of the class ids 0..{num_classes - 1} never occur in the "
        f"{train_labels.size} training rows (missing: {shown}). The model has {num_classes} outputs "
        "(the largest id + 1) and "
        "classes never seen get no training signal; if the labels are numbered 1..K, subtract 1 upstream "
        "or make the label a string column."
    ]


# ---------------------------------------------------------------------------


def train_model(
    analyzed_dir: str,
    model_type: str = "wide_and_deep",
    epochs: int = 5,
    batch_size: int = 256,
    eval_percent: int = 20,
    learning_rate: float = 0.005,
    hidden_units: Sequence[int] = (64, 32),
    seed: int = 0,
    l2: float = 1e-3,
) -> TrainResult:
    """Trains a model on an analyze output's transformed examples.

    Rows go to the eval split by a hash of the example (`eval_percent` of them),
    so the split is the same on every run over the same data.

    Args:
      analyzed_dir: the analyze output directory.
      model_type: one of MODEL_TYPES.
      epochs, batch_size, learning_rate, hidden_units: training knobs.
      eval_percent: the share of rows held out for evaluation (1-50).
      seed: seeds weights and shuffling.
      l2: L2 penalty on the id tables (wide weights and embeddings).

    Returns:
      TrainResult with the model and the metrics of model and baseline on the
      eval split.

    Raises:
      TrainingError: bad options, no label in the spec, no transformed rows,
        or an empty train or eval split (too few rows).
    """
    if model_type not in MODEL_TYPES:
        raise TrainingError(f"--model {model_type!r} is unknown; choose one of {list(MODEL_TYPES)}.")
    if epochs < 1 or batch_size < 1:
        raise TrainingError(f"--epochs and --batch_size must be positive; got {epochs} and {batch_size}.")
    if not 1 <= eval_percent <= 50:
        raise TrainingError(f"eval_percent must be between 1 and 50; got {eval_percent}.")
    tft_output, spec = load_analyzed(analyzed_dir)
    head = _head_for(spec, tft_output)
    features = describe_features(tft_output, spec)
    files = transformed_files(analyzed_dir)
    feature_spec = tft_output.transformed_feature_spec()
    keras.utils.set_random_seed(seed)

    def dataset(split, shuffle=None):
        return make_dataset(files, feature_spec, split, batch_size, eval_percent, shuffle, label=head.label)

    train_ds, eval_ds = dataset("train", shuffle=seed), dataset("eval")
    n_train, train_labels, numeric_stats = _scan(train_ds, head, features)
    eval_labels = np.concatenate([y.numpy() for _, y in eval_ds]) if n_train else np.array([])
    if n_train == 0 or eval_labels.size == 0:
        raise TrainingError(
            f"Too few rows to train and evaluate: {n_train} in the train split, "
            f"{eval_labels.size} in the eval split ({eval_percent}% of rows). Use more data."
        )
    _check_label_varies(spec, tft_output, train_labels)
    label_warnings: List[str] = []
    if head.kind == "multiclass" and spec.column(head.label).type != "string":
        head = dataclasses.replace(head, num_classes=int(max(train_labels.max(), eval_labels.max())) + 1)
        label_warnings = _multiclass_id_warnings(head.label, train_labels, head.num_classes)
    for warning in label_warnings:
        _LOG.warning("%s", warning)
    if head.kind == "regression":
        head = dataclasses.replace(
            head, label_mean=float(train_labels.mean()), label_std=float(train_labels.std()) or 1.0
        )
    _LOG.info(
        "Training a %s model on %d rows (%d held out for evaluation), %d features, %d epoch(s)",
        model_type, n_train, eval_labels.size, len(features), epochs,
    )
    model = build_model(features, head, model_type, numeric_stats, hidden_units, seed, l2)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=_loss(head))
    history = model.fit(train_ds, epochs=epochs, verbose=0)
    y_eval, outs = _predict(model, head, eval_ds)
    metrics = {
        "model": evaluate_predictions(head, y_eval, outs),
        "baseline": baseline_metrics(head, train_labels, y_eval),
        "rows": {"train": int(n_train), "eval": int(y_eval.size)},
        "eval_split": _split_description(feature_spec, spec, eval_percent),
        "label_warnings": label_warnings,
    }
    losses = [float(x) for x in history.history.get("loss", [])]
    return TrainResult(model, head, features, metrics, losses)
