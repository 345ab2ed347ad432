"""The analyze pass end to end on the DirectRunner, checked against independent
numpy oracles on the same data. One shared pipeline run serves most tests."""

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.analyze_helpers import analyze_and_check, quantile_rank_error, read_transformed

pytestmark = pytest.mark.slow

SPEC = """
key: id
label: {column: y, kind: binary, positive: "yes"}
columns:
  - {name: id, type: string}
  - name: num
    type: float
    missing: mean
    transforms: [zscore, scale_0_1, {type: bucketize, num_buckets: 5}]
  - name: cnt
    type: int
    missing: median
    transforms: [{type: min_max, output_min: -1, output_max: 1}, log1p]
  - name: cat
    type: string
    missing: most_frequent
    transforms: [{type: vocabulary, top_k: 20, num_oov_buckets: 2}]
  - name: text
    type: string
    missing: {constant: ""}
    transforms: [{type: bag_of_words, top_k: 50}]
  - {name: y, type: string}
crosses:
  - {columns: [cat, cnt], hash_buckets: 64}
"""

N = 3000


def _make_data(seed=7):
    rng = np.random.default_rng(seed)
    num = rng.lognormal(3.0, 0.8, N)
    num_missing = rng.random(N) < 0.1
    cnt = rng.poisson(4.0, N)
    cnt_missing = rng.random(N) < 0.05
    # Category counts with deliberate ties (c05/c06/c07 share a count).
    counts = [400, 300, 250, 200, 150, 120, 120, 120, 100, 90] + [60] * 10 + [20] * 10 + [5] * 5
    cats = np.array([f"c{i:02d}" for i, c in enumerate(counts) for _ in range(c)])
    cats = np.concatenate([cats, np.array(["c00"] * (N - len(cats)))])
    rng.shuffle(cats)
    # Missing only among "c00" rows, so the tied counts below stay exact.
    cat_missing = (rng.random(N) < 0.03) & (cats == "c00")
    words = np.array(["fast", "slow", "red", "blue", "cab", "tip", "airport", "rain"])
    texts = [" ".join(rng.choice(words, rng.integers(0, 5))) for _ in range(N)]
    y = np.where(num + rng.normal(0, 5, N) > 25, "yes", "no")
    lines = ["id,num,cnt,cat,text,y"]
    for i in range(N):
        lines.append(
            ",".join(
                [
                    f"r{i}",
                    ("nan" if i % 2 else "") if num_missing[i] else repr(float(num[i])),
                    "" if cnt_missing[i] else str(cnt[i]),
                    "" if cat_missing[i] else cats[i],
                    texts[i],
                    y[i],
                ]
            )
        )
    bad = ["b1,oops,1,c00,x,yes", "b2,1.0,2,c00,x,", "b3,1.0,2.5,c00,x,no", "b4,1.0,2"]
    frame = dict(
        num=np.where(num_missing, np.nan, num),
        cnt=np.where(cnt_missing, -1, cnt),
        cnt_missing=cnt_missing,
        cat=np.where(cat_missing, None, cats),
        y=y,
    )
    return "\n".join(lines + bad) + "\n", frame, len(bad)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("analyze"))
    csv_text, frame, n_bad = _make_data()
    result = analyze_and_check(tmp, SPEC, csv_text)
    return result, frame, n_bad, tmp


def test_rows_reconcile_and_rejected_rows_have_reasons(run):
    result, _, n_bad, _ = run
    rows = result.manifest["rows"]
    assert rows["read"] == N + n_bad
    assert rows["used"] == N and rows["rejected"] == n_bad
    assert rows["read"] == rows["used"] + rows["rejected"]
    reasons = {(r["row"], r["column"]): r["reason"] for r in result.rejected}
    assert reasons == {
        (N + 1, "num"): "not a valid float",
        (N + 2, "y"): "missing value and the spec says reject",
        (N + 3, "cnt"): "not a valid int (write it in decimal digits, e.g. -42 or 42.0)",
        (N + 4, None): "row has 3 fields, the header has 6",
    }
    assert len(result.transformed["y"]) == N


def test_mean_fill_and_zscore_match_numpy(run):
    result, frame, _, _ = run
    num = frame["num"]
    mean_fill = np.nanmean(num)
    filled = np.where(np.isnan(num), np.float32(mean_fill), num).astype(np.float64)
    c = result.constants
    assert c["columns"]["num"]["fill_value"] == pytest.approx(mean_fill, rel=1e-5)
    z = c["features"]["num_zscore"]
    assert z["mean"] == pytest.approx(filled.mean(), rel=1e-5)
    assert z["var"] == pytest.approx(filled.var(), rel=1e-4)
    assert z["std"] == pytest.approx(np.sqrt(z["var"]))
    got = np.array(result.transformed["num_zscore"])
    np.testing.assert_allclose(got, (filled - z["mean"]) / z["std"], rtol=1e-4, atol=1e-5)


def test_scale_0_1_uses_finite_min_max_and_never_a_sigmoid(run):
    result, frame, _, _ = run
    num = frame["num"]
    s = result.constants["features"]["num_scale_0_1"]
    assert s["min"] == pytest.approx(np.nanmin(num), rel=1e-6)
    assert s["max"] == pytest.approx(np.nanmax(num), rel=1e-6)
    filled = np.where(np.isnan(num), result.constants["columns"]["num"]["fill_value"], num)
    got = np.array(result.transformed["num_scale_0_1"])
    np.testing.assert_allclose(got, (filled - s["min"]) / (s["max"] - s["min"]), atol=1e-6)
    assert got.min() == pytest.approx(0.0) and got.max() == pytest.approx(1.0)


def test_quantile_boundaries_within_sketch_error_and_buckets_follow_them(run):
    result, frame, _, _ = run
    b = result.constants["features"]["num_bucketize"]
    assert len(b["boundaries"]) == 4
    filled = np.where(np.isnan(frame["num"]), result.constants["columns"]["num"]["fill_value"], frame["num"])
    assert quantile_rank_error(filled, b["boundaries"], 5) <= 0.01 + 1e-9
    expected = np.searchsorted(np.array(b["boundaries"], np.float32), filled.astype(np.float32), side="right")
    np.testing.assert_array_equal(result.transformed["num_bucketize"], expected)


def test_median_fill_and_min_max(run):
    result, frame, _, _ = run
    present = frame["cnt"][~frame["cnt_missing"]]
    fill = result.constants["columns"]["cnt"]["fill_value"]
    assert isinstance(fill, int)
    assert abs(fill - np.median(present)) <= 1
    filled = np.where(frame["cnt_missing"], fill, frame["cnt"]).astype(np.float64)
    m = result.constants["features"]["cnt_min_max"]
    assert (m["min"], m["max"]) == (filled.min(), filled.max())
    expected = -1 + (filled - m["min"]) / (m["max"] - m["min"]) * 2
    np.testing.assert_allclose(result.transformed["cnt_min_max"], expected, atol=1e-6)
    np.testing.assert_allclose(result.transformed["cnt_log1p"], np.log1p(filled), rtol=1e-6)


def test_vocabulary_order_counts_and_tie_break(run):
    result, frame, _, _ = run
    cats = frame["cat"]
    fill = result.constants["columns"]["cat"]["fill_value"]
    filled = np.where(cats == None, fill, cats)  # noqa: E711 (elementwise)
    values, counts = np.unique(filled.astype(str), return_counts=True)
    # Documented order: count descending, ties by value descending.
    oracle = sorted(zip(values.tolist(), counts.tolist()), key=lambda vc: (-vc[1], tuple(-ord(ch) for ch in vc[0])))
    v = result.constants["features"]["cat_vocabulary"]
    assert fill == "c00"
    assert v["vocabulary_size"] == 20 and v["num_oov_buckets"] == 2
    assert [(e["value"], e["count"]) for e in v["top"]] == oracle[:20]
    assert [e["value"] for e in v["top"][5:8]] == ["c07", "c06", "c05"]
    ids = np.array(result.transformed["cat_vocabulary"])
    index = {value: i for i, (value, _) in enumerate(oracle[:20])}
    in_vocab = np.array([x in index for x in filled])
    np.testing.assert_array_equal(ids[in_vocab], [index[x] for x in filled[in_vocab]])
    assert set(ids[~in_vocab]) <= {20, 21}
    path = os.path.join(result.output_dir, v["vocabulary_file"])
    assert os.path.exists(path)


def test_unseen_value_maps_to_an_oov_bucket(run):
    import tensorflow as tf

    result, _, _, _ = run
    out = result.tft_output()

    def sparse(values, dtype):
        return tf.SparseTensor(
            indices=[[i, 0] for i in range(len(values))], values=tf.constant(values, dtype), dense_shape=[len(values), 1]
        )

    raw = {
        "id": sparse(["a", "b"], tf.string),
        "num": sparse([10.0, 20.0], tf.float32),
        "cnt": sparse([1, 2], tf.int64),
        "cat": sparse(["never-seen", "c00"], tf.string),
        "text": sparse(["red cab", "zebra"], tf.string),
        "y": sparse(["yes", "no"], tf.string),
    }
    transformed = out.transform_raw_features(raw)
    ids = transformed["cat_vocabulary"].numpy().tolist()
    assert ids[0] in (20, 21) and ids[1] == 0
    assert transformed["y"].numpy().tolist() == [1, 0]


def test_text_and_cross_features_are_written(run):
    result, _, _, _ = run
    bow = result.transformed["text_bag_of_words"]
    assert any(len(ids) > 0 for ids in bow)
    assert all(0 <= i < 51 for ids in bow for i in ids)
    crosses = result.transformed["cat_x_cnt"]
    assert all(0 <= c < 64 for c in crosses)
    assert result.constants["features"]["text_bag_of_words"]["vocabulary_size"] == 8


def test_manifest_records_provenance(run):
    result, _, _, tmp = run
    m = result.manifest
    data = open(os.path.join(tmp, "out.csv"), "rb").read()
    assert m["inputs"] == [
        {"path": os.path.join(tmp, "out.csv"), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    ]
    assert m["spec_digest"].startswith("sha256:")
    for package in ("apache-beam", "tensorflow", "tensorflow-transform", "pyarrow", "featurebridge"):
        assert m["versions"][package] not in ("", "not installed")
    assert m["runner"] == "DirectRunner"
    assert "transform_fn/saved_model.pb" in m["outputs"]
    assert m["started"] <= m["finished"]
    on_disk = hashlib.sha256(open(os.path.join(result.output_dir, "constants.json"), "rb").read()).hexdigest()
    assert m["outputs"]["constants.json"]["sha256"] == on_disk
    assert not [p for p in os.listdir(tmp) if ".staging-" in p]


def test_rerun_gives_identical_constants_and_refuses_without_overwrite(run):
    from featurebridge.pipelines import analyze
    from featurebridge.transforms.staging import OutputExistsError

    result, _, _, tmp = run
    assets = os.path.join(result.output_dir, "transform_fn", "assets")

    def artifacts():
        files = {"constants.json": open(os.path.join(result.output_dir, "constants.json"), "rb").read()}
        for name in sorted(os.listdir(assets)):
            files[name] = open(os.path.join(assets, name), "rb").read()
        return files

    before = artifacts()
    assert len(before) >= 3  # constants.json plus vocabulary files
    argv = ["--input", os.path.join(tmp, "out.csv"), "--spec", os.path.join(tmp, "out.spec.yaml"), "--output", result.output_dir]
    with pytest.raises(OutputExistsError, match=r"already exists. Choose a new --output or pass --overwrite"):
        analyze.run(argv)
    analyze.run(argv + ["--overwrite"])
    # Byte-identical constants and vocabularies; the same transformed rows in the same order.
    assert artifacts() == before
    assert read_transformed(result.output_dir) == result.transformed


def test_all_rows_rejected_is_an_error_and_leaves_no_output(tmp_path):
    from featurebridge.transforms.errors import EmptyDataError

    with pytest.raises(Exception) as info:
        analyze_and_check(str(tmp_path), SPEC, "id,num,cnt,cat,text,y\nr1,bad,1,a,t,yes\nr2,1,1,a,t,\n", name="allbad")
    text = str(info.value)
    assert isinstance(info.value, EmptyDataError) or "EmptyDataError" in text
    assert "All 2 input rows were rejected" in text
    # The rejected/ folder goes with the failed run, so the error itself says why.
    assert "By column and reason: 1 x num: not a float; 1 x y: missing. For example: " in text
    assert "allbad.csv row 1, column 'num' = 'bad': not a valid float | " in text
    assert "allbad.csv row 2, column 'y' = '': missing value and the spec says reject." in text
    assert "then rerun; no output directory was written." in text
    assert not os.path.exists(tmp_path / "allbad")
    assert not [p for p in os.listdir(tmp_path) if ".staging-" in p]


@pytest.mark.parametrize("analyzer", ["auto", "tft"])
def test_a_fill_of_a_column_with_no_values_is_an_error(tmp_path, analyzer):
    """Both analyzer paths: no silent NaN (plain TFT) and no silent 0.0 default."""
    from featurebridge.transforms.errors import EmptyDataError

    spec = """
columns:
  - {name: x, type: float, missing: mean, transforms: [zscore]}
  - {name: c, type: string, transforms: [vocabulary]}
"""
    with pytest.raises(Exception) as info:
        analyze_and_check(str(tmp_path), spec, "x,c\n,a\n,b\n,a\n", name="nox", extra_argv=["--analyzer", analyzer])
    text = str(info.value)
    assert isinstance(info.value, EmptyDataError) or "EmptyDataError" in text
    assert "Column 'x' has no value in any of the 3 rows used, so its 'mean' fill cannot be computed" in text
    assert not os.path.exists(tmp_path / "nox")
    assert not [p for p in os.listdir(tmp_path) if ".staging-" in p]


def _cli(*args, cwd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    exe = os.path.join(os.path.dirname(sys.executable), "featurebridge")
    return subprocess.run([exe, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_cli_errors_say_what_to_do(tmp_path):
    (tmp_path / "spec.yaml").write_text("columns: [{name: a, type: double}]\n")
    (tmp_path / "d.csv").write_text("a\n1\n")
    bad_spec = _cli("analyze", "--input", "d.csv", "--spec", "spec.yaml", "--output", "o", cwd=tmp_path)
    assert bad_spec.returncode == 2
    assert "column 'a': field 'type' is 'double'; allowed: ['float', 'int', 'string', 'bool', 'timestamp']" in bad_spec.stderr
    assert "Traceback" not in bad_spec.stderr
    (tmp_path / "spec.yaml").write_text("columns: [{name: a, type: float, transforms: [zscore]}]\n")
    missing = _cli("analyze", "--input", "nothere/*.csv", "--spec", "spec.yaml", "--output", "o", cwd=tmp_path)
    assert missing.returncode == 2
    assert "No input files match 'nothere/*.csv'" in missing.stderr
    # A spec column absent from the header: one error, before the pipeline starts.
    (tmp_path / "spaced.csv").write_text("A b\n1\n")
    (tmp_path / "spec2.yaml").write_text("columns: [{name: a_b, type: float, transforms: [zscore]}]\n")
    absent = _cli("analyze", "--input", "spaced.csv", "--spec", "spec2.yaml", "--output", "o", cwd=tmp_path)
    assert absent.returncode == 2 and "Traceback" not in absent.stderr
    assert absent.stderr.count("required by the feature spec are not in the file") == 1, absent.stderr
    assert "spaced.csv: column(s) ['a_b'] required by the feature spec are not in the file (its columns: ['A b'])" in absent.stderr
    assert "The file has 'A b': add `source: \"A b\"` to spec column 'a_b'." in absent.stderr
    empty_csv = tmp_path / "empty.csv"
    empty_csv.write_text("a\n")
    empty = _cli("analyze", "--input", "empty.csv", "--spec", "spec.yaml", "--output", "o", cwd=tmp_path)
    assert empty.returncode != 0
    assert "The input has no data rows" in empty.stderr, empty.stderr[-2000:]
    assert not (tmp_path / "o").exists()


def test_users_own_preprocessing_fn(tmp_path):
    spec = "columns:\n  - {name: x, type: float, missing: {constant: 0}}\n  - {name: s, type: string, transforms: [vocabulary]}\n"
    result = analyze_and_check(
        str(tmp_path), spec, "x,s\n1,a\n2,b\n6,a\n",
        extra_argv=["--preprocessing_fn", "tests.user_preprocessing:preprocessing_fn"], name="user",
    )
    assert result.transformed["x_centered"] == [-2.0, -1.0, 3.0]
    assert result.transformed["s_id"] == [0, 1, 0]
    assert result.constants["preprocessing_fn"] == "custom"
    assert result.constants["vocabularies"]["user_s"]["lines"] == 2
    assert result.manifest["preprocessing_fn"] == "tests.user_preprocessing:preprocessing_fn"
    assert result.manifest["analyzer"] == "custom"  # a user's fn runs on plain TFT (the slow path)


def test_bad_preprocessing_fn_references_fail_before_the_pipeline(tmp_path):
    from featurebridge.transforms.preprocessing import load_preprocessing_fn

    with pytest.raises(ValueError, match=r"must look like 'package.module:function'; got 'nocolon'"):
        load_preprocessing_fn("nocolon")
    with pytest.raises(ValueError, match=r"Cannot import module 'no_such_module_xyz'.*PYTHONPATH"):
        load_preprocessing_fn("no_such_module_xyz:fn")
    with pytest.raises(ValueError, match=r"has no callable 'not_callable'"):
        load_preprocessing_fn("tests.user_preprocessing:not_callable")


# ---------------------------------------------------------------- clip, identity, hash, frequency threshold, n-grams, tf-idf

TEXT_SPEC = """
columns:
  - {name: n, type: float, missing: {constant: 0}, transforms: [{type: clip, min: 0, max: 10}]}
  - {name: k, type: int, missing: {constant: -1}, transforms: [identity, {type: hash, hash_buckets: 16}]}
  - {name: v, type: string, transforms: [{type: vocabulary, frequency_threshold: 5, num_oov_buckets: 1}]}
  - name: t
    type: string
    transforms: [{type: ngrams, ngram_range: [1, 2], top_k: 100}, {type: tfidf, vocab_size: 100}]
"""

TEXT_N = 300


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    rng = np.random.default_rng(11)
    n = rng.normal(5.0, 6.0, TEXT_N).round(3)
    k = rng.integers(0, 1000, TEXT_N)
    # v: "common*" values appear >= 5 times, "rare*" ones fewer.
    v = np.array([f"common{i % 4}" for i in range(TEXT_N - 12)] + [f"rare{i % 4}" for i in range(12)])
    rng.shuffle(v)
    words = np.array(["Cab", "tip", "rain", "airport", "fast", "red"])
    t = [" ".join(rng.choice(words, rng.integers(1, 6))) + ("!" if i % 7 == 0 else "") for i in range(TEXT_N)]
    lines = ["n,k,v,t"] + [f"{n[i]},{'' if i % 10 == 0 else k[i]},{v[i]},{t[i]}" for i in range(TEXT_N)]
    result = analyze_and_check(str(tmp_path_factory.mktemp("text")), TEXT_SPEC, "\n".join(lines) + "\n", name="text")
    return result, dict(n=n, k=np.where(np.arange(TEXT_N) % 10 == 0, -1, k), v=v, t=t)


def _vocabulary(result, name):
    """(token, count) per line of a vocabulary TFT wrote with frequencies (TFT
    writes a space inside a token as __SPACE__)."""
    entries = result.tft_output().vocabulary_by_name(name)
    return [(e.split(b" ", 1)[1].decode().replace("__SPACE__", " "), int(e.split(b" ", 1)[0])) for e in entries]


def test_clip_identity_and_hash_follow_their_formulas(text_run):
    import tensorflow as tf

    result, raw = text_run
    np.testing.assert_allclose(result.transformed["n_clip"], np.clip(raw["n"], 0, 10), rtol=1e-6)
    assert result.transformed["k_identity"] == raw["k"].tolist()  # a missing k is the constant -1
    expected = tf.strings.to_hash_bucket_fast(tf.strings.as_string(raw["k"]), 16).numpy().tolist()
    assert result.transformed["k_hash"] == expected


def test_frequency_threshold_keeps_frequent_values_only(text_run):
    result, raw = text_run
    vocab = _vocabulary(result, "v_vocabulary")
    values, counts = np.unique(raw["v"], return_counts=True)
    assert sorted(vocab) == sorted((str(a), int(b)) for a, b in zip(values, counts) if b >= 5)
    ids = {token: i for i, (token, _) in enumerate(vocab)}
    oov = len(vocab)  # one OOV bucket, right after the vocabulary
    assert result.transformed["v_vocabulary"] == [ids.get(x, oov) for x in raw["v"]]


def _tokens(text):
    return "".join(c if c.isalnum() or c.isspace() else " " for c in text.lower()).split()


def _grams(text):
    """Unigrams and bigrams (ngram_range [1, 2])."""
    tokens = _tokens(text)
    return tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:])]


def test_ngrams_and_tfidf_follow_their_formulas(text_run):
    from collections import Counter

    result, raw = text_run
    docs = [_grams(text) for text in raw["t"]]
    totals = Counter(g for d in docs for g in d)
    vocab = _vocabulary(result, "t_ngrams")
    assert sorted(vocab) == sorted(totals.items())  # every n-gram fits top_k 100
    assert [c for _, c in vocab] == sorted((c for _, c in vocab), reverse=True)
    ids = {token: i for i, (token, _) in enumerate(vocab)}
    assert [sorted(row) for row in result.transformed["t_ngrams"]] == [sorted(ids[g] for g in d) for d in docs]

    # tf-idf (unigrams, the default range): term frequency in the row
    # x (log((1 + rows) / (1 + rows with the term)) + 1).
    docs = [_tokens(text) for text in raw["t"]]
    tfidf_ids = {token: i for i, (token, _) in enumerate(_vocabulary(result, "t_tfidf"))}
    df = Counter(g for d in docs for g in set(d))
    for d, index, weight in zip(docs, result.transformed["t_tfidf_index"], result.transformed["t_tfidf_weight"]):
        counts = Counter(d)
        expected = {
            tfidf_ids[g]: c / len(d) * (np.log((1 + TEXT_N) / (1 + df[g])) + 1) for g, c in counts.items()
        }
        assert dict(zip(index, np.asarray(weight).tolist())) == pytest.approx(expected, rel=1e-5)
