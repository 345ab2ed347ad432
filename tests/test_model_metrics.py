"""The model's metrics: the numpy definitions in transforms/metrics.py
against scikit-learn on small hand-made arrays (no TensorFlow), and what the
shared demo run's train step wrote: metrics.json per epoch and at the end,
TensorBoard event files, the summaries."""

import json
import os
from types import SimpleNamespace

import numpy as np
import pytest

from featurebridge.transforms import metrics as fm

BINARY = SimpleNamespace(kind="binary", num_classes=2)
MULTICLASS = SimpleNamespace(kind="multiclass", num_classes=4)
REGRESSION = SimpleNamespace(kind="regression", num_classes=1)


@pytest.fixture(scope="module")
def sk():
    return pytest.importorskip("sklearn.metrics")


def _binary_arrays(n=400, seed=1):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(0.5 * y + rng.uniform(0, 0.6, n) - 0.05, 0, 1)
    p[:40] = np.round(p[:40], 1)  # ties, and values on bucket edges
    return y, p


def test_binary_metrics_match_sklearn(sk):
    from sklearn.calibration import calibration_curve

    y, p = _binary_arrays()
    got = fm.evaluate_predictions(BINARY, y, {"probability": p})
    assert got["auc"] == pytest.approx(sk.roc_auc_score(y, p), abs=1e-12)
    assert got["pr_auc"] == pytest.approx(sk.average_precision_score(y, p), abs=1e-12)
    assert got["loss"] == pytest.approx(sk.log_loss(y, np.clip(p, 1e-7, 1 - 1e-7)), abs=1e-9)
    assert got["brier"] == pytest.approx(sk.brier_score_loss(y, p), abs=1e-12)
    assert got["accuracy"] == pytest.approx(sk.accuracy_score(y, p >= 0.5))
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
    filled = [row for row in got["calibration"] if row["rows"]]
    np.testing.assert_allclose([r["observed_rate"] for r in filled], prob_true, atol=1e-12)
    np.testing.assert_allclose([r["mean_predicted"] for r in filled], prob_pred, atol=1e-12)
    assert sum(r["rows"] for r in got["calibration"]) == y.size
    counts = np.array([r["rows"] for r in filled])
    assert got["ece"] == pytest.approx(np.sum(counts / y.size * np.abs(prob_true - prob_pred)), abs=1e-12)


def test_binary_edges_are_none_or_plain():
    y = np.array([1, 1, 1])
    got = fm.evaluate_predictions(BINARY, y, {"probability": np.array([0.2, 0.9, 0.9])})
    assert got["auc"] is None  # one class: undefined, not 0.5
    assert got["pr_auc"] == 1.0
    assert fm.average_precision(np.array([0, 0]), np.array([0.1, 0.2])) is None
    assert fm.evaluate_predictions(BINARY, np.array([]), {"probability": np.array([])}) == {"rows": 0}
    # A constant score: AUC 0.5, PR-AUC the positive rate, ECE |score - rate|.
    base = fm.baseline_metrics(BINARY, np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]))
    assert (base["auc"], base["pr_auc"]) == (0.5, 0.5)
    assert base["ece"] == pytest.approx(0.25)
    assert "0.7500 (training prior)" in base["predicts"]


def test_multiclass_metrics_match_sklearn(sk):
    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, 300)
    y[y == 3] = 2  # class 3 never occurs in the labels
    logits = rng.normal(size=(300, 4)) + 2.0 * np.eye(4)[y]
    logits[:, 3] -= 5.0  # and is (almost) never predicted
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    names = ["low", "mid", "high", "none"]
    got = fm.evaluate_predictions(MULTICLASS, y, {"probabilities": probs}, names)
    pred = probs.argmax(axis=1)
    precision, recall, f1, support = sk.precision_recall_fscore_support(
        y, pred, labels=[0, 1, 2, 3], zero_division=0
    )
    for i, name in enumerate(names):
        row = got["per_class"][name]
        assert (row["precision"], row["recall"], row["f1"], row["support"]) == pytest.approx(
            (precision[i], recall[i], f1[i], support[i])
        )
    assert got["macro_f1"] == pytest.approx(sk.f1_score(y, pred, average="macro", zero_division=0))
    assert got["confusion_matrix"]["classes"] == names
    assert got["confusion_matrix"]["counts"] == sk.confusion_matrix(y, pred, labels=[0, 1, 2, 3]).tolist()
    assert got["loss"] == pytest.approx(sk.log_loss(y, probs, labels=[0, 1, 2, 3]), abs=1e-9)
    assert got["accuracy"] == pytest.approx(sk.accuracy_score(y, pred))

    base = fm.baseline_metrics(MULTICLASS, np.array([2, 2, 1, 0]), y, names)
    assert base["predicts"] == "class 'high' (id 2) (majority) for every row"
    assert base["per_class"]["high"]["recall"] == 1.0 and base["per_class"]["low"]["recall"] == 0.0
    # Ids past the names are named by number; more classes than MAX_CONFUSION_CLASSES drop the matrix.
    wide = SimpleNamespace(kind="multiclass", num_classes=60)
    many = fm.evaluate_predictions(wide, np.arange(60), {"probabilities": np.eye(60)}, ["a"])
    assert "59" in many["per_class"] and many["confusion_matrix"] is None
    compact = fm.compact_metrics(many)
    assert len(compact["per_class"]) == 20 and "per_class_note" in compact and "confusion_matrix" not in compact


def test_regression_metrics_match_sklearn(sk):
    rng = np.random.default_rng(3)
    y = rng.normal(10, 3, 200)
    pred = y + rng.normal(0, 1, 200)
    got = fm.evaluate_predictions(REGRESSION, y, {"prediction": pred})
    assert got["rmse"] == pytest.approx(np.sqrt(sk.mean_squared_error(y, pred)))
    assert got["mae"] == pytest.approx(sk.mean_absolute_error(y, pred))
    assert got["r2"] == pytest.approx(sk.r2_score(y, pred))
    base = fm.baseline_metrics(REGRESSION, y[:100], y[100:])
    assert base["r2"] == pytest.approx(sk.r2_score(y[100:], np.full(100, y[:100].mean())))
    assert base["r2"] <= 0.0
    assert fm.r2_score(np.ones(3), np.ones(3)) is None


# ---------------------------------------------------------------- the demo run's train step


@pytest.mark.slow
def test_metrics_json_has_epochs_and_final_binary_metrics(job):
    with open(os.path.join(job.model, "metrics.json")) as f:
        metrics = json.load(f)
    epochs = metrics["per_epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    for e in epochs:
        assert set(e["train"]) >= {"loss", "auc", "pr_auc", "accuracy"}
        assert set(e["eval"]) >= {"loss", "auc", "pr_auc", "accuracy"}
    assert len(metrics["seconds_per_epoch"]) == 2
    model, base = metrics["model"], metrics["baseline"]
    assert 0 < model["pr_auc"] <= 1 and base["pr_auc"] == pytest.approx(base["positive_rate"])
    assert len(model["calibration"]) == fm.CALIBRATION_BINS
    assert sum(r["rows"] for r in model["calibration"]) == metrics["rows"]["eval"]
    assert 0 <= model["ece"] <= 1
    # The final Keras AUC (200 thresholds) is close to the exact one.
    assert epochs[-1]["eval"]["auc"] == pytest.approx(model["auc"], abs=0.02)
    # The manifest keeps the headline numbers, not the tables.
    with open(os.path.join(job.model, "manifest.json")) as f:
        manifest = json.load(f)
    assert "calibration" not in manifest["metrics"]["model"] and "pr_auc" in manifest["metrics"]["model"]


@pytest.mark.slow
def test_tensorboard_logs_hold_train_and_eval_curves(job):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing import event_accumulator

    import tensorflow as tf

    logs = os.path.join(job.model, "logs")
    assert sorted(os.listdir(logs)) == ["train", "validation"]
    for run in ("train", "validation"):
        acc = event_accumulator.EventAccumulator(os.path.join(logs, run))
        acc.Reload()
        tags = acc.Tags()["tensors"]
        for tag in ("epoch_loss", "epoch_auc"):
            assert tag in tags, (run, tags)
            values = [float(tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)]
            assert len(values) == 2 and all(np.isfinite(values))
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(logs) for f in files)
    assert size < 100_000  # no graph, no profile


@pytest.mark.slow
def test_summaries_show_the_new_metrics(job):
    from featurebridge.pipelines import run_job

    text = job.printed
    assert "pr_auc" in text and "ece" in text
    assert "training input" not in text  # the demo holds out its last file
    assert len(text.splitlines()) < 40
    # Where to look next: the data report, the curves, the lineage.
    report = os.path.join(job.summary["artifacts"]["analyzed"], "report.html")
    assert os.path.isfile(report) and f"data report    {report}" in text
    assert "tensorboard --logdir" in text and "featurebridge lineage" in text and "--verify" in text
    one_file = dict(job.summary)
    one_file.update(predictions_on_training_input=True, warnings=[run_job.TRAINING_INPUT_WARNING])
    one_file["metrics"] = dict(job.summary["metrics"], holdout=None, training_input=job.summary["metrics"]["holdout"])
    text = run_job.summarize(one_file)
    assert "not a held-out measure" in text and "--holdout" in text
    assert "training input (not held out)" in text


def test_one_input_file_warns_that_predictions_are_on_the_training_input(tmp_path, caplog):
    import logging

    from featurebridge.pipelines import run_job

    (tmp_path / "only.csv").write_text("a,y\n1,0\n")
    (tmp_path / "other.csv").write_text("a,y\n2,1\n")
    with caplog.at_level(logging.WARNING, logger=run_job.__name__):
        train, holdout, how = run_job.split_inputs(str(tmp_path / "only.csv"), None)
    assert train == holdout and "training input" in how
    assert [r.getMessage() for r in caplog.records] == [run_job.TRAINING_INPUT_WARNING]
    assert "not a held-out measure" in run_job.TRAINING_INPUT_WARNING and "--holdout GLOB" in run_job.TRAINING_INPUT_WARNING
    caplog.clear()
    train, holdout, how = run_job.split_inputs(str(tmp_path / "*.csv"), None)
    assert set(train).isdisjoint(holdout) and how == "the last input file" and not caplog.records
