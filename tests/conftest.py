"""Shared pytest fixtures: every fixture more than one test module uses is
defined here (test modules import helpers, never fixtures or other test
modules). Fixtures that one module alone uses live in it. This file also keeps
the process environment sane for all tests."""

import os
import sys

# The external worker pool starts workers with `python` from PATH: make it ours.
_VENV_BIN = os.path.dirname(sys.executable)
if not os.environ.get("PATH", "").startswith(_VENV_BIN):
    os.environ["PATH"] = _VENV_BIN + os.pathsep + os.environ.get("PATH", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def portable_cluster(tmp_path_factory):
    """A Beam job server + external SDK worker pool (separate processes) for the
    PortableRunner, shared by the session. Yields
    featurebridge.pipelines.local_cluster.PortableCluster; use
    ``cluster.pipeline_flags()`` as the runner flags. Its workers can import
    the checkout's test modules (tests.user_preprocessing)."""
    from featurebridge.pipelines.local_cluster import portable_cluster as start_cluster
    from tests.repo import REPO_ROOT

    with start_cluster(str(tmp_path_factory.mktemp("portable_cluster")), env={"PYTHONPATH": REPO_ROOT}) as cluster:
        yield cluster


# ---------------------------------------------------------------- shared whole runs


@pytest.fixture(scope="session")
def job(tmp_path_factory):
    """The shared demo run with a model (tests.job_helpers.JobRun: sample data ->
    analyze -> train -> export -> predict), once per test process."""
    from tests.job_helpers import job_run

    return job_run(tmp_path_factory)


@pytest.fixture(scope="session")
def in_process(tmp_path_factory):
    """The cross-language stages run in process on the DirectRunner, the reference
    the expansion-service clients are compared with (tests.xlang_helpers.in_process_run)."""
    from tests.xlang_helpers import in_process_run

    return in_process_run(tmp_path_factory)


# ---------------------------------------------------------------- DirectRunner runs
# shared by the runner tests (portable, Flink, Spark): each compares against these.


@pytest.fixture(scope="session")
def data(tmp_path_factory):
    """A directory with d.csv (tests/runner_helpers.write_data) and spec.yaml."""
    from tests.runner_helpers import SPEC, write_data

    d = tmp_path_factory.mktemp("runners")
    write_data(d / "d.csv")
    (d / "spec.yaml").write_text(SPEC)
    return d


@pytest.fixture(scope="session")
def direct_run(data):
    """(out dir, manifest) of `featurebridge analyze` on the DirectRunner."""
    from featurebridge.pipelines import analyze
    from tests.runner_helpers import analyze_argv

    out = data / "out_direct"
    config = os.path.join(os.path.dirname(os.path.dirname(__file__)), "runner_configs", "direct.yaml")
    manifest = analyze.run(analyze_argv(data, out, "--runner_config", config))
    return out, manifest


@pytest.fixture(scope="session")
def direct_predictions(direct_run, data):
    """(model dir, manifest of predict into data/pred_direct): a 1-epoch model
    trained on the direct analyze output, and its DirectRunner predictions on d.csv."""
    from featurebridge.pipelines import predict, train

    model = data / "model"
    train.run(["--analyzed", str(direct_run[0]), "--output", str(model), "--epochs", "1"])
    manifest = predict.run(["--model", str(model), "--input", str(data / "d.csv"), "--output", str(data / "pred_direct")])
    return model, manifest


@pytest.fixture(scope="session", autouse=True)
def killed_flink_job(request):
    """A Flink analyze whose SDK workers are killed mid-job, started in the
    background at the session's start when tests/test_engines.py is collected:
    Beam's Java runner fails such a job only after a 3-minute wait, which the
    tests before test_engines.py then cover. None when Flink cannot run here
    (test_engines.py then skips, or fails with CI=true)."""
    from tests.engine_helpers import KilledFlinkJob, engine_available

    wanted = any(item.module.__name__.endswith("test_engines") for item in request.session.items)
    if not wanted or not engine_available("flink"):
        yield None
        return
    data = request.getfixturevalue("data")
    job = KilledFlinkJob(data, data / "out_flink_killed")
    yield job
    job.stop()
