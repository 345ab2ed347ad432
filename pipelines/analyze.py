"""`featurebridge analyze`: raw files + feature spec -> TFT artifacts.

`run(argv)` is the command (usage: featurebridge.pipelines.commands);
`run_analyze` is the same job with typed arguments, for callers in Python
(`featurebridge run`). Also ``python -m featurebridge.pipelines analyze ...``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Dict, List, Optional, Sequence, Union

import apache_beam as beam

from featurebridge.pipelines.engines import engine_info, engine_session
from featurebridge.pipelines.flags import check_options
from featurebridge.pipelines.options import AnalyzeOptions, baseline_problem, refuse
from featurebridge.pipelines.runner_config import expand_runner_config
from featurebridge.transforms import io as fb_io
from featurebridge.transforms import layout, provenance
from featurebridge.transforms.errors import UsageError
from featurebridge.transforms.staging import StagedOutput
from featurebridge.transforms.spec import FeatureSpec, load_spec
from featurebridge.transforms.spec_limits import parse_limit_overrides, set_active_limits

# featurebridge.transforms.analyze and featurebridge.transforms.preprocessing import TensorFlow/TFT (~10 s);
# run_analyze imports them only after the options and the spec are validated, so a
# usage error comes back in seconds.

__all__ = ["UsageError", "run", "run_analyze", "summarize"]

_LOG = logging.getLogger(__name__)


def run(argv: Optional[Sequence[str]] = None) -> Dict[str, object]:
    """Parses the command line (``featurebridge analyze ...``), then `run_analyze`.

    ``--spec_limit NAME=N`` flags (none: the defaults) become the process's
    spec limits (`set_active_limits`) before the spec is loaded.

    Raises:
      UnknownOptionError: a flag neither analyze nor Beam defines (--analyser).
      UsageError, RunnerConfigError: missing or bad options, before any work.
      And what `run_analyze` raises.
    """
    argv = list(argv if argv is not None else sys.argv[1:])
    check_options("analyze", argv, own=[AnalyzeOptions])
    argv = expand_runner_config(argv)
    opts = AnalyzeOptions(argv)
    refuse("analyze", opts.validate_analyze())
    set_active_limits(parse_limit_overrides(opts.spec_limit or []))  # before the spec is loaded
    return run_analyze(
        opts.spec, opts.input, opts.output, argv,
        input_format=opts.input_format, overwrite=opts.overwrite,
        preprocessing_fn=opts.preprocessing_fn, batch_size=opts.batch_size, analyzer=opts.analyzer,
        baseline=opts.baseline,
    )


def run_analyze(
    spec: Union[str, FeatureSpec],
    files: Union[str, Sequence[str]],
    output: str,
    pipeline_args: Sequence[str] = (),
    *,
    input_format: Optional[str] = None,
    overwrite: bool = False,
    preprocessing_fn: Optional[str] = None,
    batch_size: int = 10_000,
    analyzer: str = "auto",
    baseline: Optional[str] = None,
) -> Dict[str, object]:
    """Runs the analyze job and returns its manifest (rows, outputs, timings).

    Args:
      spec: the feature spec, or its file.
      files: input file globs (a list, or comma separated).
      output: the directory to write (atomically).
      pipeline_args: Beam pipeline options as flags (``--runner``...; any
        runner config already expanded). They are recorded in the manifest.
      input_format: csv, parquet, tfrecord or jsonl; None infers it per file.
      overwrite: replace an existing ``output``.
      preprocessing_fn: a user's TFT preprocessing_fn as 'module:function'.
      batch_size: rows per Arrow RecordBatch.
      analyzer: "auto" (one-pass analyzers where the spec allows) or "tft".
      baseline: another analyze output (with pre_transform_stats/) that
        report.html compares this run's statistics with; None: no drift.

    Raises:
      UsageError, SpecError, InputError, OutputExistsError: before the
        pipeline starts, with a message that says what to fix.
      OutputLockedError: another run is writing ``output`` now (refused
        before TensorFlow loads; its lock is held until its pipeline ends).
      EmptyDataError (no usable rows), CountMismatchError: from the pipeline,
        after which no output directory exists.
    """
    pipeline_args = list(pipeline_args)
    if baseline:
        refuse("analyze", [p for p in [baseline_problem(baseline)] if p])
    if isinstance(spec, str):
        spec = load_spec(spec)
    patterns = files if isinstance(files, str) else ",".join(files)
    reader = fb_io.ReadRawData(patterns, spec, input_format, batch_size, missing_markers=True)
    # The lock on OUTPUT first (a second run on it is refused in seconds, before
    # TensorFlow loads); then everything until the pipeline has finished runs
    # under it: the commit happens on a worker, inside the pipeline.
    staged = StagedOutput(output, overwrite=overwrite)
    try:
        return _analyze_staged(
            staged, spec, patterns, reader, output, pipeline_args, input_format=input_format, overwrite=overwrite,
            preprocessing_fn=preprocessing_fn, batch_size=batch_size, analyzer=analyzer, baseline=baseline,
        )
    except BaseException:
        staged.abort()
        raise
    finally:
        staged.release()


def _analyze_staged(
    staged: StagedOutput,
    spec: FeatureSpec,
    patterns: str,
    reader,
    output: str,
    pipeline_args: List[str],
    *,
    input_format: Optional[str],
    overwrite: bool,
    preprocessing_fn: Optional[str],
    batch_size: int,
    analyzer: str,
    baseline: Optional[str] = None,
) -> Dict[str, object]:
    """`run_analyze` once `staged` holds the lock: builds and runs the pipeline, which commits."""
    from featurebridge.pipelines.tf_logging import quiet_tensorflow

    quiet_tensorflow()
    # tensorflow_transform sets this when it is imported: set before TensorFlow
    # loads, TensorFlow never imports Keras 3 (and scikit-learn) first (~0.5 s).
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    from featurebridge.transforms.analyze import AnalyzeToDirectory
    from featurebridge.transforms.preprocessing import load_preprocessing_fn

    try:
        user_fn = load_preprocessing_fn(preprocessing_fn, spec) if preprocessing_fn else None
    except ValueError as e:  # malformed, not importable or not callable
        raise UsageError(str(e)) from None
    # What the manifest records: the Beam flags and this job's own settings.
    options = AnalyzeOptions(
        pipeline_args, input=patterns, spec=spec.source, output=output, input_format=input_format,
        overwrite=overwrite, preprocessing_fn=preprocessing_fn, batch_size=batch_size, analyzer=analyzer,
        baseline=baseline,
    )
    all_options = options.get_all_options()
    runner = all_options.get("runner") or "DirectRunner"
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
        "input_format": input_format or fb_io.infer_format(reader.files[0]),
        "spec": spec.to_dict(),
        "spec_source": spec.source,
        "preprocessing_fn": preprocessing_fn,
        "preprocessing_fn_source": provenance.module_digest(preprocessing_fn),  # its module's sha256
        "versions": provenance.package_versions(),
        "runner": runner,
        "engine": engine_info(all_options),
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
    with engine_session(pipeline_args) as job_argv, beam.Pipeline(options=AnalyzeOptions(job_argv)) as pipeline:
        # Two reads of the input: one for analysis (and the row counts), one
        # for the transform phase, so no runner has to hold every raw batch
        # until analysis finishes (memory stays flat as the input grows).
        reread = (pipeline | "ReadForTransform" >> reader.rereading()).batches
        # tf-idf's out-of-vocabulary document count needs the finished
        # vocabulary: one more read, rather than holding the first one.
        has_tfidf = any(t.type == "tfidf" for c in spec.columns for t in c.transforms)
        oov_read = (pipeline | "ReadForOovCount" >> reader.rereading()).batches if has_tfidf and user_fn is None else None
        _ = (
            pipeline
            | "Read" >> reader
            | "AnalyzeToDirectory"
            >> AnalyzeToDirectory(
                spec, staged.path, staged.final_dir, user_fn, manifest,
                transform_input=reread, analyzer=analyzer, overwrite=overwrite, oov_input=oov_read,
                baseline_dir=baseline,
            )
        )
    with open(os.path.join(staged.final_dir, layout.MANIFEST), encoding="utf-8") as f:
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
    """The CLI's one-screen summary of an analyze manifest."""
    rows = result["rows"]
    lines = [
        f"Analyzed {rows['read']} rows in {result.get('elapsed_seconds', '?')} s: "
        f"{rows['used']} used, {rows['rejected']} rejected "
        f"(read == used + rejected: {rows['read'] == rows['used'] + rows['rejected']}).",
        f"Artifacts in {os.path.abspath(output)}:",
        f"  {layout.TRANSFORM_FN_DIR}/  transformed_metadata/  {layout.TRANSFORMED_DIR}/  {layout.REJECTED_DIR}/  "
        f"{layout.CONSTANTS_JSON}  {layout.MANIFEST}",
    ]
    if result.get("statistics"):
        lines.append(
            f"  {layout.RAW_METADATA_DIR}/  {layout.PRE_TRANSFORM_STATS_DIR}/  {layout.POST_TRANSFORM_STATS_DIR}/ "
            "(TFDV statistics)"
        )
        lines.append(f"Statistics report (open in a browser): {os.path.join(os.path.abspath(output), layout.REPORT_HTML)}")
    if rows["rejected"]:
        lines.append(f"  {rows['rejected']} rejected rows with reasons: {os.path.join(output, layout.REJECTED_DIR)}/")
        by = rows.get("rejected_by") or {}
        if by:
            lines.append("  Rejected by column and reason: " + ", ".join(f"{problem} ({count})" for problem, count in by.items()))
    return "\n".join(lines)

