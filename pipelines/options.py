"""Pipeline options for featurebridge jobs, and runner config files.

A runner config (runner_configs/*.yaml) is data: ``runner:`` plus ``options:``
with Beam pipeline option names. It becomes command-line flags placed before
the user's own flags, so flags given on the command line win.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import json
import os
import re
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import yaml
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.options.pipeline_options import _BeamArgumentParser  # Beam's own option parser

from featurebridge.pipelines.engines import EngineOptions, expand_engines_dir  # noqa: F401  (registers --local_worker_pool)

__all__ = [
    "AnalyzeOptions",
    "PredictOptions",
    "RunArgs",
    "TrainArgs",
    "RUNNER_ONLY_OPTIONS",
    "add_input_args",
    "RunnerConfigError",
    "UnknownOptionError",
    "check_options",
    "expand_runner_config",
    "known_option_names",
    "load_runner_config",
    "unknown_options",
]


# Options the Java job servers read (e.g. Flink's FlinkPipelineOptions) that the
# Python SDK does not define. Python passes them through to the runner in
# PipelineOptions.to_runner_api(), so a runner config may set them for that runner.
# Names from Beam's generated table of Flink pipeline options (Python spelling).
RUNNER_ONLY_OPTIONS: Dict[str, frozenset] = {
    "FlinkRunner": frozenset(
        {
            "allow_non_restored_state",
            "auto_watermark_interval",
            "checkpoint_timeout_millis",
            "checkpointing_interval",
            "checkpointing_mode",
            "execution_mode_for_batch",
            "execution_retry_delay",
            "externalized_checkpoints_enabled",
            "fail_on_checkpointing_errors",
            "finish_bundle_before_checkpointing",
            "flink_conf_dir",
            "max_bundle_size",
            "max_bundle_time_mills",
            "min_pause_between_checkpoints",
            "num_concurrent_checkpoints",
            "number_of_execution_retries",
            "object_reuse",
            "retain_externalized_checkpoints_on_cancellation",
            "savepoint_path",
            "shutdown_sources_after_idle_ms",
            "state_backend",
            "state_backend_storage_path",
        }
    ),
}


class RunnerConfigError(ValueError):
    """A runner config file is missing, malformed or names unknown options."""


def known_option_names() -> set:
    """Every option name any registered PipelineOptions subclass defines."""
    return set(PipelineOptions([]).get_all_options(retain_unknown_options=False))


def load_runner_config(path: str) -> Dict[str, object]:
    """Reads and validates a runner config file.

    Returns:
      {option name: value}, including "runner".

    Raises:
      RunnerConfigError: naming the file and the offending key.
    """
    if not os.path.exists(path):
        raise RunnerConfigError(
            f"Runner config {path!r} does not exist. Use one of the files in runner_configs/."
        )
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        raise RunnerConfigError(f"{path}: not valid YAML ({e}).") from None
    if not isinstance(data, dict):
        raise RunnerConfigError(f"{path}: expected a mapping with 'runner' and 'options'.")
    unknown_top = sorted(set(data) - {"runner", "options", "description"})
    if unknown_top:
        raise RunnerConfigError(
            f"{path}: unknown top-level key(s) {unknown_top}; allowed: runner, options, description."
        )
    runner = data.get("runner")
    if not isinstance(runner, str) or not runner:
        raise RunnerConfigError(f"{path}: key 'runner' must name a Beam runner, e.g. DirectRunner.")
    options = data.get("options") or {}
    if not isinstance(options, dict):
        raise RunnerConfigError(f"{path}: key 'options' must be a mapping of option names to values.")
    options = {key: expand_engines_dir(value) for key, value in options.items()}
    if runner not in StandardOptions.KNOWN_RUNNER_NAMES and "." not in runner:
        raise RunnerConfigError(
            f"{path}: key 'runner' is {runner!r}, which Beam does not know; use one of "
            f"{', '.join(StandardOptions.KNOWN_RUNNER_NAMES)}."
        )
    known = known_option_names()
    runner_only = RUNNER_ONLY_OPTIONS.get(runner, frozenset())
    for key in options:
        if key in runner_only:
            continue
        if key not in known:
            other = [r for r, names in RUNNER_ONLY_OPTIONS.items() if key in names]
            hint = (
                f" It is a {other[0]} option; set runner: {other[0]}."
                if other
                else " Check the spelling (option names use underscores, e.g. job_endpoint)."
            )
            raise RunnerConfigError(f"{path}: key 'options.{key}' is not a Beam pipeline option.{hint}")
    _check_values(path, _to_flags({k: v for k, v in options.items() if k not in runner_only}))
    return {"runner": runner, **options}


class _RaisingParser(_BeamArgumentParser):
    def error(self, message):  # argparse would print usage and exit(2)
        raise RunnerConfigError(message)


def _check_values(path: str, flags: List[str]) -> None:
    """Parses the flags as Beam would, so a bad value (e.g. a flink_version Beam
    does not support) fails here, naming the file, not later with SystemExit."""
    parser = _RaisingParser(allow_abbrev=False)
    for cls in {str(c): c for c in PipelineOptions.__subclasses__()}.values():
        cls._add_argparse_args(parser)  # pylint: disable=protected-access
    try:
        parser.parse_known_args(flags)
    except RunnerConfigError as e:
        raise RunnerConfigError(f"{path}: {e}.") from None


def _to_flags(options: Dict[str, object]) -> List[str]:
    flags: List[str] = []
    for key, value in options.items():
        if isinstance(value, bool):
            if value:
                flags.append(f"--{key}")
        elif isinstance(value, list):
            for v in value:
                flags.append(f"--{key}={v}")
        elif isinstance(value, dict):
            flags.append(f"--{key}={json.dumps(value)}")
        else:
            flags.append(f"--{key}={value}")
    return flags


def expand_runner_config(argv: Sequence[str]) -> List[str]:
    """Replaces ``--runner_config FILE`` in argv with the file's options as flags,
    placed first so that explicit flags later in argv take precedence."""
    argv = list(argv)
    path: Optional[str] = None
    rest: List[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--runner_config":
            if i + 1 >= len(argv):
                raise RunnerConfigError("--runner_config needs a file path.")
            path = argv[i + 1]
            i += 2
            continue
        if arg.startswith("--runner_config="):
            path = arg.split("=", 1)[1]
        else:
            rest.append(arg)
        i += 1
    if path is None:
        return rest
    return _to_flags(load_runner_config(path)) + rest


# ---------------------------------------------------------------------------
# Unknown flags. Beam drops a flag no PipelineOptions class defines with no more
# than a log line, so a misspelt option (--analyser) would silently do nothing.
# Every command refuses those before it does any work.

RUNNER_CONFIG_FLAG = "--runner_config"

# How many values a flag takes: 0, 1, 2... or argparse's "?", "*", "+", "...".
_Arity = Union[int, str]
_Own = Union[str, type]


class UnknownOptionError(RunnerConfigError):
    """The command line has flags no parser of the command defines.

    Attributes:
      command: the featurebridge command ("analyze"...).
      unknown: [(flag as typed, closest known flag or None)].
    """

    def __init__(self, command: str, unknown: Sequence[Tuple[str, Optional[str]]], beam: bool = True):
        self.command = command
        self.unknown = list(unknown)
        lines = []
        for flag, suggestion in self.unknown:
            hint = f"; did you mean {suggestion}?" if suggestion else ""
            lines.append(f"featurebridge {command}: unknown option {flag}{hint}")
        also = "; any Beam pipeline option is accepted too" if beam else ""
        lines.append(f"See `featurebridge {command} --help` for its options{also}.")
        super().__init__("\n".join(lines))


class _FlagTable(_BeamArgumentParser):
    """Collects option strings and how many values each takes. Definitions are
    registered without their types, choices or defaults mattering, and a later
    definition of the same flag replaces an earlier one (classes share flags)."""

    def __init__(self):
        super().__init__(allow_abbrev=False, conflict_handler="resolve")

    def error(self, message):  # never parses; keep the base class from exiting
        raise RunnerConfigError(message)

    def add_options(self, source: _Own) -> None:
        if isinstance(source, str):
            flag = source if source.startswith("-") else f"--{source}"
            if flag not in self._option_string_actions:
                self.add_argument(flag, nargs="?")
        else:
            source._add_argparse_args(self)  # pylint: disable=protected-access

    def arities(self) -> Dict[str, _Arity]:
        table: Dict[str, _Arity] = {}
        for flag, action in self._option_string_actions.items():
            nargs = action.nargs
            table[flag] = 1 if nargs is None else nargs
        return table


def _beam_option_classes() -> List[type]:
    """Every registered PipelineOptions subclass, subclasses of subclasses too."""
    found: Dict[type, None] = {}
    todo = list(PipelineOptions.__subclasses__())
    while todo:
        cls = todo.pop(0)
        if cls not in found:
            found[cls] = None
            todo.extend(cls.__subclasses__())
    return list(found)


def _import_runner(argv: Sequence[str]) -> None:
    """Imports the module of the runner argv names (``--runner X``), as Beam would
    when it runs the job, so options that module defines (DaskOptions) are known."""
    name = None
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == "--runner" and i + 1 < len(argv):
            name = argv[i + 1]
        elif arg.startswith("--runner="):
            name = arg.split("=", 1)[1]
    if not name:
        return
    known = {path.rsplit(".", 1)[-1].lower(): path for path in StandardOptions.ALL_KNOWN_RUNNERS}
    path = known.get(name.lower(), known.get(name.lower() + "runner", name))
    if "." in path:
        try:
            importlib.import_module(path.rsplit(".", 1)[0])
        except Exception:  # pylint: disable=broad-except  # Beam reports a bad runner itself
            pass


def _flag_arities(own: Iterable[_Own] = (), beam: bool = True) -> Dict[str, _Arity]:
    table = _FlagTable()
    if beam:
        for cls in _beam_option_classes():
            table.add_options(cls)
    for source in own:
        table.add_options(source)
    arities = table.arities()
    if beam:
        arities.setdefault(RUNNER_CONFIG_FLAG, 1)
        for names in RUNNER_ONLY_OPTIONS.values():
            for name in names:
                arities.setdefault(f"--{name}", "?")  # Beam keeps them: value or boolean
    return arities


_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _is_flag(arg: str) -> bool:
    """'-x...', '--x...': not a negative number, not a lone '-'."""
    return arg.startswith("-") and arg != "-" and not _NUMBER.match(arg)


def _is_value(arg: str, arities: Dict[str, _Arity]) -> bool:
    """Whether argparse reads ``arg`` after a flag as that flag's value: it does
    unless it is a flag, where a text with a space is a value unless it
    starts ``--known_flag=``."""
    if not _is_flag(arg):
        return True
    return " " in arg and arg.split("=", 1)[0] not in arities


def unknown_options(argv: Sequence[str], own: Iterable[_Own] = (), beam: bool = True) -> List[str]:
    """Flags in argv that no parser defines, as typed (without ``=value``), in order.

    Args:
      argv: what the command hands on (to Beam, when ``beam``), before any
        runner config is expanded: that file's options are checked when it loads.
      own: the command's own options: classes with ``_add_argparse_args`` (their
        flags and how many values each takes) or flag names ("--holdout").
      beam: whether Beam options are accepted too: those of every registered
        PipelineOptions subclass (and of the module of the runner ``--runner``
        names), RUNNER_ONLY_OPTIONS and --runner_config.

    ``--flag=value`` and ``--flag value`` both work. After a flag that takes a
    value, the next word is its value whenever argparse would read it so
    (negative numbers, text with a space, '-'), so it is never checked as a flag.
    Beam defines ``--no_x`` flags one by one: ``--no_x`` is known only where some
    parser defines it, never because ``--x`` exists.
    """
    argv = list(argv)
    if beam:
        _import_runner(argv)
    arities = _flag_arities(own, beam)
    unknown: List[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            break  # argparse: what follows is positional
        if not _is_flag(arg):
            continue  # the value of an unknown flag, or a stray word
        flag = arg.split("=", 1)[0]
        if flag not in arities:
            if flag not in unknown:
                unknown.append(flag)
            continue
        arity = arities[flag]
        if "=" in arg or arity == 0:
            continue
        if arity == argparse.REMAINDER:
            break  # the rest of argv is its values
        most = arity if isinstance(arity, int) else (1 if arity == argparse.OPTIONAL else len(argv))
        taken = 0
        while taken < most and i < len(argv) and _is_value(argv[i], arities):
            i += 1
            taken += 1
    return unknown


def _suggest(flag: str, known: Iterable[str], preferred: Iterable[str] = ()) -> Optional[str]:
    """The known flag closest to ``flag`` (difflib), or None when none is close.
    Dashes and underscores count alike; on a tie the command's own flag wins."""

    def key(name: str) -> str:
        return name.lstrip("-").replace("-", "_").lower()

    preferred = set(preferred)
    by_key: Dict[str, str] = {}
    for name in sorted(known, key=lambda n: (n not in preferred, n)):
        if name.startswith("--"):
            by_key.setdefault(key(name), name)
    word = key(flag)
    close = difflib.get_close_matches(word, list(by_key), n=5)
    if not close:
        return None

    def rank(candidate: str):
        ratio = difflib.SequenceMatcher(None, candidate, word).ratio()
        return ratio, by_key[candidate] in preferred

    return by_key[max(close, key=rank)]


def check_options(command: str, argv: Sequence[str], own: Iterable[_Own] = (), beam: bool = True) -> None:
    """Refuses flags no parser defines (see unknown_options).

    Raises:
      UnknownOptionError: one line per unknown flag, with the closest known flag.
    """
    own = list(own)
    unknown = unknown_options(argv, own, beam)
    if not unknown:
        return
    known = _flag_arities(own, beam)
    preferred = _flag_arities(own, beam=False)
    raise UnknownOptionError(command, [(f, _suggest(f, known, preferred)) for f in unknown], beam=beam)


def add_input_args(add_argument) -> None:
    """--input and --format, shared by every job that reads raw files."""
    add_argument("--input", help="Input file glob(s), comma separated.")
    add_argument(
        "--format",
        dest="input_format",
        choices=["csv", "parquet", "tfrecord", "jsonl"],
        default=None,
        help="Input format; inferred from the file extension when omitted.",
    )


class AnalyzeOptions(PipelineOptions):
    """Options of `featurebridge analyze`."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        add_input_args(parser.add_argument)
        parser.add_argument("--spec", help="Feature spec file (YAML or JSON).")
        parser.add_argument("--output", help="Output directory for the analyzed artifacts.")
        parser.add_argument(
            "--overwrite", action="store_true", default=False, help="Replace an existing --output."
        )
        parser.add_argument(
            "--preprocessing_fn",
            default=None,
            help="Use your own TFT preprocessing_fn ('module:function'); the spec still "
            "declares the raw columns.",
        )
        parser.add_argument(
            "--batch_size", type=int, default=10_000, help="Rows per Arrow RecordBatch."
        )
        parser.add_argument(
            "--analyzer",
            choices=["auto", "tft"],
            default="auto",
            help="auto: one-pass vectorised analyzers where the spec allows (same results); "
            "tft: always TFT's own analyzers.",
        )

    def validate_analyze(self) -> List[str]:
        """Returns a list of problems with these options (empty if fine)."""
        problems = []
        for name in ("input", "spec", "output"):
            if not getattr(self, name):
                problems.append(f"--{name} is required")
        if self.batch_size is not None and self.batch_size < 1:
            problems.append(f"--batch_size must be positive; got {self.batch_size}")
        return problems


# ---------------------------------------------------------------------------
# train, predict, run, demo. Every PipelineOptions subclass shares one parser,
# so flags another job already defines (--input, --output, --overwrite,
# --format, --batch_size) are reused, never declared twice.


def _add_once(parser: argparse.ArgumentParser, flag: str, **kwargs) -> None:
    if flag not in getattr(parser, "_option_string_actions", {}):
        parser.add_argument(flag, **kwargs)


class TrainArgs:
    """Options of `featurebridge train`. Training runs no Beam pipeline, so
    these are plain argparse options, not PipelineOptions (whose flags all
    share one namespace: train's --batch_size means rows per gradient step)."""

    MODEL_TYPES = ("linear", "dnn", "wide_and_deep")

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--analyzed", help="An analyze output directory (`featurebridge analyze --output`).")
        parser.add_argument("--output", help="Model directory to write (serving/, metrics.json, manifest.json).")
        parser.add_argument("--model", default="wide_and_deep", choices=cls.MODEL_TYPES, help="Model type.")
        parser.add_argument("--epochs", type=int, default=5, help="Training epochs.")
        parser.add_argument("--batch_size", type=int, default=256, help="Rows per training step.")
        parser.add_argument("--learning_rate", type=float, default=0.005, help="Adam learning rate.")
        parser.add_argument("--eval_percent", type=int, default=20, help="Percent of rows held out for evaluation.")
        parser.add_argument("--seed", type=int, default=0, help="Seeds weights and shuffling.")
        parser.add_argument("--overwrite", action="store_true", default=False, help="Replace an existing --output.")

    @classmethod
    def parse(cls, argv: Sequence[str]) -> argparse.Namespace:
        """Parses argv; raises ValueError (not SystemExit) naming what is wrong.

        A flag train does not define raises UnknownOptionError first; train runs
        no Beam pipeline, so Beam's flags are unknown to it too."""
        check_options("train", argv, own=[cls], beam=False)
        parser = _RaisingParser(prog="featurebridge train", add_help=False, allow_abbrev=False)
        cls._add_argparse_args(parser)
        args, unknown = parser.parse_known_args(list(argv))
        problems = [f"unexpected argument(s) {unknown}"] if unknown else []
        for name in ("analyzed", "output"):
            if not getattr(args, name):
                problems.append(f"--{name} is required")
        if args.epochs < 1 or args.batch_size < 1:
            problems.append(f"--epochs and --batch_size must be positive; got {args.epochs} and {args.batch_size}")
        if not 1 <= args.eval_percent <= 50:
            problems.append(f"--eval_percent must be between 1 and 50; got {args.eval_percent}")
        if problems:
            raise RunnerConfigError("; ".join(problems) + ". See `featurebridge train --help`.")
        return args


class _RaisingParser(argparse.ArgumentParser):
    def error(self, message):
        raise RunnerConfigError(f"{message}. See `{self.prog} --help`.")


class PredictOptions(PipelineOptions):
    """Options of `featurebridge predict`."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        _add_once(
            parser, "--model", dest="model_dir",
            help="The model: `featurebridge train --output` (or its serving/ directory).",
        )
        add_input_args(lambda *a, **k: _add_once(parser, *a, **k))
        _add_once(parser, "--output", help="Output directory.")
        _add_once(parser, "--overwrite", action="store_true", default=False, help="Replace an existing --output.")
        _add_once(parser, "--batch_size", type=int, default=10_000, help="Rows per Arrow RecordBatch.")
        _add_once(parser, "--max_inference_batch", type=int, default=1024, help="Most rows per model call.")

    def validate_predict(self) -> List[str]:
        """Returns a list of problems with these options (empty if fine)."""
        problems = [
            f"--{flag} is required"
            for flag, name in (("model", "model_dir"), ("input", "input"), ("output", "output"))
            if not getattr(self, name)
        ]
        if self.max_inference_batch is not None and self.max_inference_batch < 1:
            problems.append(f"--max_inference_batch must be positive; got {self.max_inference_batch}")
        return problems


class RunArgs:
    """Options of `featurebridge run` (analyze -> train -> export -> predict).
    Flags it does not know are Beam pipeline options, passed to analyze and predict."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        add_input_args(parser.add_argument)
        parser.add_argument("--spec", help="Feature spec file (YAML or JSON).")
        parser.add_argument("--output", help="Output directory (analyzed/, model/, predictions/, summary.json).")
        parser.add_argument(
            "--holdout", default=None,
            help="Glob of rows to predict on and keep out of training. Default: the last input "
            "file when the input has several, else none (predictions on the training input).",
        )
        parser.add_argument("--model", default="wide_and_deep", choices=TrainArgs.MODEL_TYPES, help="Model type.")
        parser.add_argument("--epochs", type=int, default=5, help="Training epochs.")
        parser.add_argument("--train_batch_size", type=int, default=256, help="Rows per training step.")
        parser.add_argument("--overwrite", action="store_true", default=False, help="Replace existing outputs.")

    @classmethod
    def parse(cls, argv: Sequence[str]):
        """Returns (args, beam_flags); raises RunnerConfigError naming what is wrong."""
        parser = _RaisingParser(prog="featurebridge run", add_help=False, allow_abbrev=False)
        cls._add_argparse_args(parser)
        args, rest = parser.parse_known_args(list(argv))
        problems = [f"--{n} is required" for n in ("input", "spec", "output") if not getattr(args, n)]
        if args.epochs < 1 or args.train_batch_size < 1:
            problems.append("--epochs and --train_batch_size must be positive")
        if problems:
            raise RunnerConfigError("; ".join(problems) + ". See `featurebridge run --help`.")
        return args, rest
