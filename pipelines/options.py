"""The options of each featurebridge command, as argparse definitions.

Jobs that run a Beam pipeline (analyze, predict) declare PipelineOptions
subclasses, so their flags share Beam's one namespace; train, run and demo
declare plain argparse classes (train runs no pipeline; run and demo hand
the flags they do not define on). Every class has ``_add_argparse_args``, the
one thing the CLI's --help and the unknown-flag check read.

This module imports Beam's option classes but no TensorFlow: `featurebridge
COMMAND --help` imports only this. Runner configs and the unknown-flag check
live in `featurebridge.pipelines.runner_config` and `featurebridge.pipelines.flags`.
"""

from __future__ import annotations

import argparse
from typing import List, Sequence, Tuple

from apache_beam.options.pipeline_options import PipelineOptions

from featurebridge.pipelines.flags import check_options
from featurebridge.pipelines.runner_config import RaisingParser, RunnerConfigError
from featurebridge.transforms.errors import UsageError

__all__ = [
    "AnalyzeOptions",
    "DemoArgs",
    "MODEL_TYPES",
    "PredictOptions",
    "RunArgs",
    "TrainArgs",
    "add_input_args",
    "add_spec_limit_arg",
    "baseline_problem",
    "refuse",
]

MODEL_TYPES = ("linear", "dnn", "wide_and_deep")


def refuse(command: str, problems: List[str], error: type = UsageError) -> None:
    """Raises ``error`` listing ``problems`` (if any) and pointing at --help."""
    if problems:
        raise error("; ".join(problems) + f". See `featurebridge {command} --help`.")


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


def add_spec_limit_arg(add_argument) -> None:
    """--spec_limit NAME=N (repeatable), shared by the jobs that take --spec."""
    add_argument(
        "--spec_limit",
        action="append",
        default=None,
        metavar="NAME=N",
        help="Change one bound the feature spec is checked against, e.g. num_buckets=20000; "
        "repeatable. The bounds and their defaults: README, 'Spec limits'.",
    )


def _add_once(parser: argparse.ArgumentParser, flag: str, **kwargs) -> None:
    """Every PipelineOptions subclass shares one parser, so a flag another job
    already defines (--input, --output, --overwrite...) is reused, not redeclared."""
    if flag not in getattr(parser, "_option_string_actions", {}):
        parser.add_argument(flag, **kwargs)


class AnalyzeOptions(PipelineOptions):
    """Options of `featurebridge analyze`."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        add_input_args(parser.add_argument)
        parser.add_argument("--spec", help="Feature spec file (YAML or JSON).")
        add_spec_limit_arg(parser.add_argument)
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
        parser.add_argument(
            "--baseline",
            default=None,
            metavar="OTHER_OUT",
            help="Another analyze output (training data, yesterday's run) to compare with: "
            "report.html then shows the drift of each feature against its statistics.",
        )

    def validate_analyze(self) -> List[str]:
        """Returns a list of problems with these options (empty if fine)."""
        problems = []
        for name in ("input", "spec", "output"):
            if not getattr(self, name):
                problems.append(f"--{name} is required")
        if self.batch_size is not None and self.batch_size < 1:
            problems.append(f"--batch_size must be positive; got {self.batch_size}")
        if self.baseline:
            problem = baseline_problem(self.baseline)
            if problem:
                problems.append(problem)
        return problems


def baseline_problem(path: str):
    """Why `path` cannot serve as --baseline (None when it can): it must be an
    analyze output with pre_transform_stats/FeatureStats.pb."""
    import os

    from featurebridge.transforms import layout

    stats = os.path.join(layout.PRE_TRANSFORM_STATS_DIR, layout.FEATURE_STATS_FILE)
    if not os.path.isdir(path):
        return f"--baseline {path!r} is not a directory; pass the --output of an earlier `featurebridge analyze`"
    if not os.path.isfile(os.path.join(path, stats)):
        what = "an analyze output" if os.path.isfile(os.path.join(path, layout.CONSTANTS_JSON)) else "a directory"
        return (
            f"--baseline {path!r} is {what} without {stats} (not an analyze output, or one written "
            "before statistics existed); pass the --output of `featurebridge analyze`, re-running that "
            "analyze if it is older"
        )
    return None


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
        if self.batch_size is not None and self.batch_size < 1:
            problems.append(f"--batch_size must be positive; got {self.batch_size}")
        if self.max_inference_batch is not None and self.max_inference_batch < 1:
            problems.append(f"--max_inference_batch must be positive; got {self.max_inference_batch}")
        return problems


class TrainArgs:
    """Options of `featurebridge train`. Training runs no Beam pipeline, so
    these are plain argparse options, not PipelineOptions (whose flags all
    share one namespace: train's --batch_size means rows per gradient step)."""

    MODEL_TYPES = MODEL_TYPES

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--analyzed", help="An analyze output directory (`featurebridge analyze --output`).")
        parser.add_argument("--output", help="Model directory to write (serving/, metrics.json, manifest.json).")
        parser.add_argument("--model", default="wide_and_deep", choices=MODEL_TYPES, help="Model type.")
        parser.add_argument("--epochs", type=int, default=5, help="Training epochs.")
        parser.add_argument("--batch_size", type=int, default=256, help="Rows per training step.")
        parser.add_argument("--learning_rate", type=float, default=0.005, help="Adam learning rate.")
        parser.add_argument("--eval_percent", type=int, default=20, help="Percent of rows held out for evaluation.")
        parser.add_argument("--seed", type=int, default=0, help="Seeds weights and shuffling.")
        parser.add_argument("--overwrite", action="store_true", default=False, help="Replace an existing --output.")

    @classmethod
    def parse(cls, argv: Sequence[str]) -> argparse.Namespace:
        """Parses argv; raises RunnerConfigError (a UsageError) naming what is wrong.

        A flag train does not define raises UnknownOptionError first; train runs
        no Beam pipeline, so Beam's flags are unknown to it too."""
        check_options("train", argv, own=[cls], beam=False)
        parser = RaisingParser("train")
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
        # RunnerConfigError, as before: callers (and tests) catch it by that name.
        refuse("train", problems, RunnerConfigError)
        return args


class RunArgs:
    """Options of `featurebridge run` (analyze -> train -> export -> predict).
    Flags it does not know are Beam pipeline options, passed to analyze and predict."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        add_input_args(parser.add_argument)
        parser.add_argument("--spec", help="Feature spec file (YAML or JSON).")
        add_spec_limit_arg(parser.add_argument)
        parser.add_argument("--output", help="Output directory (analyzed/, model/, predictions/, summary.json).")
        parser.add_argument(
            "--holdout", default=None,
            help="Glob of rows to predict on and keep out of training. Default: the last input "
            "file when the input has several, else none (predictions on the training input).",
        )
        parser.add_argument("--model", default="wide_and_deep", choices=MODEL_TYPES, help="Model type.")
        parser.add_argument("--epochs", type=int, default=5, help="Training epochs.")
        parser.add_argument("--train_batch_size", type=int, default=256, help="Rows per training step.")
        parser.add_argument("--overwrite", action="store_true", default=False, help="Replace existing outputs.")
        parser.add_argument(
            "--baseline", default=None,
            help="An earlier analyze output (e.g. OTHER_RUN/analyzed): the analyzed/report.html "
            "shows each feature's drift against it.",
        )

    @classmethod
    def parse(cls, argv: Sequence[str]) -> Tuple[argparse.Namespace, List[str]]:
        """Returns (args, beam_flags); raises UsageError naming what is wrong."""
        parser = RaisingParser("run")
        cls._add_argparse_args(parser)
        args, rest = parser.parse_known_args(list(argv))
        problems = [f"--{n} is required" for n in ("input", "spec", "output") if not getattr(args, n)]
        if args.epochs < 1 or args.train_batch_size < 1:
            problems.append("--epochs and --train_batch_size must be positive")
        if args.baseline:
            problem = baseline_problem(args.baseline)
            if problem:
                problems.append(problem)
        refuse("run", problems)
        return args, rest


class DemoArgs:
    """Options of `featurebridge demo`. Flags it does not define go on to
    `featurebridge run`: its own or Beam's."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--output", default="demo_output", help="Where everything goes (default demo_output).")
        parser.add_argument("--overwrite", action="store_true", default=False, help="Replace an earlier demo output.")
        parser.add_argument("--rows", type=int, default=20_000, help="Rows of sample data (default 20000).")
        parser.add_argument("--files", type=int, default=4, help="CSV files; the last is held out (default 4).")
        parser.add_argument("--epochs", type=int, default=5, help="Training epochs (default 5).")
        parser.add_argument("--model", default="wide_and_deep", choices=list(MODEL_TYPES))
        parser.add_argument("--seed", type=int, default=7, help="Data seed (default 7).")
        parser.add_argument(
            "--dirty_rows",
            type=int,
            default=12,
            help="Sample rows broken on purpose, to show rejected/ at work (default 12).",
        )

    @classmethod
    def parse(cls, argv: Sequence[str]) -> Tuple[argparse.Namespace, List[str]]:
        """Returns (args, flags for `featurebridge run`); raises UsageError."""
        check_options("demo", argv, own=[cls, RunArgs])
        parser = RaisingParser("demo")
        cls._add_argparse_args(parser)
        args, rest = parser.parse_known_args(list(argv))
        if args.files < 2 or args.rows < args.files * 50:
            raise UsageError(
                f"The demo needs --files >= 2 and at least 50 rows per file; got --rows {args.rows}, --files {args.files}."
            )
        return args, rest
