"""Bounded construction: the service's side of the construction worker.

`Constructor` keeps one warm worker process (`construction`) and hands it one
request at a time. Each request waits for the worker (in line behind the one
being built) and then for its answer, and all of that within its deadline;
while it waits the service checks, a few times a second, that

- the deadline (the service's --expand_timeout_seconds, or the caller's own
  gRPC deadline when sooner) has not passed,
- the worker has not grown more than --max_expand_memory_mb above its idle size,
- the caller is still there (a caller who leaves cancels its work),
- the service is not stopping.

When one fails the worker is killed (SIGKILL: whatever it was doing stops at
once), a fresh one is started, and the request gets an error that says which
bound stopped it and the option that raises it. A worker that grew after a
request is replaced too, so the service returns to its idle size.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Optional, Sequence, Tuple

from featurebridge.expansion_service import frames
from featurebridge.transforms.errors import FeaturebridgeError

__all__ = ["Constructor", "WorkStopped", "rss_mb"]

_LOG = logging.getLogger(__name__)
_POLL_S = 0.1
# A worker whose idle size grew by more than this after a request is replaced.
_RECYCLE_GROWTH_MB = 200.0


class WorkStopped(FeaturebridgeError):
    """A request's construction was stopped (deadline, memory, caller gone,
    shutdown); the message is for the caller and names the bound."""


def rss_mb(pid: Optional[int] = None) -> Optional[float]:
    """The resident size of process `pid` (this one when None) in MB, or None
    where /proc is not available."""
    try:
        with open(f"/proc/{pid or 'self'}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)
    except (OSError, ValueError, IndexError):
        return None


class _Worker:
    """One construction worker process and its two pipes."""

    def __init__(self, init_header: dict, init_body: bytes, env: Optional[dict]):
        parent_read, child_write = os.pipe()
        child_read, parent_write = os.pipe()
        command = [sys.executable, "-m", "featurebridge.expansion_service.construction",
                   "--read_fd", str(child_read), "--write_fd", str(child_write)]
        self.proc = subprocess.Popen(
            command, pass_fds=(child_read, child_write), stdin=subprocess.DEVNULL,
            stdout=sys.stderr.fileno(), env=env, start_new_session=True,
        )
        os.close(child_read)
        os.close(child_write)
        self._read_fd = parent_read
        self._reader = os.fdopen(parent_read, "rb")
        self._writer = os.fdopen(parent_write, "wb")
        frames.write_message(self._writer, init_header, init_body)
        self.ready = False
        self.idle_mb: Optional[float] = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def readable(self, timeout: float) -> bool:
        try:
            ready, _, _ = select.select([self._read_fd], [], [], timeout)
        except (OSError, ValueError):
            return True  # closed: the read reports it
        return bool(ready)

    def send(self, header: dict, body: bytes) -> None:
        frames.write_message(self._writer, header, body)

    def receive(self) -> Optional[Tuple[dict, bytes]]:
        return frames.read_message(self._reader)

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _LOG.error("construction worker %d did not exit after SIGKILL", self.proc.pid)
        for stream in (self._reader, self._writer):
            try:
                stream.close()
            except OSError:
                pass


class Constructor:
    """Runs constructions in a killable worker process, one at a time.

    Args:
      environment_proto: the serialized Beam Environment every expansion gets.
      roots: the allowed roots (the worker checks them again).
      spec_limits: ``NAME=N`` overrides of the spec limits.
      timeout_s: the most one request may take, waiting in line included.
      memory_mb: how far above its idle size the worker may grow in one request.
      env: the worker's environment (None: this process's).
    """

    def __init__(self, environment_proto: bytes, roots: Sequence[str], spec_limits: Sequence[str] = (),
                 timeout_s: float = 300.0, memory_mb: float = 2048.0, env: Optional[dict] = None):
        self._init = ({"roots": list(roots), "spec_limits": list(spec_limits)}, environment_proto)
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self._env = env
        self._turn = threading.Lock()  # one construction at a time
        self._state = threading.Lock()  # guards _worker
        self._worker: Optional[_Worker] = None
        self._stopping = threading.Event()

    # ---- lifecycle --------------------------------------------------------
    def start(self, wait: bool = False, timeout: float = 300.0) -> None:
        """Starts the worker; with `wait`, until it is warm.

        Raises:
          RuntimeError: with `wait`, it exited or did not warm up within `timeout`.
        """
        with self._state:
            self._worker = _Worker(*self._init, self._env)
        if wait:
            try:
                self._wait_ready(self._worker, time.monotonic() + timeout, lambda: True)
            except WorkStopped as e:
                self.stop()
                raise RuntimeError(f"the construction worker did not start: {e}") from None

    def stop(self) -> None:
        """Kills the worker (whatever it is building) and starts no other."""
        self._stopping.set()
        with self._state:
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.kill()

    def worker_pid(self) -> Optional[int]:
        with self._state:
            return self._worker.pid if self._worker else None

    def memory_mb_now(self) -> float:
        """This process's and the worker's resident size together, in MB (0 where unknown)."""
        total = rss_mb() or 0.0
        pid = self.worker_pid()
        if pid:
            total += rss_mb(pid) or 0.0
        return total

    def _replace(self, worker: _Worker, why: str) -> None:
        _LOG.warning("replacing construction worker %d: %s", worker.pid, why)
        worker.kill()
        with self._state:
            if self._worker is worker and not self._stopping.is_set():
                self._worker = _Worker(*self._init, self._env)

    # ---- one request ------------------------------------------------------
    def run(self, rid: str, identifier: str, config: dict, pruned_request: bytes,
            caller_deadline_s: Optional[float] = None, caller_active: Callable[[], bool] = lambda: True) -> dict:
        """Builds one expansion; returns the worker's reply header with the
        response bytes under "body".

        Raises:
          WorkStopped: the deadline passed, the worker outgrew its budget, the
            caller left or the service is stopping; the work was stopped.
        """
        timeout = self.timeout_s if caller_deadline_s is None else min(self.timeout_s, caller_deadline_s)
        deadline = time.monotonic() + timeout
        while not self._turn.acquire(timeout=_POLL_S):
            self._check(deadline, caller_active, None, in_line=True)
        try:
            with self._state:
                worker = self._worker
            if worker is None or not worker.alive():
                self._check(deadline, caller_active, None, in_line=True)
                raise WorkStopped("the construction worker is not running; retry in a few seconds.")
            self._wait_ready(worker, deadline, caller_active)
            worker.send({"rid": rid, "identifier": identifier, "config": config}, pruned_request)
            while not worker.readable(_POLL_S):
                self._check(deadline, caller_active, worker)
            reply = worker.receive()
            if reply is None:
                self._replace(worker, "it exited mid-request")
                raise WorkStopped("the construction worker exited while building the expansion; retry, "
                                  "and if it happens again see the service log under this request id.")
            header, body = reply
            header["body"] = body
            grown = (rss_mb(worker.pid) or 0.0) - (worker.idle_mb or 0.0)
            if grown > _RECYCLE_GROWTH_MB:
                self._replace(worker, f"it grew {grown:.0f} MB building request {rid}")
            return header
        except (frames.FrameError, OSError) as e:  # a broken pipe: the worker died
            self._replace(worker, f"{type(e).__name__}: {e}")
            raise WorkStopped("the construction worker failed; retry, and if it happens again see the "
                              "service log under this request id.") from None
        finally:
            self._turn.release()

    def _wait_ready(self, worker: _Worker, deadline: float, caller_active: Callable[[], bool]) -> None:
        """Waits (within the request's bounds) until `worker` has warmed up.

        Raises:
          WorkStopped: a bound stopped the wait, or the worker died starting
            (it is replaced; the log has its output).
        """
        if worker.ready:
            return
        while not worker.readable(_POLL_S):
            self._check(deadline, caller_active, None, in_line=True)
        message = worker.receive()
        if message is None or not message[0].get("ready"):
            self._replace(worker, f"it exited while starting (code {worker.proc.poll()})")
            raise WorkStopped("the construction worker could not start; see the service log, then retry.")
        worker.ready = True
        worker.idle_mb = rss_mb(worker.pid)
        _LOG.info("construction worker %d ready (warm-up %.1f s, %.0f MB)", worker.pid,
                  message[0].get("warm_up_s", 0.0), worker.idle_mb or 0.0)

    def _check(self, deadline: float, caller_active: Callable[[], bool], worker: Optional[_Worker],
               in_line: bool = False) -> None:
        """Raises WorkStopped (killing `worker` first) when the request must stop."""
        why = None
        if self._stopping.is_set():
            why = "the service is shutting down; retry on another instance."
        elif not caller_active():
            why = "the caller cancelled the request or went away; its work was stopped."
        elif time.monotonic() > deadline:
            where = "waiting for the construction worker" if in_line else "constructing the expansion"
            why = (f"the request ran out of time ({self.timeout_s:.0f} s, --expand_timeout_seconds, or the "
                   f"caller's own deadline if sooner) {where}; the work was stopped. A spec with many columns "
                   "takes longer to construct: raise --expand_timeout_seconds on the service, or split the spec.")
        elif worker is not None and worker.idle_mb is not None:
            grown = (rss_mb(worker.pid) or 0.0) - worker.idle_mb
            if grown > self.memory_mb:
                why = (f"constructing the expansion needed more than {self.memory_mb:.0f} MB "
                       "(--max_expand_memory_mb); the work was stopped. Raise the option on the service "
                       "or make the spec smaller.")
        if why is None:
            return
        if worker is not None:
            self._replace(worker, why)
        raise WorkStopped(why)
