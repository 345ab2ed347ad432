"""End to end across the language boundary: a Python pipeline on the
PortableRunner (job server and external worker pool, separate processes)
calls the expansion service (another process) through Beam's own client
classes, and its outputs equal the in-process run of the same stages."""

import glob
import json
import os

import pytest

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.external import (
    ExternalTransform,
    ImplicitSchemaPayloadBuilder,
    SchemaAwareExternalTransform,
)

from tests.expansion_helpers import ANALYZE_ID, FQN_URN, PREDICT_ID, SPEC, Raw, start_server
from tests.xlang_helpers import (
    assert_close,
    assert_rows_equal,
    held_out_rows,
    raw_rows,
    read_jsonl,
    strip_rejected,
    write_jsonl,
)

pytestmark = pytest.mark.slow


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
        rows = p | beam.Create(raw_rows()).with_output_types(Raw)
        analyze = rows | "AnalyzeXlang" >> SchemaAwareExternalTransform(
            ANALYZE_ID, server.address, rearrange_based_on_discovery=True, spec=SPEC, output_dir=analyzed)
        write_jsonl(analyze["output"], str(tmp / "analyze_output.jsonl"), "AOut")
        write_jsonl(analyze["rejected"], str(tmp / "analyze_rejected.jsonl"), "ARej")
        transform = rows | "TransformFqn" >> ExternalTransform(
            FQN_URN,
            ImplicitSchemaPayloadBuilder({"constructor": "featurebridge.transforms.xlang.TransformRows",
                                          "kwargs": beam.Row(analyzed_dir=in_process["dir"])}),
            server.address,
        )
        write_jsonl(transform["output"], str(tmp / "transform_output.jsonl"), "TOut")
    log = server.log()
    return {
        "dir": analyzed,
        "configs": configs,
        "log": log,
        "analyze_output": read_jsonl(str(tmp / "analyze_output.jsonl")),
        "analyze_rejected": read_jsonl(str(tmp / "analyze_rejected.jsonl")),
        "transform_output": read_jsonl(str(tmp / "transform_output.jsonl")),
    }


def test_analyze_and_transform_across_the_boundary_equals_in_process(xlang, in_process):
    assert len(in_process["output"]) == 120
    assert_rows_equal(xlang["analyze_output"], in_process["output"])


def test_rejected_rows_across_the_boundary_equal_in_process(xlang, in_process):
    assert strip_rejected(xlang["analyze_rejected"]) == strip_rejected(in_process["rejected"]) == [
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
    assert_close(got, want, "constants")
    with open(os.path.join(xlang["dir"], "manifest.json")) as f:
        rows = json.load(f)["rows"]
    assert (rows["read"], rows["used"], rows["rejected"]) == (121, 120, 1)


def test_fqn_transform_across_the_boundary_equals_in_process(xlang, in_process):
    assert_rows_equal(xlang["transform_output"], in_process["output"])


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


@pytest.fixture(scope="module")
def xlang_predictions(server, portable_cluster, job, tmp_path_factory):
    from featurebridge.transforms.serving import load_serving_spec

    spec = load_serving_spec(job.model)
    rows, row_type = held_out_rows(job, spec)
    tmp = tmp_path_factory.mktemp("xlang_predict")
    with beam.Pipeline(options=PipelineOptions(portable_cluster.pipeline_flags())) as p:
        result = (
            p
            | beam.Create(rows).with_output_types(row_type)
            | SchemaAwareExternalTransform(PREDICT_ID, server.address, model_dir=job.model)
        )
        write_jsonl(result["output"], str(tmp / "predictions.jsonl"), "POut")
    return spec, read_jsonl(str(tmp / "predictions.jsonl"))


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
