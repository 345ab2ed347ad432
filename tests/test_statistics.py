"""The data statistics of the analyze pass (TFDV protos, manifest summary,
warnings, raw metadata, --baseline), checked against pandas/numpy on the same
CSV. One module-scoped analyze run serves the end-to-end tests."""

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from featurebridge.transforms import layout

SPEC = """
label: {column: y, kind: multiclass}
columns:
  - name: num
    type: float
    missing: mean
    transforms: [zscore]
  - name: zeros
    type: float
    missing: {constant: 0}
    transforms: [{type: bucketize, num_buckets: 10}]
  - name: cnt
    type: int
    missing: {constant: 0}
    transforms: [identity]
  - name: flag
    type: bool
    missing: {constant: false}
    transforms: [identity]
  - name: cat
    type: string
    missing: {constant: "none"}
    transforms: [{type: vocabulary, top_k: 10}]
  - name: seen
    type: timestamp
    missing: {constant: "2024-01-01"}
    transforms: [month]
  - name: text
    type: string
    missing: {constant: ""}
    transforms: [{type: bag_of_words, top_k: 20}]
  - {name: y, type: string}
"""

N = 600
MARKERS = ["", "NA", "null", " n/a "]


def _make_csv(path: str) -> None:
    rng = np.random.default_rng(3)
    num = rng.normal(10.0, 3.0, N).round(3)
    zeros = np.where(rng.random(N) < 0.6, 0.0, rng.exponential(5.0, N).round(2))
    cnt = rng.poisson(3.0, N)
    flag = rng.choice(["true", "false", "yes"], N)
    cat = rng.choice(["a", "b", "c", "d"], N, p=[0.5, 0.3, 0.15, 0.05])
    seen = [f"2024-{m:02d}-15" for m in rng.integers(1, 13, N)]
    words = np.array(["red", "blue", "cab", "rain"])
    text = [" ".join(rng.choice(words, rng.integers(1, 4))) for _ in range(N)]
    y = rng.choice(["low", "mid", "high"], N, p=[0.5, 0.3, 0.2])
    cells = {"num": [repr(float(v)) for v in num], "zeros": [repr(float(v)) for v in zeros],
             "cnt": [str(v) for v in cnt], "flag": list(flag), "cat": list(cat), "seen": seen,
             "text": text, "y": list(y)}
    # Missing cells with every kind of marker, in every column but the label.
    for name in ("num", "cnt", "flag", "cat", "seen", "text"):
        for i in rng.choice(N, 40, replace=False):
            cells[name][i] = MARKERS[i % len(MARKERS)]
    lines = [",".join(cells)]
    lines += [",".join(cells[c][i] for c in cells) for i in range(N)]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from featurebridge.pipelines import analyze

    tmp = str(tmp_path_factory.mktemp("statistics"))
    csv_path = os.path.join(tmp, "data.csv")
    _make_csv(csv_path)
    spec_path = os.path.join(tmp, "spec.yaml")
    with open(spec_path, "w") as f:
        f.write(SPEC)
    out = os.path.join(tmp, "out")
    manifest = analyze.run(["--input", csv_path, "--spec", spec_path, "--output", out])
    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    return out, manifest, frame, tmp


def _stats(out, subdir):
    from featurebridge.transforms.stats_proto import load_statistics

    return load_statistics(os.path.join(out, subdir, layout.FEATURE_STATS_FILE))


def _features(dataset):
    return {"/".join(f.path.step): f for f in dataset.features}


def _custom(feature):
    return {c.name: c for c in feature.custom_stats}


def _missing(frame, name):
    text = frame[name].str.strip()
    return text.eq("") | text.isin(["NA", "null", "n/a"])


def test_raw_numbers_match_pandas(run):
    out, _, frame, _ = run
    ds = _stats(out, layout.PRE_TRANSFORM_STATS_DIR).datasets[0]
    assert ds.name == "pre_transform" and ds.num_examples == N
    features = _features(ds)
    assert list(features) == ["num", "zeros", "cnt", "flag", "cat", "seen", "text", "y"]
    for name in ("num", "zeros", "cnt"):
        f = features[name]
        missing = _missing(frame, name)
        # Float columns are float32 in the batches (and the graph).
        values = frame[name][~missing].astype(np.float32 if name != "cnt" else np.int64).to_numpy().astype(float)
        s = f.num_stats
        assert (s.common_stats.num_missing, s.common_stats.num_non_missing) == (missing.sum(), len(values))
        assert s.min == values.min() and s.max == values.max()
        assert s.mean == pytest.approx(values.mean(), rel=1e-9)
        assert s.std_dev == pytest.approx(values.std(), rel=1e-9)
        assert s.num_zeros == (values == 0).sum()
        # The quantile sketch's bound (epsilon 0.01) on the median's rank.
        rank = (values < s.median).mean(), (values <= s.median).mean()
        assert rank[0] - 0.02 <= 0.5 <= rank[1] + 0.02
        kinds = {h.type: h for h in s.histograms}
        assert set(kinds) == {0, 1}  # STANDARD, QUANTILES
        quantiles = kinds[1]
        assert len(quantiles.buckets) == 10 and quantiles.buckets[0].low_value == values.min()
        assert sum(b.sample_count for b in quantiles.buckets) == pytest.approx(len(values))
        assert sum(b.sample_count for b in kinds[0].buckets) == pytest.approx(len(values))
        assert ("distinct" in _custom(f)) == (name == "cnt")
    assert _custom(features["cnt"])["distinct"].num == frame["cnt"][~_missing(frame, "cnt")].nunique()
    assert features["num"].type == 1 and features["cnt"].type == 0  # FLOAT, INT


def test_raw_strings_top_values_and_distinct_match_pandas(run):
    out, _, frame, _ = run
    features = _features(_stats(out, layout.PRE_TRANSFORM_STATS_DIR).datasets[0])
    for name in ("cat", "seen", "text"):
        f = features[name]
        assert f.type == 2  # STRING
        values = frame[name][~_missing(frame, name)]
        s = f.string_stats
        assert s.common_stats.num_non_missing == len(values)
        assert s.unique == values.nunique()
        expected = values.value_counts()
        top = [(v.value, v.frequency) for v in s.top_values]
        assert len(top) == min(20, len(expected)) and top[0][1] == expected.iloc[0]
        assert dict(top) == {k: v for k, v in expected.items() if k in dict(top)}
        assert [c for _, c in top] == list(expected.iloc[:len(top)])
        assert s.avg_length == pytest.approx(values.str.len().mean())


def test_count_missing_markers_matches_pandas(run):
    """The readers' rule on a raw chunk (all text, as the CSV reader gives it), used rows only."""
    import pyarrow.csv as pv

    from featurebridge.transforms.data_stats import count_missing_markers
    from featurebridge.transforms.spec import FeatureSpec
    from featurebridge.transforms.validation import chunk_to_batch

    _, _, frame, tmp = run
    spec = FeatureSpec.from_text(SPEC, trusted=True)
    names = list(frame.columns)
    table = pv.read_csv(os.path.join(tmp, "data.csv"), convert_options=pv.ConvertOptions(
        column_types={n: pa.string() for n in names}, strings_can_be_null=False))
    keep = np.arange(N) % 7 != 0
    counts = count_missing_markers(table, spec, keep)
    # The readers' shortcut: only the cells their batch holds as missing are looked at.
    batch, _ = chunk_to_batch("data.csv", table.filter(pa.array(keep)), np.flatnonzero(keep) + 2, spec, False)
    assert count_missing_markers(table, spec, keep, batch=batch) == counts
    for name in ("num", "cnt", "cat", "text"):
        text = frame[name].str.strip()[keep]
        expected = {m: int(n) for m, n in {"<empty>": (text == "").sum(), "NA": (text == "NA").sum(),
                                           "null": (text == "null").sum(), "n/a": (text == "n/a").sum()}.items() if n}
        assert counts[name] == expected
    assert "y" not in counts
    native = pa.table({"num": pa.array([1.0, float("nan"), None]), "flag": pa.array([True, None, None])})
    spec2 = FeatureSpec.from_text(
        "columns: [{name: num, type: float, transforms: [zscore]}, {name: flag, type: bool}]", trusted=True)
    assert count_missing_markers(native, spec2) == {"num": {"<null>": 1, "<nan>": 1}, "flag": {"<null>": 2}}


def test_missing_counted_by_marker(run):
    out, manifest, frame, _ = run
    features = _features(_stats(out, layout.PRE_TRANSFORM_STATS_DIR).datasets[0])
    for name in ("num", "cat"):
        text = frame[name].str.strip()
        expected = {"<empty>": int((text == "").sum()), "NA": int((text == "NA").sum()),
                    "null": int((text == "null").sum()), "n/a": int((text == "n/a").sum())}
        custom = _custom(features[name])
        got = {k[len("missing_by_marker/"):]: int(v.num) for k, v in custom.items() if k.startswith("missing_by_marker/")}
        assert got == expected
        assert manifest["statistics"]["missing_by_marker"][name] == expected
        assert manifest["statistics"]["raw"][name]["missing_share"] == pytest.approx(sum(expected.values()) / N, abs=1e-6)


def test_label_class_counts_are_exact(run):
    out, _, frame, _ = run
    y = _features(_stats(out, layout.PRE_TRANSFORM_STATS_DIR).datasets[0])["y"]
    classes = {b.label: b.sample_count for b in _custom(y)["class_counts"].rank_histogram.buckets}
    assert classes == frame["y"].value_counts().to_dict()
    # What the serving export names a binary string label's classes from.
    from featurebridge.transforms.stats_proto import class_counts

    assert dict(class_counts(_stats(out, layout.PRE_TRANSFORM_STATS_DIR), "y")) == classes
    assert class_counts(_stats(out, layout.PRE_TRANSFORM_STATS_DIR), "no_such_feature") == []


def test_transformed_statistics_match_the_written_examples(run):
    from tests.analyze_helpers import read_transformed

    out, _, _, _ = run
    ds = _stats(out, layout.POST_TRANSFORM_STATS_DIR).datasets[0]
    assert ds.name == "post_transform" and ds.num_examples == N
    features = _features(ds)
    examples = read_transformed(out)
    assert set(features) == set(examples)
    for name in ("num_zscore", "zeros_bucketize", "cnt_identity", "y"):
        values = np.asarray(examples[name], np.float64)
        s = features[name].num_stats
        assert s.common_stats.num_missing == 0 and s.common_stats.num_non_missing == N
        assert s.mean == pytest.approx(values.mean(), rel=1e-6, abs=1e-6)
        assert s.std_dev == pytest.approx(values.std(), rel=1e-5, abs=1e-6)
        assert (s.min, s.max) == pytest.approx((values.min(), values.max()), rel=1e-6)
    bag = features["text_bag_of_words"]
    stats = bag.num_stats if bag.HasField("num_stats") else bag.string_stats
    values = examples["text_bag_of_words"]
    assert stats.common_stats.tot_num_values == sum(len(v) for v in values)


def test_raw_metadata_loads_with_tft(run):
    import tensorflow_transform as tft

    out, manifest, _, _ = run
    output = tft.TFTransformOutput(out)
    spec = output.raw_feature_spec()
    assert set(spec) == {"num", "zeros", "cnt", "flag", "cat", "seen", "text", "y"}
    assert output.raw_metadata.schema.feature
    assert os.path.join(layout.RAW_METADATA_DIR, "schema.pbtxt") in manifest["outputs"]
    for subdir in (layout.PRE_TRANSFORM_STATS_DIR, layout.POST_TRANSFORM_STATS_DIR):
        assert os.path.join(subdir, layout.FEATURE_STATS_FILE) in manifest["outputs"]


def test_buckets_lost_to_ties_are_a_warning(run):
    _, manifest, _, _ = run
    (warning,) = [w for w in manifest["warnings"] if "zeros_bucketize" in w]
    assert "column 'zeros'" in warning and "asked for 10 quantile buckets" in warning
    assert "distinct values (0 x" in warning and "fewer buckets" in warning


def test_baseline_must_be_an_analyze_output_with_statistics(run, tmp_path):
    from featurebridge.pipelines import analyze
    from featurebridge.transforms.errors import UsageError

    out, _, _, tmp = run
    argv = ["--input", os.path.join(tmp, "data.csv"), "--spec", os.path.join(tmp, "spec.yaml"),
            "--output", str(tmp_path / "second")]
    with pytest.raises(UsageError, match=r"--baseline '.*nowhere' is not a directory; pass the --output"):
        analyze.run([*argv, "--baseline", str(tmp_path / "nowhere")])
    with pytest.raises(UsageError, match=r"is a directory without pre_transform_stats/FeatureStats.pb"):
        analyze.run([*argv, "--baseline", str(tmp_path)])
    assert not os.path.exists(tmp_path / "second")


def test_combine_on_no_batches_and_all_missing_columns():
    """No data at all, and a column with no value: zeros, no min/max, no histogram."""
    from featurebridge.transforms.data_stats import FeaturePlan, FeatureStatsCombineFn
    from featurebridge.transforms.stats_proto import build_statistics

    fn = FeatureStatsCombineFn([FeaturePlan("x", "numeric", "FLOAT"), FeaturePlan("s", "string", "STRING")])
    empty = fn.extract_output(fn.create_accumulator())
    ds = build_statistics(empty, "pre_transform").datasets[0]
    assert ds.num_examples == 0 and [f.num_stats.common_stats.num_missing for f in ds.features] == [0, 0]
    batch = pa.RecordBatch.from_arrays(
        [pa.array([[], []], pa.large_list(pa.float32())), pa.array([[b"a"], []], pa.large_list(pa.large_binary()))],
        names=["x", "s"])
    acc = fn.merge_accumulators([fn.add_input(fn.create_accumulator(), batch), fn.create_accumulator()])
    x, s = build_statistics(fn.extract_output(acc), "pre_transform").datasets[0].features
    assert x.num_stats.common_stats.num_missing == 2 and not x.num_stats.histograms and x.num_stats.max == 0
    assert s.string_stats.common_stats.num_missing == 1 and s.string_stats.top_values[0].value == "a"
    # Transformed batches: columns found from the batches, typed by Arrow.
    discover = FeatureStatsCombineFn(exclude=["key"])
    acc = discover.add_input(discover.create_accumulator(), pa.RecordBatch.from_arrays(
        [pa.array([1, 2]), pa.array(["k1", "k2"])], names=["ids", "key"]))
    (ids,) = discover.extract_output(acc)["features"]
    assert (ids["type"], ids["count"], ids["mean"]) == ("INT", 2, 1.5)
