"""The runner tests' shared data and checks: one small CSV and spec, and the
assertions that a job on another runner (portable, Flink, Spark) produced what
the DirectRunner produced. The DirectRunner runs themselves are session
fixtures in conftest.py (``data``, ``direct_run``, ``direct_predictions``)."""

from __future__ import annotations

import csv
import glob
import json
import math
import random

import pytest

__all__ = [
    "ROWS",
    "SKETCH_EPSILON",
    "SPEC",
    "analyze_argv",
    "assert_constants_match",
    "assert_examples_match",
    "assert_predictions_match",
    "predictions",
    "rejected_rows",
    "transformed_examples",
    "write_data",
]

ROWS = 600
SKETCH_EPSILON = 0.01  # TFT's default quantile sketch accuracy (rank error as a fraction)

SPEC = """
key: id
label: {column: label, kind: binary}
columns:
  - {name: id, type: int}
  - {name: age, type: int, missing: mean, transforms: [zscore, {type: bucketize, num_buckets: 4}]}
  - {name: income, type: float, transforms: [log1p, scale_0_1]}
  - {name: city, type: string, transforms: [vocabulary]}
  - {name: label, type: int}
"""


def write_data(path, rows=ROWS, seed=7):
    """ROWS rows; every 17th age is empty (mean fill); row 5's income is "n/a" (rejected)."""
    rng = random.Random(seed)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "age", "income", "city", "label"])
        for i in range(rows):
            age = "" if i % 17 == 0 else rng.randint(18, 90)
            income = round(rng.lognormvariate(10, 1), 2)
            # A row with a bad number goes to rejected/ on every runner.
            if i == 5:
                income = "n/a"
            w.writerow([i, age, income, rng.choice(["paris", "rome", "oslo", "lima", "kyiv"]), int(rng.random() < 0.3)])


def analyze_argv(data, out, *extra):
    return ["--input", str(data / "d.csv"), "--spec", str(data / "spec.yaml"), "--output", str(out), *extra]


def _close(a, b, path=""):
    """Recursive equality with float tolerance; quantile boundaries checked apart."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            if k == "boundaries":
                continue
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{path}: {a} != {b}"
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def _rank(values, x):
    return sum(v <= x for v in values) / len(values)


def assert_constants_match(expected_out, actual_out, data) -> None:
    """constants.json equal; quantile boundaries equal up to the sketch's rank error."""
    expected = json.loads((expected_out / "constants.json").read_text())
    actual = json.loads((actual_out / "constants.json").read_text())
    _close(expected, actual)
    ages = [int(r["age"]) for r in csv.DictReader(open(data / "d.csv")) if r["age"]]
    b_expected = expected["features"]["age_bucketize"]["boundaries"]
    b_actual = actual["features"]["age_bucketize"]["boundaries"]
    assert len(b_expected) == len(b_actual) == 3
    for x, y in zip(b_expected, b_actual):
        assert abs(_rank(ages, x) - _rank(ages, y)) <= 2 * SKETCH_EPSILON, (b_expected, b_actual)


def transformed_examples(out):
    """The transformed tf.Examples of an analyze output, as {feature: [values]} dicts."""
    import tensorflow as tf

    rows = []
    for path in sorted(glob.glob(str(out / "transformed" / "*.tfrecord.gz"))):
        for record in tf.compat.v1.io.tf_record_iterator(path, tf.compat.v1.io.TFRecordOptions("GZIP")):
            ex = tf.train.Example.FromString(record)
            row = {}
            for name, feat in ex.features.feature.items():
                kind = feat.WhichOneof("kind")
                row[name] = list(getattr(feat, kind).value) if kind else []
            rows.append(row)
    return rows


def _sort_key(row):
    return json.dumps({k: [round(v, 5) if isinstance(v, float) else str(v) for v in vs] for k, vs in sorted(row.items())})


def assert_examples_match(expected_out, actual_out) -> None:
    """The same transformed examples (in any order), floats within 1e-6."""
    expected = sorted(transformed_examples(expected_out), key=_sort_key)
    actual = sorted(transformed_examples(actual_out), key=_sort_key)
    assert len(expected) == len(actual) == ROWS - 1  # the "n/a" row is rejected
    for e, a in zip(expected, actual):
        assert sorted(e) == sorted(a)
        for name in e:
            assert e[name] == pytest.approx(a[name], rel=1e-6, abs=1e-7), name


def rejected_rows(out):
    return [json.loads(line) for p in sorted(glob.glob(str(out / "rejected" / "*.jsonl"))) for line in open(p)]


def predictions(out):
    rows = [json.loads(line) for p in glob.glob(str(out / "predictions-*.jsonl")) for line in open(p)]
    return {r["id"]: r for r in rows}


def assert_predictions_match(expected_dir, actual_dir) -> None:
    a, b = predictions(expected_dir), predictions(actual_dir)
    assert len(a) == ROWS - 1 and a.keys() == b.keys()
    for key, row in a.items():
        assert sorted(row) == sorted(b[key])
        for field, value in row.items():
            if isinstance(value, (float, list)):
                assert b[key][field] == pytest.approx(value, rel=1e-5, abs=1e-6), (key, field)
            else:
                assert b[key][field] == value, (key, field)
