"""TF Serving conventions: the versioned export layout and how every loader
resolves it, class names in the signatures and in predictions, the REST
requests of docs/serving.md run against the real export in a fresh
TensorFlow-only process (tensorflow_model_server itself cannot be installed
here), Beam RunInference with our handler, and a user's preprocessing_fn
through analyze, train and export, with its contract checked."""

import base64
import datetime
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from tests.repo import REPO_ROOT

DOC = os.path.join(REPO_ROOT, "docs", "serving.md")


def _export_files(path):
    os.makedirs(os.path.join(path, "assets.extra"))
    open(os.path.join(path, "saved_model.pb"), "wb").close()
    with open(os.path.join(path, "assets.extra", "featurebridge.json"), "w") as f:
        json.dump({"format": 2, "spec": {}}, f)


# ---------------------------------------------------------------- the layout (no TensorFlow)


def test_serving_dir_resolves_the_model_its_base_and_a_version(tmp_path):
    from featurebridge.transforms import layout
    from featurebridge.transforms.errors import ModelDirError

    model = tmp_path / "model"
    for version in ("100", "200"):
        _export_files(str(model / "serving" / version))
    (model / "serving" / "300").mkdir()  # incomplete: no saved_model.pb, skipped
    (model / "serving" / "backup").mkdir()  # not a number: ignored, as TF Serving does
    highest = str(model / "serving" / "200")
    assert layout.serving_dir(str(model)) == highest
    assert layout.serving_dir(str(model / "serving")) == highest
    assert layout.serving_dir(str(model / "serving" / "100")) == str(model / "serving" / "100")
    assert layout.load_serving_info(str(model))["format"] == layout.SERVING_FORMAT

    old = tmp_path / "old"  # written before versions: the SavedModel right in serving/
    _export_files(str(old / "serving"))
    with open(old / "serving" / "assets.extra" / "featurebridge.json", "w") as f:
        json.dump({"spec": {}}, f)
    with pytest.raises(ModelDirError, match=r"unversioned SavedModel.*serving/<version>/.*Re-run `featurebridge train`"):
        layout.serving_dir(str(old))
    with pytest.raises(ModelDirError, match=r"older featurebridge \(format 1.*Re-run `featurebridge train`"):
        layout.load_serving_info(str(old / "serving"))
    with pytest.raises(ModelDirError, match=r"is not a featurebridge model: expected MODEL/serving/<version>/saved_model.pb"):
        layout.serving_dir(str(tmp_path))


def test_a_new_version_is_the_time_or_above_every_version_there(tmp_path):
    from featurebridge.transforms.export import next_version

    assert next_version(str(tmp_path / "missing"), now=1700000000.7) == 1700000000
    for name in ("100", "200", "notes"):
        (tmp_path / name).mkdir()
    assert next_version(str(tmp_path), now=150) == 201  # a clock set back still numbers upwards
    assert next_version(str(tmp_path), now=5000) == 5000


# ---------------------------------------------------------------- class names and the preprocessing_fn contract


def test_class_names_by_label_kind_and_type():
    from featurebridge.transforms.serving import Head, class_names
    from featurebridge.transforms.spec import FeatureSpec

    def spec(kind, ltype, positive=None):
        label = {"column": "y", "kind": kind, **({"positive": positive} if positive else {})}
        return FeatureSpec.from_dict({
            "label": label,
            "columns": [{"name": "a", "type": "float", "transforms": ["zscore"]}, {"name": "y", "type": ltype}],
        })

    assert class_names(spec("binary", "int"), Head("binary", "y")) == ("0", "1")
    assert class_names(spec("binary", "bool"), Head("binary", "y")) == ("false", "true")
    # A binary string label: the data's other value (the analyze statistics' class counts) names class 0.
    assert class_names(spec("binary", "string", "yes"), Head("binary", "y"), label_values=["no", "yes"]) == ("no", "yes")
    assert class_names(spec("binary", "string", "yes"), Head("binary", "y"), label_values=["no", "yes", "maybe"]) == ("not yes", "yes")
    assert class_names(spec("binary", "string", "yes"), Head("binary", "y")) == ("not yes", "yes")
    assert class_names(spec("multiclass", "int"), Head("multiclass", "y", 3)) == ("0", "1", "2")
    # TFT's vocabulary with frequencies ("count value"), in class id order.
    assert class_names(spec("multiclass", "string"), Head("multiclass", "y", 2), ["30 high", "12 low mid"]) == ("high", "low mid")
    assert class_names(spec("regression", "float"), Head("regression", "y", 1)) == ()
    with pytest.raises(ValueError, match="has 1 entries but the model has 2 classes"):
        class_names(spec("multiclass", "string"), Head("multiclass", "y", 2), ["3 a"])


def test_user_preprocessing_fn_outputs_are_checked_by_name():
    import tensorflow as tf

    from featurebridge.transforms.errors import UsageError
    from featurebridge.transforms.spec import FeatureSpec
    from featurebridge.transforms.user_fn import check_outputs

    spec = FeatureSpec.from_dict({
        "label": {"column": "y", "kind": "binary"},
        "columns": [{"name": "x", "type": "float", "transforms": ["zscore"]}, {"name": "y", "type": "int"}],
    })
    x, y = tf.constant([1.0, 2.0]), tf.constant([0, 1], tf.int64)
    ids = tf.SparseTensor([[0, 0], [1, 1]], tf.constant([3, 4], tf.int64), [2, 2])
    check_outputs({"x": x, "ids": ids, "y": y}, spec)  # dense [batch], a bag of ids, the label: fine
    sparse_x = tf.SparseTensor([[0, 0]], [1.0], [2, 1])
    with pytest.raises(UsageError, match=r"output 'x_raw' is a SparseTensor of float32.*sparse_tensor_to_dense_with_shape"):
        check_outputs({"x_raw": sparse_x, "y": y}, spec)
    with pytest.raises(UsageError, match=r"output 'x2' has shape \[2, 2\]; each output must be \[batch\].*one output per column"):
        check_outputs({"x2": tf.zeros([2, 2]), "y": y}, spec)
    with pytest.raises(UsageError, match=r"output 'x' has shape \[2, 1\].*Return x\[:, 0\]"):
        check_outputs({"x": tf.zeros([2, 1]), "y": y}, spec)
    with pytest.raises(UsageError, match=r"returns no 'y': the spec's label is column 'y'.*Add outputs\['y'\]"):
        check_outputs({"x": x}, spec)
    with pytest.raises(UsageError, match=r"label output 'y' is float32; a binary label must be int64 class ids"):
        check_outputs({"x": x, "y": tf.constant([0.0, 1.0])}, spec)
    with pytest.raises(UsageError, match=r"output 'r' is a RaggedTensor.*to_sparse\(\)"):
        check_outputs({"r": tf.ragged.constant([[1], [2, 3]]), "y": y}, spec)
    with pytest.raises(UsageError, match=r"must return a dict"):
        check_outputs([x], spec)


# ---------------------------------------------------------------- the demo model (the shared job run)


def _doc_block(marker: str) -> str:
    """The fenced block after ``<!-- marker -->`` in docs/serving.md."""
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    found = re.search(rf"<!-- {re.escape(marker)} -->\s*```[a-z]*\n(.*?)```", text, re.S)
    assert found, f"docs/serving.md has no block marked <!-- {marker} -->"
    return found.group(1).strip()


def _curl_body(block: str) -> dict:
    """The JSON body of the doc's ``curl -d '...'`` command."""
    return json.loads(re.search(r"-d '(.*?)'", block, re.S).group(1))


@pytest.mark.slow
def test_the_export_is_a_tf_serving_version_directory(job):
    from featurebridge.transforms import layout

    base = os.path.join(job.model, layout.SERVING_DIR)
    versions = os.listdir(base)
    assert len(versions) == 1 and versions[0].isdigit(), versions
    with open(os.path.join(job.model, layout.MANIFEST)) as f:
        manifest = json.load(f)
    assert job.serving == os.path.join(base, versions[0])
    info = layout.load_serving_info(job.model)
    assert info["version"] == int(versions[0]) and info["class_names"] == ["0", "1"]
    assert os.path.isfile(os.path.join(job.serving, layout.SERVING_INFO))  # the description travels with the version
    assert f"{layout.SERVING_DIR}/{versions[0]}/saved_model.pb" in manifest["outputs"]
    # TFX Pusher's number: epoch seconds around the export (the train job started before it).
    assert int(versions[0]) >= int(datetime.datetime.fromisoformat(manifest["started"]).timestamp())


# Emulates TF Serving's REST row format in a fresh TensorFlow-only process: the
# "instances" list, one JSON object per row ({"b64": ...} for bytes, NaN for a
# missing float), becomes one batched tensor per input name, typed by the
# signature; the answer is {"predictions": [one object per row]}, strings as text.
REST_SCRIPT = r"""
import base64, json, sys
import tensorflow as tf

def tensor(values, spec):
    values = [base64.b64decode(v["b64"]) if isinstance(v, dict) else v for v in values]
    return tf.constant(values, dtype=spec.dtype)

def as_row(instance, names):
    if isinstance(instance, dict) and set(instance) == set(names):
        return instance
    if len(names) == 1:  # a one-input signature takes bare values too
        return {names[0]: instance}
    raise ValueError("every instance needs every named input: %s" % sorted(names))

def text(x):
    if isinstance(x, list):
        return [text(y) for y in x]
    return x.decode() if isinstance(x, bytes) else x

def answer(fn, body):
    inputs = fn.structured_input_signature[1]
    rows = [as_row(i, list(inputs)) for i in body["instances"]]
    out = {k: v.numpy().tolist() for k, v in fn(**{k: tensor([r[k] for r in rows], s) for k, s in inputs.items()}).items()}
    return {"predictions": [{k: text(a[i]) for k, a in out.items()} for i in range(len(rows))]}

def signature_listing(loaded):
    # `saved_model_cli show --all`, in short: the block docs/serving.md shows.
    lines = []
    for name in sorted(loaded.signatures):
        fn = loaded.signatures[name]
        lines.append(name)
        specs = [("in", k, s) for k, s in sorted(fn.structured_input_signature[1].items())]
        specs += [("out", k, s) for k, s in sorted(fn.structured_outputs.items())]
        for way, key, s in specs:
            shape = "[" + ", ".join("batch" if d is None else str(d) for d in s.shape.as_list()) + "]"
            lines.append(f"  {way:4s}{key:34s}{s.dtype.name:8s}{shape}")
    return "\n".join(lines)

model = tf.saved_model.load(sys.argv[1])
bodies = json.load(open(sys.argv[2]))
answers = {name: answer(model.signatures[body.get("signature_name", "serving_default")], body)
           for name, body in bodies.items()}
print(json.dumps({"listing": signature_listing(model), "answers": answers}))
"""


@pytest.mark.slow
def test_the_documented_signatures_and_rest_requests_match_the_export(job, tmp_path):
    import tensorflow as tf

    command = _doc_block("tensorflow_model_server")
    assert "--model_base_path=/abs/MODEL/serving" in command and "--rest_api_port=8501" in command
    raw_body, examples_body = _curl_body(_doc_block("request: serving_raw")), _curl_body(_doc_block("request: serving_default"))
    assert raw_body["signature_name"] == "serving_raw"
    # The tf.Example request carries the same rows: its features are the raw instance's, missing values left out.
    for instance, b64 in zip(raw_body["instances"], examples_body["instances"]):
        example = tf.train.Example.FromString(base64.b64decode(b64["examples"]["b64"]))
        got = {}
        for name, feature in example.features.feature.items():
            kind = feature.WhichOneof("kind")
            got[name] = list(getattr(feature, kind).value)[0]
        want = {k: v for k, v in instance.items() if not (isinstance(v, float) and np.isnan(v)) and v != ""}
        assert {k: v.decode() if isinstance(v, bytes) else pytest.approx(v) for k, v in got.items()} == want

    bodies = tmp_path / "bodies.json"
    bodies.write_text(json.dumps({"raw": raw_body, "examples": examples_body}))
    script = tmp_path / "rest.py"
    script.write_text(REST_SCRIPT)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TF_USE_LEGACY_KERAS", None)
    proc = subprocess.run([sys.executable, str(script), job.serving, str(bodies)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    listing, answers = result["listing"], result["answers"]
    assert listing == _doc_block("signatures"), "docs/serving.md's signature block is stale; paste:\n" + listing
    documented = json.loads(_doc_block("response"))["predictions"][0]
    for name in ("raw", "examples"):
        rows = answers[name]["predictions"]
        assert len(rows) == 2 and all(set(r) == set(documented) for r in rows), rows
        for r in rows:
            assert r["classes"] == ["0", "1"] and r["class_name"] == r["classes"][r["class_id"]]
            assert r["scores"] == pytest.approx([1 - r["probability"], r["probability"]], abs=1e-6)
    assert [r["probability"] for r in answers["raw"]["predictions"]] == pytest.approx(
        [r["probability"] for r in answers["examples"]["predictions"]], abs=1e-6)


@pytest.mark.slow
def test_runinference_with_our_handler_on_raw_rows(job):
    """A user's own Beam pipeline: raw rows as tf.Examples -> RunInference
    with `ServingModelHandler` pointed at the model (docs/serving.md)."""
    import apache_beam as beam
    import tensorflow as tf
    from apache_beam.ml.inference.base import RunInference
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    from featurebridge.transforms.examples import rows_to_examples
    from featurebridge.transforms.predict import ServingModelHandler
    from featurebridge.transforms.serving import load_serving_spec

    rows = [
        {"age": 31.5, "basket_value": 20.5, "pages_viewed": 4, "device": "mobile", "country": "C01"},
        {"device": "fridge", "city": "city_new"},
        {"age": 55.0, "review": "terrible late refund"},
    ]
    examples = rows_to_examples(load_serving_spec(job.model), rows)
    direct = tf.saved_model.load(job.serving).signatures["serving_default"](examples=tf.constant(examples))
    want = [(e, n.decode(), round(float(p), 5))
            for e, n, p in zip(examples, direct["class_name"].numpy(), direct["probability"].numpy())]

    def named(result):
        return (result.example, result.inference["class_name"].decode(), round(float(result.inference["probability"]), 5))

    with TestPipeline() as p:
        out = p | beam.Create(examples) | RunInference(ServingModelHandler(job.model)) | beam.Map(named)
        assert_that(out, equal_to(want))


# ---------------------------------------------------------------- a user's preprocessing_fn, through train and export


def user_fn_with_label(inputs):
    """A user's preprocessing_fn for `_USER_SPEC` (the test passes it by reference)."""
    import tensorflow_transform as tft

    def dense(x, default):
        return tft.sparse_tensor_to_dense_with_shape(x, [None, 1], default_value=default)[:, 0]

    x, s = dense(inputs["x"], 0.0), dense(inputs["s"], "")
    return {
        "x_centered": x - tft.mean(x),
        "s_id": tft.compute_and_apply_vocabulary(s, vocab_filename="user_s"),
        "y": dense(inputs["y"], 0),
    }


def user_fn_sparse(inputs):
    outputs = user_fn_with_label(inputs)
    outputs["x_raw"] = inputs["x"]  # a SparseTensor of floats: refused, by name
    return outputs


_USER_SPEC = """label: {column: y, kind: binary}
columns:
  - {name: x, type: float, missing: {constant: 0}}
  - {name: s, type: string, transforms: [vocabulary]}
  - {name: y, type: int}
"""


@pytest.mark.slow
def test_a_users_preprocessing_fn_trains_exports_and_serves_class_names(tmp_path):
    import tensorflow as tf

    from featurebridge.pipelines import analyze, train
    from featurebridge.transforms.layout import load_serving_info, serving_dir

    rng = np.random.default_rng(3)
    x = rng.normal(size=240)
    s = rng.choice(["a", "b"], size=240)
    y = ((x + (s == "a")) > 0.5).astype(int)
    (tmp_path / "d.csv").write_text("x,s,y\n" + "".join(f"{a:.3f},{b},{c}\n" for a, b, c in zip(x, s, y)))
    (tmp_path / "spec.yaml").write_text(_USER_SPEC)
    argv = ["--input", str(tmp_path / "d.csv"), "--spec", str(tmp_path / "spec.yaml")]
    with pytest.raises(ValueError, match=r"output 'x_raw' is a SparseTensor of float32"):
        analyze.run(argv + ["--output", str(tmp_path / "bad"), "--preprocessing_fn", f"{__name__}:user_fn_sparse"])
    assert not (tmp_path / "bad").exists()
    analyze.run(argv + ["--output", str(tmp_path / "an"), "--preprocessing_fn", f"{__name__}:user_fn_with_label"])
    train.run(["--analyzed", str(tmp_path / "an"), "--output", str(tmp_path / "m"), "--epochs", "1"])
    info = load_serving_info(str(tmp_path / "m"))
    assert info["class_names"] == ["0", "1"] and sorted(info["model_inputs"]) == ["s_id", "x_centered"]
    example = tf.train.Example()
    example.features.feature["x"].float_list.value.append(2.0)
    example.features.feature["s"].bytes_list.value.append(b"a")
    out = tf.saved_model.load(serving_dir(str(tmp_path / "m"))).signatures["serving_default"](
        examples=tf.constant([example.SerializeToString()]))
    assert out["class_name"].numpy()[0].decode() in ("0", "1") and out["classes"].shape == (1, 2)
