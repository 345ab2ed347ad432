"""Progress and quiet logs: the heartbeat, the native log filter, the reads'
counts and "Reading FILE" once per file, TFT's cache-key warning for our
named analyzers. No timed assertions: the heartbeat runs on a fake clock, or
on a short interval waited for with a generous deadline."""

import logging
import os
import subprocess
import sys
import textwrap
import time

import pytest

from featurebridge.pipelines.progress import Progress, describe
from featurebridge.pipelines.tf_logging import drop_native_line

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Lines TensorFlow 2.21 wrote on a CPU machine in every command (absl's time is 00:00:<epoch seconds>).
NOISE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796390225.648047   27361 port.cc:153] oneDNN custom operations are on. You may see slightly"
    " different numerical results due to floating-point round-off errors from different computation orders.",
    "I0000 00:00:1796390225.648932   27361 cudart_stub.cc:31] Could not find cuda drivers on your machine,"
    " GPU will not be used.",
    "E0000 00:00:1796390229.111962   27361 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error:"
    " Failed call to cuInit: UNKNOWN ERROR (303)",
    "W1204 13:26:13.123456   27361 some_file.cc:12] a warning TF_CPP_MIN_LOG_LEVEL=2 would hide",
]
KEPT = [
    "F0000 00:00:1796390229.111962   27361 tensor.cc:99] Check failed: NDIMS == dims() (2 vs. 1)",
    "E0000 00:00:1796390229.111962   27361 kernel.cc:10] OOM when allocating tensor",
    "[featurebridge] Reading data.csv",
    "Traceback (most recent call last):",
    "I0000 is not a log line",
]


@pytest.mark.parametrize("line", NOISE)
def test_the_filter_drops_tensorflow_start_up_lines(line):
    assert drop_native_line(line + "\n")


@pytest.mark.parametrize("line", KEPT)
def test_the_filter_keeps_errors_fatal_lines_and_everything_else(line):
    assert not drop_native_line(line + "\n")


_CHILD = textwrap.dedent(
    """
    import os, subprocess, sys
    from featurebridge.pipelines.tf_logging import native_log_filter
    with native_log_filter() as on:
        assert on
        import tensorflow as tf
        tf.constant(1.0) + 1.0  # CUDA's start-up (cuInit) on a machine without a GPU
        os.write(2, NATIVE_F.encode())
        subprocess.run(["sh", "-c", "printf '%s\\\\n' \\"$0\\" >&2; echo worker says hi >&2", NATIVE_I])
        print("our own line", file=sys.stderr)
    raise SystemExit("our error after the filter")
    """
)


def test_a_process_under_the_filter_shows_no_start_up_noise_but_its_errors():
    """TensorFlow imported and run under the filter (a real TF start-up), a
    subprocess that inherits descriptor 2, a fatal C++ line: only the noise goes."""
    code = f"NATIVE_F = {KEPT[0] + chr(10)!r}\nNATIVE_I = {NOISE[1]!r}\n" + _CHILD
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, cwd=REPO, env=env)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 1, proc.stderr
    assert not [line for line in lines if "absl" in line or "cuInit" in line or "cudart_stub" in line or " port.cc" in line], lines
    for wanted in (KEPT[0], "worker says hi", "our own line", "our error after the filter"):
        assert wanted in lines, (wanted, lines)


def test_describe_says_what_is_read_and_ignores_earlier_commands():
    counts = {
        "t1/Read": {"rows": 120000, "files_done": 2, "files": 3, "updated": 100.0},
        "t0/Read": {"rows": 999, "files_done": 1, "files": 1, "updated": 1.0},  # an earlier command
    }
    assert describe("analyze", 12.2, counts, since=50.0, now=101.0) == (
        "analyze: reading... 120,000 rows so far, 2 of 3 file(s) done (12 s)"
    )
    again = {"t1/ReadForTransform": {"rows": 5000, "files_done": 0, "files": 3, "updated": 100.0}}
    assert describe("run [1/3] analyze", 20, again, now=101.0).startswith("run [1/3] analyze: reading (ReadForTransform)... 5,000")
    # Every file read (or none lately): the step is working on what it read.
    done = {"t1/Read": {"rows": 15000, "files_done": 3, "files": 3, "updated": 100.0}}
    assert describe("analyze", 30, done, now=101.0) == "analyze: working... 15,000 rows read (30 s)"
    assert describe("train", 7, {}, now=101.0) == "train: working... (7 s)"
    assert describe("analyze", 7, counts, since=200.0, now=201.0) == "analyze: working... (7 s)"


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_the_heartbeat_logs_only_after_a_silent_interval_and_tracks_the_step(caplog):
    clock = _Clock()
    counts = {"x/Read": {"rows": 1200, "files_done": 1, "files": 2, "updated": time.time() + 3600}}
    caplog.set_level(logging.INFO, logger="featurebridge")
    with Progress("run", interval=4.0, tick=3600, live=False, counts=lambda: counts, clock=clock) as progress:
        clock.now += 3.9
        assert not progress.beat()
        clock.now += 0.2
        assert progress.beat()
        assert caplog.records[-1].getMessage() == "run: reading... 1,200 rows so far, 1 of 2 file(s) done (4 s)"
        assert not progress.beat()  # it just spoke
        logging.getLogger("featurebridge.pipelines.run_job").info("[2/3] train + export: linear model, 1 epoch(s)")
        counts.clear()
        clock.now += 3.0
        assert not progress.beat()  # a log line 3 s ago
        clock.now += 1.5
        assert progress.beat()
        # The step's own counts only: the analyze step's reads are not the train step's.
        assert caplog.records[-1].getMessage() == "run [2/3] train + export: working... (9 s)"
    assert progress.lines == 2
    assert "FEATUREBRIDGE_PROGRESS" not in os.environ


def test_the_heartbeat_thread_speaks_when_nothing_else_does(caplog):
    caplog.set_level(logging.INFO, logger="featurebridge")
    with Progress("analyze", interval=0.1, tick=0.02, live=False, counts=dict) as progress:
        deadline = time.monotonic() + 30
        while progress.lines < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert progress.lines >= 2
    assert [r for r in caplog.records if r.getMessage().startswith("analyze: working... (")]


def test_quiet_has_no_heartbeat():
    with Progress("analyze", enabled=False, interval=0.0, tick=0.01) as progress:
        time.sleep(0.05)
    assert progress.lines == 0 and "FEATUREBRIDGE_PROGRESS" not in os.environ


def test_reads_count_live_log_each_file_once_and_fill_beam_counters(tmp_path, caplog):
    """One reader applied twice (as analyze does): "Reading FILE" once per file,
    both applications counted (live table and Beam's counters)."""
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter

    from featurebridge.transforms import io as fb_io
    from featurebridge.transforms.spec import FeatureSpec

    spec = FeatureSpec.from_text(
        "label: {column: y, kind: binary}\ncolumns:\n  - {name: x, type: float, transforms: [zscore]}\n  - {name: y, type: int}\n"
    )
    for i in range(2):
        (tmp_path / f"d{i}.csv").write_text("x,y\n" + "".join(f"{j}.5,{j % 2}\n" for j in range(30)) + "oops,1\n")
    reader = fb_io.ReadRawData(str(tmp_path / "d*.csv"), spec)
    caplog.set_level(logging.INFO, logger="featurebridge")
    pipeline = beam.Pipeline(runner="DirectRunner")
    _ = (pipeline | "Read" >> reader).batches
    _ = (pipeline | "ReadForTransform" >> reader).batches
    result = pipeline.run()
    result.wait_until_finish()
    said = [r.getMessage() for r in caplog.records if r.name == "featurebridge.transforms.io"]
    assert sorted(m for m in said if m.startswith("Reading ")) == [f"Reading {tmp_path / 'd0.csv'}", f"Reading {tmp_path / 'd1.csv'}"]
    assert len([m for m in said if m.endswith("31 rows read, 30 used, 1 rejected")]) == 2
    live = {k.split("/", 1)[1]: v for k, v in fb_io.read_progress().items() if k.startswith(reader._token)}
    assert {k: (v["rows"], v["files_done"], v["files"]) for k, v in live.items()} == {
        "Read": (62, 2, 2), "ReadForTransform": (62, 2, 2)
    }

    def counter(name):
        found = result.metrics().query(MetricsFilter().with_namespace("featurebridge").with_name(name))["counters"]
        return sum(c.committed for c in found)

    assert (counter("rows_read"), counter("rows_rejected"), counter("files_read")) == (124, 4, 4)


def test_our_named_analyzers_cache_key_warning_is_dropped_a_users_is_not(caplog):
    from featurebridge.transforms.ops.base import analyzer_name

    analyzer_name("age_zscore")
    absl = logging.getLogger("absl")
    message = "Analyzer (%s) node's cache key varies on repeated tracing. This warning is safe to ignore if..."
    # A handler of our own on the absl logger: the root handlers (caplog's
    # included) may carry the CLI's filters from an earlier test's main().
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    absl.addHandler(handler)
    try:
        with caplog.at_level(logging.WARNING, logger="absl"):
            absl.warning(message, "age_zscore/mean_and_var/temporary_analyzer_output_1/PlaceholderWithDefault:0")
            absl.warning(message, "age_zscore_1/mean_and_var/temporary_analyzer_output/PlaceholderWithDefault:0")
            absl.warning(message, "my_own_mean/mean_and_var/temporary_analyzer_output/PlaceholderWithDefault:0")
            absl.warning("something else about %s", "age_zscore/x")
    finally:
        absl.removeHandler(handler)
    assert [r.getMessage().split(")")[0] for r in records] == [
        "Analyzer (my_own_mean/mean_and_var/temporary_analyzer_output/PlaceholderWithDefault:0",
        "something else about age_zscore/x",
    ]
