"""The fast analyze path (featurebridge.transforms.fast_analyze) against plain TFT analyzers.

One dataset, two real analyze runs (DirectRunner, real TFT): the default fast
path and `--analyzer tft`. They must give the same constants (the
quantile boundaries within the sketch's error bound), the same vocabulary
files, the same transformed values and the same serving behaviour on raw
examples with missing and unseen values. No timings here (see benchmarks/).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.analyze_helpers import analyze_and_check, quantile_rank_error

pytestmark = pytest.mark.slow

ROWS = 1500
SPEC = """
label: {column: y, kind: binary}
columns:
  - {name: id, type: float, transforms: [identity]}
  - {name: a, type: float, missing: mean, transforms: [zscore, {type: bucketize, num_buckets: 4}, {type: min_max, output_min: -1, output_max: 1}]}
  - {name: b, type: float, missing: {constant: -1.5}, transforms: [zscore, log1p, scale_0_1]}
  - {name: c, type: float, transforms: [scale_0_1]}
  - {name: q, type: float, transforms: [{type: bucketize, num_buckets: 10}]}
  - {name: n, type: int, missing: {constant: 3}, transforms: [zscore, {type: vocabulary, top_k: 5}]}
  - {name: s, type: string, transforms: [{type: vocabulary, top_k: 25, num_oov_buckets: 1}, {type: hash, hash_buckets: 7}]}
  - {name: t, type: string, missing: {constant: "none"}, transforms: [{type: vocabulary, num_oov_buckets: 2}]}
  - {name: y, type: int}
crosses:
  - {columns: [s, t], hash_buckets: 11}
"""


def _csv(path: str) -> None:
    rng = np.random.default_rng(7)
    lines = ["id,a,b,c,q,n,s,t,y"]
    for i in range(ROWS):
        a = "" if rng.random() < 0.1 else f"{rng.normal(5, 2):.4f}"
        b = "" if rng.random() < 0.05 else f"{rng.lognormal(0, 1):.4f}"
        q = f"{rng.exponential(3):.5f}"
        n = "" if rng.random() < 0.05 else str(int(rng.integers(0, 12)))
        s = f"s{int(rng.zipf(1.3)) % 60}"  # many ties at the top_k cut
        t = "" if rng.random() < 0.2 else rng.choice(["x", "y", "z", "w w"])
        c = "2.5"  # one distinct value: TFT's min >= max branch (sigmoid)
        lines.append(f"{i},{a},{b},{c},{q},{n},{s},{t},{int(rng.random() < 0.3)}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("fast_path"))
    data = os.path.join(tmp, "data.csv")
    _csv(data)
    fast = analyze_and_check(tmp, SPEC, input_path=data, name="fast")
    plain = analyze_and_check(tmp, SPEC, input_path=data, name="plain", extra_argv=["--analyzer", "tft"])
    return fast, plain, data


def test_spec_takes_the_fast_path():
    from featurebridge.transforms.fast_analyze import fast_path_unsupported
    from featurebridge.transforms.spec import FeatureSpec

    assert fast_path_unsupported(FeatureSpec.from_text(SPEC)) is None
    median = FeatureSpec.from_text("columns:\n  - {name: a, type: float, missing: median, transforms: [zscore]}\n")
    assert "median" in fast_path_unsupported(median)


def test_fast_path_refuses_specs_it_does_not_cover():
    from featurebridge.transforms.fast_analyze import build_fast_preprocessing_fn
    from featurebridge.transforms.spec import FeatureSpec

    spec = FeatureSpec.from_text("columns:\n  - {name: a, type: string, transforms: [{type: tfidf, vocab_size: 5}]}\n")
    with pytest.raises(ValueError, match="does not cover this spec: transform 'tfidf'"):
        build_fast_preprocessing_fn(spec)


def test_fast_run_wrote_no_constants_fn_and_same_counts(runs):
    fast, plain, _ = runs
    assert not os.path.exists(os.path.join(fast.output_dir, "_constants_fn"))
    assert fast.manifest["rows"] == {**plain.manifest["rows"], "per_file": fast.manifest["rows"]["per_file"]}
    assert fast.manifest["rows"]["used"] == ROWS
    assert sorted(fast.transformed) == sorted(plain.transformed)


def test_a_one_value_scaling_is_warned_about(runs):
    for run in runs[:2]:
        (warning,) = run.manifest["warnings"]
        assert warning.startswith("c_scale_0_1: column 'c' has one distinct value (2.5), so TFT maps it through a sigmoid")


def test_same_constants(runs):
    fast, plain, data = runs
    for name, entry in plain.constants["columns"].items():
        assert {k: v for k, v in fast.constants["columns"][name].items() if k != "fill_value"} == {
            k: v for k, v in entry.items() if k != "fill_value"
        }
        if name != "a":
            assert fast.constants["columns"][name].get("fill_value") == entry.get("fill_value")
    assert fast.constants["columns"]["a"]["fill_value"] == pytest.approx(plain.constants["columns"]["a"]["fill_value"], rel=1e-6)
    for name, f in plain.constants["features"].items():
        g = fast.constants["features"][name]
        assert set(g) == set(f), name
        for key, value in f.items():
            if key == "boundaries":
                continue
            if isinstance(value, float):
                assert g[key] == pytest.approx(value, rel=1e-5, abs=1e-6), (name, key)
            else:
                assert g[key] == value, (name, key)
    # Quantile boundaries: both within the sketch's bound of the exact ranks.
    import pandas as pd

    df = pd.read_csv(data)
    a = df["a"].fillna(np.float32(fast.constants["columns"]["a"]["fill_value"])).to_numpy()
    for feature, values, buckets in (("q_bucketize", df["q"].to_numpy(), 10), ("a_bucketize", a, 4)):
        for run in (fast, plain):
            bounds = run.constants["features"][feature]["boundaries"]
            assert len(bounds) == buckets - 1
            assert quantile_rank_error(values, bounds, buckets) <= min(1 / buckets, 0.01) + 1e-9


def test_same_vocabulary_files(runs):
    fast, plain, _ = runs
    for name in ("s_vocabulary", "t_vocabulary", "n_vocabulary"):
        with open(fast.tft_output().vocabulary_file_by_name(name), "rb") as f:
            got = f.read()
        with open(plain.tft_output().vocabulary_file_by_name(name), "rb") as f:
            want = f.read()
        assert got == want, name


def test_same_transformed_values(runs):
    fast, plain, _ = runs
    order_f = np.argsort(fast.transformed["id_identity"])
    order_p = np.argsort(plain.transformed["id_identity"])
    for name in plain.transformed:
        got = np.asarray(fast.transformed[name])[order_f]
        want = np.asarray(plain.transformed[name])[order_p]
        if name == "a_bucketize":
            # Boundaries may differ within the sketch bound: few rows may move.
            assert np.mean(got != want) <= 0.02
        elif got.dtype.kind == "f":
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=name)
        else:
            np.testing.assert_array_equal(got, want, err_msg=name)


def test_same_serving_behaviour_on_raw_examples(runs):
    """Both transform_fns load with tft.TFTransformOutput and map raw features
    (including missing and unseen values) the same way, in a fresh process."""
    import subprocess
    import sys

    fast, plain, _ = runs
    script = r"""
import json, sys
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

def sp(values, dtype):
    idx = [[i, 0] for i, v in enumerate(values) if v is not None]
    vals = [v for v in values if v is not None]
    return tf.SparseTensor(tf.constant(idx, tf.int64, shape=[len(idx), 2]), tf.constant(vals, dtype), [len(values), 1])

raw = {
    "id": sp([1.0, 2.0, 3.0], tf.float32),
    "a": sp([None, 4.0, 100.0], tf.float32),
    "b": sp([0.5, None, 2.0], tf.float32),
    "c": sp([2.5, None, -7.0], tf.float32),
    "q": sp([0.0, 3.0, 50.0], tf.float32),
    "n": sp([None, 4, 99], tf.int64),
    "s": sp([b"s1", b"never-seen", b"s3"], tf.string),
    "t": sp([b"x", None, b"unseen"], tf.string),
    "y": sp([0, 1, 1], tf.int64),
}
out = {}
for d in sys.argv[1:]:
    o = tft.TFTransformOutput(d)
    res = o.transform_raw_features(raw)
    out[d] = {k: (v.values if isinstance(v, tf.SparseTensor) else v).numpy().tolist() for k, v in res.items()}
print(json.dumps(out))
"""
    proc = subprocess.run(
        [sys.executable, "-c", script, fast.output_dir, plain.output_dir],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    got, want = result[fast.output_dir], result[plain.output_dir]
    assert sorted(got) == sorted(want)
    for name in want:
        if name == "a_bucketize":
            continue  # boundaries within the sketch bound; checked above
        np.testing.assert_allclose(np.asarray(got[name], float), np.asarray(want[name], float), rtol=1e-5, atol=1e-5, err_msg=name)
    assert got["s_vocabulary"][1] == 25  # unseen -> the OOV bucket after top_k 25
