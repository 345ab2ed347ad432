"""One-machine engine configs and their launcher, without starting an engine:
flink-local.yaml / spark-local.yaml, the jar checks, the worker pool, the
manifest's engine block, one Beam version for the Java side everywhere, and
TFT's traces serialized across threads."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
import zipfile

import pytest
from apache_beam.options.pipeline_options import (
    FlinkRunnerOptions,
    PipelineOptions,
    PortableOptions,
    SparkRunnerOptions,
    StandardOptions,
)

from featurebridge.pipelines import engines
from featurebridge.pipelines.engines import EngineError, engine_info, engine_session
from featurebridge.pipelines.runner_config import expand_runner_config
from tests.engine_helpers import CONFIGS, REPO


def _options(name, *extra):
    return PipelineOptions(expand_runner_config(["--runner_config", os.path.join(CONFIGS, name), *extra]))


@pytest.fixture
def engines_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(engines.ENGINES_ENV, str(tmp_path / "engines"))
    return tmp_path / "engines"


def test_flink_local_config(engines_dir):
    o = _options("flink-local.yaml")
    f = o.view_as(FlinkRunnerOptions)
    assert o.view_as(StandardOptions).runner == "FlinkRunner"
    assert f.flink_master == "[local]" and f.parallelism == 2
    assert f.flink_version in FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS
    assert f.flink_job_server_jar == str(engines_dir / engines.FLINK_JOB_SERVER_JAR)
    assert o.view_as(PortableOptions).environment_type == "EXTERNAL"
    assert o.get_all_options()["local_worker_pool"] is True


def test_spark_local_config(engines_dir):
    o = _options("spark-local.yaml")
    s = o.view_as(SparkRunnerOptions)
    assert o.view_as(StandardOptions).runner == "SparkRunner"
    assert s.spark_master_url == "local[2]"
    assert s.spark_job_server_jar == str(engines_dir / engines.SPARK_JOB_SERVER_JAR)
    assert o.get_all_options()["local_worker_pool"] is True


def test_default_engines_dir_is_the_versioned_cache(monkeypatch):
    monkeypatch.delenv(engines.ENGINES_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/cache")
    assert engines.engines_dir() == f"/cache/featurebridge/engines/beam-{engines.JAVA_BEAM_VERSION}"


def test_one_java_beam_version_everywhere():
    """pipelines/engines.py, the Makefile and both Maven modules name the same Beam."""
    version = engines.JAVA_BEAM_VERSION
    makefile = open(os.path.join(REPO, "Makefile")).read()
    assert re.search(r"^JAVA_BEAM_VERSION := (\S+)$", makefile, re.M).group(1) == version
    for pom in ("java/engines/pom.xml", "java/pom.xml"):
        text = open(os.path.join(REPO, pom)).read()
        assert re.search(r"<beam.version>([^<]+)</beam.version>", text).group(1) == version, pom
    engines_pom = open(os.path.join(REPO, "java/engines/pom.xml")).read()
    flink_minor = re.search(r"<flink.minor>([^<]+)</flink.minor>", engines_pom).group(1)
    assert engines.FLINK_JOB_SERVER_JAR == f"beam-runners-flink-{flink_minor}-job-server-{version}.jar"
    for name in ("flink-local.yaml", "spark-local.yaml"):
        assert f"-job-server-{version}.jar" in open(os.path.join(CONFIGS, name)).read(), name


@pytest.mark.parametrize("config", ["flink-local.yaml", "spark-local.yaml"])
def test_a_missing_job_server_jar_names_the_command_to_run(engines_dir, config):
    argv = expand_runner_config(["--runner_config", os.path.join(CONFIGS, config)])
    with pytest.raises(EngineError, match=r"does not exist\. Build the one-machine job servers with `make engines`"):
        with engine_session(argv):
            pass


def test_a_flink_runner_without_a_jar_is_refused_not_downloaded():
    with pytest.raises(EngineError, match=r"FlinkRunner needs --flink_job_server_jar: without it Beam downloads"):
        with engine_session(["--runner=FlinkRunner", "--flink_master=[local]"]):
            pass


def _launcher_jar(path, class_path):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\nClass-Path: " + " ".join(class_path) + "\n")


def test_manifest_engine_block_reads_versions_from_the_launcher_jar(tmp_path):
    jar = tmp_path / engines.FLINK_JOB_SERVER_JAR
    _launcher_jar(jar, ["flink-1.19-lib/beam-runners-flink-1.19-2.62.0.jar", "flink-1.19-lib/flink-runtime-1.19.0.jar"])
    info = engine_info({"runner": "FlinkRunner", "flink_master": "[local]", "parallelism": 2, "flink_job_server_jar": str(jar)})
    assert info["engine"] == "Apache Flink" and info["version"] == "1.19.0"
    assert info["embedded"] is True and info["job_server_beam_version"] == "2.62.0"
    jar = tmp_path / engines.SPARK_JOB_SERVER_JAR
    _launcher_jar(jar, ["spark-3-lib/beam-runners-spark-3-2.62.0.jar", "spark-3-lib/spark-core_2.12-3.5.0.jar"])
    info = engine_info({"runner": "SparkRunner", "spark_master_url": "local[2]", "spark_job_server_jar": str(jar)})
    assert (info["engine"], info["version"], info["master"]) == ("Apache Spark", "3.5.0", "local[2]")
    assert engine_info({"runner": "DirectRunner"})["engine"] == "Beam DirectRunner"


def test_local_worker_pool_runs_for_the_session_only():
    with engine_session(["--runner=PortableRunner", "--local_worker_pool"]) as flags:
        assert "--local_worker_pool" not in flags
        assert "--environment_type=EXTERNAL" in flags
        port = int([f for f in flags if f.startswith("--environment_config=")][0].rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            time.sleep(0.1)
        except OSError:
            return
    pytest.fail(f"the worker pool still listens on {port} after the session")


def test_tft_traces_are_serialized_across_threads():
    """Flink and Spark run stages on several threads of one SDK worker; TFT's
    object tracker is one global that asserts no other trace is active."""
    from featurebridge.transforms import tft_concurrency  # importing the package installs the serialization
    from tensorflow_transform import annotators, impl_helper

    assert tft_concurrency.installed()
    assert impl_helper.trace_and_write_v2_saved_model.__name__ == "trace_and_write_v2_saved_model"
    active, overlaps, errors = [], [], []

    def trace():
        try:
            with annotators.object_tracker_scope(annotators.ObjectTracker()):
                active.append(1)
                if len(active) > 1:
                    overlaps.append(1)
                time.sleep(0.05)
                active.pop()
        except BaseException as e:  # TFT's assertion, unserialized
            errors.append(e)

    threads = [threading.Thread(target=trace) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == [] and overlaps == []
