"""The analyze-and-transform PTransform: Arrow RecordBatches in, TFT artifacts out.

Runs TFT on its Arrow path (RecordBatches + TensorAdapterConfig), writes the
transform_fn and transformed metadata, the transformed examples as gzip
TFRecord shards, and a small constants transform_fn from which constants.json
is read (see `featurebridge.transforms.constants`).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Callable, Optional

import apache_beam as beam
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import schema_utils
from tfx_bsl.tfxio import tensor_adapter, tensor_representation_util

from featurebridge.transforms import io as fb_io
from featurebridge.transforms.errors import CountMismatchError, EmptyDataError
from featurebridge.transforms.fast_analyze import CONSTANTS_JSON, build_fast_preprocessing_fn, fast_path_unsupported
from featurebridge.transforms.preprocessing import build_constants_fn, build_preprocessing_fn, raw_feature_spec, with_shared_rules
from featurebridge.transforms.spec import FeatureSpec

__all__ = [
    "AnalyzeAndTransform",
    "AnalyzeToDirectory",
    "CountMismatchError",
    "EmptyDataError",
    "describe_rejections",
    "REJECTED_DIR",
    "CONSTANTS_FN_DIR",
    "TRANSFORMED_DIR",
    "TRANSFORMED_PREFIX",
    "tensor_adapter_config",
]

_LOG = logging.getLogger(__name__)

ANALYZERS = ("auto", "tft")
TRANSFORMED_DIR = "transformed"
TRANSFORMED_PREFIX = "part"
CONSTANTS_FN_DIR = "_constants_fn"


def tensor_adapter_config(spec: FeatureSpec) -> tensor_adapter.TensorAdapterConfig:
    """How TFT turns our RecordBatches into tensors: one VarLen sparse tensor per column."""
    schema = schema_utils.schema_from_feature_spec(raw_feature_spec(spec))
    representations = tensor_representation_util.InferTensorRepresentationsFromSchema(schema)
    return tensor_adapter.TensorAdapterConfig(fb_io.arrow_schema_for(spec), representations)


class AnalyzeAndTransform(beam.PTransform):
    """Analyzes RecordBatches with TFT and writes the artifacts under `output_dir`.

    Input: a PCollection of pa.RecordBatch in `featurebridge.transforms.io.arrow_schema_for(spec)`.
    Output: {"transformed_rows": PCollection with one int, the number of
    transformed examples; "written": [PCollections that complete when each
    artifact is written]} (use them as side inputs to run after the writes).

    Writes ``transform_fn/``, ``transformed_metadata/``, ``transformed/part-*.tfrecord.gz``
    and, when a spec is given, ``_constants_fn/`` (read by
    `featurebridge.transforms.constants.write_constants`, then removed by the caller).

    Args:
      spec: the feature spec the batches follow.
      output_dir: where artifacts go (the caller's staging directory).
      temp_dir: TFT's scratch directory; must be reachable by all workers.
      preprocessing_fn: a user's preprocessing_fn to use instead of the spec's
        transforms (the spec still defines the raw columns).
      transform_input: a second PCollection of the same batches (typically a
        second read of the same files) for the transform phase. Without it the
        runner must keep every input batch until analysis completes, so peak
        memory grows with the input.
      analyzer: "auto" (the fast one-pass analyzer of featurebridge.transforms.fast_analyze
        where the spec allows it, else plain TFT analyzers) or "tft" (always
        plain TFT analyzers). Both give the same transform_fn up to float
        rounding and the quantile sketch's bound.
    """

    def __init__(
        self,
        spec: FeatureSpec,
        output_dir: str,
        temp_dir: str,
        preprocessing_fn: Optional[Callable] = None,
        transform_input=None,
        analyzer: str = "auto",
    ):
        super().__init__()
        if analyzer not in ANALYZERS:
            raise ValueError(f"analyzer must be one of {list(ANALYZERS)}; got {analyzer!r}.")
        self._analyzer = analyzer
        self._spec = spec
        self._output_dir = output_dir
        self._temp_dir = temp_dir
        self._user_fn = preprocessing_fn
        self._transform_input = transform_input

    def expand(self, batches):
        config = tensor_adapter_config(self._spec)
        # Issue 6: when the spec allows it, one vectorised analyzer in one phase
        # (featurebridge.transforms.fast_analyze) replaces TFT's per-analyzer combines, and it
        # also writes the constants, so the second AnalyzeConstants pass is skipped.
        # analyzer="tft" forces the plain path (benchmarks and tests compare both).
        fast = (
            self._user_fn is None
            and self._analyzer == "auto"
            and fast_path_unsupported(self._spec) is None
        )
        if fast:
            preprocessing_fn = build_fast_preprocessing_fn(
                self._spec, os.path.join(self._output_dir, CONSTANTS_FN_DIR, CONSTANTS_JSON)
            )
        else:
            preprocessing_fn = self._user_fn or build_preprocessing_fn(self._spec)
        # One meaning of "missing" inside the graph, and the split bucket, for every kind of fn.
        preprocessing_fn = with_shared_rules(self._spec, preprocessing_fn)
        with tft_beam.Context(temp_dir=self._temp_dir):
            if self._transform_input is None:
                (transformed, transformed_metadata), transform_fn = (
                    batches,
                    config,
                ) | "AnalyzeAndTransformDataset" >> tft_beam.AnalyzeAndTransformDataset(
                    preprocessing_fn, output_record_batches=True
                )
            else:
                # The transform phase reads its own copy of the input: a runner
                # then never holds every raw batch until analysis ends, so
                # memory stays flat as rows grow.
                transform_fn = (batches, config) | "AnalyzeDataset" >> tft_beam.AnalyzeDataset(
                    preprocessing_fn
                )
                transformed, transformed_metadata = (
                    (self._transform_input, config),
                    transform_fn,
                ) | "TransformDataset" >> tft_beam.TransformDataset(output_record_batches=True)
            written = [transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(self._output_dir)]
            # Issue 6: one Beam element per RecordBatch, not per example; see _WriteExampleShards.
            shards = transformed | "WriteTransformed" >> _WriteExampleShards(
                transformed_metadata, os.path.join(self._output_dir, TRANSFORMED_DIR), self._temp_dir
            )
            written.append(shards)
            if self._user_fn is None and not fast:
                constants_fn = (
                    batches,
                    config,
                ) | "AnalyzeConstants" >> tft_beam.AnalyzeDataset(
                    with_shared_rules(self._spec, build_constants_fn(self._spec), split=False)
                )
                written.append(constants_fn | "WriteConstantsFn" >> tft_beam.WriteTransformFn(
                    os.path.join(self._output_dir, CONSTANTS_FN_DIR)
                ))
        return {"transformed_rows": shards, "written": written}


# zlib level of the transformed shards. Level 1 instead of the default 6:
# at 1M rows of the issue-6 benchmark it cut the job's CPU time by ~7 s (of 34 s)
# for files ~22% larger (77 vs 63 MB); readers see no difference.
_GZIP_LEVEL = 1


class _EncodeAndWriteBundle(beam.DoFn):
    """Transformed RecordBatches -> serialized tf.Examples (TFT's C++ encoder,
    a whole batch per call) -> one gzip TFRecord file per bundle under
    `temp_dir`. Emits (temp path, rows) when the bundle finishes; a retried
    bundle's file is never emitted, so only committed bundles get renamed."""

    def __init__(self, temp_dir: str):
        self._temp_dir = temp_dir
        self._writer = None
        self._path = None
        self._rows = 0
        self._encoder = None
        self._schema = None

    def start_bundle(self):
        self._writer, self._path, self._rows = None, None, 0

    def process(self, element, schema):
        import uuid

        import tensorflow as tf
        from tfx_bsl.coders import example_coder

        if self._encoder is None or schema is not self._schema:
            self._encoder, self._schema = example_coder.RecordBatchToExamplesEncoder(schema), schema
        batch = element[0]  # (RecordBatch, passthrough features): the latter are dropped, as TFT does
        if self._writer is None:
            tf.io.gfile.makedirs(self._temp_dir)
            self._path = os.path.join(self._temp_dir, f"{uuid.uuid4().hex}.tfrecord.gz")
            self._writer = tf.io.TFRecordWriter(
                self._path, tf.io.TFRecordOptions(compression_type="GZIP", compression_level=_GZIP_LEVEL)
            )
        for example in self._encoder.encode(batch):
            self._writer.write(example)
        self._rows += batch.num_rows

    def finish_bundle(self):
        from apache_beam.transforms.window import GlobalWindows

        if self._writer is not None:
            self._writer.close()
            yield GlobalWindows.windowed_value((self._path, self._rows))
        self._writer, self._path, self._rows = None, None, 0


class _WriteExampleShards(beam.PTransform):
    """(RecordBatch, passthrough) PCollection -> ``DIR/part-NNNNN-of-MMMMM.tfrecord.gz``.

    What `tft_beam.EncodeTransformedDataset() | WriteToTFRecord` writes, with
    one Beam element per RecordBatch instead of one per example (at 1M rows
    that per-element overhead dominated the write). Output: one int, the
    number of examples written (0 and no file when there are no rows).
    """

    def __init__(self, transformed_metadata, out_dir: str, temp_dir: str):
        super().__init__()
        self._metadata = transformed_metadata
        self._out_dir = out_dir
        self._temp_dir = os.path.join(temp_dir, "transformed_shards")

    def expand(self, transformed):
        schema = self._metadata.deferred_metadata | "Schema" >> beam.Map(lambda m: m.schema)
        return (
            transformed
            | "EncodeAndWrite" >> beam.ParDo(_EncodeAndWriteBundle(self._temp_dir), beam.pvalue.AsSingleton(schema))
            | "Shards" >> beam.combiners.ToList()
            | "Commit" >> beam.Map(self._commit)
        )

    def _commit(self, shards) -> int:
        import tensorflow as tf

        tf.io.gfile.makedirs(self._out_dir)
        shards = sorted(shards)
        for i, (path, _) in enumerate(shards):
            final = os.path.join(self._out_dir, f"{TRANSFORMED_PREFIX}-{i:05d}-of-{len(shards):05d}.tfrecord.gz")
            tf.io.gfile.rename(path, final, overwrite=True)
        return sum(rows for _, rows in shards)




REJECTED_DIR = "rejected"
REJECTED_PREFIX = "rejected"


def _sum_stats(stats):
    total = {"read": 0, "used": 0, "rejected": 0}
    per_file = {}
    rejected_by: dict = {}
    for s in stats:
        per_file[s["source"]] = {k: s[k] for k in ("read", "used", "rejected")}
        for k in total:
            total[k] += s[k]
        for problem, count in s.get("rejected_by", {}).items():
            rejected_by[problem] = rejected_by.get(problem, 0) + count
    total["rejected_by"] = dict(sorted(rejected_by.items(), key=lambda kv: (-kv[1], kv[0])))
    return total, dict(sorted(per_file.items()))


def describe_rejections(rejected_by, examples=(), limit: int = 5) -> str:
    """Counts by "column: reason" (most frequent first) and a few example rows, in words."""
    items = sorted(rejected_by.items(), key=lambda kv: (-kv[1], kv[0]))
    parts = [f"{count} x {problem}" for problem, count in items[:limit]]
    if len(items) > limit:
        parts.append(f"{len(items) - limit} more kind(s)")
    text = "; ".join(parts)
    shown = []
    for line in examples:
        try:
            r = json.loads(line)
        except ValueError:
            continue
        where = f"{r.get('source')} row {r.get('row')}"
        column = f", column {r['column']!r} = {r.get('value')!r}" if r.get("column") else ""
        shown.append(f"{where}{column}: {r.get('reason')}")
    if shown:
        text += ". For example: " + " | ".join(shown)
    return text


def _check_not_empty(used_rows: int, rejected_rows: int, sources, rejected_by=None, examples=()) -> None:
    if used_rows == 0:
        where = ", ".join(sorted(sources)[:5]) or "the input"
        if rejected_rows:
            raise EmptyDataError(
                f"All {rejected_rows} input rows were rejected ({where}), so there is "
                f"nothing to analyze. By column and reason: {describe_rejections(rejected_by or {}, examples)}. "
                "Fix the data, or the spec (column types, null_markers, input: options "
                "such as the delimiter, or the missing-value policies), then rerun; "
                "no output directory was written."
            )
        raise EmptyDataError(
            f"The input has no data rows ({where}). Analyzing an empty dataset would "
            "produce meaningless constants; point --input at non-empty files."
        )


def _check_every_fill_computable(spec: FeatureSpec, stats, used_rows: int) -> None:
    """A mean / median / most-frequent fill of a column with no value at all
    would bake a default (plain TFT's mean of nothing is 0.0) into the graph:
    refuse instead."""
    for column in spec.columns:
        if column.missing.policy not in ("mean", "median", "most_frequent"):
            continue
        if all("present" in s for s in stats) and not sum(s["present"].get(column.name, 0) for s in stats):
            raise EmptyDataError(
                f"Column '{column.name}' has no value in any of the {used_rows} rows used, so its "
                f"'{column.missing.policy}' fill cannot be computed. Give it a constant fill "
                "(missing: {constant: VALUE}), set missing: reject, or drop the column from the spec."
            )


def _constant_column_warnings(features) -> list:
    """Scalings whose column had one distinct value: TFT then maps every value
    through a sigmoid (0.5 for the one seen value) instead of scaling it."""
    warnings = []
    for name, f in sorted(features.items()):
        if f.get("transform") in ("scale_0_1", "min_max") and f.get("min") is not None and f["min"] >= f["max"]:
            warnings.append(
                f"{name}: column '{f['column']}' has one distinct value ({f['min']}), so TFT maps it through "
                "a sigmoid instead of scaling it; check the data, or drop the transform."
            )
    return warnings


class _Finalize(beam.DoFn):
    """Runs once after every write: reconciles counts, writes constants.json and
    manifest.json, and moves the staged directory into place."""

    def __init__(self, spec_json, staging, final_dir, manifest_base, commit, custom_fn=False):
        self._custom_fn = custom_fn
        self._spec_json = spec_json
        self._staging = staging
        self._final_dir = final_dir
        self._manifest_base = manifest_base
        self._commit = commit

    def process(self, _, stats, used_rows, rejected_rows, transformed_rows, written, **artifacts_written):
        import shutil

        from featurebridge.transforms import constants as fb_constants
        from featurebridge.transforms import provenance

        spec = FeatureSpec.from_text(self._spec_json)
        totals, per_file = _sum_stats(stats)
        used_rows = used_rows or 0
        if stats and (
            totals["read"] != totals["used"] + totals["rejected"]
            or totals["used"] != used_rows
            or totals["rejected"] != rejected_rows
        ):
            raise CountMismatchError(
                f"Row counts do not reconcile: read={totals['read']}, used={used_rows} "
                f"(reader said {totals['used']}), rejected={rejected_rows} (reader said "
                f"{totals['rejected']}). This is a bug in featurebridge; please report it "
                "with the input that triggers it."
            )
        _check_not_empty(used_rows, rejected_rows, per_file, totals["rejected_by"], self._rejected_examples())
        if transformed_rows != used_rows:
            raise CountMismatchError(
                f"{used_rows} rows went into TFT but {transformed_rows} transformed "
                "examples were written. This is a bug in featurebridge; please report it."
            )
        if not self._custom_fn:
            _check_every_fill_computable(spec, stats, used_rows)
        payload = fb_constants.compute_constants(self._staging, spec, custom_preprocessing_fn=self._custom_fn)
        provenance.write_json_atomic(os.path.join(self._staging, "constants.json"), payload)
        warnings = _constant_column_warnings(payload.get("features", {}))
        for warning in warnings:
            _LOG.warning(warning)
        shutil.rmtree(os.path.join(self._staging, CONSTANTS_FN_DIR), ignore_errors=True)
        shutil.rmtree(os.path.join(self._staging, "_tmp"), ignore_errors=True)
        manifest = dict(self._manifest_base)
        manifest.update(
            rows={
                "read": totals["read"] if stats else used_rows + rejected_rows,
                "used": used_rows,
                "rejected": rejected_rows,
                "rejected_by": totals["rejected_by"],
                "per_file": per_file,
            },
            spec_digest=spec.digest(),
            warnings=warnings,
        )
        provenance.seal_manifest(self._staging, manifest)
        if self._commit:
            yield self._commit_to_final()
        else:
            yield self._staging

    def _rejected_examples(self, limit: int = 3):
        """The first rejected rows' JSON lines, from the staged rejected/ files."""
        import glob

        lines = []
        for path in sorted(glob.glob(os.path.join(self._staging, REJECTED_DIR, "*"))):
            with open(path, encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        lines.append(line)
                    if len(lines) >= limit:
                        return lines
        return lines

    def _commit_to_final(self):
        old = None
        if os.path.exists(self._final_dir):
            old = self._staging + ".old"
            os.rename(self._final_dir, old)
        os.rename(self._staging, self._final_dir)
        if old:
            import shutil

            shutil.rmtree(old, ignore_errors=True)
        return self._final_dir


class AnalyzeToDirectory(beam.PTransform):
    """Read result (batches, rejected, stats) -> a complete analyzed directory.

    Writes transform_fn/, transformed_metadata/, transformed/, rejected/,
    constants.json and manifest.json into `staging_dir`, checks that
    ``read == used + rejected`` and that some rows were used, then (when
    `final_dir` is given) renames the staging directory to `final_dir`.

    Output: a PCollection with one element, the path of the finished directory.
    Pass `transform_input` (a second read's batches) to keep memory flat; see
    `AnalyzeAndTransform`.

    Raises (at run time, failing the pipeline):
      EmptyDataError: no usable rows.
      CountMismatchError: rows were lost somewhere.
    """

    def __init__(
        self,
        spec: FeatureSpec,
        staging_dir: str,
        final_dir: Optional[str] = None,
        preprocessing_fn: Optional[Callable] = None,
        manifest: Optional[dict] = None,
        transform_input=None,
        analyzer: str = "auto",
    ):
        super().__init__()
        self._transform_input = transform_input
        self._analyzer = analyzer
        self._spec = spec
        self._staging = staging_dir
        self._final_dir = final_dir
        self._user_fn = preprocessing_fn
        self._manifest = dict(manifest or {})

    def expand(self, read_result):
        batches, rejected, stats = read_result.batches, read_result.rejected, read_result.stats
        rejected_files = rejected | "WriteRejected" >> beam.io.WriteToText(
            os.path.join(self._staging, REJECTED_DIR, REJECTED_PREFIX),
            file_name_suffix=".jsonl",
            num_shards=1,
        )
        analyzed = batches | "Analyze" >> AnalyzeAndTransform(
            self._spec, self._staging, os.path.join(self._staging, "_tmp"), self._user_fn,
            transform_input=self._transform_input,
            analyzer=self._analyzer,
        )
        done = {f"written_{i}": beam.pvalue.AsList(p) for i, p in enumerate(analyzed["written"])}
        used = (
            batches
            | "RowsPerBatch" >> beam.Map(lambda b: b.num_rows)
            | "UsedRows" >> beam.CombineGlobally(sum)
        )
        rejected_count = rejected | "RejectedRows" >> beam.combiners.Count.Globally()
        finalize = _Finalize(
            self._spec.to_json(),
            self._staging,
            self._final_dir,
            self._manifest,
            commit=self._final_dir is not None,
            custom_fn=self._user_fn is not None,
        )
        return (
            batches.pipeline
            | "FinalizeTrigger" >> beam.Create([None])
            | "Finalize"
            >> beam.ParDo(
                finalize,
                stats=beam.pvalue.AsList(stats),
                used_rows=beam.pvalue.AsSingleton(used),
                rejected_rows=beam.pvalue.AsSingleton(rejected_count),
                transformed_rows=beam.pvalue.AsSingleton(analyzed["transformed_rows"]),
                written=beam.pvalue.AsList(rejected_files),
                **done,
            )
        )
