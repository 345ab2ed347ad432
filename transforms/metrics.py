"""Metrics of predictions against labels, and of the trivial baseline model.

Plain numpy, so the trained model and the baseline are scored by the same
code, and callers that only score predictions (`featurebridge run`'s
held-out check) need no TensorFlow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Mapping, Optional

import numpy as np

if TYPE_CHECKING:  # the head is the serving contract's; importing it needs TensorFlow
    from featurebridge.transforms.serving import Head

__all__ = ["baseline_metrics", "evaluate_predictions"]


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
