"""Labels a model cannot learn from: a string binary label whose `positive:`
value matches no row, a constant label (refused before any training), and an
int multiclass label numbered 1..K (trained, with a warning in the log,
metrics.json and the model's manifest). Each case analyzes ~80 generated rows."""

import json
import logging

import numpy as np
import pytest

from tests.analyze_helpers import analyze_and_check

pytestmark = pytest.mark.slow

ROWS = 80

_SPEC = """
label: {{column: y, kind: {kind}{positive}}}
columns:
  - {{name: a, type: float, transforms: [zscore]}}
  - {{name: y, type: {label_type}}}
"""


def _analyzed(tmp_path, labels, kind, label_type, positive=None):
    """An analyze output of rows (a, y) with the given labels."""
    a = np.random.default_rng(3).normal(size=len(labels))
    csv = "a,y\n" + "".join(f"{a[i]:.4f},{y}\n" for i, y in enumerate(labels))
    spec = _SPEC.format(kind=kind, label_type=label_type, positive=f", positive: '{positive}'" if positive else "")
    return analyze_and_check(str(tmp_path), spec, csv).output_dir


def test_binary_string_label_whose_positive_value_matches_no_row(tmp_path):
    from featurebridge.transforms.errors import TrainingError
    from featurebridge.transforms.train import train_model

    analyzed = _analyzed(tmp_path, ["yes" if i % 3 else "no" for i in range(ROWS)], "binary", "string", "Yes")
    with pytest.raises(TrainingError) as e:
        train_model(analyzed, "linear", epochs=1)
    n = json.loads((tmp_path / "out" / "manifest.json").read_text())["rows"]["used"]
    message = str(e.value)
    assert message.startswith("label column y: positive value 'Yes' matches none of ")
    assert message.endswith(" training rows; check its spelling and case against the column's values.")
    trained_rows = int(message.split("matches none of ")[1].split()[0])
    assert 0 < trained_rows < n  # the train split, not the eval rows


def test_constant_int_binary_label_is_refused_before_training(tmp_path):
    from featurebridge.pipelines import train
    from featurebridge.transforms.errors import TrainingError

    analyzed = _analyzed(tmp_path, [1] * ROWS, "binary", "int")
    with pytest.raises(TrainingError, match=r"label column y: all \d+ training rows have the same label, 1, "
                       r"so the model could only learn that constant; check the input data"):
        train.run(["--analyzed", analyzed, "--output", str(tmp_path / "model"), "--epochs", "1"])
    assert not (tmp_path / "model").exists()


def test_multiclass_int_label_numbered_from_one_trains_with_a_warning(tmp_path, caplog):
    from featurebridge.pipelines import train

    analyzed = _analyzed(tmp_path, [1 + i % 3 for i in range(ROWS)], "multiclass", "int")
    model = tmp_path / "model"
    with caplog.at_level(logging.WARNING, logger="featurebridge.transforms.train"):
        manifest = train.run(["--analyzed", analyzed, "--output", str(model), "--epochs", "1", "--model", "linear"])
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "label column y" in r.getMessage()]
    assert len(logged) == 1
    assert "1 of the class ids 0..3 never occur" in logged[0] and "(missing: 0)" in logged[0]
    assert "The model has 4 outputs" in logged[0] and "subtract 1 upstream" in logged[0]
    metrics = json.loads((model / "metrics.json").read_text())
    assert metrics["label_warnings"] == logged
    assert metrics["head"]["num_classes"] == 4
    assert json.loads((model / "manifest.json").read_text())["metrics"]["label_warnings"] == logged
    assert manifest["metrics"]["label_warnings"] == logged
    assert "WARNING: label column y" in train.summarize(manifest, str(model))
