"""Runner configs: YAML files of Beam pipeline options, expanded into flags.

A runner config is data: ``runner:`` plus ``options:`` with Beam pipeline
option names. ``--runner_config`` takes a path, or the name of a config that
ships with featurebridge (``direct``, ``flink-local``... with or without
``.yaml``; package data `featurebridge.runner_configs`). Its options become
flags placed before the user's own, so flags given on the command line win.
"""

from __future__ import annotations

import importlib.resources
import json
import os
from typing import Dict, List, Optional, Sequence

import yaml
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.options.pipeline_options import _BeamArgumentParser  # Beam's own option parser

# Importing engines also registers its EngineOptions (--local_worker_pool).
from featurebridge.pipelines.engines import expand_engines_dir
from featurebridge.transforms.errors import UsageError

__all__ = [
    "RUNNER_CONFIG_FLAG",
    "RUNNER_ONLY_OPTIONS",
    "RaisingParser",
    "RunnerConfigError",
    "expand_runner_config",
    "known_option_names",
    "load_runner_config",
    "shipped_runner_configs",
]

RUNNER_CONFIG_FLAG = "--runner_config"
_SHIPPED_PACKAGE = "featurebridge.runner_configs"

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


class RunnerConfigError(UsageError):
    """A runner config is missing or malformed, or names unknown options; also
    (for compatibility) a `featurebridge train` option that is missing or bad."""


class RaisingParser(_BeamArgumentParser):
    """argparse that raises RunnerConfigError instead of printing usage and
    exiting. With a ``command``, the message points at its --help."""

    def __init__(self, command: Optional[str] = None, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        if command:
            kwargs.setdefault("prog", f"featurebridge {command}")
            kwargs.setdefault("add_help", False)
        super().__init__(**kwargs)
        self._command = command

    def error(self, message):  # argparse would print usage and exit(2)
        if self._command:
            raise RunnerConfigError(f"{message}. See `featurebridge {self._command} --help`.")
        raise RunnerConfigError(message)


def known_option_names() -> set:
    """Every option name any registered PipelineOptions subclass defines."""
    return set(PipelineOptions([]).get_all_options(retain_unknown_options=False))


def shipped_runner_configs() -> List[str]:
    """Names of the runner configs shipped with featurebridge ("direct"...), sorted."""
    root = importlib.resources.files(_SHIPPED_PACKAGE)
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def _read_config(path: str) -> str:
    """The text of the config at ``path``, else of the shipped config so named.

    Raises:
      RunnerConfigError: neither exists; the message lists the shipped names.
    """
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return f.read()
    name = path[: -len(".yaml")] if path.endswith(".yaml") else path
    if name in shipped_runner_configs():
        return (importlib.resources.files(_SHIPPED_PACKAGE) / f"{name}.yaml").read_text(encoding="utf-8")
    raise RunnerConfigError(
        f"Runner config {path!r} does not exist. Pass a config file, or the name of one shipped "
        f"with featurebridge: {', '.join(shipped_runner_configs())}."
    )


def load_runner_config(path: str) -> Dict[str, object]:
    """Reads and validates a runner config (a file, or a shipped config's name).

    Returns:
      {option name: value}, including "runner".

    Raises:
      RunnerConfigError: naming the file and the offending key.
    """
    text = _read_config(path)
    try:
        data = yaml.safe_load(text) or {}
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
    if not _known_runner(runner):
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


def _check_values(path: str, flags: List[str]) -> None:
    """Parses the flags as Beam would, so a bad value (e.g. a flink_version Beam
    does not support) fails here, naming the file, not later with SystemExit."""
    parser = RaisingParser()
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
    """Replaces ``--runner_config FILE|NAME`` in argv with the config's options as
    flags, placed first so that explicit flags later in argv take precedence.

    Raises:
      RunnerConfigError: the flag has no value, the config is missing or bad,
        or ``--runner`` names a runner Beam does not know.
    """
    argv = list(argv)
    _check_runner_flag(argv)
    path: Optional[str] = None
    rest: List[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == RUNNER_CONFIG_FLAG:
            if i + 1 >= len(argv):
                raise RunnerConfigError("--runner_config needs a file path or a shipped config's name.")
            path = argv[i + 1]
            i += 2
            continue
        if arg.startswith(RUNNER_CONFIG_FLAG + "="):
            path = arg.split("=", 1)[1]
        else:
            rest.append(arg)
        i += 1
    if path is None:
        return rest
    return _to_flags(load_runner_config(path)) + rest


def _known_runner(runner: str) -> bool:
    """A runner Beam knows by name, or a dotted path to a runner class."""
    return runner in StandardOptions.KNOWN_RUNNER_NAMES or "." in runner


def _check_runner_flag(argv: Sequence[str]) -> None:
    """A ``--runner`` Beam does not know is a usage error, said before any work."""
    for i, arg in enumerate(argv):
        if arg == "--runner" and i + 1 < len(argv):
            runner = argv[i + 1]
        elif arg.startswith("--runner="):
            runner = arg.split("=", 1)[1]
        else:
            continue
        if not _known_runner(runner):
            raise RunnerConfigError(
                f"--runner {runner!r} is not a runner Beam knows; use one of "
                f"{', '.join(StandardOptions.KNOWN_RUNNER_NAMES)}, or --runner_config NAME "
                "with a shipped config (direct, portable, flink-local, spark-local, ...)."
            )
