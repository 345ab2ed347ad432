"""Train and export: metrics against the baseline, the serving SavedModel
loaded in a fresh TensorFlow-only process, warm-up requests, and parity
between the Beam transform and the serving graph (features and predictions)."""

import json
import os
import subprocess
import sys
from collections import defaultdict

import numpy as np
import pytest

from tests.analyze_helpers import read_transformed
from tests.job_helpers import run_fresh_process
from featurebridge.transforms.spec import SPLIT_FEATURE

pytestmark = pytest.mark.slow


def _raw_rows(job):
    """Every used row of the analyzed (training) files, as serialized raw
    tf.Examples and as dense columns for serving_raw, in file order."""
    from featurebridge.transforms import io as fb_io
    from featurebridge.transforms.examples import batch_to_examples
    from featurebridge.transforms.serving import raw_signature_columns

    spec = job.spec()
    examples, dense = [], defaultdict(list)
    types = {c.name: c.type for c in spec.columns}
    for path in job.summary["inputs"]["train"]:
        for kind, batch in fb_io.read_file(path, spec):
            if kind != "batch":
                continue
            examples += batch_to_examples(spec, batch)
            for name in raw_signature_columns(spec):
                for v in batch.column(name).to_pylist():
                    if types[name] == "float":
                        dense[name].append(v[0] if v else float("nan"))
                    elif types[name] == "string":
                        dense[name].append(v[0].decode() if v else "")
                    else:  # the sample spec fills a missing int with the constant 0
                        dense[name].append(v[0] if v else 0)
    dtypes = {"float": "float32", "int": "int64", "string": "string"}
    raw = {n: {"values": vals, "dtype": dtypes[types[n]]} for n, vals in dense.items()}
    return examples, raw


@pytest.fixture(scope="module")
def served(job, tmp_path_factory):
    examples, raw = _raw_rows(job)
    outputs, info = run_fresh_process(job.serving, examples, raw, str(tmp_path_factory.mktemp("fresh")))
    return examples, outputs, info


def test_metrics_compare_with_a_baseline(job):
    with open(os.path.join(job.model, "metrics.json")) as f:
        metrics = json.load(f)
    with open(os.path.join(job.analyzed, "manifest.json")) as f:
        analyzed_rows = json.load(f)["rows"]["used"]
    assert metrics["rows"]["train"] + metrics["rows"]["eval"] == analyzed_rows
    assert 0 < metrics["rows"]["eval"] < metrics["rows"]["train"]
    assert metrics["head"]["kind"] == "binary"
    for key in ("loss", "auc", "accuracy"):
        assert np.isfinite(metrics["model"][key]) and np.isfinite(metrics["baseline"][key])
    assert metrics["baseline"]["auc"] == 0.5  # a constant score ranks nothing
    assert "training prior" in metrics["baseline"]["predicts"]
    assert len(metrics["training_loss_per_epoch"]) == 2


def test_model_manifest_records_provenance(job):
    from featurebridge.transforms.provenance import directory_digests

    with open(os.path.join(job.model, "manifest.json")) as f:
        manifest = json.load(f)
    assert manifest["job"] == "train"
    assert manifest["spec_digest"] == job.spec().digest()
    assert manifest["analyzed"]["path"] == os.path.abspath(job.analyzed)
    assert set(manifest["signatures"]) == {"serving_default", "serving_raw", "transform_features"}
    digests = directory_digests(job.model, exclude=["manifest.json"])
    assert manifest["outputs"] == digests
    assert not [p for p in os.listdir(os.path.dirname(job.model)) if ".staging-" in p]


def test_fresh_tensorflow_only_process_serves_every_signature(job, served):
    examples, outputs, info = served
    assert info["signatures"] == ["serving_default", "serving_raw", "transform_features"]
    assert info["leaked"] == [], "loading the export imported " + ", ".join(info["leaked"])
    p_default = outputs["default/probability"]
    assert p_default.shape == (len(examples),)
    assert np.all((p_default > 0) & (p_default < 1))
    np.testing.assert_array_equal(outputs["default/class_id"], (p_default >= 0.5).astype(np.int64))
    # Named raw tensors (NaN / "" = missing) give the same predictions as tf.Examples.
    np.testing.assert_allclose(outputs["raw/probability"], p_default, atol=1e-6)


def test_saved_model_cli_lists_signatures(job):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    proc = subprocess.run([cli, "show", "--all", "--dir", job.serving], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("serving_default", "serving_raw", "transform_features"):
        assert f"signature_def['{name}']" in proc.stdout
    assert "inputs['examples']" in proc.stdout
    assert "Method name is: tensorflow/serving/predict" in proc.stdout
    assert "purchased" not in proc.stdout.split("signature_def['serving_raw']")[1].split("signature_def[")[0]


def test_warmup_requests_are_prediction_logs_for_serving_default(job):
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(job.serving, "assets.extra", "tf_serving_warmup_requests")
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]
    assert logs
    loaded = tf.saved_model.load(job.serving)
    for log in logs:
        request = log.predict_log.request
        assert request.model_spec.signature_name == "serving_default"
        examples = tf.make_ndarray(request.inputs["examples"])
        parsed = tf.train.Example.FromString(examples[0])
        assert "purchased" not in parsed.features.feature  # the label is never sent
        assert "age" in parsed.features.feature or "device" in parsed.features.feature
        out = loaded.signatures["serving_default"](examples=tf.constant(examples))
        assert out["probability"].shape == (len(examples),)


def _serving_rows(outputs, names, sparse):
    """Per-row transformed features from the signature's flat outputs."""
    n = len(outputs["default/probability"])
    rows = [dict() for _ in range(n)]
    for name in names:
        if name in sparse:
            values = outputs[f"transform/{name}__values"]
            lengths = outputs[f"transform/{name}__row_lengths"]
            splits = np.concatenate([[0], np.cumsum(lengths)])
            for i in range(n):
                rows[i][name] = values[splits[i] : splits[i + 1]].tolist()
        else:
            for i, v in enumerate(outputs[f"transform/{name}"].tolist()):
                rows[i][name] = v
    return rows


def _grouped(rows, exact, floats, scores):
    """{exact-valued part: [(float part, score)]}: rows are matched by their
    ints and strings, then compared on floats within a tolerance."""
    groups = defaultdict(list)
    for row, score in zip(rows, scores):
        key = tuple(tuple(row[n]) if isinstance(row[n], list) else row[n] for n in exact)
        flat = []
        for n in floats:
            flat += row[n] if isinstance(row[n], list) else [row[n]]
        groups[key].append((flat, score))
    return {k: sorted(v) for k, v in groups.items()}


def test_beam_and_serving_agree_on_features_and_predictions(job, served):
    import tensorflow as tf
    import tensorflow_transform as tft

    from featurebridge.transforms.layout import load_analyzed
    from featurebridge.transforms.train import make_dataset

    examples, outputs, _ = served
    feature_spec = tft.TFTransformOutput(job.analyzed).transformed_feature_spec()
    label = job.spec().label.column
    names = sorted(n for n in feature_spec if n not in (label, SPLIT_FEATURE))
    sparse = {n for n in names if isinstance(feature_spec[n], tf.io.VarLenFeature)}
    floats = [n for n in names if feature_spec[n].dtype == tf.float32]
    exact = [n for n in names if n not in floats]

    beam_rows = read_transformed(job.analyzed)
    n_beam = len(beam_rows[label])
    assert n_beam == len(examples)
    beam_rows = [{n: beam_rows[n][i] for n in names} for i in range(n_beam)]
    # The model itself (the export's Keras object) on the Beam-transformed features.
    model = tf.saved_model.load(job.serving).model
    scores = []
    ds = make_dataset(load_analyzed(job.analyzed).transformed_files(), feature_spec, "all", 128, label=label)
    for features, _ in ds:
        scores += tf.sigmoid(model(features, training=False)[:, 0]).numpy().tolist()
    serving_rows = _serving_rows(outputs, names, sparse)

    beam = _grouped(beam_rows, exact, floats, scores)
    serving = _grouped(serving_rows, exact, floats, outputs["default/probability"].tolist())
    assert beam.keys() == serving.keys(), "ints/strings differ between Beam and serving"
    assert len(beam) > n_beam // 2  # rows are (mostly) told apart by their exact features
    for key in beam:
        b, s = beam[key], serving[key]
        assert len(b) == len(s)
        for (bf, bp), (sf, sp) in zip(b, s):
            np.testing.assert_allclose(sf, bf, atol=1e-6, rtol=0)
            np.testing.assert_allclose(sp, bp, atol=1e-5, rtol=0)


def test_describe_features_reads_sizes_from_spec_vocabularies_and_schema(job):
    from featurebridge.transforms.layout import load_analyzed
    from featurebridge.transforms.model import describe_features

    analyzed = load_analyzed(job.analyzed)
    tft_output, spec = analyzed.tft_output(), analyzed.spec
    infos = {f.name: f for f in describe_features(tft_output, spec)}
    assert "purchased" not in infos
    assert (infos["age_bucketize"].kind, infos["age_bucketize"].size) == ("categorical", 8 + 1)
    assert infos["product_id_hash"].size == 2000 + 1
    assert infos["device_x_country"].size == 200 + 1
    city_vocab = tft_output.vocabulary_size_by_name("city_vocabulary")
    assert infos["city_vocabulary"].size == city_vocab + 5 + 1
    assert (infos["review_tfidf_index"].kind, infos["review_tfidf_index"].weights) == ("bag", "review_tfidf_weight")
    assert infos["age_zscore"].kind == "numeric"


def test_linear_model_trains_in_process_with_a_deterministic_split(job):
    from featurebridge.transforms.train import train_model

    first = train_model(job.analyzed, "linear", epochs=1, batch_size=64)
    second = train_model(job.analyzed, "linear", epochs=1, batch_size=64)
    assert first.metrics["rows"] == second.metrics["rows"]
    # The split is keyed on the raw key column, and training is seeded: the
    # metrics (what metrics.json holds) are the same to the last bit.
    assert json.dumps(first.metrics, sort_keys=True) == json.dumps(second.metrics, sort_keys=True)
    assert "the key column 'session_id'" in first.metrics["eval_split"]


def test_train_errors_say_what_to_do(job, tmp_path):
    from featurebridge.pipelines import train as train_job
    from featurebridge.pipelines.runner_config import RunnerConfigError
    from featurebridge.transforms.staging import OutputExistsError
    from featurebridge.transforms.errors import ArtifactError
    from featurebridge.transforms.errors import TrainingError
    from featurebridge.transforms.train import train_model

    with pytest.raises(ArtifactError, match="is not an analyze output.*Run `featurebridge analyze` first"):
        train_model(str(tmp_path))
    with pytest.raises(TrainingError, match="--model 'forest' is unknown"):
        train_model(job.analyzed, "forest")
    with pytest.raises(RunnerConfigError, match="--analyzed is required"):
        train_job.run(["--output", str(tmp_path / "m")])
    with pytest.raises(OutputExistsError, match="already exists"):
        train_job.run(["--analyzed", job.analyzed, "--output", job.model])


# ---------------------------------------------------------------- the other label kinds and model types

_KIND_SPEC = """
label: {{column: y, kind: {kind}}}
columns:
  - {{name: a, type: float, missing: mean, transforms: [zscore]}}
  - {{name: b, type: float, transforms: [{{type: bucketize, num_buckets: 4}}]}}
  - {{name: c, type: string, transforms: [vocabulary]}}
  - {{name: y, type: {label_type}}}
"""


def _kind_rows(kind: str, n: int = 900, seed: int = 5):
    """Rows whose label follows a, b and c: three classes (strings) or a number."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n)
    c = rng.choice(["red", "green", "blue"], size=n)
    shift = np.select([c == "red", c == "green"], [1.5, -1.5], 0.0)
    score = 2.0 * a - b + shift + rng.normal(scale=0.3, size=n)
    if kind == "multiclass":
        y = np.where(score < -1.0, "low", np.where(score < 1.0, "mid", "high"))
    else:
        y = np.round(score * 10.0 + 50.0, 3)
    lines = ["a,b,c,y"] + [
        f"{'' if i % 23 == 0 else round(a[i], 4)},{round(b[i], 4)},{c[i]},{y[i]}" for i in range(n)
    ]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("kind, label_type, model", [("multiclass", "string", "dnn"), ("regression", "float", "linear")])
def test_other_label_kinds_train_beat_the_baseline_and_serve(tmp_path, caplog, kind, label_type, model):
    import logging

    import tensorflow as tf

    from featurebridge.pipelines import analyze, train

    (tmp_path / "d.csv").write_text(_kind_rows(kind))
    (tmp_path / "spec.yaml").write_text(_KIND_SPEC.format(kind=kind, label_type=label_type))
    analyze.run(["--input", str(tmp_path / "d.csv"), "--spec", str(tmp_path / "spec.yaml"), "--output", str(tmp_path / "an")])
    # The linear model needs a larger step: at Adam's 0.005 for 8 epochs its RMSE ratio to the baseline
    # ranged 0.26-1.17 over seeds (the data order of the DirectRunner's output varies); at 0.05 for 10
    # epochs it is 0.19-0.20 for every seed.
    knobs = ["--epochs", "8"] if model == "dnn" else ["--epochs", "10", "--learning_rate", "0.05"]
    with caplog.at_level(logging.INFO, logger="featurebridge.transforms.train"):
        manifest = train.run(["--analyzed", str(tmp_path / "an"), "--output", str(tmp_path / "m"), "--model", model,
                              *knobs, "--batch_size", "64"])
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    epochs = 8 if model == "dnn" else 10
    watched = "val_accuracy" if kind == "multiclass" else "val_rmse"
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert len(lines) == epochs and lines[-1].startswith(f"epoch {epochs}/{epochs}: loss "), lines
    assert watched in lines[-1] and lines[-1].endswith(" s)")
    assert len(metrics["per_epoch"]) == epochs and watched[4:] in metrics["per_epoch"][-1]["eval"]
    summary = train.summarize(manifest, str(tmp_path / "m"))
    if kind == "multiclass":
        model_m, base_m = metrics["model"], metrics["baseline"]
        assert model_m["accuracy"] > base_m["accuracy"] + 0.2, metrics
        assert model_m["macro_f1"] > base_m["macro_f1"] + 0.2
        assert set(model_m["per_class"]) == {"low", "mid", "high"} == set(metrics["class_names"])
        matrix = model_m["confusion_matrix"]
        assert matrix["classes"] == metrics["class_names"]
        assert sum(map(sum, matrix["counts"])) == metrics["rows"]["eval"]
        assert [model_m["per_class"][c]["support"] for c in matrix["classes"]] == [sum(r) for r in matrix["counts"]]
        assert "(majority) for every row" in base_m["predicts"] and "'" in base_m["predicts"]
        assert "F1 by class: " in summary and "macro_f1" in summary
    else:
        assert metrics["model"]["rmse"] < 0.5 * metrics["baseline"]["rmse"], metrics
        assert metrics["model"]["r2"] > 0.5 and metrics["baseline"]["r2"] <= 0.0
        assert "r2" in summary and "rmse" in summary

    # Serving: raw tf.Examples in (no label), the head's outputs out.
    from featurebridge.transforms.layout import serving_dir

    loaded = tf.saved_model.load(serving_dir(str(tmp_path / "m")))
    raw = [{"a": 1.0, "b": -1.0, "c": "red"}, {"a": -1.5, "b": 1.0, "c": "green"}, {"b": 0.0, "c": "blue"}]
    examples = []
    for row in raw:
        feature = {"c": tf.train.Feature(bytes_list=tf.train.BytesList(value=[row["c"].encode()]))}
        for name in ("a", "b"):
            if name in row:
                feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[row[name]]))
        examples.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    out = {k: v.numpy() for k, v in loaded.signatures["serving_default"](examples=tf.constant(examples)).items()}
    if kind == "multiclass":
        assert out["probabilities"].shape == (3, 3)
        np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1.0, rtol=1e-5)
        # The class ids index the label vocabulary (by frequency); the extremes are clear-cut.
        vocab = _label_vocabulary(tmp_path / "an")
        assert [vocab[i] for i in out["class_id"][:2]] == ["high", "low"]
        # The class names, as TF Serving's classify convention returns them: classes and scores aligned.
        assert [v.decode() for v in out["class_name"][:2]] == ["high", "low"]
        assert out["classes"].shape == (3, 3) and [v.decode() for v in out["classes"][0]] == vocab
        np.testing.assert_allclose(out["scores"], out["probabilities"])
    else:
        assert out["prediction"].shape == (3,)
        # 10 * (2a - b + shift) + 50 is 95, 5 and 50 for these rows (a missing: its mean, ~0);
        # b reaches the linear model as 4 buckets only, so check the order and the side of 50.
        p = out["prediction"]
        assert p[0] > 65 > p[2] > 35 > p[1], p


def _label_vocabulary(analyzed):
    import tensorflow_transform as tft

    from featurebridge.transforms.preprocessing import label_vocabulary_name

    # Stored with frequencies ("300 high"): the label's class ids need the counts kept.
    entries = tft.TFTransformOutput(str(analyzed)).vocabulary_by_name(label_vocabulary_name("y"))
    return [v.decode().split(" ", 1)[1] for v in entries]
