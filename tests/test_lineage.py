"""`featurebridge lineage`: the walk from predictions back to the input files
and spec, linked by manifest digests, and --verify.

The walk over a real run uses the session's shared demo run (`job`), read
only. What changes a chain (an edited input, a replaced model file, a moved
or damaged upstream) is tested on a small chain of real manifests sealed by
`transforms.provenance` in tmp_path (milliseconds, no TensorFlow)."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from featurebridge.pipelines import cli
from featurebridge.pipelines import lineage as lineage_cli
from featurebridge.transforms import layout, provenance
from featurebridge.transforms.errors import ArtifactError
from featurebridge.transforms.lineage import trace

SPEC = """
label: {column: label, kind: binary}
columns:
  - {name: age, type: float, transforms: [zscore]}
  - {name: label, type: int}
"""


def _json(capsys, argv):
    status = lineage_cli.main(argv + ["--json"])
    return status, json.loads(capsys.readouterr().out)


# ---------------------------------------------------------------- the shared real run


@pytest.mark.slow
def test_a_run_walks_from_a_predictions_file_to_the_inputs_and_spec(job, capsys):
    from featurebridge.transforms.lineage import trace as walk

    pred_file = sorted(p for p in os.listdir(job.predictions) if p.startswith(layout.PREDICTIONS_PREFIX))[0]
    assert cli.main(["lineage", os.path.join(job.predictions, pred_file)]) == 0
    text = capsys.readouterr().out
    for expected in (job.predictions, job.model, job.analyzed, "analyzer  one_pass", "holds",
                     os.path.join(job.data, "spec.yaml"), "DirectRunner", "tensorflow-transform"):
        assert expected in text, expected
    for path in job.summary["inputs"]["train"] + job.summary["inputs"]["holdout"]:
        assert path in text, path

    found = walk(job.root)
    assert [s.kind for s in found.steps] == ["predictions", "model", "analyzed"]
    predictions, model, analyzed = found.steps
    # Each link is the sha256 of the upstream's manifest.json, recorded downstream.
    assert predictions.manifest["model_link"]["manifest_sha256"] == model.manifest_sha256
    assert model.manifest["analyzed"]["manifest_sha256"] == analyzed.manifest_sha256
    assert predictions.manifest["model_link"]["serving"]["saved_model_sha256"]
    assert {s: found.run["stages"][s]["manifest_sha256"] for s in ("predict", "train", "analyze")} == {
        "predict": predictions.manifest_sha256, "train": model.manifest_sha256, "analyze": analyzed.manifest_sha256,
    }
    assert analyzed.manifest["analyzer"] == "one_pass" and model.manifest["analyzed"]["analyzer"] == "one_pass"
    assert analyzed.manifest["preprocessing_fn_source"] is None  # a spec, not a user's function


@pytest.mark.slow
def test_a_run_verifies_and_prints_json(job, capsys):
    assert cli.main(["lineage", job.root, "--verify"]) == 0
    assert "verified: every digest holds" in capsys.readouterr().out

    status, result = _json(capsys, [job.root, "--verify"])
    assert status == 0 and result["ok"] and result["verified"] and result["findings"] == []
    assert [s["kind"] for s in result["steps"]] == ["predictions", "model", "analyzed"]
    assert result["checked"]["input files"] == 3 and result["checked"]["run stages"] == 3
    pred, model, analyzed = result["steps"]
    assert model["link"] == {
        "path": job.model, "manifest_sha256": "sha256:" + model["manifest_sha256"], "found_by": "path", "holds": True,
    }
    assert analyzed["link"]["holds"] is True and analyzed["analyzer"] == "one_pass"
    assert analyzed["elapsed_seconds"] is not None and analyzed["runner"] == "DirectRunner"
    assert {i["path"] for i in analyzed["inputs"]} == set(job.summary["inputs"]["train"])
    assert {i["path"] for i in pred["inputs"]} == set(job.summary["inputs"]["holdout"])


# ---------------------------------------------------------------- a small sealed chain


def _seal(directory, manifest, files):
    os.makedirs(directory, exist_ok=True)
    for rel, data in files.items():
        os.makedirs(os.path.dirname(os.path.join(directory, rel)), exist_ok=True)
        with open(os.path.join(directory, rel), "wb") as f:
            f.write(data)
    provenance.seal_manifest(str(directory), dict(manifest, started=provenance.utc_now(), runner="DirectRunner"))


@pytest.fixture
def chain(tmp_path):
    """data/{a.csv,b.csv,spec.yaml}, run/analyzed (from a.csv, with a
    preprocessing_fn module), run/model, run/predictions (on b.csv): real
    manifests, sealed and linked as the jobs do it."""
    from featurebridge.transforms.spec import load_spec

    data, run = tmp_path / "data", tmp_path / "run"
    data.mkdir()
    (data / "a.csv").write_text("age,label\n1,0\n2,1\n")
    (data / "b.csv").write_text("age,label\n3,1\n")
    (data / "spec.yaml").write_text(SPEC)
    (data / "my_fn.py").write_text("def preprocessing_fn(inputs):\n    return inputs\n")
    spec = load_spec(str(data / "spec.yaml"))
    fn = provenance.file_digest(str(data / "my_fn.py"))
    _seal(run / "analyzed", {
        "job": "analyze", "analyzer": "custom", "spec": spec.to_dict(), "spec_digest": spec.digest(),
        "spec_source": spec.source, "inputs": [provenance.file_digest(str(data / "a.csv"))],
        "preprocessing_fn": "my_fn:preprocessing_fn",
        "preprocessing_fn_source": dict(fn, reference="my_fn:preprocessing_fn"),
    }, {"transform_fn/saved_model.pb": b"graph", layout.CONSTANTS_JSON: b"{}"})
    _seal(run / "model", {
        "job": "train", "analyzed": dict(provenance.manifest_link(str(run / "analyzed")), analyzer="custom"),
    }, {"serving/1/saved_model.pb": b"model", "serving/1/" + layout.SERVING_INFO: b"{}", "metrics.json": b"{}"})
    _seal(run / "predictions", {
        "job": "predict", "model": str(run / "model"), "model_link": provenance.model_link(str(run / "model")),
        "inputs": [provenance.file_digest(str(data / "b.csv"))],
    }, {"predictions-00000-of-00001.jsonl": b'{"p": 1}\n'})
    return tmp_path


def _failed(result):
    return [(f.kind, f.what, f.path) for f in result.findings if f.failed]


def test_a_sealed_chain_holds_and_names_its_preprocessing_fn(chain, capsys):
    result = trace(str(chain / "run" / "predictions"), verify=True)
    assert result.ok and [s.kind for s in result.steps] == ["predictions", "model", "analyzed"]
    assert result.checked["preprocessing_fn modules"] == 1 and result.checked["spec files"] == 1
    assert lineage_cli.main([str(chain / "run" / "predictions"), "--verify"]) == 0
    text = capsys.readouterr().out
    assert "analyzer  custom; preprocessing_fn my_fn:preprocessing_fn" in text
    assert str(chain / "data" / "my_fn.py") in text


def test_an_input_changed_after_analyze_is_named_with_both_digests(chain, capsys):
    before = provenance.file_digest(str(chain / "data" / "a.csv"))["sha256"]
    with open(chain / "data" / "a.csv", "a") as f:
        f.write("3,0\n")
    status, result = _json(capsys, [str(chain / "run" / "predictions"), "--verify"])
    assert status == 1 and not result["ok"]
    (finding,) = [f for f in result["findings"] if f["failed"]]
    assert finding["kind"] == "changed" and finding["what"] == "input file" and finding["step"] == "analyzed"
    assert finding["path"] == str(chain / "data" / "a.csv") and finding["expected"] == "sha256:" + before
    assert finding["found"] == "sha256:" + provenance.file_digest(str(chain / "data" / "a.csv"))["sha256"]
    assert "re-run `featurebridge analyze`" in finding["message"]
    # Without --verify only the links are checked: still exit 0.
    assert lineage_cli.main([str(chain / "run" / "predictions")]) == 0
    capsys.readouterr()
    # The CLI says it in words and exits 1.
    with pytest.raises(SystemExit) as exit_:
        cli.main(["lineage", str(chain / "run" / "predictions"), "--verify"])
    assert exit_.value.code == 1
    out = capsys.readouterr().out
    assert "✗ CHANGED input file (analyzed): " + str(chain / "data" / "a.csv") in out and "expected sha256:" in out


def test_a_changed_model_file_spec_and_module_are_named(chain):
    with open(chain / "run" / "model" / "serving" / "1" / "saved_model.pb", "wb") as f:
        f.write(b"another model")
    (chain / "data" / "spec.yaml").write_text(SPEC.replace("zscore", "scale_0_1"))
    (chain / "data" / "my_fn.py").write_text("def preprocessing_fn(inputs):\n    return {}\n")
    result = trace(str(chain / "run" / "predictions"), verify=True)
    assert sorted(_failed(result)) == sorted([
        ("changed", "output file", str(chain / "run" / "model" / "serving" / "1" / "saved_model.pb")),
        ("changed", "serving export", str(chain / "run" / "model" / "serving" / "1" / "saved_model.pb")),
        ("changed", "spec file", str(chain / "data" / "spec.yaml")),
        ("changed", "preprocessing_fn module", str(chain / "data" / "my_fn.py")),
    ])
    # A file added later is said, not a failure.
    (chain / "run" / "analyzed" / "notes.txt").write_text("mine")
    model_only = trace(str(chain / "run" / "analyzed"), verify=True)
    assert [(f.kind, os.path.basename(f.path)) for f in model_only.findings if f.kind == "added"] == [("added", "notes.txt")]


def test_a_rewritten_upstream_breaks_the_link_by_digest(chain):
    manifest = chain / "run" / "analyzed" / layout.MANIFEST
    payload = json.loads(manifest.read_text())
    payload["finished"] = "2030-01-01T00:00:00+00:00"  # rewritten, e.g. by analyze --overwrite
    manifest.write_text(json.dumps(payload))
    result = trace(str(chain / "run" / "model"))
    assert _failed(result) == [("changed", "analyze output's manifest", str(manifest))]
    assert result.steps[-1].link["holds"] is False


def test_a_moved_upstream_is_found_by_its_digest_or_said_missing(chain, capsys):
    run = chain / "run"
    shutil.move(str(run / "model"), str(run / "model-v1"))
    result = trace(str(run / "predictions"), verify=True)
    assert result.ok and [s.path for s in result.steps][1] == str(run / "model-v1")
    assert [(f.kind, f.path) for f in result.findings] == [("moved", str(run / "model"))]
    assert result.steps[1].link["found_by"] == "digest"

    shutil.move(str(run / "model-v1"), str(chain / "elsewhere"))
    status, out = _json(capsys, [str(run / "predictions")])
    assert status == 1 and [s["kind"] for s in out["steps"]] == ["predictions"]
    (finding,) = out["findings"]
    assert finding["kind"] == "missing" and finding["path"] == str(run / "model")
    sha = provenance.file_digest(str(chain / "elsewhere" / layout.MANIFEST))["sha256"]
    assert finding["expected"] == "sha256:" + sha and sha in finding["message"]
    assert "identifies it, not its path" in finding["message"]


def test_a_damaged_manifest_is_named(chain, capsys):
    (chain / "run" / "model" / layout.MANIFEST).write_text('{"job": "train", ')
    result = trace(str(chain / "run" / "predictions"))
    assert _failed(result) == [("damaged", "model's manifest", str(chain / "run" / "model" / layout.MANIFEST))]
    assert "cannot be read as JSON" in result.findings[0].message
    # The manifest of the path given: an error naming it (the CLI's exit 2).
    with pytest.raises(ArtifactError, match="model/manifest.json cannot be read as JSON"):
        trace(str(chain / "run" / "model"))
    assert cli.main(["lineage", str(chain / "run" / "model")]) == 2
    assert "model/manifest.json cannot be read as JSON" in capsys.readouterr().err
    with pytest.raises(ArtifactError, match="not a featurebridge output"):
        trace(str(chain / "data"))


def test_a_users_preprocessing_fn_is_recorded_by_its_source_digest(tmp_path, monkeypatch):
    import importlib

    (tmp_path / "lineage_user_fn.py").write_text("def preprocessing_fn(inputs):\n    return inputs\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("lineage_user_fn")  # analyze imports it before recording it
    recorded = provenance.module_digest("lineage_user_fn:preprocessing_fn")
    assert recorded["path"] == str(tmp_path / "lineage_user_fn.py")
    assert recorded["sha256"] == provenance.file_digest(str(tmp_path / "lineage_user_fn.py"))["sha256"]
    assert provenance.module_digest(None) is None and provenance.module_digest("not_imported_xyz:fn") is None


def test_a_predictions_file_not_written_by_the_run_is_named(chain):
    extra = chain / "run" / "predictions" / "predictions-extra.jsonl"
    extra.write_text("{}\n")
    result = trace(str(extra))
    assert _failed(result) == [("changed", "output file", str(extra))]
