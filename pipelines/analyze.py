"""`featurebridge analyze`: raw files + feature spec -> TFT artifacts.

    featurebridge analyze --input 'data/*.csv' --spec spec.yaml --output OUT

Also ``python -m featurebridge.pipelines.analyze ...``. Any Beam pipeline option may follow
(``--runner``, ``--direct_num_workers``...), or come from ``--runner_config``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Dict, Optional, Sequence

import apache_beam as beam

from featurebridge.pipelines.engines import engine_info, engine_session
from featurebridge.pipelines.options import AnalyzeOptions, check_options, expand_runner_config
from featurebridge.transforms import io as fb_io
from featurebridge.transforms import provenance
from featurebridge.transforms.outputs import StagedOutput
from featurebridge.transforms.spec import load_spec

# featurebridge.transforms.analyze and featurebridge.transforms.preprocessing import TensorFlow/TFT (~10 s);
# run() imports them only after the options and the spec are validated, so a
# usage error comes back in seconds.

__all__ = ["UsageError", "run", "main"]

_LOG = logging.getLogger(__name__)


class UsageError(ValueError):
    """Options are missing or inconsistent."""


def run(argv: Optional[Sequence[str]] = None) -> Dict[str, object]:
    """Runs the analyze job and returns its manifest (rows, outputs, timings).

    Raises:
      UnknownOptionError: a flag neither analyze nor Beam defines (--analyser).
      UsageError, SpecError, InputError, OutputExistsError, RunnerConfigError:
        before the pipeline starts, with a message that says what to fix.
      EmptyDataError, CountMismatchError: from the pipeline, after which no
        output directory exists.
    """
    argv = list(argv if argv is not None else sys.argv[1:])
    check_options("analyze", argv, own=[AnalyzeOptions])
    argv = expand_runner_config(argv)
    options = AnalyzeOptions(argv)
    opts = options.view_as(AnalyzeOptions)
    problems = opts.validate_analyze()
    if problems:
        raise UsageError("; ".join(problems) + ". See `featurebridge analyze --help`.")
    spec = load_spec(opts.spec)
    reader = fb_io.ReadRawData(opts.input, spec, opts.input_format, opts.batch_size)
    if os.path.exists(opts.output) and not opts.overwrite:
        StagedOutput.refuse_existing(opts.output)
    from featurebridge.transforms.analyze import AnalyzeToDirectory
    from featurebridge.transforms.preprocessing import load_preprocessing_fn

    user_fn = load_preprocessing_fn(opts.preprocessing_fn) if opts.preprocessing_fn else None
    staged = StagedOutput(opts.output, overwrite=opts.overwrite)
    runner = options.get_all_options().get("runner") or "DirectRunner"
    total_bytes = 0
    inputs = []
    for path in reader.files:
        digest = provenance.file_digest(path)
        total_bytes += digest["bytes"]
        inputs.append(digest)
    manifest = {
        "job": "analyze",
        "started": provenance.utc_now(),
        "inputs": inputs,
        "input_format": opts.input_format or fb_io.infer_format(reader.files[0]),
        "spec": spec.to_dict(),
        "spec_source": spec.source,
        "preprocessing_fn": opts.preprocessing_fn,
        "versions": provenance.package_versions(),
        "runner": runner,
        "engine": engine_info(options.get_all_options()),
        "pipeline_options": _public_options(options),
    }
    _LOG.info(
        "Analyzing %d file(s), %.1f MB, with %s; staging in %s",
        len(reader.files),
        total_bytes / 1e6,
        runner,
        staged.path,
    )
    started = time.monotonic()
    try:
        with engine_session(argv) as job_argv, beam.Pipeline(options=AnalyzeOptions(job_argv)) as pipeline:
            # Two reads of the input: one for analysis (and the row counts), one
            # for the transform phase, so no runner has to hold every raw batch
            # until analysis finishes (memory stays flat as the input grows).
            reread = (pipeline | "ReadForTransform" >> reader).batches
            _ = (
                pipeline
                | "Read" >> reader
                | "AnalyzeToDirectory"
                >> AnalyzeToDirectory(
                    spec, staged.path, staged.final_dir, user_fn, manifest,
                    transform_input=reread, analyzer=opts.analyzer,
                )
            )
    except BaseException:
        staged.abort()
        raise
    with open(os.path.join(staged.final_dir, "manifest.json"), encoding="utf-8") as f:
        result = json.load(f)
    result["elapsed_seconds"] = round(time.monotonic() - started, 2)
    return result


def _public_options(options) -> Dict[str, object]:
    """Options worth recording: those set to a non-default value."""
    defaults = beam.options.pipeline_options.PipelineOptions([]).get_all_options()
    chosen = {}
    for key, value in options.get_all_options().items():
        if value != defaults.get(key) and isinstance(value, (str, int, float, bool, list)):
            chosen[key] = value
    return dict(sorted(chosen.items()))


def summarize(result: Dict[str, object], output: str) -> str:
    rows = result["rows"]
    lines = [
        f"Analyzed {rows['read']} rows in {result.get('elapsed_seconds', '?')} s: "
        f"{rows['used']} used, {rows['rejected']} rejected "
        f"(read == used + rejected: {rows['read'] == rows['used'] + rows['rejected']}).",
        f"Artifacts in {os.path.abspath(output)}:",
        "  transform_fn/  transformed_metadata/  transformed/  rejected/  constants.json  manifest.json",
    ]
    if rows["rejected"]:
        lines.append(f"  {rows['rejected']} rejected rows with reasons: {os.path.join(output, 'rejected')}/")
        by = rows.get("rejected_by") or {}
        if by:
            lines.append("  Rejected by column and reason: " + ", ".join(f"{problem} ({count})" for problem, count in by.items()))
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from featurebridge.pipelines.cli import run_command

    return run_command("analyze", argv)


if __name__ == "__main__":
    sys.exit(main())
