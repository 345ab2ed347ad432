"""Runners: the same analyze job on the DirectRunner and on the PortableRunner
(Beam job server + external SDK worker pool, separate processes), runner
config files, what workers get (setup.py, the SDK image), and a worker that
dies mid-job."""

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import (
    FlinkRunnerOptions,
    PipelineOptions,
    PortableOptions,
    SetupOptions,
    SparkRunnerOptions,
    StandardOptions,
    WorkerOptions,
    GoogleCloudOptions,
)
from apache_beam.transforms.environments import DockerEnvironment

from featurebridge.pipelines import analyze
from featurebridge.pipelines.runner_config import RunnerConfigError, expand_runner_config, load_runner_config
from featurebridge.pipelines.local_cluster import portable_cluster as start_cluster
from tests.repo import worker_env
from tests.runner_helpers import (
    ROWS,
    analyze_argv as _argv,
    assert_constants_match,
    assert_examples_match,
    assert_predictions_match,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "runner_configs")


@pytest.fixture(scope="module")
def killed_run(data):
    """A portable analyze run (CLI, subprocess) whose worker pool is killed once an
    SDK harness is running the job; on its own cluster."""
    out = data / "out_portable"
    with start_cluster(str(data / "killed_cluster"), env={"PYTHONPATH": REPO}) as cluster:
        proc = subprocess.Popen(
            [sys.executable, "-m", "featurebridge.pipelines.cli", "analyze", *_argv(data, out, *cluster.pipeline_flags())],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=worker_env(),
            cwd=REPO,
        )
        try:
            connected = cluster.wait_for_harness_connected(timeout=150)
            cluster.kill_worker_pool()
            try:
                _, err_text = proc.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err_text = proc.communicate()
                pytest.fail(
                    f"The portable job did not end within 120 s of its worker pool's death (harness connected: "
                    f"{connected}).\nLauncher stderr, tail:\n{err_text[-2000:]}\nJob server log, tail:\n"
                    f"{cluster.log('job_server')}"
                )
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    # Looked at now: the rerun below writes to the same --output.
    leftovers = {
        "out_exists": os.path.exists(out),
        "staging": glob.glob(str(data / ".out_portable.staging-*")),
    }
    return {"out": out, "connected": connected, "rc": proc.returncode, "stderr": err_text, **leftovers}


@pytest.fixture(scope="module")
def portable_run(data, portable_cluster, killed_run):
    """The rerun after the killed job: same --output, fresh cluster; config file plus
    command-line flags that must win over it (the cluster's real ports)."""
    out = killed_run["out"]
    flags = [
        "--runner_config", os.path.join(CONFIGS, "portable.yaml"),
        f"--job_endpoint={portable_cluster.job_endpoint}",
        f"--environment_config={portable_cluster.worker_pool_endpoint}",
        # Workers get the project: the launcher builds an sdist from setup.py and stages it.
        f"--setup_file={os.path.join(REPO, 'setup.py')}",
    ]
    manifest = analyze.run(_argv(data, out, *flags))
    return out, manifest


# ---------------------------------------------------------------- portable == direct


@pytest.mark.slow
def test_portable_constants_equal_direct(direct_run, portable_run, data):
    assert_constants_match(direct_run[0], portable_run[0], data)


@pytest.mark.slow
def test_portable_transformed_data_equals_direct(direct_run, portable_run):
    assert_examples_match(direct_run[0], portable_run[0])


@pytest.mark.slow
def test_portable_manifest_and_rejected_rows(direct_run, portable_run, portable_cluster):
    out, manifest = portable_run
    assert manifest["runner"] == "PortableRunner"
    assert manifest["rows"] == direct_run[1]["rows"] == {
        **manifest["rows"], "read": ROWS, "used": ROWS - 1, "rejected": 1,
    }
    # Command-line flags won over portable.yaml's localhost:8099 / localhost:50000.
    opts = manifest["pipeline_options"]
    assert opts["job_endpoint"] == portable_cluster.job_endpoint
    assert opts["environment_config"] == portable_cluster.worker_pool_endpoint
    assert opts["environment_type"] == "EXTERNAL"
    rejected = [json.loads(line) for p in glob.glob(str(out / "rejected" / "*.jsonl")) for line in open(p)]
    assert len(rejected) == 1 and "income" in json.dumps(rejected[0])


@pytest.mark.slow
def test_setup_file_is_staged_for_workers(portable_run, portable_cluster):
    """--setup_file: the launcher builds an sdist of this project and the job server
    stages it; that sdist is what a worker (boot entrypoint) would pip-install."""
    staged = glob.glob(os.path.join(portable_cluster.staging_dir, "job-*", "*workflow.tar.gz"))
    assert staged, os.listdir(portable_cluster.staging_dir)
    with tarfile.open(staged[-1]) as tar:
        names = tar.getnames()
    for member in ("setup.py", "transforms/__init__.py", "pipelines/cli.py", "expansion_service/__init__.py"):
        assert any(n.endswith("/" + member) for n in names), member


# ---------------------------------------------------------------- a worker that dies


@pytest.mark.slow
def test_worker_death_fails_clearly_and_leaves_nothing(killed_run):
    assert killed_run["connected"], "no SDK harness connected to the job; cannot test a mid-job death"
    assert killed_run["rc"] == 1, killed_run["stderr"][-3000:]
    last = killed_run["stderr"].strip().splitlines()[-1]
    assert re.match(r"featurebridge analyze: failed: .*Pipeline job-\S+ failed in state FAILED", last), last
    assert "SDK workers' logs" in last and "Nothing was written to the output directory" in last, last
    # No partial artifact: no output dir, no staging dir left beside it.
    assert not killed_run["out_exists"]
    assert killed_run["staging"] == []


def _kill_this_sdk_harness(_):
    os.kill(os.getpid(), 9)


def test_harness_dying_in_a_bundle_without_outputs_fails_the_job(tmp_path):
    """The window where Beam's stock Python job server waits forever (the bundle
    has no data output, so only its control response is awaited): the test
    cluster's job server (tests/job_server_main.py) fails the job instead, as
    Flink and Spark do, so the worker-death test above cannot hang."""
    with start_cluster(str(tmp_path / "cluster"), env={"PYTHONPATH": REPO}) as cluster:
        pipeline = beam.Pipeline(options=PipelineOptions(cluster.pipeline_flags()))
        _ = pipeline | beam.Create([1]) | beam.Map(_kill_this_sdk_harness)
        with pytest.raises(RuntimeError, match=r"failed in state FAILED"):
            pipeline.run().wait_until_finish()
        log = open(os.path.join(cluster.log_dir, "job_server.log"), errors="replace").read()
        assert re.search(r"The SDK harness (ended|broke) its control stream", log), log[-3000:]


@pytest.mark.slow
def test_rerun_after_worker_death_succeeds(killed_run, portable_run):
    out, manifest = portable_run
    assert out == killed_run["out"]
    assert manifest["rows"]["used"] == ROWS - 1
    for name in ("transform_fn", "transformed_metadata", "transformed", "constants.json", "manifest.json"):
        assert os.path.exists(out / name), name


# ---------------------------------------------------------------- runner configs


def _options(name, *extra):
    return PipelineOptions(expand_runner_config(["--runner_config", os.path.join(CONFIGS, name), *extra]))


def _pinned(package):
    for line in open(os.path.join(REPO, "constraints.txt")):
        if line.lower().startswith(package + "=="):
            return line.split("==", 1)[1].strip()
    raise AssertionError(f"{package} is not pinned in constraints.txt")


def _image_tag_ok(image):
    # registry/featurebridge-beam-sdk:<featurebridge>-beam<beam>-py<major.minor>
    name, tag = image.rsplit(":", 1)
    assert name.endswith("/featurebridge-beam-sdk"), image
    assert tag.endswith(f"-beam{beam.__version__}-py{sys.version_info.major}.{sys.version_info.minor}"), image
    return image


def test_every_runner_has_a_config():
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(CONFIGS, "*.yaml")))
    assert names == [
        "dataflow.yaml", "direct.yaml", "flink-local.yaml", "flink.yaml", "portable.yaml",
        "spark-local.yaml", "spark.yaml",
    ]
    for name in names:
        cfg = load_runner_config(os.path.join(CONFIGS, name))
        assert cfg["runner"] in StandardOptions.KNOWN_RUNNER_NAMES
        text = open(os.path.join(CONFIGS, name)).read()
        assert text.lstrip().startswith("#"), f"{name}: explain what to change in comments"


def test_pins_agree_with_installed_versions():
    assert _pinned("apache-beam") == beam.__version__
    assert sys.version_info[:2] == (3, 11)
    dockerfile = open(os.path.join(REPO, "Dockerfile")).read()
    arg = re.search(r"^ARG BEAM_VERSION=(\S+)$", dockerfile, re.M).group(1)
    base = re.search(r"^FROM (\S+)$", dockerfile, re.M).group(1).replace("${BEAM_VERSION}", arg)
    # The base image is the one Beam itself would use for this SDK version.
    assert base == DockerEnvironment.default_docker_image() == f"apache/beam_python3.11_sdk:{beam.__version__}"
    assert "-c constraints.txt" in dockerfile


def test_direct_config():
    o = _options("direct.yaml")
    assert o.view_as(StandardOptions).runner == "DirectRunner"


def test_portable_config():
    o = _options("portable.yaml")
    p = o.view_as(PortableOptions)
    assert o.view_as(StandardOptions).runner == "PortableRunner"
    assert re.fullmatch(r"[\w.-]+:\d+", p.job_endpoint)
    assert p.environment_type == "EXTERNAL"
    assert re.fullmatch(r"[\w.-]+:\d+", p.environment_config)


def test_flink_config():
    o = _options("flink.yaml")
    f = o.view_as(FlinkRunnerOptions)
    p = o.view_as(PortableOptions)
    assert o.view_as(StandardOptions).runner == "FlinkRunner"
    assert f.flink_master not in ("[auto]", "[local]") and re.fullmatch(r"[\w.-]+:\d+", f.flink_master)
    assert f.flink_version in FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS
    # The job-server jar must match the Flink version and the Beam version.
    assert os.path.basename(f.flink_job_server_jar) == (
        f"beam-runners-flink-{f.flink_version}-job-server-{beam.__version__}.jar"
    )
    assert f.parallelism > 0 and f.max_parallelism >= f.parallelism
    assert p.environment_type == "DOCKER"
    _image_tag_ok(p.environment_config)
    assert o.view_as(SetupOptions).sdk_location == "container"
    # Java-side Flink options (checkpointing) reach the job server through the proto.
    proto = o.to_runner_api()
    assert proto["beam:option:checkpointing_interval:v1"] == "60000"
    assert proto["beam:option:state_backend:v1"] == "rocksdb"


def test_spark_config():
    o = _options("spark.yaml")
    s = o.view_as(SparkRunnerOptions)
    p = o.view_as(PortableOptions)
    assert o.view_as(StandardOptions).runner == "SparkRunner"
    assert s.spark_master_url.startswith("spark://")
    assert s.spark_version == "3"
    assert os.path.basename(s.spark_job_server_jar) == f"beam-runners-spark-3-job-server-{beam.__version__}.jar"
    assert p.environment_type == "DOCKER"
    # Flink and Spark run the same image.
    assert _image_tag_ok(p.environment_config) == _options("flink.yaml").view_as(PortableOptions).environment_config


def test_dataflow_config():
    o = _options("dataflow.yaml")
    g = o.view_as(GoogleCloudOptions)
    assert o.view_as(StandardOptions).runner == "DataflowRunner"
    assert g.project and g.region
    assert g.temp_location.startswith("gs://") and g.staging_location.startswith("gs://")
    _image_tag_ok(o.view_as(WorkerOptions).sdk_container_image)


def test_command_line_flags_win_over_the_file():
    o = _options("direct.yaml", "--direct_num_workers=3")
    assert o.get_all_options()["direct_num_workers"] == 3
    o = _options("flink.yaml", "--flink_master=jm.internal:8081", "--parallelism=16")
    assert o.view_as(FlinkRunnerOptions).flink_master == "jm.internal:8081"
    assert o.view_as(FlinkRunnerOptions).parallelism == 16


@pytest.mark.parametrize(
    "content, match",
    [
        ("runner: DirectRunner\noptions: {flink_mastr: x}\n", r"bad\.yaml: key 'options\.flink_mastr' is not a Beam pipeline option"),
        ("runner: FlinkRunnr\n", r"bad\.yaml: key 'runner' is 'FlinkRunnr'"),
        ("runner: FlinkRunner\noptions: {flink_version: '1.17'}\n", r"bad\.yaml: argument --flink_version: invalid choice: '1\.17'"),
        ("runner: DirectRunner\noptions: {checkpointing_interval: 5}\n", r"bad\.yaml: .*checkpointing_interval.* FlinkRunner option"),
        ("runner: DirectRunner\nopts: {}\n", r"bad\.yaml: unknown top-level key\(s\) \['opts'\]"),
        ("runner: [DirectRunner\n", r"bad\.yaml: not valid YAML"),
    ],
)
def test_bad_runner_config_fails_at_start(tmp_path, data, content, match):
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    out = tmp_path / "out"
    with pytest.raises(RunnerConfigError, match=match):
        analyze.run(_argv(data, out, "--runner_config", str(bad)))
    assert not out.exists()
    assert not list(tmp_path.glob(".out.staging-*"))


def test_missing_runner_config_names_the_file(tmp_path, data):
    with pytest.raises(RunnerConfigError, match=r"Runner config '.*nope\.yaml' does not exist"):
        analyze.run(_argv(data, tmp_path / "out", "--runner_config", str(tmp_path / "nope.yaml")))


# ---------------------------------------------------------------- workers get the project


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """`pip wheel --no-deps .` of a clean copy of the project (what a worker installs)."""
    src = tmp_path_factory.mktemp("src")
    for item in ("setup.py", "transforms", "pipelines", "expansion_service", "runner_configs"):
        path = os.path.join(REPO, item)
        if os.path.isdir(path):
            shutil.copytree(path, src / item, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(path, src / item)
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(src)],
        check=True, capture_output=True, timeout=120,
    )
    (path,) = glob.glob(str(dist / "featurebridge-*.whl"))
    return path


def test_wheel_has_the_packages_and_console_script(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        entry_points = z.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
        metadata = z.read(next(n for n in names if n.endswith("METADATA"))).decode()
    for member in ("featurebridge/transforms/__init__.py", "featurebridge/transforms/analyze.py",
                   "featurebridge/pipelines/cli.py", "featurebridge/pipelines/analyze.py",
                   "featurebridge/expansion_service/__init__.py", "featurebridge/runner_configs/direct.yaml",
                   "featurebridge/runner_configs/flink-local.yaml"):
        assert member in names, member
    assert not any(n.startswith(("tests/", "transforms/", "pipelines/", "expansion_service/")) for n in names)
    assert re.search(r"^featurebridge\s*=\s*featurebridge\.pipelines\.cli:console_main$", entry_points, re.M), entry_points
    assert re.search(rf"^Requires-Dist: apache-beam\[gcp\].*2\.{beam.__version__.split('.')[1]}", metadata, re.M)
    assert re.search(r"^Requires-Python: .*>=3\.11", metadata, re.M), metadata


def test_installed_wheel_runs_outside_the_checkout(wheel, tmp_path):
    """The Dockerfile's install step, minus Docker: install the wheel (not editable) into a
    fresh target and run its console entry point there, with the pinned dependencies
    from this venv but none of the checkout on the path."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), wheel],
        check=True, capture_output=True, timeout=120,
    )
    site_packages = next(p for p in sys.path if p.endswith("site-packages") and ".venv" in p)
    env = dict(worker_env(), PYTHONPATH=os.pathsep.join([str(target), site_packages]))
    # -S: no site-packages .pth files, so the editable install of the checkout is not seen.
    code = (
        "import sys, featurebridge, featurebridge.pipelines.cli, featurebridge.transforms, featurebridge.expansion_service;"
        f"assert featurebridge.pipelines.cli.__file__.startswith({str(target)!r}), featurebridge.pipelines.cli.__file__;"
        "sys.exit(featurebridge.pipelines.cli.main(['analyze', '--help']))"
    )
    result = subprocess.run([sys.executable, "-S", "-c", code], env=env, cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--runner_config" in result.stdout


def test_pinned_environment_is_consistent():
    """What the Dockerfile's `pip check` checks: every installed requirement, ours
    included, is satisfied by the pins."""
    result = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout


# ---------------------------------------------------------------- predict on the portable runner


@pytest.mark.slow
def test_portable_predict_equals_direct(direct_predictions, portable_cluster, data):
    from featurebridge.pipelines import predict

    model, direct = direct_predictions
    base = ["--model", str(model), "--input", str(data / "d.csv")]
    portable = predict.run([*base, "--output", str(data / "pred_portable"), *portable_cluster.pipeline_flags()])
    assert portable["runner"] == "PortableRunner"
    assert portable["rows"] == direct["rows"]
    assert_predictions_match(data / "pred_direct", data / "pred_portable")
