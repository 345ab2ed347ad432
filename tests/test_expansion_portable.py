"""End to end across the language boundary: a Python pipeline on the
PortableRunner (job server and external worker pool, separate processes)
calls the expansion service (another process) through Beam's own client
classes, and its outputs equal the in-process run of the same stages."""

import glob
import json
import os
import typing
from typing import Dict, List, Optional

import pytest

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.external import (
    ExternalTransform,
    ImplicitSchemaPayloadBuilder,
    SchemaAwareExternalTransform,
)

from tests.job_helpers import job  # noqa: F401  (fixture: the shared demo run with a model)
from tests.test_expansion_service import ANALYZE_ID, FQN_URN, PREDICT_ID, SPEC, Raw, start_server

pytestmark = pytest.mark.slow


def _rows() -> List[Raw]:
    rows = []
    for i in range(120):
        x = None if i % 11 == 0 else float((i * 37) % 101) / 7.0
        c = None if i % 13 == 0 else ["red", "green", "blue", "green"][i % 4]
        rows.append(Raw(f"id{i:03d}", x, c, i % 2))
    rows.append(Raw("bad1", None, "red", None))  # label missing: rejected
    return rows


def _to_json(row) -> str:
    return json.dumps(row._asdict(), sort_keys=True)


def _write(pcoll, path: str, label: str):
    return (
        pcoll
        | f"{label}Json" >> beam.Map(_to_json)
        | f"{label}Write" >> beam.io.WriteToText(path, num_shards=1, shard_name_template="")
    )


def _read(path: str) -> List[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _by_id(rows: List[dict]) -> Dict[str, dict]:
    return {r["id"]: r for r in rows}


def _assert_rows_equal(actual: List[dict], expected: List[dict]) -> None:
    a, e = _by_id(actual), _by_id(expected)
    assert sorted(a) == sorted(e)
    for key in e:
        assert set(a[key]) == set(e[key])
        for field, value in e[key].items():
            if isinstance(value, float):
                assert a[key][field] == pytest.approx(value, rel=1e-5, abs=1e-6), (key, field)
            else:
                assert a[key][field] == value, (key, field)


def _assert_close(got, want, where: str) -> None:
    """Equal JSON values, floats within 1e-5 (combiners may sum in another order)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want), where
        for k in want:
            _assert_close(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            _assert_close(g, w, f"{where}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-5, abs=1e-6), where
    else:
        assert got == want, where


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    """The stages run in process on the DirectRunner: the reference results."""
    from transforms.xlang import AnalyzeAndTransformRows

    tmp = tmp_path_factory.mktemp("in_process")
    analyzed = str(tmp / "analyzed")
    with beam.Pipeline(options=PipelineOptions(runner="DirectRunner")) as p:
        result = p | beam.Create(_rows()).with_output_types(Raw) | AnalyzeAndTransformRows(SPEC, analyzed)
        _write(result["output"], str(tmp / "output.jsonl"), "Out")
        _write(result["rejected"], str(tmp / "rejected.jsonl"), "Rej")
    return {
        "dir": analyzed,
        "output": _read(str(tmp / "output.jsonl")),
        "rejected": _read(str(tmp / "rejected.jsonl")),
    }


@pytest.fixture(scope="module")
def server(portable_cluster, tmp_path_factory):
    """The expansion service, expanding into the cluster's worker pool (EXTERNAL)."""
    tmp = tmp_path_factory.mktemp("xlang_server")
    with start_server(str(tmp), "--environment", "external",
                      "--environment_config", portable_cluster.worker_pool_endpoint) as s:
        yield s


@pytest.fixture(scope="module")
def xlang(server, portable_cluster, in_process, tmp_path_factory):
    """The same stages through the expansion service, run on the PortableRunner."""
    tmp = tmp_path_factory.mktemp("xlang")
    configs = SchemaAwareExternalTransform.discover(server.address)
    analyzed = str(tmp / "analyzed")
    options = PipelineOptions(portable_cluster.pipeline_flags())
    with beam.Pipeline(options=options) as p:
        rows = p | beam.Create(_rows()).with_output_types(Raw)
        analyze = rows | "AnalyzeXlang" >> SchemaAwareExternalTransform(
            ANALYZE_ID, server.address, rearrange_based_on_discovery=True, spec=SPEC, output_dir=analyzed)
        _write(analyze["output"], str(tmp / "analyze_output.jsonl"), "AOut")
        _write(analyze["rejected"], str(tmp / "analyze_rejected.jsonl"), "ARej")
        transform = rows | "TransformFqn" >> ExternalTransform(
            FQN_URN,
            ImplicitSchemaPayloadBuilder({"constructor": "transforms.xlang.TransformRows",
                                          "kwargs": beam.Row(analyzed_dir=in_process["dir"])}),
            server.address,
        )
        _write(transform["output"], str(tmp / "transform_output.jsonl"), "TOut")
    log = server.log()
    return {
        "dir": analyzed,
        "configs": configs,
        "log": log,
        "analyze_output": _read(str(tmp / "analyze_output.jsonl")),
        "analyze_rejected": _read(str(tmp / "analyze_rejected.jsonl")),
        "transform_output": _read(str(tmp / "transform_output.jsonl")),
    }


def test_analyze_and_transform_across_the_boundary_equals_in_process(xlang, in_process):
    assert len(in_process["output"]) == 120
    _assert_rows_equal(xlang["analyze_output"], in_process["output"])


def test_rejected_rows_across_the_boundary_equal_in_process(xlang, in_process):
    def strip(rows):
        return sorted((r["column"], r["value"], r["reason"]) for r in rows)

    assert strip(xlang["analyze_rejected"]) == strip(in_process["rejected"]) == [
        ("y", None, "missing value and the spec says reject")
    ]


def test_xlang_analyze_writes_the_same_artifacts(xlang, in_process):
    for d in (xlang["dir"], in_process["dir"]):
        for name in ("transform_fn", "transformed_metadata", "constants.json", "manifest.json"):
            assert os.path.exists(os.path.join(d, name)), (d, name)
        assert glob.glob(os.path.join(d, "transformed", "part-*.tfrecord.gz"))
    with open(os.path.join(xlang["dir"], "constants.json")) as f:
        got = json.load(f)
    with open(os.path.join(in_process["dir"], "constants.json")) as f:
        want = json.load(f)
    _assert_close(got, want, "constants")
    with open(os.path.join(xlang["dir"], "manifest.json")) as f:
        rows = json.load(f)["rows"]
    assert (rows["read"], rows["used"], rows["rejected"]) == (121, 120, 1)


def test_fqn_transform_across_the_boundary_equals_in_process(xlang, in_process):
    _assert_rows_equal(xlang["transform_output"], in_process["output"])


def test_the_client_used_discovery_and_staged_artifacts(xlang):
    assert ANALYZE_ID in {c.identifier for c in xlang["configs"]}
    log = xlang["log"]
    assert "DiscoverSchemaTransform from" in log
    assert "Expand beam:schematransform:org.featurebridge:analyze_and_transform:v1" in log
    assert "Expand beam:schematransform:org.featurebridge:transform:v1 (beam:transforms:python:fully_qualified_named)" in log
    # Beam's client fetched the environment's dependencies from our retrieval service.
    assert "serving artifact featurebridge-artifact:" in log and "(featurebridge-0.1.0.tar.gz)" in log


# ---------------------------------------------------------------------------
# Predict: the demo's held-out file through the service, against the demo's
# own in-process predictions for the same rows.


def _held_out_rows(job, spec):
    import csv

    from apache_beam.typehints.row_type import RowTypeConstraint

    parse = {"float": float, "int": lambda v: int(float(v)), "string": str}
    held_out = sorted(glob.glob(os.path.join(job.data, "*.csv")))[-1]
    rows = []
    with open(held_out, encoding="utf-8", newline="") as f:
        for record in csv.DictReader(f):
            values = {}
            for c in spec.columns:
                text = record.get(c.name)
                values[c.name] = None if text is None or text.strip() == "" else parse[c.type](text)
            rows.append(beam.Row(**values))
    row_type = RowTypeConstraint.from_fields(
        [(c.name, Optional[{"float": float, "int": int, "string": str}[c.type]]) for c in spec.columns])
    return rows, row_type


@pytest.fixture(scope="module")
def xlang_predictions(server, portable_cluster, job, tmp_path_factory):
    from transforms.predict import load_serving_spec

    spec = load_serving_spec(job.model)
    rows, row_type = _held_out_rows(job, spec)
    tmp = tmp_path_factory.mktemp("xlang_predict")
    with beam.Pipeline(options=PipelineOptions(portable_cluster.pipeline_flags())) as p:
        result = (
            p
            | beam.Create(rows).with_output_types(row_type)
            | SchemaAwareExternalTransform(PREDICT_ID, server.address, model_dir=job.model)
        )
        _write(result["output"], str(tmp / "predictions.jsonl"), "POut")
    return spec, _read(str(tmp / "predictions.jsonl"))


def test_predict_across_the_boundary_equals_in_process(xlang_predictions, job):
    spec, got = xlang_predictions
    want = {r[spec.key]: r for r in job.prediction_rows()}
    assert got and len(got) == len({r[spec.key] for r in got})
    assert {r[spec.key] for r in got} == set(want)
    for r in got:
        w = want[r[spec.key]]
        assert r["probability"] == pytest.approx(w["probability"], rel=1e-5, abs=1e-6)
        assert r["class_id"] == w["class_id"]
        assert r["input_row"] >= 1 and r["input_source"].startswith("rows:")
