"""Real engines from the CLI: `featurebridge analyze` and `predict` with
runner_configs/flink-local.yaml (Beam's Flink job server, embedded Flink,
parallelism 2) and spark-local.yaml (Beam's Spark job server, local[2]), each
with an EXTERNAL SDK worker pool from this virtualenv. Their artifacts,
predictions, rejected rows and counts must equal the DirectRunner's on the
same data (conftest's ``direct_run`` / ``direct_predictions``).

Also on Flink: SDK workers killed while the job runs fail the job with
featurebridge's message, leave nothing in OUT, and a rerun into the same OUT
succeeds. Beam's Java runner fails such a job only after its data plane's
3-minute wait for the dead worker, so that job runs in the background from the
session's start (conftest's ``killed_flink_job``), while the other tests go on
(it is idle while it waits).

Needs Java 17 and the job servers from `make engines` (which `make test` runs
when Java and Maven are present). Without them these tests skip, saying what
to install; with CI=true they fail instead.
"""

from __future__ import annotations

import json
import os
import time
from importlib import metadata

import pytest

from featurebridge.pipelines import engines
from tests.engine_helpers import CONFIGS, require_engine, run_cli
from tests.runner_helpers import (
    ROWS,
    analyze_argv,
    assert_constants_match,
    assert_examples_match,
    assert_predictions_match,
    rejected_rows,
)


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def engines_present():
    """Skips (fails with CI=true) before the DirectRunner fixtures are paid for."""
    for name in ("flink", "spark"):
        require_engine(name)


@pytest.fixture(scope="module", params=["flink", "spark"])
def engine_run(request, data, direct_run, direct_predictions):
    """One engine's CLI runs on the shared data: analyze, then predict with the
    DirectRunner's model."""
    name = request.param
    jar = require_engine(name)
    config = os.path.join(CONFIGS, f"{name}-local.yaml")
    out = data / f"out_{name}"
    started = time.monotonic()
    analyzed = run_cli("analyze", *analyze_argv(data, out, "--runner_config", config))
    analyze_s = time.monotonic() - started
    model, _ = direct_predictions
    pred_out = data / f"pred_{name}"
    started = time.monotonic()
    predicted = run_cli(
        "predict", "--model", str(model), "--input", str(data / "d.csv"), "--output", str(pred_out),
        "--runner_config", config,
    )
    predict_s = time.monotonic() - started
    print(f"{name}: analyze {analyze_s:.1f} s, predict {predict_s:.1f} s (command to result)")
    return {
        "name": name,
        "jar": jar,
        "out": out,
        "pred_out": pred_out,
        "analyze": analyzed,
        "predict": predicted,
        "manifest": json.loads((out / "manifest.json").read_text()),
        "pred_manifest": json.loads((pred_out / "manifest.json").read_text()),
    }


def test_constants_equal_direct(engine_run, direct_run, data):
    assert_constants_match(direct_run[0], engine_run["out"], data)


def test_transformed_examples_equal_direct(engine_run, direct_run):
    assert_examples_match(direct_run[0], engine_run["out"])


def test_rejected_rows_and_counts_equal_direct(engine_run, direct_run):
    assert engine_run["manifest"]["rows"] == direct_run[1]["rows"]
    assert engine_run["manifest"]["rows"]["read"] == ROWS
    assert rejected_rows(engine_run["out"]) == rejected_rows(direct_run[0])
    assert len(rejected_rows(engine_run["out"])) == 1


def test_predictions_equal_direct(engine_run, direct_predictions, data):
    assert engine_run["pred_manifest"]["rows"] == direct_predictions[1]["rows"]
    assert_predictions_match(data / "pred_direct", engine_run["pred_out"])


def test_manifest_records_the_engine(engine_run):
    expected = {"flink": ("Apache Flink", "FlinkRunner", "1.19."), "spark": ("Apache Spark", "SparkRunner", "3.5.")}
    engine_name, runner, version = expected[engine_run["name"]]
    for manifest in (engine_run["manifest"], engine_run["pred_manifest"]):
        engine = manifest["engine"]
        assert manifest["runner"] == runner
        assert engine["engine"] == engine_name and engine["version"].startswith(version), engine
        assert engine["embedded"] is True
        assert engine["job_server_beam_version"] == engines.JAVA_BEAM_VERSION
        assert engine["sdk_beam_version"] == metadata.version("apache-beam")
        assert engine["job_server_jar"] == engine_run["jar"]


def test_progress_and_summary_as_on_the_direct_runner(engine_run):
    analyze_err = engine_run["analyze"].stderr
    runner = {"flink": "FlinkRunner", "spark": "SparkRunner"}[engine_run["name"]]
    assert f"[featurebridge] Analyzing 1 file(s), 0.0 MB, with {runner}" in analyze_err
    assert "[featurebridge] SDK worker pool (this Python environment) on localhost:" in analyze_err
    assert f"Analyzed {ROWS} rows" in engine_run["analyze"].stdout
    assert "1 rejected rows with reasons" in engine_run["analyze"].stdout


def test_killed_worker_fails_the_flink_job_clearly_leaves_nothing_and_a_rerun_succeeds(killed_flink_job, data):
    require_engine("flink")
    assert killed_flink_job is not None, "conftest did not start the killed Flink job"
    killed = killed_flink_job.wait()
    assert killed["worker_was_running"], "no SDK worker connected; cannot test a mid-job death"
    assert killed["rc"] == 1, killed["stderr"][-3000:]
    last = killed["stderr"].strip().splitlines()[-1]
    assert last.startswith("featurebridge analyze: failed: "), last
    assert "failed in state FAILED" in last, last
    assert "Nothing was written to the output directory" in last, last
    assert "SDK workers' logs" in last, last
    assert not killed["out_exists"]
    assert killed["staging"] == []
    rerun = run_cli(
        "analyze", *analyze_argv(data, killed_flink_job.out, "--runner_config", os.path.join(CONFIGS, "flink-local.yaml"))
    )
    assert f"Analyzed {ROWS} rows" in rerun.stdout
    manifest = json.loads((killed_flink_job.out / "manifest.json").read_text())
    assert manifest["rows"]["used"] == ROWS - 1
