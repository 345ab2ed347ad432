"""The `featurebridge` command: a thin dispatcher onto each job's run(argv).

It owns what the user sees: progress logging, a one-screen summary, and
errors as one clear message (no traceback) with a non-zero exit code:
2 for a `FeaturebridgeError` (the input, spec or options are wrong), 1 for
anything else (a failure). The command table is `featurebridge.pipelines.commands`;
``COMMAND --help`` imports only the command's options class, never TensorFlow.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
import time
from typing import Callable, NoReturn, Optional, Sequence

from featurebridge.pipelines.commands import COMMANDS
from featurebridge.pipelines.tf_logging import native_log_filter, quiet_tensorflow, show_tensorflow_logs

__all__ = ["COMMANDS", "console_main", "log_level", "main", "run_command"]

_USAGE = """usage: featurebridge [--quiet | --log_level LEVEL] COMMAND [options]

commands:
{commands}

Every command takes:
  --quiet            only warnings, errors and the final summary
  --log_level LEVEL  debug, info (the default), warning or error; debug also
                     shows TensorFlow's and CUDA's start-up log

Run `featurebridge COMMAND --help` for a command's options; `featurebridge --version`."""

EXIT_USAGE = 2
EXIT_FAILED = 1
# When the process started the CLI (its imports count in the first command's
# progress); later calls in the same process (tests) start their own clock.
_STARTED: Optional[float] = time.monotonic()


_OURS = ("featurebridge", "benchmarks", "__main__")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a line is logged (the terminal
    behind the native log filter, rich's live status), never to a stream
    that was closed since."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):  # StreamHandler.__init__ sets it
        pass


class _Keep(logging.Filter):
    """What reaches the terminal: ours at the chosen level; other libraries
    (TF, TFT, Beam) at ERROR (WARNING with --log_level debug or
    FEATUREBRIDGE_DEBUG=1); a runner's log of a worker failure that
    `run_command` reports itself, never twice."""

    def __init__(self, others: int, debug: bool):
        super().__init__()
        self.others = others
        self.debug = debug

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.debug and record.exc_info and _featurebridge_error_in(record.exc_info[1]):
            return False
        return record.name.split(".")[0] in _OURS or record.levelno >= self.others


def log_level(requested: Optional[str] = None) -> str:
    """The level a command runs at: ``requested`` (--log_level, --quiet), else
    "debug" under FEATUREBRIDGE_DEBUG=1, else "info"."""
    if requested:
        return requested
    return "debug" if os.environ.get("FEATUREBRIDGE_DEBUG") else "info"


def _configure_logging(level: str = "info") -> None:
    debug_env = bool(os.environ.get("FEATUREBRIDGE_DEBUG"))
    if level == "debug":
        show_tensorflow_logs()
    quiet_tensorflow()
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(_StderrHandler())
        root.setLevel(logging.WARNING)
    for name in _OURS:
        logging.getLogger(name).setLevel(_LEVELS[level])
    fmt = (
        logging.Formatter("[featurebridge] %(message)s")
        if debug_env
        else _NoTracebackFormatter("[featurebridge] %(message)s")
    )
    others = logging.WARNING if (level == "debug" or debug_env) else logging.ERROR
    keep = _Keep(max(others, _LEVELS[level]), debug_env)
    for handler in root.handlers:
        for old in [f for f in handler.filters if isinstance(f, _Keep)]:
            handler.removeFilter(old)
        handler.setFormatter(fmt)
        handler.addFilter(keep)


_TRACEBACK = "Traceback (most recent call last):"


class _NoTracebackFormatter(logging.Formatter):
    """Log lines for people: no traceback (FEATUREBRIDGE_DEBUG=1 shows them).

    A record's exception is not rendered, and a traceback that a runner put
    into the message text itself (a worker's failure) is cut down to its
    last line, the exception."""

    def format(self, record: logging.LogRecord) -> str:
        record = logging.makeLogRecord(record.__dict__)
        record.exc_info = record.exc_text = record.stack_info = None
        message = record.getMessage()
        if _TRACEBACK in message:
            head, _, tail = message.partition(_TRACEBACK)
            last = [line for line in tail.strip().splitlines() if line.strip() and not line.startswith(" ")]
            message = (head.rstrip() + " " + (last[-1].strip() if last else "")).strip()
        record.msg, record.args = message, None
        return super().format(record)


def _featurebridge_error_in(error: Optional[BaseException]) -> bool:
    from featurebridge.transforms.errors import FeaturebridgeError

    while error is not None:
        if isinstance(error, FeaturebridgeError):
            return True
        error = error.__cause__ or error.__context__
    return False


_RUNNER_FAILED = re.compile(r"Pipeline \S+ failed in state (FAILED|CANCELLED)")
# What Beam appends to a worker's exception: where it ran, for a person who knows the graph.
_WHILE_RUNNING = re.compile(r"\s*\[while running '[^']*'\]")


def _pipeline_error_message(error: BaseException) -> Optional[str]:
    """Beam wraps worker exceptions; find ours in the chain or the text."""
    from featurebridge.transforms.errors import FeaturebridgeError

    seen = error
    while seen is not None:
        if isinstance(seen, FeaturebridgeError):
            return _WHILE_RUNNING.sub("", str(seen))
        seen = seen.__cause__ or seen.__context__
    text = str(error)
    for marker in ("EmptyDataError: ", "CountMismatchError: ", "InputError: "):
        if marker in text:
            return text.split(marker, 1)[1].split("\n", 1)[0].split(" [while running")[0]
    return None


def run_command(
    command: str, argv: Optional[Sequence[str]], level: Optional[str] = None, started: Optional[float] = None
) -> int:
    """Runs one command as the CLI does; returns the exit status.

    Args:
      command: a key of COMMANDS.
      argv: its command line; ``--quiet`` / ``--log_level`` in it are taken
        out here (`split_global_flags`) and never reach the command or Beam.
      level: the log level when argv names none (see `log_level`).
      started: time.monotonic() when the command started (None: now).
    """
    from featurebridge.pipelines.flags import split_global_flags
    from featurebridge.pipelines.progress import Progress
    from featurebridge.transforms.errors import FeaturebridgeError, UsageError

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        given, argv = split_global_flags(argv)
    except UsageError as e:
        print(f"featurebridge {command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    level = log_level(given or level)
    _configure_logging(level)
    entry = COMMANDS[command]
    if "--help" in argv or "-h" in argv:
        return _print_help(entry)
    try:
        # Progress for the jobs; not for a server that runs until stopped (expansion-service).
        with Progress(command, enabled=level in ("debug", "info") and entry.options is not None, started=started):
            module = importlib.import_module(entry.module)
            result = module.run(argv)
    except KeyboardInterrupt:
        print("Interrupted; no output was written.", file=sys.stderr)
        return 130
    except FeaturebridgeError as e:
        from featurebridge.pipelines.flags import UnknownOptionError

        if isinstance(e, UnknownOptionError):  # before any work: one line per flag, then --help
            print(str(e), file=sys.stderr)
        else:
            message = _pipeline_error_message(e) or str(e)
            print(f"featurebridge {command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:  # Pipeline failures: say what happened, not a traceback.
        message = _pipeline_error_message(e)
        if message is None:
            logging.getLogger(__name__).debug("pipeline failure", exc_info=True)
            first_line = str(e).splitlines()[0].rstrip(".") if str(e) else ""
            message = f"{type(e).__name__}: {first_line}."
            if _RUNNER_FAILED.search(first_line):
                # A portable runner's verdict carries no cause; say where it is.
                message += (
                    " The runner's log (job server, Flink or Spark UI) and the SDK workers' logs say why;"
                    " a worker that died or ran out of memory shows there. Nothing was written to the"
                    " output directory: rerun once the cause is fixed."
                )
            message += " Run with FEATUREBRIDGE_DEBUG=1 for the full traceback."
            if os.environ.get("FEATUREBRIDGE_DEBUG"):
                raise
        print(f"featurebridge {command}: failed: {message}", file=sys.stderr)
        return EXIT_FAILED
    summarize: Callable = getattr(module, "summarize", None)
    if summarize and isinstance(result, dict):
        print(summarize(result, _output_arg(argv)))
    return 0


def _output_arg(argv: Sequence[str]) -> str:
    for i, arg in enumerate(argv):
        if arg == "--output" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--output="):
            return arg.split("=", 1)[1]
    return ""


def _print_help(entry) -> int:
    """A command's help: its description and its options class's flags."""
    import argparse

    if entry.options is None:  # argparse options of its own, not Beam's
        importlib.import_module(entry.module).print_help()
        return 0
    from featurebridge.pipelines import options

    print(f"usage: featurebridge {entry.name} [options] [any Beam pipeline option]\n")
    print(entry.description.strip() + "\n")
    parser = argparse.ArgumentParser(prog=f"featurebridge {entry.name}", add_help=False)
    getattr(options, entry.options)._add_argparse_args(parser)  # pylint: disable=protected-access
    parser.print_help()
    print("\n  --runner_config FILE  a runner config file, or a shipped config's name")
    print("                        (direct, flink-local...); command-line flags win")
    print("  --quiet               only warnings, errors and the final summary")
    print("  --log_level LEVEL     debug, info (the default), warning or error")
    return 0


def version() -> str:
    """The installed featurebridge distribution's version ("unknown" if not installed)."""
    from importlib import metadata

    try:
        return metadata.version("featurebridge")
    except metadata.PackageNotFoundError:
        return "unknown"


def main(argv: Optional[Sequence[str]] = None) -> int:
    global _STARTED  # pylint: disable=global-statement
    started, _STARTED = (_STARTED or time.monotonic()), None
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("--version", "-V"):
        print(f"featurebridge {version()}")
        return 0
    if not argv or argv[0] in ("-h", "--help", "help"):
        width = max(len(c) for c in COMMANDS)
        listing = "\n".join(f"  {c.ljust(width)}  {entry.summary}" for c, entry in COMMANDS.items())
        print(_USAGE.format(commands=listing))
        return 0 if argv else EXIT_USAGE
    from featurebridge.pipelines.flags import split_global_flags
    from featurebridge.transforms.errors import UsageError

    try:
        level, argv = split_global_flags(argv)
    except UsageError as e:
        print(f"featurebridge: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if not argv:
        print("featurebridge: no command given; run `featurebridge --help` for the list.", file=sys.stderr)
        return EXIT_USAGE
    command = argv[0]
    if command not in COMMANDS:
        print(
            f"featurebridge: unknown command {command!r}; choose from {sorted(COMMANDS)}.",
            file=sys.stderr,
        )
        return EXIT_USAGE
    level = log_level(level)
    # TF's C++ start-up lines hidden unless asked for (--log_level debug, or
    # TF_CPP_MIN_LOG_LEVEL 0 or 1 set by the user); not around --help.
    wants_native = level == "debug" or os.environ.get("TF_CPP_MIN_LOG_LEVEL", "").strip() in ("0", "1")
    helping = "--help" in argv or "-h" in argv
    with native_log_filter(enabled=not (wants_native or helping)):
        return run_command(command, argv[1:], level, started)


def console_main(argv: Optional[Sequence[str]] = None) -> NoReturn:
    """The `featurebridge` console script: `main`, then exit without the
    interpreter's teardown.

    Python's atexit handlers run (logging is flushed, temporary files go),
    then the process ends with `os._exit`: TensorFlow's and gRPC's C++
    static destructors and their threads are not torn down one by one at
    exit, which now and then aborted a finished command ("terminate called
    without an active exception", or a segfault) after it had printed its
    result, turning exit status 0 or 2 into a crash; it also saves the 1-3 s
    that teardown takes.
    """
    import atexit

    code = 1
    try:
        code = main(argv)
    finally:
        try:
            atexit._run_exitfuncs()  # pylint: disable=protected-access
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            os._exit(code)


if __name__ == "__main__":
    console_main()
