"""The one-command job and the demo: sample data, stage outputs, one summary."""

import csv
import json
import os
from collections import Counter

import pytest

from tests.job_helpers import EPOCHS, ROWS


def test_sample_data_is_seeded_skewed_and_has_missing_values():
    from featurebridge.pipelines.sample_data import generate_rows

    a, b = generate_rows(3000, seed=3), generate_rows(3000, seed=3)
    assert a == b
    assert generate_rows(50, seed=4)["age"] != a["age"][:50]
    assert len(set(a["session_id"])) == 3000
    for column in ("age", "basket_value", "pages_viewed", "device", "city", "review"):
        assert any(v is None for v in a[column]), column
    products = Counter(v for v in a["product_id"] if v is not None)
    assert len(products) > 1000  # drawn from 100,000 values
    assert products.most_common(1)[0][1] > 50 * (3000 / len(products))  # Zipf: a heavy head
    assert 5 <= len(set(a["device"]) - {None}) <= 10
    assert 0.2 < sum(a["purchased"]) / 3000 < 0.8
    assert generate_rows(0)["age"] == []


def test_sample_spec_matches_the_data(tmp_path):
    from featurebridge.pipelines.sample_data import write_sample_data
    from featurebridge.transforms.spec import load_spec

    written = write_sample_data(str(tmp_path), 120, num_files=3)
    spec = load_spec(written["spec"])
    with open(written["files"][0]) as f:
        header = next(csv.reader(f))
    assert set(header) == set(spec.column_names)
    assert spec.key == "session_id" and spec.label.column == "purchased"
    with pytest.raises(ValueError, match="at least one row per file"):
        write_sample_data(str(tmp_path), 2, num_files=3)


@pytest.mark.slow
def test_run_writes_every_stage_and_one_summary(job):
    s = job.summary
    assert s["inputs"]["holdout_chosen_by"] == "the last input file"
    assert len(s["inputs"]["train"]) == 2 and len(s["inputs"]["holdout"]) == 1
    per_file = ROWS // 3
    assert s["rows"]["analyze"] == {"read": 2 * per_file, "used": 2 * per_file, "rejected": 0, "rejected_by": {}}
    assert s["rows"]["train"] + s["rows"]["eval"] == 2 * per_file
    assert s["rows"]["predict"]["predicted"] == per_file
    for path in s["artifacts"].values():
        assert os.path.exists(path), path
    with open(os.path.join(job.root, "summary.json")) as f:
        assert json.load(f)["rows"] == s["rows"]
    for key in ("auc", "accuracy", "loss"):
        assert key in s["metrics"]["eval_split"] and key in s["metrics"]["baseline"]
    assert s["metrics"]["holdout"]["rows"] == per_file
    assert s["data"]["rows"] == ROWS
    text = job.printed
    assert "baseline" in text and "held-out rows" in text
    assert s["artifacts"]["serving_model"] in text and s["artifacts"]["predictions"] in text
    with open(os.path.join(job.model, "metrics.json")) as f:
        assert len(json.load(f)["training_loss_per_epoch"]) == EPOCHS


@pytest.mark.slow
def test_demo_refuses_to_replace_without_overwrite_or_others_files(job, tmp_path):
    from featurebridge.pipelines import demo
    from featurebridge.transforms.staging import OutputExistsError

    with pytest.raises(OutputExistsError, match="Pass --overwrite"):
        demo.run(["--output", job.root])
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match="holds files the demo did not write"):
        demo.run(["--output", str(tmp_path), "--overwrite"])
    assert (tmp_path / "precious.txt").exists()


def test_cli_lists_the_commands_and_reports_usage_errors(tmp_path, capsys):
    from featurebridge.pipelines import cli

    assert cli.main(["--help"]) == 0
    listing = capsys.readouterr().out
    for command in ("train", "predict", "run", "demo"):
        assert f"  {command}" in listing
    assert cli.main(["demo", "--rows", "10", "--output", str(tmp_path / "d")]) == 2
    assert "at least 50 rows per file" in capsys.readouterr().err
    assert cli.main(["run", "--input", str(tmp_path / "none-*.csv"), "--spec", "s.yaml", "--output", str(tmp_path / "o")]) == 2
    assert "error:" in capsys.readouterr().err
    assert cli.main(["train", "--help"]) == 0
    assert "--analyzed" in capsys.readouterr().out


def test_dirty_sample_rows_are_rejected_with_their_reasons(tmp_path):
    from featurebridge.pipelines.sample_data import write_sample_data
    from featurebridge.transforms.io import read_file
    from featurebridge.transforms.spec import load_spec

    written = write_sample_data(str(tmp_path), 400, num_files=2, seed=3, dirty_rows=10)
    assert sum(written["dirty_rows_per_file"]) == 10
    spec = load_spec(written["spec"])
    reasons = []
    for path, dirty in zip(written["files"], written["dirty_rows_per_file"]):
        stats = None
        for kind, value in read_file(path, spec):
            if kind == "rejected":
                reasons.append(value.reason)
            elif kind == "stats":
                stats = value
        assert stats["rejected"] == dirty and stats["read"] == 200
    assert sorted(set(reasons)) == [
        "log1p needs values greater than -1",
        "missing value and the spec says reject",
        "not a valid float",
        "not a valid int (write it in decimal digits, e.g. -42 or 42.0)",
        "row has 3 fields, the header has 10",
    ]
