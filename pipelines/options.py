"""Pipeline options for featurebridge jobs, and runner config files.

A runner config (runner_configs/*.yaml) is data: ``runner:`` plus ``options:``
with Beam pipeline option names. It becomes command-line flags placed before
the user's own flags, so flags given on the command line win.
"""

from __future__ import annotations

import argparse
import os
from typing import Dict, List, Optional, Sequence

import yaml
from apache_beam.options.pipeline_options import PipelineOptions

__all__ = [
    "AnalyzeOptions",
    "RunnerConfigError",
    "expand_runner_config",
    "known_option_names",
    "load_runner_config",
]


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
    known = known_option_names()
    for key in options:
        if key not in known:
            raise RunnerConfigError(
                f"{path}: key 'options.{key}' is not a Beam pipeline option. Check the spelling "
                "(option names use underscores, e.g. job_endpoint)."
            )
    return {"runner": runner, **options}


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
    flags: List[str] = []
    for key, value in load_runner_config(path).items():
        if isinstance(value, bool):
            if value:
                flags.append(f"--{key}")
        elif isinstance(value, list):
            for v in value:
                flags.append(f"--{key}={v}")
        elif isinstance(value, dict):
            import json

            flags.append(f"--{key}={json.dumps(value)}")
        else:
            flags.append(f"--{key}={value}")
    return flags + rest


class AnalyzeOptions(PipelineOptions):
    """Options of `featurebridge analyze`."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--input", help="Input file glob(s), comma separated.")
        parser.add_argument("--spec", help="Feature spec file (YAML or JSON).")
        parser.add_argument("--output", help="Output directory for the analyzed artifacts.")
        parser.add_argument(
            "--format",
            dest="input_format",
            choices=["csv", "parquet", "tfrecord", "jsonl"],
            default=None,
            help="Input format; inferred from the file extension when omitted.",
        )
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

    def validate_analyze(self) -> List[str]:
        """Returns a list of problems with these options (empty if fine)."""
        problems = []
        for name in ("input", "spec", "output"):
            if not getattr(self, name):
                problems.append(f"--{name} is required")
        if self.batch_size is not None and self.batch_size < 1:
            problems.append(f"--batch_size must be positive; got {self.batch_size}")
        return problems
