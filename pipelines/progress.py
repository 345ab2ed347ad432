"""Progress while a command runs: no silent gap from its start to its summary.

`Progress` wraps a command (`featurebridge.pipelines.cli` enters it around
each job). A thread looks every `tick` seconds at what was last logged and
at the reads' live counts (`featurebridge.transforms.io.read_progress`):

- On a terminal, rich's live status line shows the step, rows read, files
  done and the elapsed time, redrawn twice a second; log lines print above it.
- Elsewhere (a CI log, a pipe), when nothing was logged for `interval`
  seconds (4 by default), it logs one plain line such as
  ``analyze: reading... 120,000 rows so far, 2 of 3 file(s) done (12 s)``.

The counts cover every runner whose workers run where the launcher can see
them: the in-memory DirectRunner (the reads update a table in this process),
``--direct_running_mode multi_processing`` and local SDK worker pools (each
worker writes its counts to a file under a temporary directory the launcher
names in ``FEATUREBRIDGE_PROGRESS``, which its workers inherit). On a remote
cluster the line shows the step and the elapsed time; Beam's counters
(namespace ``featurebridge``: rows_read, rows_rejected, files_read) are in
the runner's own UI. See docs/logging.md.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
import time
from typing import Callable, Dict, Optional

__all__ = ["Progress", "describe"]

_LOG = logging.getLogger("featurebridge.progress")
# "[1/3] analyze: 3 file(s)...": the step of a multi-step command.
_STEP = re.compile(r"^\[(\d+)/(\d+)\] ([^:]+)")


def _read_progress() -> Dict[str, Dict[str, float]]:
    from featurebridge.transforms.io import read_progress

    return read_progress()


def describe(
    command: str, elapsed: float, counts: Dict[str, Dict[str, float]], *, since: float = 0.0,
    now: Optional[float] = None, active_within: float = 4.0,
) -> str:
    """The progress text: ``COMMAND: reading... N rows so far, F of T file(s)
    done (E s)`` while a read is active, else ``COMMAND: working... (E s)``
    (with the rows the step read, if any).

    Args:
      command: what the user ran, with its step ("run [1/3] analyze").
      elapsed: seconds since the command started.
      counts: `read_progress()`; entries last updated before ``since`` (wall
        clock: earlier commands in the same process) are left out.
      now: the wall clock (time.time()), for tests.
      active_within: a read updated this recently is "reading".
    """
    now = time.time() if now is None else now
    entries = [(key, value) for key, value in counts.items() if value.get("updated", 0.0) >= since]
    seconds = f"({elapsed:.0f} s)"
    if not entries:
        return f"{command}: working... {seconds}"
    key, latest = max(entries, key=lambda kv: kv[1].get("updated", 0.0))
    unfinished = latest.get("files_done", 0) < latest.get("files", 0) or not latest.get("files")
    if unfinished and now - latest.get("updated", 0.0) <= active_within:
        label = key.split("/", 1)[-1]
        which = "" if label in ("Read", "") else f" ({label})"
        done, files = int(latest.get("files_done", 0)), int(latest.get("files", 0))
        files_text = f", {done} of {files} file(s) done" if files else ""
        return f"{command}: reading{which}... {int(latest['rows']):,} rows so far{files_text} {seconds}"
    total = max(int(value.get("rows", 0)) for _, value in entries)
    return f"{command}: working... {total:,} rows read {seconds}"


class _Seen(logging.Filter):
    """Put on the CLI's handlers after their own filters: notes what was shown."""

    def __init__(self, progress: "Progress"):
        super().__init__()
        self._progress = progress

    def filter(self, record: logging.LogRecord) -> bool:
        self._progress.saw(record)
        return True


class Progress:
    """Shows progress while a command runs (see the module's docstring).

    Args:
      command: the command's name, the start of each line ("analyze").
      interval: seconds without a log line before a plain progress line.
      tick: how often the thread looks.
      live: a rich live status (True), plain lines (False), or None: live
        when stderr is a terminal.
      enabled: False (``--quiet``, ``--log_level warning``): does nothing.
      counts: where the counts come from (tests pass their own).
      clock: monotonic seconds (tests pass their own).
      started: when the command started on that clock (the CLI's start, so
        its imports count); None: now.
    """

    def __init__(
        self,
        command: str,
        *,
        interval: float = 4.0,
        tick: float = 0.25,
        live: Optional[bool] = None,
        enabled: bool = True,
        counts: Callable[[], Dict[str, Dict[str, float]]] = _read_progress,
        clock: Callable[[], float] = time.monotonic,
        started: Optional[float] = None,
    ):
        import sys

        self.command = command
        self.interval = interval
        self.tick = tick
        self.enabled = enabled
        self._live = (sys.stderr.isatty() if hasattr(sys.stderr, "isatty") else False) if live is None else live
        self._counts = counts
        self._clock = clock
        self._given_start = started
        self._started = clock() if started is None else started
        self._started_wall = time.time() - (clock() - self._started)
        self._last_shown = self._started
        self._step = ""
        self._step_wall = 0.0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._status = None
        self._spinner = None
        self._seen = _Seen(self)
        self._handlers = []
        self._dir: Optional[str] = None
        self._env_before: Optional[str] = None
        self.lines = 0  # plain progress lines logged (for tests)

    # ------------------------------------------------------------ log records
    def saw(self, record: logging.LogRecord) -> None:
        """A log line was shown: the heartbeat waits `interval` from now."""
        self._last_shown = self._clock()
        if record.name.startswith("featurebridge.progress"):
            return
        match = _STEP.match(str(record.getMessage()))
        if match:
            self._step = f" [{match.group(1)}/{match.group(2)}] {match.group(3).strip()}"
            self._step_wall = time.time()  # the counts shown are this step's

    def text(self) -> str:
        """What the status line or the next progress line says."""
        return describe(
            self.command + self._step, self._clock() - self._started, self._counts(),
            since=max(self._started_wall, self._step_wall),
        )

    def beat(self) -> bool:
        """One look: updates the live status, or logs a plain line when
        nothing was shown for `interval` seconds. Returns whether it logged."""
        if self._status is not None:
            self._spinner.update(text=self.text())
            return False
        if self._clock() - self._last_shown < self.interval:
            return False
        _LOG.info("%s", self.text())
        self._last_shown = self._clock()
        self.lines += 1
        return True

    # ------------------------------------------------------------ lifecycle
    def __enter__(self) -> "Progress":
        if not self.enabled:
            return self
        from featurebridge.transforms.io import PROGRESS_ENV

        self._started = self._clock() if self._given_start is None else self._given_start
        self._started_wall = time.time() - (self._clock() - self._started)
        self._last_shown = self._started
        self._dir = tempfile.mkdtemp(prefix="featurebridge-progress-")
        self._env_before = os.environ.get(PROGRESS_ENV)
        os.environ[PROGRESS_ENV] = f"{os.getpid()}:{self._dir}"
        for handler in logging.getLogger().handlers:
            handler.addFilter(self._seen)
            self._handlers.append(handler)
        if self._live:
            self._start_live()
        self._thread = threading.Thread(target=self._run, name="featurebridge-progress", daemon=True)
        self._thread.start()
        return self

    def _start_live(self) -> None:
        from rich.console import Console
        from rich.live import Live
        from rich.spinner import Spinner

        console = Console(stderr=True)
        if not console.is_terminal:
            self._live = False
            return
        self._spinner = Spinner("dots", self.text())
        # sys.stderr (our log handler writes there) prints above the line; stdout is left alone.
        self._status = Live(
            self._spinner, console=console, transient=True, refresh_per_second=4, redirect_stdout=False,
        )
        self._status.start()

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            try:
                self.beat()
            except Exception:  # pylint: disable=broad-except  # progress must never fail a job
                pass

    def __exit__(self, *exc_info) -> None:
        if not self.enabled:
            return
        from featurebridge.transforms.io import PROGRESS_ENV

        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._status is not None:
            self._status.stop()
            self._status = None
        for handler in self._handlers:
            handler.removeFilter(self._seen)
        self._handlers = []
        if self._env_before is None:
            os.environ.pop(PROGRESS_ENV, None)
        else:
            os.environ[PROGRESS_ENV] = self._env_before
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
