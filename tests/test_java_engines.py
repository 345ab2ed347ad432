"""The Java side on real engines: the `java/` module's FeatureBridgeEngineIT
builds one Java pipeline (PortableRunner, Java steps in LOOPBACK) that calls
featurebridge's stages through the expansion service, both call styles:
analyze-and-transform by SchemaTransform identifier, transform and predict by
Python class name (PythonExternalTransform). It runs once on Beam's Flink job
server (all three stages) and once on Spark's (analyze-and-transform), and
what it writes must equal the in-process Python results on the same rows.

Processes: an EXTERNAL Python worker pool, featurebridge's expansion service
expanding into it, and the Flink and Spark job servers from `make engines`,
each in its own process group, killed in teardown. Java side Beam 2.62.0,
Python side apache-beam from constraints.txt (see docs/java/README.md).

Needs Java 17, Maven (with the module's dependencies in ~/.m2, or network)
and `make engines`. Without them these tests skip, saying what to install;
with CI=true they fail instead.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from typing import Dict, List

import pytest

from featurebridge.pipelines import engines, java_services
from featurebridge.pipelines.engines import log_tail
from featurebridge.pipelines.java_services import JOB_SERVERS, MAVEN_TIMEOUT_S, ServiceGroup
from tests.engine_helpers import skip_or_fail
from tests.expansion_helpers import ANALYZE_ID, FQN_URN, PREDICT_ID, SCHEMA_TRANSFORM_URN, SPEC, TRANSFORM_ID, start_server
from tests.repo import REPO_ROOT, worker_env
from tests.xlang_helpers import (
    assert_close,
    assert_rows_equal,
    held_out_rows,
    raw_rows,
    read_jsonl,
    strip_rejected,
    to_json,
)

pytestmark = pytest.mark.slow

JAVA_DIR = os.path.join(REPO_ROOT, "java")
IT_CLASS = "org.featurebridge.FeatureBridgeEngineIT"
UNIT_TEST_CLASSES = [
    "org.featurebridge.FeatureBridgeTest",
    "org.featurebridge.SchemaTransformPayloadsTest",
    "org.featurebridge.RawRowsTest",
]
JAVA_RUN_TIMEOUT_S = 240


# ---------------------------------------------------------------------------
# Tools and processes (featurebridge.pipelines.java_services), with the test environment.


def _require_java_tools() -> None:
    """Skips (fails with CI=true) unless java, mvn and both job-server jars are here."""
    problems = java_services.missing_java_tools()
    if problems:
        skip_or_fail(
            "The Java engine tests need Java 17 and Maven (e.g. `apt-get install "
            "openjdk-17-jdk-headless maven`) and the job servers from `make engines`: "
            + "; ".join(problems) + "."
        )


def _tail(path: str, chars: int = 6000) -> str:
    return log_tail(path, chars)


def _run(argv: List[str], log_path: str, timeout: float, cwd: str) -> int:
    """Runs ``argv`` to completion (its own process group, killed on timeout); returns rc."""
    return java_services.run_logged(argv, log_path, timeout, cwd, worker_env())


# ---------------------------------------------------------------------------
# Fixtures: the build, the servers, the inputs, the runs.


def _maven_build(log_path: str) -> str:
    """Compiles the module (offline when ~/.m2 has everything) and returns the test classpath."""
    started = time.monotonic()
    try:
        cp = java_services.maven_build(JAVA_DIR, log_path, MAVEN_TIMEOUT_S, worker_env())
    except java_services.JavaBuildError as e:
        pytest.fail(str(e))
    print(f"mvn test-compile: {time.monotonic() - started:.1f} s")
    return cp


@pytest.fixture(scope="session")  # session: pytest sets up wider scopes first
def java_tools():
    """Java, Maven and the job servers, or a skip (a failure with CI=true), before any
    expensive fixture runs."""
    _require_java_tools()


@pytest.fixture(scope="module")
def java_engines(java_tools, tmp_path_factory, in_process, job):
    """Builds java/, starts the services, runs FeatureBridgeEngineIT on Flink and on
    Spark, and yields what each run wrote (or its failure, with logs)."""
    tmp = tmp_path_factory.mktemp("java_engines")
    logs = tmp / "logs"
    logs.mkdir()
    build: Dict[str, object] = {}
    builder = threading.Thread(target=lambda: build.update(cp=_capture(_maven_build, str(logs / "mvn.log"))))
    builder.start()
    services = ServiceGroup(str(logs), worker_env(), REPO_ROOT)
    try:
        services.start_worker_pool()
        for name in JOB_SERVERS:
            services.start_job_server(name, str(tmp / (name + "_artifacts")))
        services.wait("worker_pool")
        with start_server(str(logs), "--environment", "external", "--environment_config",
                          services.endpoint("worker_pool"), "--no_stage_project",
                          root=str(tmp_path_factory.getbasetemp()), name="expansion_service") as server:
            for name in JOB_SERVERS:
                services.wait(name)
            builder.join(MAVEN_TIMEOUT_S * 2 + 10)
            if isinstance(build.get("cp"), BaseException) or "cp" not in build:
                raise build.get("cp") or RuntimeError("the Maven build did not finish")
            inputs = _write_inputs(tmp, in_process, job)
            runs = {}
            for engine in JOB_SERVERS:
                props = {
                    "expansionService": server.address,
                    "jobEndpoint": services.endpoint(engine),
                    "spec": inputs["spec"],
                    "rows": inputs["rows"],
                    "out": str(tmp / f"{engine}_out"),
                    "analyzeDir": str(tmp / f"{engine}_analyzed"),
                    "parallelism": "2",
                    "timeoutSeconds": str(JAVA_RUN_TIMEOUT_S - 30),
                }
                if engine == "flink":  # all stages; Spark runs analyze-and-transform only
                    props.update(analyzedDir=in_process["dir"], modelDir=job.model,
                                 predictSpec=inputs["predict_spec"], predictRows=inputs["predict_rows"])
                runs[engine] = _run_engine_it(engine, build["cp"], props, str(logs), services)
            yield {"runs": runs, "cp": build["cp"], "server_log": server.log, "logs": str(logs)}
    finally:
        services.stop()
        builder.join(1)


def _capture(fn, *args):
    """fn(*args), or the exception it raised (for a thread)."""
    try:
        return fn(*args)
    except BaseException as e:  # noqa: BLE001  (re-raised in the fixture)
        return e


def _write_inputs(tmp, in_process_run, job_run) -> Dict[str, str]:
    """The rows and specs the Java pipeline reads: the same rows the in-process
    reference used, and the demo's held-out rows for its model."""
    from featurebridge.transforms.serving import load_serving_spec

    (tmp / "spec.yaml").write_text(SPEC)
    with open(tmp / "rows.jsonl", "w", encoding="utf-8") as f:
        for row in raw_rows():
            f.write(to_json(row) + "\n")
    spec = load_serving_spec(job_run.model)
    rows, _ = held_out_rows(job_run, spec)
    with open(tmp / "predict_rows.jsonl", "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row.as_dict()) + "\n")
    (tmp / "predict_spec.json").write_text(spec.to_json())
    return {
        "spec": str(tmp / "spec.yaml"),
        "rows": str(tmp / "rows.jsonl"),
        "predict_spec": str(tmp / "predict_spec.json"),
        "predict_rows": str(tmp / "predict_rows.jsonl"),
    }


def _run_engine_it(engine: str, cp: str, props: Dict[str, str], log_dir: str, services: ServiceGroup) -> dict:
    """Runs FeatureBridgeEngineIT (JUnit, LOOPBACK Java workers in that JVM) on one engine."""
    log_path = os.path.join(log_dir, f"java_{engine}.log")
    argv = ["java", "-cp", cp, *[f"-Dfeaturebridge.{k}={v}" for k, v in props.items()],
            "org.junit.runner.JUnitCore", IT_CLASS]
    started = time.monotonic()
    rc = _run(argv, log_path, JAVA_RUN_TIMEOUT_S, JAVA_DIR)
    wall = time.monotonic() - started
    text = _tail(log_path, 200_000)
    match = re.search(r"featurebridge engine run: (\w+) in ([0-9.]+) s", text)
    print(f"{engine}: Java pipeline {match.group(0) if match else 'did not run'}; java process {wall:.1f} s")
    result = {"engine": engine, "rc": rc, "props": props, "wall_s": wall,
              "ran": bool(match and match.group(1) == "DONE")}
    if rc != 0 or not result["ran"] or "OK (1 test)" not in text:
        result["error"] = (
            f"FeatureBridgeEngineIT on {engine} failed (rc {rc}).\n--- java log tail:\n{text[-6000:]}\n"
            f"--- {engine} job server log tail:\n{services.log(engine)}\n"
            f"--- worker pool log tail:\n{services.log('worker_pool')}"
        )
        return result
    out = props["out"]
    for name in os.listdir(out):
        if name.endswith(".jsonl"):
            result[name[: -len(".jsonl")]] = read_jsonl(os.path.join(out, name))
    return result


def _run_of(java_engines, engine: str) -> dict:
    run = java_engines["runs"][engine]
    if "error" in run:
        pytest.fail(run["error"], pytrace=False)
    return run


# ---------------------------------------------------------------------------
# Tests.


def test_the_java_module_builds_on_the_engines_beam_version():
    with open(os.path.join(JAVA_DIR, "pom.xml"), encoding="utf-8") as f:
        pom = f.read()
    assert f"<beam.version>{engines.JAVA_BEAM_VERSION}</beam.version>" in pom


def test_java_unit_tests_pass(java_engines, tmp_path):
    log_path = str(tmp_path / "junit.log")
    rc = _run(["java", "-cp", java_engines["cp"], "org.junit.runner.JUnitCore", *UNIT_TEST_CLASSES],
              log_path, 120, JAVA_DIR)
    text = _tail(log_path)
    assert rc == 0 and re.search(r"OK \(\d+ tests\)", text), text


@pytest.mark.parametrize("engine", list(JOB_SERVERS))
def test_analyze_and_transform_via_schema_transform_equals_in_process(java_engines, in_process, engine):
    run = _run_of(java_engines, engine)
    assert len(in_process["output"]) == 120
    assert_rows_equal(run["analyze_output"], in_process["output"])


@pytest.mark.parametrize("engine", list(JOB_SERVERS))
def test_rejected_rows_equal_in_process(java_engines, in_process, engine):
    run = _run_of(java_engines, engine)
    assert strip_rejected(run["analyze_rejected"]) == strip_rejected(in_process["rejected"]) == [
        ("y", None, "missing value and the spec says reject")
    ]
    assert run["analyze_rejected"][0]["source"].startswith("rows:")


@pytest.mark.parametrize("engine", list(JOB_SERVERS))
def test_analyze_artifacts_equal_in_process(java_engines, in_process, engine):
    run = _run_of(java_engines, engine)
    analyzed = run["props"]["analyzeDir"]
    for name in ("transform_fn", "transformed_metadata", "constants.json", "manifest.json"):
        assert os.path.exists(os.path.join(analyzed, name)), name
    with open(os.path.join(analyzed, "constants.json")) as f:
        got = json.load(f)
    with open(os.path.join(in_process["dir"], "constants.json")) as f:
        want = json.load(f)
    assert_close(got, want, "constants")
    with open(os.path.join(analyzed, "manifest.json")) as f:
        rows = json.load(f)["rows"]
    assert (rows["read"], rows["used"], rows["rejected"]) == (121, 120, 1)


def test_transform_via_python_class_equals_in_process(java_engines, in_process):
    run = _run_of(java_engines, "flink")
    assert_rows_equal(run["transform_output"], in_process["output"])
    assert strip_rejected(run["transform_rejected"]) == strip_rejected(in_process["rejected"])


def test_predict_via_python_class_equals_the_demo(java_engines, job):
    from featurebridge.transforms.serving import load_serving_spec

    run = _run_of(java_engines, "flink")
    key = load_serving_spec(job.model).key
    want = {r[key]: r for r in job.prediction_rows()}
    got = run["predict_output"]
    assert got and len(got) == len({r[key] for r in got})
    assert {r[key] for r in got} == set(want)
    for r in got:
        assert r["probability"] == pytest.approx(want[r[key]]["probability"], rel=1e-5, abs=1e-6)
        assert r["class_id"] == want[r[key]]["class_id"]
        assert r["input_row"] >= 1 and r["input_source"].startswith("rows:")
    assert run["predict_rejected"] == []


def test_the_java_client_used_both_call_styles(java_engines):
    _run_of(java_engines, "flink")
    log = java_engines["server_log"]()
    assert "DiscoverSchemaTransform from" in log
    assert f"Expand {ANALYZE_ID} ({SCHEMA_TRANSFORM_URN})" in log
    assert f"Expand {TRANSFORM_ID} ({FQN_URN})" in log
    assert f"Expand {PREDICT_ID} ({FQN_URN})" in log
