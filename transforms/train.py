"""The training loop: datasets of transformed examples, a deterministic
evaluation split, checks of the labels, fit, and metrics against a trivial
baseline.

The model is `featurebridge.transforms.model`'s, the head and its outputs the
serving contract's (`featurebridge.transforms.serving`), the scores
`featurebridge.transforms.metrics`', and the analyze output is opened by
`featurebridge.transforms.layout.load_analyzed`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
import os
import time
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from featurebridge.transforms import layout
from featurebridge.transforms.errors import ArtifactError, TrainingError
from featurebridge.transforms.export import label_class_names
from featurebridge.transforms.metrics import baseline_metrics, evaluate_predictions
from featurebridge.transforms.model import (
    MODEL_TYPES,
    FeatureInfo,
    build_model,
    describe_features,
    head_for,
    loss_for,
    metrics_for,
)
from featurebridge.transforms.ops import LabelOp, label_vocabulary_name
from featurebridge.transforms.serving import Head, outputs_from_logits
from featurebridge.transforms.spec import SPLIT_FEATURE, FeatureSpec

__all__ = [
    "EpochLog",
    "PER_EPOCH_NOTE",
    "TrainResult",
    "make_dataset",
    "train_model",
]

_LOG = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainResult:
    """What `train` returns.

    Attributes:
      model: the trained Keras model (transformed features -> logits).
      head: the label head.
      features: the model's inputs.
      metrics: {"model": {...}, "baseline": {...}, "rows": {"train", "eval"},
        "per_epoch": [{"epoch", "train": {...}, "eval": {...}}], ...}: the
        same on every run with the same data and settings.
      history: per-epoch training loss.
      epoch_seconds: wall time of each epoch (its eval pass included).
      class_names: multiclass: the name of each class id; else empty.
    """

    model: keras.Model
    head: Head
    features: List[FeatureInfo]
    metrics: Dict[str, object]
    history: List[float]
    epoch_seconds: List[float] = dataclasses.field(default_factory=list)
    class_names: List[str] = dataclasses.field(default_factory=list)


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


@contextlib.contextmanager
def _shards_readable(files: Sequence[str]):
    """Turns TensorFlow's DataLossError on the transformed shards, which names
    no file, into an ArtifactError naming the damaged shard."""
    try:
        yield
    except tf.errors.DataLossError as e:
        raise _damaged_shard_error(files, e.message) from None


def _damaged_shard_error(files: Sequence[str], message: str) -> ArtifactError:
    """Reads each shard alone to find the one TensorFlow could not read."""
    for path in files:
        records = 0
        try:
            for batch in tf.data.TFRecordDataset(path, compression_type="GZIP").batch(4096):
                records += int(batch.shape[0])
        except tf.errors.DataLossError as e:
            return ArtifactError(
                f"{path}: the transformed shard is damaged after {records} readable example(s) "
                f"({e.message.strip()}); training stopped. Re-run `featurebridge analyze` to rewrite "
                "it, or restore the analyze output from a copy."
            )
    return ArtifactError(
        f"A transformed shard under {os.path.dirname(files[0])} could not be read ({message.strip()}). "
        "Re-run `featurebridge analyze` to rewrite them."
    )


def _check_example_count(analyzed: layout.AnalyzedOutput, examples: int) -> None:
    """The shards must hold every used row the analyze run counted.

    Raises:
      ArtifactError: they hold fewer or more (a shard was cut short, removed or added).
    """
    rows = analyzed.manifest.get("rows")
    used = rows.get("used") if isinstance(rows, dict) else None
    if isinstance(used, int) and used != examples:
        raise ArtifactError(
            f"The transformed shards under {os.path.join(analyzed.path, layout.TRANSFORMED_DIR)} hold "
            f"{examples} examples, but the analyze run used {used} rows "
            f"({os.path.join(analyzed.path, layout.MANIFEST)}): a shard was cut short, removed or added. "
            "Re-run `featurebridge analyze` to rewrite them."
        )


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
    if LabelOp(label, spec.column(label.column)).has_classes:
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
# What is watched while training

PER_EPOCH_NOTE = (
    "Keras' streaming metrics after each epoch: 'train' over that epoch's batches (the weights change "
    "as it goes), 'eval' over the eval split at the epoch's end. Their AUCs use 200 thresholds (PR-AUC "
    "interpolated) and their loss includes the L2 penalty, so they differ a little from the exact "
    "final metrics in 'model', computed with numpy on the eval split's predictions."
)
# The eval metric shown in each epoch's log line, besides the losses.
_WATCHED = {"binary": "val_auc", "multiclass": "val_accuracy", "regression": "val_rmse"}


class EpochLog(keras.callbacks.Callback):
    """Logs one line per epoch ("epoch 3/5: loss 0.6100, val_loss 0.6300,
    val_auc 0.7200 (2.1 s)") and keeps each epoch's wall time in `seconds`.

    Args:
      epochs: the number of epochs fit runs (for "3/5").
      watch: the logs' keys to show after "loss" (absent keys are skipped).
      logger: where the lines go; this module's logger by default.
    """

    def __init__(self, epochs: int, watch: Sequence[str] = ("val_loss",), logger: Optional[logging.Logger] = None):
        super().__init__()
        self.epochs = epochs
        self.watch = tuple(watch)
        self.seconds: List[float] = []
        self._log = logger or _LOG
        self._started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.monotonic() - self._started
        self.seconds.append(round(seconds, 3))
        logs = logs or {}
        parts = [f"{k} {float(logs[k]):.4f}" for k in ("loss", *self.watch) if k in logs]
        self._log.info("epoch %d/%d: %s (%.1f s)", epoch + 1, self.epochs, ", ".join(parts), seconds)


def _tensorboard_callbacks(log_dir: Optional[str]) -> list:
    """Keras' TensorBoard callback writing epoch scalars under `log_dir`
    (train/ and validation/ runs); no graph, histograms or profile, so the
    logs stay a few kilobytes. None: no logs. Without the tensorboard
    package (tf.summary's scalars live in it) a warning says how to get it."""
    if log_dir is None:
        return []
    if importlib.util.find_spec("tensorboard") is None:
        _LOG.warning(
            "No TensorBoard logs in %s: the tensorboard package is not installed "
            "(pip install tensorboard, then train again).", log_dir,
        )
        return []
    return [
        keras.callbacks.TensorBoard(
            log_dir, histogram_freq=0, write_graph=False, write_images=False,
            write_steps_per_second=False, update_freq="epoch", profile_batch=0,
        )
    ]


def _per_epoch(history: Mapping[str, Sequence[float]]) -> List[Dict[str, object]]:
    """Keras' history {"loss": [...], "val_loss": [...], ...} as a list of
    {"epoch": 1-based, "train": {...}, "eval": {...}}."""
    names = [k for k in history if not k.startswith("val_") and f"val_{k}" in history]
    return [
        {
            "epoch": i + 1,
            "train": {k: float(history[k][i]) for k in names},
            "eval": {k: float(history[f"val_{k}"][i]) for k in names},
        }
        for i in range(len(history.get("loss", [])))
    ]


# ---------------------------------------------------------------------------
# The loop


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
    log_dir: Optional[str] = None,
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
      log_dir: where Keras' TensorBoard callback writes the epoch curves
        (train/ and validation/); None writes none.

    Each epoch ends with a pass over the eval split and one log line
    (`EpochLog`).

    Returns:
      TrainResult with the model and the metrics of model and baseline on the
      eval split: exact final metrics (`evaluate_predictions`, numpy) and
      Keras' per-epoch curves.

    Raises:
      ArtifactError: `analyzed_dir` is not an analyze output, or it has no
        transformed examples.
      TrainingError: bad options, no label in the spec, or an empty train or
        eval split (too few rows).
    """
    if model_type not in MODEL_TYPES:
        raise TrainingError(f"--model {model_type!r} is unknown; choose one of {list(MODEL_TYPES)}.")
    if epochs < 1 or batch_size < 1:
        raise TrainingError(f"--epochs and --batch_size must be positive; got {epochs} and {batch_size}.")
    if not 1 <= eval_percent <= 50:
        raise TrainingError(f"eval_percent must be between 1 and 50; got {eval_percent}.")
    analyzed = layout.load_analyzed(analyzed_dir)
    tft_output, spec = analyzed.tft_output(), analyzed.spec
    head = head_for(spec, tft_output)
    features = describe_features(tft_output, spec)
    files = analyzed.transformed_files()
    feature_spec = tft_output.transformed_feature_spec()
    keras.utils.set_random_seed(seed)

    def dataset(split, shuffle=None):
        return make_dataset(files, feature_spec, split, batch_size, eval_percent, shuffle, label=head.label)

    train_ds, eval_ds = dataset("train", shuffle=seed), dataset("eval")
    with _shards_readable(files):
        n_train, train_labels, numeric_stats = _scan(train_ds, head, features)
        eval_labels = np.concatenate([y.numpy() for _, y in eval_ds]) if n_train else np.array([])
    _check_example_count(analyzed, n_train + eval_labels.size)
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
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss_for(head), metrics=metrics_for(head))
    epoch_log = EpochLog(epochs, ("val_loss", _WATCHED[head.kind]))
    with _shards_readable(files):
        history = model.fit(
            train_ds, epochs=epochs, validation_data=eval_ds, verbose=0,
            callbacks=[epoch_log, *_tensorboard_callbacks(log_dir)],
        )
        y_eval, outs = _predict(model, head, eval_ds)
    # The names the serving export gives the classes (one source for both).
    class_names = list(label_class_names(spec, head, tft_output, analyzed_dir)) if head.kind == "multiclass" else []
    metrics = {
        "model": evaluate_predictions(head, y_eval, outs, class_names),
        "baseline": baseline_metrics(head, train_labels, y_eval, class_names),
        "rows": {"train": int(n_train), "eval": int(y_eval.size)},
        "eval_split": _split_description(feature_spec, spec, eval_percent),
        "label_warnings": label_warnings,
        "per_epoch": _per_epoch(history.history),
        "per_epoch_note": PER_EPOCH_NOTE,
    }
    losses = [float(x) for x in history.history.get("loss", [])]
    return TrainResult(model, head, features, metrics, losses, epoch_log.seconds, class_names)
