"""Helpers for the engine tests (tests/test_engines.py): whether an engine can
run here, the CLI as a subprocess, and a Flink job whose SDK workers get killed
(started in the background by conftest's ``killed_flink_job``)."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from featurebridge.pipelines import engines
from featurebridge.pipelines.java_services import JOB_SERVERS
from featurebridge.pipelines.local_cluster import remote_ports
from tests.repo import REPO_ROOT, worker_env
from tests.runner_helpers import analyze_argv

__all__ = ["CONFIGS", "JARS", "REPO", "KilledFlinkJob", "engine_available", "require_engine", "run_cli", "skip_or_fail"]

REPO = REPO_ROOT
CONFIGS = os.path.join(REPO, "runner_configs")
JARS = {name: jar for name, (jar, _) in JOB_SERVERS.items()}
JOB_TIMEOUT_S = 300
# Beam's Java runner waits 3 minutes for a dead worker's data stream before failing.
KILLED_JOB_TIMEOUT_S = 330


def engine_problem(name: str):
    """Why the engine cannot run here (None when it can)."""
    jar = os.path.join(engines.engines_dir(), JARS[name])
    if shutil.which("java") is None:
        return "`java` is not on PATH: install Java 17 (and Maven), then run `make engines`"
    if not os.path.isfile(jar):
        return f"{jar} is missing: run `make engines` (needs Java 17 and Maven)"
    return None


def engine_available(name: str) -> bool:
    return engine_problem(name) is None


def skip_or_fail(message: str) -> None:
    """Skips the test with ``message``; with CI=true fails instead (CI must run it)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " CI=true, so this is a failure, not a skip.")
    pytest.skip(message)


def require_engine(name: str) -> str:
    """The engine's job-server jar; skips (fails with CI=true) when it cannot run here."""
    problem = engine_problem(name)
    if problem:
        skip_or_fail(f"{name} engine tests need Beam's job server: {problem}.")
    return os.path.join(engines.engines_dir(), JARS[name])


def _cli(*args):
    return [sys.executable, "-m", "featurebridge.pipelines.cli", *args]


def run_cli(*args, timeout=JOB_TIMEOUT_S):
    result = subprocess.run(
        _cli(*args), capture_output=True, text=True, env=worker_env(), cwd=REPO, timeout=timeout
    )
    assert result.returncode == 0, f"featurebridge {args[0]} failed:\n{result.stderr[-4000:]}"
    return result


def _children(pid):
    """Pids whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return found


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _kill_workers_once_connected(launcher: subprocess.Popen, timeout: float) -> bool:
    """Waits until an SDK worker of the launcher's worker pool is connected to the
    runner (control and data streams open), then SIGKILLs every SDK worker (the
    pool lives on, as a sidecar would). Returns whether one was connected."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and launcher.poll() is None:
        pools = [p for p in _children(launcher.pid) if "worker_pool_main" in _cmdline(p)]
        harnesses = [h for pool in pools for h in _children(pool) if "SdkHarness" in _cmdline(h)]
        if any(len(remote_ports(h)) >= 2 for h in harnesses):
            for harness in harnesses:
                try:
                    os.kill(harness, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return True
        time.sleep(0.2)
    return False


class KilledFlinkJob:
    """`featurebridge analyze` on flink-local.yaml, in the background, whose SDK
    workers are SIGKILLed once one is connected to the runner."""

    def __init__(self, data, out):
        self.out = out
        self.data = data
        self.result = None
        self.launcher = subprocess.Popen(
            _cli("analyze", *analyze_argv(data, out, "--runner_config", os.path.join(CONFIGS, "flink-local.yaml"))),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=worker_env(), cwd=REPO,
        )
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self):
        killed = _kill_workers_once_connected(self.launcher, timeout=180)
        try:
            _, stderr = self.launcher.communicate(timeout=KILLED_JOB_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.launcher.kill()
            _, stderr = self.launcher.communicate()
            stderr += f"\n(test: killed the launcher after {KILLED_JOB_TIMEOUT_S} s)"
        self.result = {
            "worker_was_running": killed,
            "rc": self.launcher.returncode,
            "stderr": stderr,
            "out_exists": os.path.exists(self.out),
            "staging": glob.glob(str(self.data / f".{self.out.name}.staging-*")),
        }

    def wait(self):
        self.thread.join(KILLED_JOB_TIMEOUT_S + 200)
        assert self.result is not None, "the killed Flink job's watcher did not finish"
        return self.result

    def stop(self):
        if self.launcher.poll() is None:
            self.launcher.kill()
            self.launcher.wait()


