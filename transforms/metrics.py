"""Metrics of predictions against labels, and of the trivial baseline model.

Plain numpy, so the trained model and the baseline are scored by the same
code, and callers that only score predictions (`featurebridge run`'s
held-out check) need no TensorFlow. The definitions are scikit-learn's
(`roc_auc_score`, `average_precision_score`, `precision_recall_fscore_support`
with ``zero_division=0``, `confusion_matrix`, `r2_score`, the uniform bins of
`calibration_curve`); tests/test_model_metrics.py checks them against it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Sequence

import numpy as np

if TYPE_CHECKING:  # the head is the serving contract's; importing it needs TensorFlow
    from featurebridge.transforms.serving import Head

__all__ = [
    "CALIBRATION_BINS",
    "MAX_CONFUSION_CLASSES",
    "average_precision",
    "baseline_metrics",
    "compact_metrics",
    "confusion_matrix",
    "evaluate_predictions",
    "per_class_scores",
    "r2_score",
    "reliability_table",
    "roc_auc",
]

# Equal-width predicted-probability buckets of the binary calibration table.
CALIBRATION_BINS = 10
# Above this many classes the confusion matrix (classes x classes counts) is left out.
MAX_CONFUSION_CLASSES = 50
# compact_metrics keeps the per-class scores of at most this many classes (by support).
_COMPACT_CLASSES = 20
_EPS = 1e-7


def roc_auc(y: np.ndarray, p: np.ndarray) -> Optional[float]:
    """ROC AUC of scores `p` for binary labels `y` (1 = positive), by ranks
    with ties averaged.

    Returns:
      The AUC; None when `y` holds only one class (or nothing).
    """
    y, p = np.asarray(y), np.asarray(p, np.float64)
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    _, inverse, counts = np.unique(p, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    average_rank = ends - (counts - 1) / 2.0  # 1-based rank, tied scores share the mean
    rank_sum = float(average_rank[inverse.ravel()][pos].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def average_precision(y: np.ndarray, p: np.ndarray) -> Optional[float]:
    """PR-AUC as average precision: the sum over score thresholds of
    precision times the recall gained there (no interpolation).

    Returns:
      The value in [0, 1] (a constant score gives the positive rate); None
      when no label is positive.
    """
    y, p = np.asarray(y) == 1, np.asarray(p, np.float64)
    n_pos = int(y.sum())
    if n_pos == 0:
        return None
    order = np.argsort(-p, kind="mergesort")
    p_sorted, y_sorted = p[order], y[order]
    last_of_threshold = np.r_[np.flatnonzero(np.diff(p_sorted)), p_sorted.size - 1]
    tps = np.cumsum(y_sorted)[last_of_threshold]
    precision = tps / (last_of_threshold + 1)
    recall = tps / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def reliability_table(y: np.ndarray, p: np.ndarray, bins: int = CALIBRATION_BINS):
    """Calibration of probabilities `p` for binary labels `y`.

    Buckets are equal-width on [0, 1]: the first holds 0 <= p <= 1/bins, each
    next one lo < p <= hi (scikit-learn's `calibration_curve` bins).

    Returns:
      (table, ece): a row per bucket {"range": [lo, hi], "rows",
      "mean_predicted", "observed_rate"} (the two rates None for an empty
      bucket), and the expected calibration error, the row-weighted mean of
      |mean_predicted - observed_rate| (None for no rows).
    """
    y, p = (np.asarray(y) == 1).astype(np.float64), np.clip(np.asarray(p, np.float64), 0.0, 1.0)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ids = np.searchsorted(edges[1:-1], p, side="left")
    rows = np.bincount(ids, minlength=bins)
    sum_p = np.bincount(ids, weights=p, minlength=bins)
    sum_y = np.bincount(ids, weights=y, minlength=bins)
    table = []
    for i in range(bins):
        n = int(rows[i])
        table.append({
            "range": [round(float(edges[i]), 6), round(float(edges[i + 1]), 6)],
            "rows": n,
            "mean_predicted": float(sum_p[i] / n) if n else None,
            "observed_rate": float(sum_y[i] / n) if n else None,
        })
    ece = float(np.sum(np.abs(sum_p - sum_y)) / p.size) if p.size else None
    return table, ece


def confusion_matrix(y: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts [true class, predicted class] for ids in [0, num_classes);
    rows whose true or predicted id is outside that range are left out."""
    y, predicted = np.asarray(y, np.int64).ravel(), np.asarray(predicted, np.int64).ravel()
    keep = (y >= 0) & (y < num_classes) & (predicted >= 0) & (predicted < num_classes)
    flat = y[keep] * num_classes + predicted[keep]
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_scores(matrix: np.ndarray) -> Dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class from a confusion matrix.

    A class never predicted has precision 0, one with no rows recall 0, and
    F1 is 0 when both are 0 (scikit-learn's ``zero_division=0``).
    """
    matrix = np.asarray(matrix, np.float64)
    tp = np.diag(matrix)
    predicted, support = matrix.sum(axis=0), matrix.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}


def r2_score(y: np.ndarray, pred: np.ndarray) -> Optional[float]:
    """The coefficient of determination, 1 - SSE / SST; None when the labels
    do not vary (or there are none)."""
    y, pred = np.asarray(y, np.float64), np.asarray(pred, np.float64)
    sst = float(np.sum((y - y.mean()) ** 2)) if y.size else 0.0
    if sst == 0.0:
        return None
    return 1.0 - float(np.sum((y - pred) ** 2)) / sst


def _class_names(num_classes: int, class_names: Optional[Sequence[str]]) -> List[str]:
    names = list(class_names or [])
    return [names[i] if i < len(names) else str(i) for i in range(num_classes)]


def _binary(y: np.ndarray, p: np.ndarray) -> Dict[str, object]:
    p = np.asarray(p, np.float64)
    clipped = np.clip(p, _EPS, 1 - _EPS)
    positive = (y == 1).astype(np.float64)
    loss = -np.mean(positive * np.log(clipped) + (1 - positive) * np.log(1 - clipped))
    table, ece = reliability_table(y, p)
    return {
        "rows": int(y.size),
        "loss": float(loss),
        "auc": roc_auc(y, p),
        "pr_auc": average_precision(y, p),
        "accuracy": float(np.mean((p >= 0.5) == (y == 1))),
        "brier": float(np.mean((p - positive) ** 2)),
        "ece": ece,
        "positive_rate": float(positive.mean()),
        "calibration": table,
    }


def _multiclass(y: np.ndarray, probs: np.ndarray, class_names: Optional[Sequence[str]]) -> Dict[str, object]:
    probs = np.asarray(probs, np.float64).reshape(y.size, -1)
    k = probs.shape[1]
    valid = (y >= 0) & (y < k)
    clipped = np.clip(probs, _EPS, 1.0)
    loss = -np.mean(np.log(clipped[np.arange(y.size)[valid], y[valid].astype(np.int64)])) if valid.any() else None
    predicted = np.argmax(probs, axis=1)
    matrix = confusion_matrix(y, predicted, k)
    scores = per_class_scores(matrix)
    names = _class_names(k, class_names)
    # Macro average over the classes that occur (as a label or a prediction): scikit-learn's default labels.
    present = (scores["support"] > 0) | (matrix.sum(axis=0) > 0)
    out: Dict[str, object] = {
        "rows": int(y.size),
        "loss": None if loss is None else float(loss),
        "accuracy": float(np.mean(predicted == y)),
        "macro_f1": float(scores["f1"][present].mean()) if present.any() else None,
        "per_class": {
            names[i]: {
                "precision": float(scores["precision"][i]),
                "recall": float(scores["recall"][i]),
                "f1": float(scores["f1"][i]),
                "support": int(scores["support"][i]),
            }
            for i in range(k)
        },
    }
    if k <= MAX_CONFUSION_CLASSES:
        out["confusion_matrix"] = {
            "classes": names,
            "counts": matrix.tolist(),
            "rows_are": "true class",
            "columns_are": "predicted class",
        }
    else:
        out["confusion_matrix"] = None
        out["confusion_matrix_note"] = f"left out: {k} classes (more than {MAX_CONFUSION_CLASSES})"
    return out


def _regression(y: np.ndarray, pred: np.ndarray) -> Dict[str, object]:
    err = np.asarray(pred, np.float64) - y.astype(np.float64)
    mse = float(np.mean(err**2))
    return {
        "rows": int(y.size),
        "loss": mse,
        "rmse": float(np.sqrt(mse)),
        "mae": float(np.mean(np.abs(err))),
        "r2": r2_score(y, pred),
    }


def evaluate_predictions(
    head: Head,
    y: np.ndarray,
    outputs: Mapping[str, np.ndarray],
    class_names: Optional[Sequence[str]] = None,
) -> Dict[str, object]:
    """Scores predictions (as from `outputs_from_logits`) against labels.

    Args:
      head: the label head (its kind picks the metrics).
      y: the labels: 0/1 (binary), class ids (multiclass), numbers (regression).
      outputs: "probability" (binary), "probabilities" (multiclass, [rows,
        classes]) or "prediction" (regression).
      class_names: multiclass: the name of each class id (the label
        vocabulary); ids past its end are named by their number.

    Returns:
      binary: loss (log loss), auc, pr_auc (average precision), accuracy (at
      0.5), brier, ece (expected calibration error), positive_rate and
      calibration (`reliability_table`); multiclass: loss, accuracy, macro_f1,
      per_class ({name: precision, recall, f1, support}) and confusion_matrix
      (None past MAX_CONFUSION_CLASSES classes); regression: loss (MSE), rmse,
      mae, r2. A metric that is undefined on these labels (AUC with one
      class, R2 of a constant label) is None. An empty `y` gives {"rows": 0}.
      Multiclass labels outside [0, classes) count as wrong predictions and
      are left out of the loss and the confusion matrix.
    """
    y = np.asarray(y).ravel()
    if y.size == 0:
        return {"rows": 0}
    if head.kind == "binary":
        return _binary(y, outputs["probability"])
    if head.kind == "multiclass":
        return _multiclass(y, outputs["probabilities"], class_names)
    return _regression(y, outputs["prediction"])


def baseline_metrics(
    head: Head,
    train_labels: np.ndarray,
    eval_labels: np.ndarray,
    class_names: Optional[Sequence[str]] = None,
) -> Dict[str, object]:
    """Scores the trivial model: the training prior (binary, multiclass) or
    the training mean (regression), predicted for every eval row.

    An empty training set predicts 0.5, a uniform prior or 0. The result is
    `evaluate_predictions`' plus "predicts", which says what the baseline is.
    """
    train_labels, eval_labels = np.asarray(train_labels).ravel(), np.asarray(eval_labels).ravel()
    n = eval_labels.size
    if head.kind == "binary":
        prior = float(np.mean(train_labels == 1)) if train_labels.size else 0.5
        scores = evaluate_predictions(head, eval_labels, {"probability": np.full(n, prior)})
        scores["predicts"] = f"P(label=1) = {prior:.4f} (training prior) for every row"
    elif head.kind == "multiclass":
        counts = np.bincount(train_labels[train_labels >= 0].astype(int), minlength=head.num_classes)
        prior = counts / counts.sum() if counts.sum() else np.full(counts.size, 1.0 / counts.size)
        scores = evaluate_predictions(head, eval_labels, {"probabilities": np.tile(prior, (n, 1))}, class_names)
        majority = int(np.argmax(prior))
        name = _class_names(majority + 1, class_names)[majority]
        shown = f"class {name!r} (id {majority})" if name != str(majority) else f"class {majority}"
        scores["predicts"] = f"{shown} (majority) for every row"
    else:
        mean = float(np.mean(train_labels)) if train_labels.size else 0.0
        scores = evaluate_predictions(head, eval_labels, {"prediction": np.full(n, mean)})
        scores["predicts"] = f"{mean:.4f} (training mean) for every row"
    return scores


def compact_metrics(scores: Mapping[str, object]) -> Dict[str, object]:
    """`evaluate_predictions`' result without its tables (calibration,
    confusion matrix) and with the per-class scores of the
    most frequent classes only, for manifests and summaries."""
    out = {k: v for k, v in scores.items() if k not in ("calibration", "confusion_matrix", "confusion_matrix_note")}
    per_class = scores.get("per_class")
    if isinstance(per_class, dict) and len(per_class) > _COMPACT_CLASSES:
        top = sorted(per_class, key=lambda name: -per_class[name]["support"])[:_COMPACT_CLASSES]
        out["per_class"] = {name: per_class[name] for name in top}
        out["per_class_note"] = f"the {_COMPACT_CLASSES} most frequent of {len(per_class)} classes; metrics.json has all"
    return out
