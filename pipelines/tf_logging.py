"""TensorFlow's and CUDA's start-up chatter, hidden before TensorFlow loads.

TensorFlow 2.21 logs through absl from C++, straight to file descriptor 2,
and some of its lines ignore ``TF_CPP_MIN_LOG_LEVEL``: absl's "All log
messages before absl::InitializeLog() is called are written to STDERR",
oneDNN's "custom operations are on", cudart_stub's "Could not find cuda
drivers" (each once per copy of absl that TensorFlow's libraries load) and,
at level E, "failed call to cuInit" on a machine without a GPU driver. No
environment variable silences them without changing what TensorFlow does
(``TF_ENABLE_ONEDNN_OPTS`` turns oneDNN on or off; ``CUDA_VISIBLE_DEVICES``
hides GPUs), and absl reads no flag from the environment.

So, while a command runs, `native_log_filter` puts a small filter process
between file descriptor 2 and the terminal. It drops only lines in the C++
log format (``I0000 00:00:1796390225.648047   27361 port.cc:153] ...``) at
levels I and W (what ``TF_CPP_MIN_LOG_LEVEL=2`` promises), E lines of known
start-up noise (`STARTUP_ERRORS`) and absl's preamble. Everything else
passes, F (fatal) lines included. Python's own ``sys.stderr`` (our log, the
summary's errors, tracebacks) is pointed at the terminal directly, not
through the filter. The filter is a separate process, so what a crashing
process wrote last (a C++ ``Check failed``, Python's "Fatal Python error")
still reaches the terminal; subprocesses (Beam's multi-processing workers,
SDK worker pools) inherit descriptor 2 and are filtered too.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from typing import Iterator

__all__ = ["STARTUP_ERRORS", "drop_native_line", "native_log_filter", "quiet_tensorflow", "show_tensorflow_logs"]

# E-level lines TensorFlow and XLA write at start-up on machines without a
# GPU, or when several libraries register the same CUDA plugin: not errors
# of the job. Any other E line passes.
STARTUP_ERRORS = (
    "failed call to cuInit",
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "computation placer already registered",
)

# absl / glog line prefix: severity, MMDD, time (absl in TF 2.21 writes
# 00:00:<epoch seconds>), thread id, file:line]
_NATIVE_LINE = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [^\s:\]]+:\d+\] ")
_ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


def quiet_tensorflow() -> None:
    """Keeps TensorFlow's C++ start-up chatter out of users' terminals unless
    they ask for it (TF_CPP_MIN_LOG_LEVEL=0). Jobs call it before importing TF."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def show_tensorflow_logs() -> None:
    """``--log_level debug``: TensorFlow's C++ log from INFO up, unless the
    user chose a level in TF_CPP_MIN_LOG_LEVEL themselves."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")


def drop_native_line(line: str) -> bool:
    """Whether the filter drops ``line`` (one line of descriptor 2's output).

    Dropped: absl's preamble; C++ log lines at level I or W; E lines that hold
    one of `STARTUP_ERRORS`. Kept: everything else (F lines, Python output,
    a runner's or a JVM's log, partial lines).
    """
    line = line.rstrip("\r\n")
    if line == _ABSL_PREAMBLE:
        return True
    match = _NATIVE_LINE.match(line)
    if not match:
        return False
    level = match.group(1)
    if level in "IW":
        return True
    return level == "E" and any(noise in line for noise in STARTUP_ERRORS)


# The filter process: stdin is the pipe behind descriptor 2, stdout the
# terminal. Run with -S -I (no site, no user environment): it starts in ms.
_FILTER_SOURCE = r"""
import os, re, select, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
NATIVE = re.compile(rb"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [^\s:\]]+:\d+\] ")
PREAMBLE = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
NOISE = %r
def drop(line):
    line = line.rstrip(b"\r\n")
    if line == PREAMBLE:
        return True
    m = NATIVE.match(line)
    if not m:
        return False
    level = m.group(1)
    if level in (b"I", b"W"):
        return True
    return level == b"E" and any(n in line for n in NOISE)
def out(data):
    while data:
        try:
            data = data[os.write(1, data):]
        except InterruptedError:
            continue
        except OSError:
            return
pending = b""
while True:
    ready = select.select([0], [], [], 0.2 if pending else None)[0]
    if not ready:  # a partial line (a prompt, a progress bar): let it through
        out(pending)
        pending = b""
        continue
    try:
        chunk = os.read(0, 65536)
    except InterruptedError:
        continue
    if not chunk:
        out(pending)
        break
    pending += chunk
    *lines, pending = pending.split(b"\n")
    out(b"".join(line + b"\n" for line in lines if not drop(line)))
"""


@contextlib.contextmanager
def native_log_filter(enabled: bool = True) -> Iterator[bool]:
    """Filters descriptor 2 while the block runs (see the module's docstring).

    Yields whether the filter is on. It is not installed (and the block runs
    unchanged) when ``enabled`` is false, when ``sys.stderr`` is not the
    process's own (a test's captured output), or where descriptor 2 cannot be
    redirected; nothing is ever lost then, only not filtered. On leaving,
    descriptor 2 and ``sys.stderr`` are restored and the filter flushes what
    it holds (it ends once every process that inherited the pipe is done).
    """
    if not enabled or sys.stderr is not sys.__stderr__ or os.name != "posix":
        yield False
        return
    try:
        sys.stderr.flush()
        terminal = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield False
        return
    child = None
    python_err = None
    try:
        read_end, write_end = os.pipe()
        noise = tuple(s.encode() for s in STARTUP_ERRORS)
        child = subprocess.Popen(
            [sys.executable, "-S", "-I", "-c", _FILTER_SOURCE % (noise,)],
            stdin=read_end, stdout=terminal, stderr=terminal, close_fds=True, start_new_session=True,
        )
        os.close(read_end)
        os.dup2(write_end, 2)
        os.close(write_end)
        python_err = open(  # pylint: disable=consider-using-with
            os.dup(terminal), "w", buffering=1, encoding=getattr(sys.__stderr__, "encoding", None) or "utf-8",
            errors="backslashreplace", closefd=True,
        )
        sys.stderr = python_err
    except OSError:
        if child is not None:
            os.dup2(terminal, 2)
            child.kill()
        os.close(terminal)
        yield False
        return
    try:
        yield True
    finally:
        try:
            python_err.flush()
        except (OSError, ValueError):
            pass
        sys.stderr = sys.__stderr__
        os.dup2(terminal, 2)  # closes our end of the pipe
        os.close(terminal)
        python_err.close()
        try:
            child.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass  # a subprocess still holds the pipe; the filter ends with it
