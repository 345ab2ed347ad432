"""Pipeline options for featurebridge jobs, and runner config files.

A runner config (runner_configs/*.yaml) is data: ``runner:`` plus ``options:``
with Beam pipeline option names. It becomes command-line flags placed before
the user's own flags, so flags given on the command line win.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Dict, List, Optional, Sequence

import yaml
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.options.pipeline_options import _BeamArgumentParser  # Beam's own option parser

from pipelines.engines import EngineOptions, expand_engines_dir  # noqa: F401  (registers --local_worker_pool)

__all__ = [
    "AnalyzeOptions",
    "PredictOptions",
    "RunArgs",
    "TrainArgs",
    "RUNNER_ONLY_OPTIONS",
    "add_input_args",
    "RunnerConfigError",
    "expand_runner_config",
    "known_option_names",
    "load_runner_config",
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
        """Parses argv; raises ValueError (not SystemExit) naming what is wrong."""
        parser = _RaisingParser(prog="featurebridge train", add_help=False)
        cls._add_argparse_args(parser)
        args, unknown = parser.parse_known_args(list(argv))
        problems = [f"unknown option(s) {unknown}"] if unknown else []
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
        parser = _RaisingParser(prog="featurebridge run", add_help=False)
        cls._add_argparse_args(parser)
        args, rest = parser.parse_known_args(list(argv))
        problems = [f"--{n} is required" for n in ("input", "spec", "output") if not getattr(args, n)]
        if args.epochs < 1 or args.train_batch_size < 1:
            problems.append("--epochs and --train_batch_size must be positive")
        if problems:
            raise RunnerConfigError("; ".join(problems) + ". See `featurebridge run --help`.")
        return args, rest
