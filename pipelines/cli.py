"""The `featurebridge` command: a thin dispatcher onto each job's run(argv).

It owns what the user sees: progress logging, a one-screen summary, and
errors as one clear message (no traceback) with a non-zero exit code.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
from typing import Callable, Dict, Optional, Sequence, Tuple

__all__ = ["COMMANDS", "main", "run_command"]

# command -> (module, help). Modules are imported only when used: TF is slow to import.
COMMANDS: Dict[str, Tuple[str, str]] = {
    "analyze": ("featurebridge.pipelines.analyze", "TFT analyze pass: raw files + spec -> transform_fn, constants"),
    "expansion-service": ("featurebridge.expansion_service.__main__", "Beam expansion service for Java/Flink/Spark (cross-language)"),
    "train": ("featurebridge.pipelines.train", "train on analyzed data; export a raw-feature serving SavedModel"),
    "predict": ("featurebridge.pipelines.predict", "batch predictions on Beam (RunInference) with a trained model"),
    "run": ("featurebridge.pipelines.run_job", "the whole job: analyze -> train -> export -> predict on held-out rows"),
    "demo": ("featurebridge.pipelines.demo", "generate sample data and run the whole job on it (make demo)"),
}

_USAGE = """usage: featurebridge COMMAND [options]

commands:
{commands}

Run `featurebridge COMMAND --help` for a command's options; `featurebridge --version`."""

EXIT_USAGE = 2
EXIT_FAILED = 1


def _configure_logging() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    for name in ("featurebridge", "benchmarks", "__main__"):
        logging.getLogger(name).setLevel(logging.INFO)
    fmt = logging.Formatter("[featurebridge] %(message)s")
    ours = ("featurebridge", "benchmarks", "__main__")
    debug = bool(os.environ.get("FEATUREBRIDGE_DEBUG"))

    def keep(record: logging.LogRecord) -> bool:
        # Our progress at INFO; other libraries (TF, TFT, Beam) only at ERROR.
        return debug or record.name.split(".")[0] in ours or record.levelno >= logging.ERROR

    for handler in logging.getLogger().handlers:
        handler.setFormatter(fmt)
        handler.addFilter(keep)


def _unknown_option_error() -> type:
    from featurebridge.pipelines.options import UnknownOptionError

    return UnknownOptionError


def _user_errors() -> tuple:
    from featurebridge.pipelines.options import RunnerConfigError
    from featurebridge.transforms.io import InputError
    from featurebridge.transforms.outputs import OutputExistsError
    from featurebridge.transforms.spec import SpecError

    errors = [SpecError, InputError, OutputExistsError, RunnerConfigError, ValueError, FileNotFoundError]
    return tuple(errors)


_RUNNER_FAILED = re.compile(r"Pipeline \S+ failed in state (FAILED|CANCELLED)")


def _pipeline_error_message(error: BaseException) -> Optional[str]:
    """Beam wraps worker exceptions; find ours in the chain or the text."""
    analyze = sys.modules.get("featurebridge.transforms.analyze")  # never import TF just to report
    ours = (analyze.EmptyDataError, analyze.CountMismatchError) if analyze else ()
    seen = error
    while seen is not None and ours:
        if isinstance(seen, ours):
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    text = str(error)
    for marker in ("EmptyDataError: ", "CountMismatchError: ", "InputError: "):
        if marker in text:
            return text.split(marker, 1)[1].split("\n", 1)[0].split(" [while running")[0]
    return None


def run_command(command: str, argv: Optional[Sequence[str]]) -> int:
    _configure_logging()
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--help" in argv or "-h" in argv:
        if COMMANDS[command][0] == "featurebridge.expansion_service.__main__":  # argparse options, not Beam's
            importlib.import_module(COMMANDS[command][0]).print_help()
            return 0
        # Help without importing the job module (and TensorFlow with it) when its
        # options class can be found by reading the module's source.
        doc, options_cls = _read_help_source(COMMANDS[command][0])
        if options_cls is not None:
            return _print_help(command, doc, options_cls)
        module = importlib.import_module(COMMANDS[command][0])
        return _print_help(command, module.__doc__, getattr(module, "OPTIONS", None), module.__name__)
    module = importlib.import_module(COMMANDS[command][0])
    try:
        result = module.run(argv)
    except KeyboardInterrupt:
        print("Interrupted; no output was written.", file=sys.stderr)
        return 130
    except _unknown_option_error() as e:  # before any work: one line per flag, then --help
        print(str(e), file=sys.stderr)
        return EXIT_USAGE
    except _user_errors() as e:
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


def _read_help_source(module_name: str) -> Tuple[Optional[str], Optional[type]]:
    """(docstring, options class) of a job module, read from its source without
    importing it: ``OPTIONS = X``, else the one options class it imports from
    featurebridge.pipelines.options. (None, None) when that is not clear; then import it."""
    import ast
    import importlib.util

    try:
        spec = importlib.util.find_spec(module_name)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            return None, None
        with open(spec.origin, encoding="utf-8") as f:
            tree = ast.parse(f.read())
    except (ImportError, OSError, SyntaxError, ValueError):
        return None, None
    names: list = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "featurebridge.pipelines.options":
            names += [alias.name for alias in node.names if alias.asname is None]
        elif (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Name)
            and any(isinstance(t, ast.Name) and t.id == "OPTIONS" for t in node.targets)
        ):
            names = [node.value.id]
            break
    from featurebridge.pipelines import options as options_module

    classes = [getattr(options_module, n, None) for n in names]
    classes = [c for c in classes if isinstance(c, type) and hasattr(c, "_add_argparse_args")]
    if len(classes) != 1:
        return None, None
    return ast.get_docstring(tree), classes[0]


def _print_help(command: str, doc: Optional[str], own: Optional[type], module_name: str = "") -> int:
    from apache_beam.options.pipeline_options import PipelineOptions

    print(f"usage: featurebridge {command} [options] [any Beam pipeline option]\n")
    print((doc or "").strip() + "\n")
    # `own`: the job's options class, if it names one (OPTIONS = ...).
    for cls in [own] if own is not None else PipelineOptions.__subclasses__():
        if own is not None or cls.__module__ == "featurebridge.pipelines.options" or cls.__module__ == module_name:
            import argparse

            parser = argparse.ArgumentParser(prog=f"featurebridge {command}", add_help=False)
            cls._add_argparse_args(parser)
            parser.print_help()
            break
    print("\n  --runner_config FILE  a runner_configs/*.yaml file; command-line flags win")
    return 0


def version() -> str:
    """The installed featurebridge distribution's version ("unknown" if not installed)."""
    from importlib import metadata

    try:
        return metadata.version("featurebridge")
    except metadata.PackageNotFoundError:
        return "unknown"


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("--version", "-V"):
        print(f"featurebridge {version()}")
        return 0
    if not argv or argv[0] in ("-h", "--help", "help"):
        width = max(len(c) for c in COMMANDS)
        listing = "\n".join(f"  {c.ljust(width)}  {h}" for c, (_, h) in COMMANDS.items())
        print(_USAGE.format(commands=listing))
        return 0 if argv else EXIT_USAGE
    command = argv[0]
    if command not in COMMANDS:
        print(
            f"featurebridge: unknown command {command!r}; choose from {sorted(COMMANDS)}.",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return run_command(command, argv[1:])


if __name__ == "__main__":
    sys.exit(main())
