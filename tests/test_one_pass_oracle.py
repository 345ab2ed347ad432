"""The one-pass analyzer (featurebridge.transforms.one_pass) against plain TFT analyzers.

One generated CSV, two real analyze jobs (DirectRunner, real TFT): the default
(`--analyzer auto`, the one pass) and `--analyzer tft` (the oracle). The spec
covers every transform type (each op class of featurebridge.transforms.ops),
every missing-value policy (mean and median of a float and an int column,
most_frequent of a string, an int and a float column, constant, reject), the
default text split (punctuation, upper case, non-ASCII letters) and an
explicit separator, a tf-idf whose vocabulary leaves n-grams out (so the
out-of-vocabulary document count matters, including for filled rows), and a
multiclass string label. Both runs must give the same constants.json
(quantile boundaries within the sketch's bound), byte-identical vocabulary
files, the same transformed values, the same serving outputs on raw examples
with missing and unseen values, and the same counts. No timings here.

Plain TFT cannot analyze a most_frequent fill of an int column before a table
lookup (the last test), nor a most_frequent fill before tf-idf (a TFT/Beam
failure on the DirectRunner: 'watermark-pending bundles did not execute').
Those two columns (FILLED_AS_CONSTANTS) are most_frequent in the one pass's
spec and, in the oracle's, the constants the data makes most frequent: the
same filled data, so the same results.
"""

from __future__ import annotations

import csv
import datetime
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.analyze_helpers import analyze_and_check, quantile_rank_error

pytestmark = pytest.mark.slow

ROWS = 1500
SPEC = """
label: {column: y, kind: multiclass}
columns:
  - {name: id, type: int, transforms: [identity]}
  - name: f_mean
    type: float
    missing: mean
    transforms: [zscore, {type: bucketize, num_buckets: 5}, {type: min_max, output_min: -1, output_max: 1}]
  - {name: i_mean, type: int, missing: mean, transforms: [zscore, identity]}
  - name: f_med
    type: float
    missing: median
    transforms: [scale_0_1, {type: clip, min: 0, max: 5}, log1p]
  - name: i_med
    type: int
    missing: median
    transforms:
      - identity
      - {type: bucketize, num_buckets: 4}
      - {type: min_max, output_min: -5, output_max: 5}
      - {type: vocabulary, num_oov_buckets: 2}
  - {name: f_mf, type: float, missing: most_frequent, transforms: [identity, zscore]}
  - name: i_mf
    type: int
    missing: most_frequent
    transforms: [identity, {type: hash, hash_buckets: 13}]  # a vocabulary: see the test at the end
  - name: s_mf
    type: string
    missing: most_frequent
    transforms:
      - identity
      - {type: vocabulary, top_k: 25, frequency_threshold: 3, num_oov_buckets: 0}  # top_k cuts a tie
      - {type: vocabulary, name: s_mf_frequent, frequency_threshold: 8}  # the threshold cuts a tie
  - name: s_const
    type: string
    missing: {constant: unknown}
    transforms: [{type: vocabulary}, {type: hash, hash_buckets: 7}]
  - {name: f_const, type: float, missing: {constant: -1.5}, transforms: [zscore, scale_0_1]}
  - {name: c, type: float, transforms: [scale_0_1]}
  - {name: f_rej, type: float, missing: reject, transforms: [log1p, {type: clip, max: 3}]}
  - {name: b, type: bool, missing: {constant: false}, transforms: [identity, vocabulary, {type: hash, hash_buckets: 5}]}
  - name: ts
    type: timestamp
    missing: {constant: "2024-01-01"}
    transforms: [year, month, day, day_of_week, day_of_year, hour, minute]
  - name: text
    type: string
    missing: {constant: "Nothing to SAY, zzz!"}
    transforms:
      - {type: ngrams, ngram_range: [1, 2], top_k: 30, num_oov_buckets: 2}
      - bag_of_words
      - {type: tfidf, vocab_size: 20, ngram_range: [1, 2]}
  - name: tags
    type: string
    missing: {constant: "red,Rare Tag"}
    transforms:
      - {type: bag_of_words, separator: ",", ngram_range: [1, 2]}
      - {type: ngrams, separator: ",", top_k: 4, num_oov_buckets: 0}
      - {type: tfidf, separator: ",", vocab_size: 6, ngram_range: [1, 2]}
  # Plain TFT cannot run these two (see the last tests): its run gets FILLED_AS_CONSTANTS.
  - name: i_mf_lookup
    type: int
    missing: most_frequent
    transforms: [{type: vocabulary, num_oov_buckets: 2}]
  - name: tags_mf
    type: string
    missing: most_frequent
    transforms:
      - {type: tfidf, separator: ",", vocab_size: 4, ngram_range: [1, 2]}
      - {type: bag_of_words, separator: ","}
  - {name: y, type: string}
crosses:
  - {columns: [s_mf, i_mf], hash_buckets: 50}
  - {columns: [b, s_const, i_mean], hash_buckets: 11}
"""

WORDS = [
    "Hello,", "WORLD!", "café", "naïve", "Straße", "Жук", "don't", "e-mail", "42", "x_y", "the", "The", "a",
    "quick", "brown", "fox", "jumps", "over", "lazy", "dog.", "(dog)", "Ünïcode", "über", "SAY", "nothing",
    "to", "data", "big", "small", "tiny", "huge", "red", "green", "blue", "one", "two", "three", "four",
]
TAGS = ["red", "green", "blue", "big data", "Café", "x"]
# The most frequent whole tags value, and the fill of a missing one: its
# n-grams are outside the tf-idf vocabularies, so filled rows hold an OOV n-gram.
TOP_TAGS = "red,Rare Tag"
CLASSES = ["cat", "dog", "bird", "fish", "Émeu"]
HEADER = ["id", "f_mean", "i_mean", "f_med", "i_med", "f_mf", "i_mf", "s_mf", "s_const", "f_const", "c",
          "f_rej", "b", "ts", "text", "tags", "i_mf_lookup", "tags_mf", "y"]
# The oracle's spec: SPEC with these most_frequent fills written as the
# constants the data makes most frequent (7 and 10 tie: the greater text).
FILLED_AS_CONSTANTS = {"i_mf_lookup": "{constant: 7}", "tags_mf": '{constant: "%s"}' % TOP_TAGS}
BUCKETIZED = {"f_mean_bucketize": ("f_mean", 5), "i_med_bucketize": ("i_med", 4)}


def _maybe(rng, p: float, value: str) -> str:
    return "" if rng.random() < p else value


def _i_mf(i: int) -> str:
    """Ints whose two most frequent values tie (7 and 10, 120 rows each): as
    text "7" > "10", so the fill is 7 (TFT's tie rule), not the larger 10."""
    if i % 25 == 0:
        return ""
    if i % 25 in (1, 2):
        return "7"
    if i % 25 in (3, 4):
        return "10"
    return str(int(i * 7919 % 31) + 11)  # 11..41, each well under 120 rows


def _row(i: int, rng) -> list:
    ts_forms = ["%Y-%m-%d", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S.123Z", "%Y-%m-%d %H:%M:%SZ"]
    when = datetime.datetime(2021, 1, 1) + datetime.timedelta(minutes=int(rng.integers(0, 4 * 365 * 24 * 60)))
    n_words = int(rng.integers(0, 9))
    words = [WORDS[min(int(rng.zipf(1.4)) - 1, len(WORDS) - 1)] if rng.random() < 0.6 else rng.choice(WORDS)
             for _ in range(n_words)]
    if rng.random() < 0.1:
        tags = TOP_TAGS
    else:
        picked = [t for t in TAGS if rng.random() < 0.35] + (["Tag " + str(int(rng.integers(0, 40)))] if rng.random() < 0.3 else [])
        tags = ",".join(picked) if picked else "x"
        if rng.random() < 0.03:
            tags = "red,,blue"  # an empty token with an explicit separator
    return [
        str(i),
        _maybe(rng, 0.1, f"{rng.normal(5, 2):.4f}"),
        _maybe(rng, 0.08, str(int(rng.poisson(4.4)))),
        _maybe(rng, 0.07, f"{rng.lognormal(0, 1) - 0.5 if rng.random() > 0.01 else -1.5:.4f}"),
        _maybe(rng, 0.06, str(int(rng.integers(-20, 60)))),
        _maybe(rng, 0.1, str(rng.choice(["0.5", "1.25", "2.0", "3.75", "-0.1"], p=[0.2, 0.35, 0.25, 0.1, 0.1]))),
        _i_mf(i),
        _maybe(rng, 0.05, rng.choice(["w w", "café", "Ünïcode"]) if rng.random() < 0.2 else f"s{int(rng.zipf(1.3)) % 60}"),
        _maybe(rng, 0.15, str(rng.choice(["alpha", "beta", "gamma", "delta"]))),
        _maybe(rng, 0.1, f"{rng.exponential(2):.3f}"),
        "2.5",  # one distinct value: TFT's min >= max branch (sigmoid), warned about
        _maybe(rng, 0.03, f"{rng.exponential(1):.4f}"),
        _maybe(rng, 0.05, str(rng.choice(["true", "false", "yes", "0", "T"]))),
        _maybe(rng, 0.05, when.strftime(str(rng.choice(ts_forms)))),
        _maybe(rng, 0.1, " ".join(words)),
        (tags := _maybe(rng, 0.08, tags)),
        _i_mf(i),  # i_mf_lookup and tags_mf: copies (a file column is read once)
        tags,
        str(rng.choice(CLASSES, p=[0.4, 0.3, 0.2, 0.08, 0.02])),
    ]


def _csv(path: str) -> None:
    rng = np.random.default_rng(14)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        for i in range(ROWS):
            writer.writerow(_row(i, rng))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("one_pass_oracle"))
    data = os.path.join(tmp, "data.csv")
    _csv(data)
    one = analyze_and_check(tmp, SPEC, input_path=data, name="one_pass")
    tft = analyze_and_check(tmp, oracle_spec(), input_path=data, name="tft", extra_argv=["--analyzer", "tft"])
    return one, tft, data


def oracle_spec() -> str:
    """SPEC with the FILLED_AS_CONSTANTS columns' fills as constants."""
    import yaml

    spec = yaml.safe_load(SPEC)
    for column in spec["columns"]:
        if column["name"] in FILLED_AS_CONSTANTS:
            column["missing"] = yaml.safe_load(FILLED_AS_CONSTANTS[column["name"]])
    return yaml.safe_dump(spec, allow_unicode=True, sort_keys=False)


def _filled(data: str, column: str, fill: float) -> np.ndarray:
    """The column's values as the analyzers see them (used rows, missing filled), float32."""
    import pandas as pd

    df = pd.read_csv(data, keep_default_na=False, dtype=str)
    used = (df["f_rej"] != "") & (pd.to_numeric(df["f_med"].replace("", "0")) > -1)
    values = pd.to_numeric(df.loc[used, column].replace("", np.nan))
    return values.fillna(fill).to_numpy(np.float32)


def test_default_run_took_the_one_pass_analyzer(runs):
    """manifest.json records what computed the statistics (the transform_fns
    themselves cannot tell: TFT bakes both the same way)."""
    one, tft, _ = runs
    assert one.manifest["analyzer"] == "one_pass"
    assert tft.manifest["analyzer"] == "tft"
    assert tft.manifest["pipeline_options"].get("analyzer") == "tft"
    assert one.manifest["preprocessing_fn"] is None


def test_same_counts_and_warnings(runs):
    one, tft, _ = runs
    assert one.manifest["rows"] == tft.manifest["rows"]
    rows = one.manifest["rows"]
    assert rows["read"] == ROWS and rows["used"] + rows["rejected"] == ROWS
    assert rows["rejected"] > 0  # f_rej's missing values and f_med's log1p domain
    assert one.manifest.get("warnings") == tft.manifest.get("warnings")
    assert any(w.startswith("c_scale_0_1:") for w in one.manifest["warnings"])
    assert sorted(r.get("reason", "") for r in one.rejected) == sorted(r.get("reason", "") for r in tft.rejected)
    assert sorted(one.transformed) == sorted(tft.transformed)
    assert len(one.transformed["id_identity"]) == rows["used"]


def _close(got, want, where: str) -> None:
    if isinstance(want, float) or isinstance(got, float):
        assert got == pytest.approx(want, rel=1e-5, abs=1e-6), f"{where}: one pass {got!r}, tft {want!r}"
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: one pass {got!r}, tft {want!r}"
        for i, (g, w) in enumerate(zip(got, want)):
            _close(g, w, f"{where}[{i}]")
    elif isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want), f"{where}: one pass {got!r}, tft {want!r}"
        for key in want:
            _close(got[key], want[key], f"{where}.{key}")
    else:
        assert got == want, f"{where}: one pass {got!r}, tft {want!r}"


def test_same_constants(runs):
    one, tft, data = runs
    assert sorted(one.constants) == sorted(tft.constants)
    for section in one.constants:
        if section not in ("columns", "features"):
            _close(one.constants[section], tft.constants[section], section)
    assert sorted(one.constants["columns"]) == sorted(tft.constants["columns"])
    for name, entry in tft.constants["columns"].items():
        got = dict(one.constants["columns"][name])
        if name in FILLED_AS_CONSTANTS:
            assert (got.pop("missing_policy"), entry.pop("missing_policy")) == ("most_frequent", "constant")
        _close(got, entry, f"columns.{name}")
    assert sorted(one.constants["features"]) == sorted(tft.constants["features"])
    for name, entry in tft.constants["features"].items():
        got = one.constants["features"][name]
        assert sorted(got) == sorted(entry), name
        for key, value in entry.items():
            if key == "boundaries":
                continue
            _close(got[key], value, f"features.{name}.{key}")
    # Quantile boundaries: each run's within the sketch's bound of the exact ranks.
    for feature, (column, buckets) in BUCKETIZED.items():
        for run in (one, tft):
            fill = run.constants["columns"][column]["fill_value"]
            bounds = np.ravel(run.constants["features"][feature]["boundaries"])
            assert len(bounds) == buckets - 1, feature
            err = quantile_rank_error(_filled(data, column, fill), bounds, buckets)
            assert err <= min(1 / buckets, 0.01) + 1e-9, (feature, run.output_dir, err)


def test_fills_follow_their_policies(runs):
    """The data-dependent fills, spelled out: an int mean rounds, a most
    frequent tie goes to the greater text."""
    for run in runs[:2]:
        columns = run.constants["columns"]
        assert float(columns["i_mean"]["fill_value"]).is_integer()
        assert columns["i_mf"]["fill_value"] in (7, "7")
        assert columns["f_mf"]["fill_value"] == pytest.approx(1.25)
        assert columns["i_mf_lookup"]["fill_value"] in (7, "7")
        assert columns["tags_mf"]["fill_value"] == TOP_TAGS


def test_same_vocabulary_files(runs):
    one, tft, _ = runs
    assets_one = os.path.join(one.output_dir, "transform_fn", "assets")
    assets_tft = os.path.join(tft.output_dir, "transform_fn", "assets")
    names = sorted(os.listdir(assets_tft))
    # The oracle writes FILLED_AS_CONSTANTS as constants: no fill vocabulary for those.
    fills = sorted(f"fill_most_frequent_{name}" for name in FILLED_AS_CONSTANTS)
    assert sorted(os.listdir(assets_one)) == sorted(names + fills)
    assert len(names) >= 12  # every vocabulary op, the most_frequent fills and the label
    for name in names:
        with open(os.path.join(assets_one, name), "rb") as f:
            got = f.read()
        with open(os.path.join(assets_tft, name), "rb") as f:
            want = f.read()
        assert got == want, f"{name}:\none pass {got[:600]!r}\ntft      {want[:600]!r}"


def _same_values(name: str, got: list, want: list, ids: list) -> None:
    bad = []
    for row_id, g, w in zip(ids, got, want):
        try:
            _close(g, w, name)
        except AssertionError:
            bad.append((row_id, g, w))
    assert not bad, f"{name}: {len(bad)} of {len(ids)} rows differ; first (id, one pass, tft): {bad[:5]}"


def test_same_transformed_values(runs):
    one, tft, _ = runs
    order_one = np.argsort(one.transformed["id_identity"], kind="stable")
    order_tft = np.argsort(tft.transformed["id_identity"], kind="stable")
    ids = [tft.transformed["id_identity"][i] for i in order_tft]
    assert [one.transformed["id_identity"][i] for i in order_one] == ids
    for name in sorted(tft.transformed):
        got = [one.transformed[name][i] for i in order_one]
        want = [tft.transformed[name][i] for i in order_tft]
        if name in BUCKETIZED:
            b_one = one.constants["features"][name]["boundaries"]
            b_tft = tft.constants["features"][name]["boundaries"]
            if b_one != b_tft:  # within the sketch's bound (test_same_constants): few rows may move
                assert np.mean(np.asarray(got) != np.asarray(want)) <= 0.02, name
                continue
        _same_values(name, got, want, ids)


# Raw examples for serving: row 0 missing everywhere, row 1 seen values, row 2
# unseen or odd values (null markers, NaN, out-of-range numbers, a non-ISO timestamp).
SERVING = {
    "id": ("int64", [1, 2, 3]),
    "f_mean": ("float32", [None, 4.0, 100.0]),
    "i_mean": ("int64", [None, 4, 999]),
    "f_med": ("float32", [None, 0.5, float("nan")]),
    "i_med": ("int64", [None, 10, -500]),
    "f_mf": ("float32", [None, 1.25, 7.777]),
    "i_mf": ("int64", [None, 10, 123456]),
    "s_mf": ("string", [None, "s1", "never-seen"]),
    "s_const": ("string", [None, "beta", "NA"]),
    "f_const": ("float32", [None, 2.0, -3.0]),
    "c": ("float32", [None, 2.5, -7.0]),
    "f_rej": ("float32", [None, 0.5, 9.0]),
    "b": ("int64", [None, 1, 0]),
    "ts": ("string", [None, "2023-06-15T13:45:00Z", "15/06/2023"]),
    "text": ("string", [None, "Hello, WORLD! café don't", "Brand NEW wörds, never seen; über"]),
    "tags": ("string", [None, "red,big data", "Café,,unseen tag"]),
    "i_mf_lookup": ("int64", [None, 10, 123456]),
    "tags_mf": ("string", [None, "red,big data", "Café,,unseen tag"]),
    "y": ("string", [None, "dog", "unicorn"]),
}

_SERVE = r"""
import json, sys
import tensorflow as tf
import tensorflow_transform as tft

raw_spec = json.loads(sys.argv[1])

def sp(dtype, values):
    idx = [[i, 0] for i, v in enumerate(values) if v is not None]
    vals = [v for v in values if v is not None]
    return tf.SparseTensor(tf.constant(idx, tf.int64, shape=[len(idx), 2]),
                           tf.constant(vals, getattr(tf, dtype), shape=[len(vals)]), [len(values), 1])

raw = {name: sp(dtype, values) for name, (dtype, values) in raw_spec.items()}
out = {}
for d in sys.argv[2:]:
    res = tft.TFTransformOutput(d).transform_raw_features(raw)
    out[d] = {}
    for k, v in res.items():
        if isinstance(v, tf.SparseTensor):
            rows = [[] for _ in range(3)]
            for (r, _), x in zip(v.indices.numpy().tolist(), v.values.numpy().tolist()):
                rows[r].append(x.decode() if isinstance(x, bytes) else x)
            out[d][k] = rows
        else:
            out[d][k] = [x.decode() if isinstance(x, bytes) else x for x in v.numpy().tolist()]
print(json.dumps(out))
"""


def test_same_serving_outputs_on_raw_examples(runs):
    """Both transform_fns load with tft.TFTransformOutput (a fresh process) and
    map raw features, missing and unseen values included, the same way."""
    one, tft, _ = runs
    proc = subprocess.run(
        [sys.executable, "-c", _SERVE, json.dumps(SERVING), one.output_dir, tft.output_dir],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    got, want = result[one.output_dir], result[tft.output_dir]
    assert sorted(got) == sorted(want)
    for name in sorted(want):
        if name in BUCKETIZED and one.constants["features"][name]["boundaries"] != tft.constants["features"][name]["boundaries"]:
            continue  # boundaries within the sketch's bound; checked in test_same_constants
        _same_values(name, got[name], want[name], [1, 2, 3])
    assert got["y"][2] == -1  # an unseen class
    assert got["s_mf_vocabulary"][2] == -1  # unseen, no OOV bucket




# ---------------------------------------------------------------- plain TFT's own limits
# Plain TFT (`--analyzer tft`) cannot analyze a spec with a most_frequent fill
# of an int column before a table lookup, nor one before tf-idf; SPEC's oracle
# run writes those fills as constants (FILLED_AS_CONSTANTS).

SMALL_SPEC = """
label: {column: y, kind: binary, positive: "yes"}
columns:
  - {name: id, type: int, transforms: [identity]}
  - {name: n, type: int, missing: most_frequent, transforms: [identity, {type: vocabulary, num_oov_buckets: 2}]}
  - {name: y, type: string}
"""


def _small_csv() -> str:
    lines = ["id,n,y"]
    for i in range(240):
        n = "" if i % 9 == 0 else ("7" if i % 9 in (1, 2) else "10" if i % 9 in (3, 4) else str(11 + i % 13))
        lines.append(f'{i},{n},{"yes" if i % 3 else "no"}')
    return "\n".join(lines) + "\n"


def test_plain_tft_runs_an_int_most_frequent_fill_before_a_lookup(tmp_path):
    """Both analyzers on an int column's most_frequent fill before a vocabulary,
    with a binary string label."""
    csv_path = str(tmp_path / "small.csv")
    with open(csv_path, "w") as f:
        f.write(_small_csv())
    tft = analyze_and_check(str(tmp_path), SMALL_SPEC, input_path=csv_path, name="tft", extra_argv=["--analyzer", "tft"])
    one = analyze_and_check(str(tmp_path), SMALL_SPEC, input_path=csv_path, name="one_pass")
    for run in (one, tft):
        assert run.constants["columns"]["n"]["fill_value"] in (7, "7")  # 7 and 10 tie: the greater text
    for name in ("n_vocabulary", "fill_most_frequent_n"):
        with open(one.tft_output().vocabulary_file_by_name(name), "rb") as f:
            got = f.read()
        with open(tft.tft_output().vocabulary_file_by_name(name), "rb") as f:
            assert got == f.read(), name
    order_one = np.argsort(one.transformed["id_identity"], kind="stable")
    order_tft = np.argsort(tft.transformed["id_identity"], kind="stable")
    for name in sorted(tft.transformed):
        got = [one.transformed[name][i] for i in order_one]
        want = [tft.transformed[name][i] for i in order_tft]
        _same_values(name, got, want, sorted(tft.transformed["id_identity"]))
    assert sorted(set(one.transformed["y"])) == [0, 1]
