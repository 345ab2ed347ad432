"""One meaning of "missing" everywhere (issue 10, section 1).

The same probe rows, written as CSV, JSON lines, TFRecord tf.Examples (with
NaN floats and b"" / "NA" strings in them) and as raw tensors, must give
identical transformed features and identical predictions through every path:
the readers plus the transform graph, `featurebridge predict` (Beam,
RunInference), and the exported model's ``serving_default``, ``serving_raw``
and ``transform_features`` signatures in a fresh TensorFlow-only process.
Also covers the column types and header names the files bring: a header with
spaces and parentheses (``source:``), a bool column, a timestamp column with
derived parts, and a string column whose null markers are switched off.
"""

from __future__ import annotations

import datetime
import glob
import json
import math
import os

import numpy as np
import pytest

from tests.job_helpers import run_fresh_process

pytestmark = pytest.mark.slow

SPEC = """\
label: {column: bought, kind: binary}
columns:
  - name: bought
    type: int
  - name: temp_max
    source: "temp max (C)"
    type: float
    missing: mean
    transforms: [zscore, {type: bucketize, num_buckets: 3}]
  - name: city
    type: string
    missing: {constant: unknown}
    transforms: [{type: vocabulary, num_oov_buckets: 1}]
  - name: region
    type: string
    null_markers: []
    missing: {constant: unknown}
    transforms: [{type: vocabulary, num_oov_buckets: 1}]
  - name: member
    type: bool
    missing: {constant: false}
    transforms: [identity]
  - name: seen
    type: timestamp
    missing: {constant: "2024-01-01"}
    transforms: [month, day_of_week, hour]
"""

# Training rows: region "NA" (North America) is a real category there, since
# that column has no null markers.
_TRAIN_HEADER = "bought,temp max (C),city,region,member,seen"


def _train_csv(rows: int = 160) -> str:
    rng = np.random.default_rng(7)
    lines = [_TRAIN_HEADER]
    cities, regions = ["lyon", "oslo", "rome", "kyiv"], ["EU", "NA", "AS"]
    for i in range(rows):
        temp = rng.normal(15, 8)
        member = ["true", "False", "1", "no"][i % 4]
        city = cities[i % 4]
        bought = int(temp > 15) if i % 5 else int(member in ("true", "1"))
        seen = f"2024-{1 + i % 12:02d}-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}"
        lines.append(f"{bought},{temp:.3f},{city},{regions[i % 3]},{member},{seen}")
    return "\n".join(lines) + "\n"


# Probe rows: (temp, city, region, member, seen); None = absent in JSON/TFRecord.
# Each missing spelling appears in some row; the first row has every value.
PROBES = [
    (21.5, "oslo", "NA", True, "2024-03-05 10:30"),
    (math.nan, "", "EU", False, ""),
    ("NA", "NA", "", None, "NaN"),
    ("null", "  ", "NA", "N/A", "2024-07-04"),
    (None, "None", None, "true", None),
    ("", "rome", "AS", "", "2024-12-31T23:59:59Z"),
]
# What each probe row means after the one rule: None = missing.
MEANING = [
    (21.5, "oslo", "NA", 1, "2024-03-05 10:30"),
    (None, None, "EU", 0, None),
    (None, None, None, None, None),
    (None, None, "NA", None, "2024-07-04"),
    (None, None, None, 1, None),
    (None, "rome", "AS", None, "2024-12-31T23:59:59Z"),
]
_HEADER = ["temp max (C)", "city", "region", "member", "seen"]


def _csv_cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "NaN" if math.isnan(v) else repr(v)
    return '"' + v + '"' if v.strip() != v else v


def _write_probes(folder: str) -> dict:
    import tensorflow as tf

    paths = {}
    paths["csv"] = os.path.join(folder, "probe.csv")
    with open(paths["csv"], "w") as f:
        f.write(",".join(f'"{h}"' if " " in h else h for h in _HEADER) + "\n")
        for row in PROBES:
            f.write(",".join(_csv_cell(v) for v in row) + "\n")
        f.write("\n")  # a trailing blank line is not a row
    paths["jsonl"] = os.path.join(folder, "probe.jsonl")
    with open(paths["jsonl"], "w") as f:
        for row in PROBES:
            record = {h: v for h, v in zip(_HEADER, row) if v is not None}
            f.write(json.dumps(record) + "\n")  # NaN is written as the JSON token NaN
    paths["tfrecord"] = os.path.join(folder, "probe.tfrecord")
    with tf.io.TFRecordWriter(paths["tfrecord"]) as w:
        for temp, city, region, member, seen in PROBES:
            feats = {}
            if temp is not None:
                # A float column carries floats in a tf.Example: text markers become NaN or absent.
                value = temp if isinstance(temp, float) else math.nan
                feats["temp max (C)"] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
            for key, text in (("city", city), ("region", region), ("seen", seen)):
                if text is not None:
                    feats[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[text.encode()]))
            bit = {True: 1, False: 0, "true": 1}.get(member)
            if bit is not None:
                feats["member"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[bit]))
            w.write(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())
    return paths


def _raw_tensors() -> dict:
    """The probes as serving_raw inputs: NaN / "" / a marker stand for missing;
    an int64 has no missing value, so a missing bool is sent as its fill (0)."""
    temps, cities, regions, members, seens = zip(*PROBES)
    floats = [v if isinstance(v, float) else math.nan for v in temps]
    return {
        "temp_max": {"values": floats, "dtype": "float32"},
        "city": {"values": [c if c is not None else "" for c in cities], "dtype": "string"},
        "region": {"values": [r if r is not None else "" for r in regions], "dtype": "string"},
        "member": {"values": [1 if m in (True, "true") else 0 for m in members], "dtype": "int64"},
        "seen": {"values": [s if s is not None else "" for s in seens], "dtype": "string"},
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from featurebridge.pipelines import analyze, train

    root = tmp_path_factory.mktemp("one_missing")
    with open(root / "spec.yaml", "w") as f:
        f.write(SPEC)
    with open(root / "train.csv", "w") as f:
        f.write(_train_csv())
    manifest = analyze.run(["--input", str(root / "train.csv"), "--spec", str(root / "spec.yaml"), "--output", str(root / "analyzed")])
    train.run(["--analyzed", str(root / "analyzed"), "--output", str(root / "model"), "--model", "linear", "--epochs", "1"])
    return root, manifest


@pytest.fixture(scope="module")
def paths_results(trained):
    """Transformed features and predictions of the probes through every path."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from featurebridge.pipelines import predict
    from featurebridge.transforms import io as fb_io
    from featurebridge.transforms.layout import serving_dir
    from featurebridge.transforms.serving import load_serving_spec
    from tfx_bsl.tfxio.tensor_adapter import TensorAdapter

    from featurebridge.transforms.analyze import tensor_adapter_config

    root, _ = trained
    probes = root / "probes"
    probes.mkdir()
    paths = _write_probes(str(probes))
    serving = serving_dir(str(root / "model"))
    spec = load_serving_spec(serving)
    tft_output = tft.TFTransformOutput(str(root / "analyzed"))
    features, predictions = {}, {}
    for fmt, path in paths.items():
        batches = []
        for kind, value in fb_io.read_file(path, spec):
            assert kind != "rejected", (fmt, value)
            if kind == "batch":
                batches.append(value)
            else:
                assert value["read"] == value["used"] == len(PROBES), (fmt, value)
        # TFT's own Arrow -> tensor conversion (what TransformDataset feeds the graph).
        inputs = TensorAdapter(tensor_adapter_config(spec)).ToBatchTensors(batches[0], produce_eager_tensors=True)
        inputs["bought"] = tf.SparseTensor(tf.zeros([0, 2], tf.int64), tf.constant([], tf.int64), [len(PROBES), 1])
        out = tft_output.transform_raw_features(inputs, drop_unused_features=True)
        features[f"readers/{fmt}"] = {k: v.numpy() for k, v in out.items() if k not in ("bought", "__split_bucket__")}
        pred_dir = str(root / f"pred_{fmt}")
        predict.run(["--model", str(root / "model"), "--input", path, "--output", pred_dir])
        rows = []
        for part in sorted(glob.glob(os.path.join(pred_dir, "predictions-*.jsonl"))):
            with open(part) as f:
                rows += [json.loads(line) for line in f]
        rows.sort(key=lambda r: r["__row__"])
        predictions[f"predict/{fmt}"] = np.array([r["probability"] for r in rows])
    examples = [r.numpy() for r in tf.data.TFRecordDataset(paths["tfrecord"])]
    outputs, info = run_fresh_process(serving, examples, _raw_tensors(), str(root))
    predictions["serving_default"] = outputs["default/probability"]
    predictions["serving_raw"] = outputs["raw/probability"]
    features["transform_features"] = {
        k[len("transform/"):]: v for k, v in outputs.items() if k.startswith("transform/")
    }
    return features, predictions, info, tft_output


def test_every_path_gives_the_same_features(paths_results):
    features, _, info, _ = paths_results
    assert info["leaked"] == []
    reference = features["readers/csv"]
    assert sorted(reference) == [
        "city_vocabulary", "member_identity", "region_vocabulary", "seen_day_of_week",
        "seen_hour", "seen_month", "temp_max_bucketize", "temp_max_zscore",
    ]
    for path, got in features.items():
        assert sorted(got) == sorted(reference), path
        for name in reference:
            np.testing.assert_allclose(got[name], reference[name], rtol=0, atol=1e-6, err_msg=f"{path}: {name}")


def test_every_path_gives_the_same_predictions(paths_results):
    _, predictions, _, _ = paths_results
    reference = predictions["serving_default"]
    assert reference.shape == (len(PROBES),) and np.isfinite(reference).all()
    for path, got in predictions.items():
        np.testing.assert_allclose(got, reference, rtol=0, atol=1e-6, err_msg=path)


# A fresh interpreter that does what a prediction worker does: the handler
# loads the model and calls it on Arrow batches. It must not import TFT or Keras.
_WORKER_SCRIPT = r"""
import json, sys
from featurebridge.transforms import io as fb_io
from featurebridge.transforms.predict import ServingModelHandler, load_serving_spec

model_dir, path = sys.argv[1:3]
handler = ServingModelHandler(model_dir)
spec = load_serving_spec(model_dir)
batches = [v for k, v in fb_io.read_file(path, spec, include_position=True) if k == "batch"]
results = handler.run_inference(batches, handler.load_model())
probabilities = [float(p) for r in results for p in r.inference["probability"]]
leaked = [m for m in ("tensorflow_transform", "tf_keras", "tfx_bsl") if m in sys.modules]
print(json.dumps({"probability": probabilities, "leaked": leaked}))
"""


def test_a_prediction_worker_feeds_arrow_columns_without_tft_or_keras(trained, paths_results):
    import subprocess
    import sys

    root, _ = trained
    _, predictions, _, _ = paths_results
    script = root / "worker.py"
    script.write_text(_WORKER_SCRIPT)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_USE_LEGACY_KERAS", None)  # set, it makes `import tensorflow` load tf_keras
    proc = subprocess.run(
        [sys.executable, str(script), str(root / "model"), str(root / "probes" / "probe.csv")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["leaked"] == []
    np.testing.assert_allclose(out["probability"], predictions["serving_default"], rtol=0, atol=1e-6)


def test_missing_values_get_the_fill_not_a_value_of_their_own(paths_results):
    features, _, _, tft_output = paths_results
    got = features["transform_features"]
    from featurebridge.transforms.constants_json import read_vocabulary

    def vocabulary(name):
        return [e["value"] for e in read_vocabulary(tft_output.vocabulary_file_by_name(name))]

    city_vocab, region_vocab = vocabulary("city_vocabulary"), vocabulary("region_vocabulary")
    for i, (temp, city, region, member, seen) in enumerate(MEANING):
        if temp is None:  # a mean fill z-scores to 0: NaN, "", NA, null never reach the mean
            assert got["temp_max_zscore"][i] == pytest.approx(0.0, abs=1e-6), i
        expected_city = city_vocab.index(city) if city in city_vocab else len(city_vocab)
        if city is None:  # "unknown" never occurs in training: the OOV bucket, not the id of "" or "NA"
            assert "unknown" not in city_vocab and "NA" not in city_vocab
        assert got["city_vocabulary"][i] == expected_city, i
        # region has no null markers: "NA" is North America, a category seen in training.
        expected_region = region_vocab.index(region) if region in region_vocab else len(region_vocab)
        assert got["region_vocabulary"][i] == expected_region, i
        assert got["member_identity"][i] == (member or 0), i
        when = datetime.datetime.fromisoformat((seen or "2024-01-01").replace("Z", ""))
        assert (got["seen_month"][i], got["seen_day_of_week"][i], got["seen_hour"][i]) == (
            when.month, when.weekday(), when.hour,
        ), i


def test_analyze_reads_header_names_bools_and_timestamps(trained):
    root, manifest = trained
    assert manifest["rows"]["rejected"] == 0 and manifest["rows"]["used"] == 160
    with open(root / "analyzed" / "constants.json") as f:
        constants = json.load(f)
    assert "temp_max" in constants["columns"]
    assert constants["columns"]["member"]["fill_value"] in (0, False)


def test_drop_missing_is_the_readers_rule_in_graph_ops():
    import tensorflow as tf

    from featurebridge.transforms.preprocessing import drop_missing
    from featurebridge.transforms.spec import FeatureSpec

    spec = FeatureSpec.from_text(
        "input: {skip_initial_space: true}\n"
        "columns:\n"
        "  - {name: f, type: float, missing: mean, transforms: [zscore]}\n"
        "  - {name: s, type: string, missing: {constant: u}, transforms: [vocabulary]}\n"
        "  - {name: r, type: string, null_markers: [], missing: {constant: u}, transforms: [vocabulary]}\n"
        "  - {name: t, type: timestamp, missing: {constant: '2024-01-01'}, transforms: [year]}\n"
    )

    def sparse(values, dtype):
        n = len(values)
        return tf.SparseTensor([[i, 0] for i in range(n)], tf.constant(values, dtype), [n, 1])

    out = drop_missing(spec, {
        "f": sparse([1.0, math.nan, 2.0], tf.float32),
        "s": sparse([" x", "", "  ", " NA ", "None", "null", "y "], tf.string),
        "r": sparse(["NA", " ", "None"], tf.string),
        "t": sparse(["2024-02-30", "31/01/2024", "NaN", " 2024-01-01 10:00"], tf.string),
    })
    assert out["f"].values.numpy().tolist() == [1.0, 2.0]
    assert out["f"].indices.numpy()[:, 0].tolist() == [0, 2]
    assert out["s"].values.numpy().tolist() == [b"x", b"y "]
    assert out["r"].values.numpy().tolist() == [b"NA", b"None"]
    assert out["t"].values.numpy().tolist() == [b"2024-02-30", b"2024-01-01 10:00"]
