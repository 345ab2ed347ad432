"""The analyze-and-transform PTransforms: Arrow RecordBatches in, TFT artifacts out.

`AnalyzeAndTransform` runs TFT on its Arrow path (RecordBatches +
TensorAdapterConfig) and writes the transform_fn, the transformed metadata and
the transformed examples (`featurebridge.transforms.example_shards`); it hands
the numeric analyzer results on as a PCollection. `AnalyzeToDirectory` adds the
rejected rows and the last step (`featurebridge.transforms.finalize`:
reconciled counts, constants.json, manifest.json, the commit).
"""

from __future__ import annotations

import os
from typing import Callable, Optional, Sequence

import apache_beam as beam
import pyarrow as pa
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import schema_utils
from tfx_bsl.tfxio import tensor_adapter, tensor_representation_util

from featurebridge.transforms import validation as fb_io
from featurebridge.transforms.constants_json import evaluate_constants_fn
from featurebridge.transforms.data_stats import FeatureStatsCombineFn, raw_feature_plans
from featurebridge.transforms.example_shards import WriteExampleShards
from featurebridge.transforms.one_pass import AnalysisHolder, AnalyzeSpec, build_one_pass_preprocessing_fn, numeric_results
from featurebridge.transforms.finalize import TEMP_SUBDIR, Finalize
from featurebridge.transforms.layout import REJECTED_DIR, REJECTED_PREFIX, TRANSFORMED_DIR
from featurebridge.transforms.preprocessing import build_constants_fn, build_preprocessing_fn, raw_feature_spec, with_shared_rules
from featurebridge.transforms.spec import FeatureSpec

__all__ = [
    "ANALYZERS",
    "AnalyzeAndTransform",
    "AnalyzeToDirectory",
    "analyzer_used",
    "tensor_adapter_config",
]

ANALYZERS = ("auto", "tft")


def analyzer_used(analyzer: str, preprocessing_fn: Optional[Callable]) -> str:
    """What computes the statistics, as manifest.json records it: "one_pass"
    (`featurebridge.transforms.one_pass`, the default for a spec), "tft" (plain
    TFT analyzers, `--analyzer tft`) or "custom" (a user's preprocessing_fn,
    on plain TFT: the slow path)."""
    if preprocessing_fn is not None:
        return "custom"
    return "one_pass" if analyzer == "auto" else "tft"


def tensor_adapter_config(spec: FeatureSpec, passthrough: Sequence[pa.Field] = ()) -> tensor_adapter.TensorAdapterConfig:
    """How TFT turns our RecordBatches into tensors: one VarLen sparse tensor per
    column. `passthrough` columns follow the spec's in the Arrow schema, without
    a tensor: TFT copies them to its output (tft_beam.Context(passthrough_keys=...))."""
    schema = schema_utils.schema_from_feature_spec(raw_feature_spec(spec))
    representations = tensor_representation_util.InferTensorRepresentationsFromSchema(schema)
    arrow_schema = fb_io.arrow_schema_for(spec)
    for field in passthrough:
        arrow_schema = arrow_schema.append(field)
    return tensor_adapter.TensorAdapterConfig(arrow_schema, representations)


def _without(pair, names: Sequence[str]):
    """TFT's (transformed batch, unary passthrough) without the passthrough columns."""
    batch, unary = pair
    return batch.select([n for n in batch.schema.names if n not in names]), unary


class AnalyzeAndTransform(beam.PTransform):
    """Analyzes RecordBatches with TFT and writes the artifacts under `output_dir`.

    Input: a PCollection of pa.RecordBatch in `featurebridge.transforms.io.arrow_schema_for(spec)`.
    Output: {"transformed": TFT's transformed pa.RecordBatches (then the
    `passthrough` columns); "examples": the same batches without the
    passthrough columns (what is written as tf.Examples); "transformed_rows": PCollection with one int, the number of
    transformed examples; "written": [PCollections that complete when each
    artifact is written] (use them as side inputs to run after the writes);
    "analyzer_results": for a spec-built run, a PCollection with one element,
    the numeric analyzer results ``{key: [floats]}`` keyed ``"<column>/fill"``,
    ``"<output>/mean"``, ``"/var"``, ``"/min"``, ``"/max"``, ``"/boundaries"``
    (what `featurebridge.transforms.constants_json.compute_constants` takes as
    `numeric`); None with a user's preprocessing_fn}.

    Writes ``transform_fn/``, ``transformed_metadata/`` and
    ``transformed/part-*.tfrecord.gz``; TFT's scratch files go to `temp_dir`.

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
      analyzer: "auto" (the one-pass analyzer of featurebridge.transforms.one_pass,
        every spec) or "tft" (plain TFT analyzers, the oracle). Both give the
        same transform_fn up to float rounding and the quantile sketch's bound.
        A user's `preprocessing_fn` always runs on plain TFT (the slow path).
      passthrough: input columns after the spec's (Arrow fields, not graph
        inputs) that TFT copies, row for row, to the "transformed" output; the
        written examples leave them out.
      oov_input: a further read of the same batches for a spec with tf-idf
        (its out-of-vocabulary document count needs the finished vocabulary;
        see `featurebridge.transforms.one_pass.AnalyzeSpec`). Without it the
        first read serves, and the runner keeps its batches meanwhile.
    """

    def __init__(
        self,
        spec: FeatureSpec,
        output_dir: str,
        temp_dir: str,
        preprocessing_fn: Optional[Callable] = None,
        transform_input=None,
        analyzer: str = "auto",
        passthrough: Sequence[pa.Field] = (),
        oov_input=None,
    ):
        super().__init__()
        self._passthrough = list(passthrough)
        self._oov_input = oov_input
        if analyzer not in ANALYZERS:
            raise ValueError(f"analyzer must be one of {list(ANALYZERS)}; got {analyzer!r}.")
        self._analyzer = analyzer
        self._spec = spec
        self._output_dir = output_dir
        self._temp_dir = temp_dir
        self._user_fn = preprocessing_fn
        self._transform_input = transform_input

    def expand(self, batches):
        config = tensor_adapter_config(self._spec, self._passthrough)
        passthrough_keys = [f.name for f in self._passthrough]
        # Issue 14: every analyzer of the spec in one combine over the batches
        # (featurebridge.transforms.one_pass); TFT only bakes the results into the
        # transform_fn, so its own analysis reads no data. analyzer="tft" (and a
        # user's preprocessing_fn) run plain TFT analyzers: the oracle, and the slow path.
        one_pass = analyzer_used(self._analyzer, self._user_fn) == "one_pass"
        if one_pass:
            analysis = batches | "AnalyzeSpec" >> AnalyzeSpec(self._spec, oov_input=self._oov_input)
            preprocessing_fn = build_one_pass_preprocessing_fn(self._spec, AnalysisHolder(analysis))
            analysis_data = batches.pipeline | "NoAnalysisData" >> beam.Create([]).with_output_types(pa.RecordBatch)
        else:
            preprocessing_fn = self._user_fn or build_preprocessing_fn(self._spec)
            analysis_data = batches
        # One meaning of "missing" inside the graph, and the split bucket, for every kind of fn.
        preprocessing_fn = with_shared_rules(self._spec, preprocessing_fn)
        transform_input = self._transform_input if self._transform_input is not None else batches
        with tft_beam.Context(temp_dir=self._temp_dir, passthrough_keys=set(passthrough_keys)):
            if self._transform_input is None and not one_pass:
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
                transform_fn = (analysis_data, config) | "AnalyzeDataset" >> tft_beam.AnalyzeDataset(
                    preprocessing_fn
                )
                transformed, transformed_metadata = (
                    (transform_input, config),
                    transform_fn,
                ) | "TransformDataset" >> tft_beam.TransformDataset(output_record_batches=True)
            written = [transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(self._output_dir)]
            to_write = transformed
            if passthrough_keys:
                to_write = transformed | "DropPassthrough" >> beam.Map(_without, passthrough_keys)
            # Issue 6: one Beam element per RecordBatch, not per example; see WriteExampleShards.
            shards = to_write | "WriteTransformed" >> WriteExampleShards(
                transformed_metadata, os.path.join(self._output_dir, TRANSFORMED_DIR), self._temp_dir
            )
            written.append(shards)
            if one_pass:
                results = analysis | "NumericResults" >> beam.Map(numeric_results)
            elif self._user_fn is None:
                # The same TFT analyzers again, their results as the outputs of a
                # small transform_fn; its one element is the SavedModel's temp
                # path, evaluated right here (no second artifact to find later).
                (constants_fn, _) = (
                    batches,
                    config,
                ) | "AnalyzeConstants" >> tft_beam.AnalyzeDataset(
                    with_shared_rules(self._spec, build_constants_fn(self._spec), split=False)
                )
                results = constants_fn | "EvaluateConstants" >> beam.Map(_evaluate_constants, self._spec.to_json())
            else:
                results = None
        batches_out = transformed | "TransformedBatches" >> beam.Map(lambda pair: pair[0])
        examples = batches_out
        if passthrough_keys:
            examples = to_write | "WrittenBatches" >> beam.Map(lambda pair: pair[0])
        return {"transformed": batches_out, "examples": examples, "transformed_rows": shards, "written": written,
                "analyzer_results": results}


def _evaluate_constants(saved_model_dir: str, spec_json: str):
    """The constants transform_fn at `saved_model_dir` -> {key: [floats]} (runs on a worker)."""
    return evaluate_constants_fn(saved_model_dir, FeatureSpec.from_text(spec_json, trusted=True))


class AnalyzeToDirectory(beam.PTransform):
    """Read result (batches, rejected, stats) -> a complete analyzed directory.

    Writes transform_fn/, transformed_metadata/, transformed/, rejected/,
    metadata/ (the raw schema), pre_transform_stats/ and post_transform_stats/
    (TFDV statistics of the raw batches and of the transformed ones, computed
    by combines over the same PCollections the analysis and the writes
    consume: no extra read), report.html (against `baseline_dir`, another
    analyze output, when given), constants.json and manifest.json into
    `staging_dir`, checks that
    ``read == used + rejected`` and that some rows were used, then (when
    `final_dir` is given) renames the staging directory to `final_dir`.

    Output: {"directory": a PCollection with one element, the path of the
    finished directory; "transformed": TFT's transformed pa.RecordBatches,
    followed by the `passthrough` columns}. Pass `transform_input` (a second
    read's batches) to keep memory flat, `oov_input` (another read) for a
    spec with tf-idf, and `passthrough` to carry input columns (a key) to the
    transformed batches; see `AnalyzeAndTransform`.

    The commit never replaces an existing `final_dir` unless `overwrite` is
    True: without it, a `final_dir` that appeared after the pipeline was set
    up fails the commit and the results stay in `staging_dir`.

    Raises (at run time, failing the pipeline):
      EmptyDataError: no usable rows.
      CountMismatchError: rows were lost somewhere.
      OutputExistsError: `final_dir` exists at commit and `overwrite` is False.
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
        passthrough: Sequence[pa.Field] = (),
        overwrite: bool = False,
        oov_input=None,
        baseline_dir: Optional[str] = None,
    ):
        super().__init__()
        self._baseline_dir = baseline_dir
        self._oov_input = oov_input
        self._overwrite = bool(overwrite)
        self._passthrough = list(passthrough)
        self._transform_input = transform_input
        self._analyzer = analyzer
        self._spec = spec
        self._staging = staging_dir
        self._final_dir = final_dir
        self._user_fn = preprocessing_fn
        self._manifest = dict(manifest or {})
        # The spec travels with its output: layout.load_analyzed reads it back.
        self._manifest.setdefault("spec", spec.to_dict())
        self._manifest["analyzer"] = analyzer_used(analyzer, preprocessing_fn)

    def expand(self, read_result):
        batches, rejected, stats = read_result.batches, read_result.rejected, read_result.stats
        rejected_files = rejected | "WriteRejected" >> beam.io.WriteToText(
            os.path.join(self._staging, REJECTED_DIR, REJECTED_PREFIX),
            file_name_suffix=".jsonl",
            num_shards=1,
        )
        analyzed = batches | "Analyze" >> AnalyzeAndTransform(
            self._spec, self._staging, os.path.join(self._staging, TEMP_SUBDIR), self._user_fn,
            transform_input=self._transform_input,
            analyzer=self._analyzer,
            passthrough=self._passthrough,
            oov_input=self._oov_input,
        )
        done = {f"written_{i}": beam.pvalue.AsList(p) for i, p in enumerate(analyzed["written"])}
        used = (
            batches
            | "RowsPerBatch" >> beam.Map(lambda b: b.num_rows)
            | "UsedRows" >> beam.CombineGlobally(sum)
        )
        rejected_count = rejected | "RejectedRows" >> beam.combiners.Count.Globally()
        # The data statistics: one combine over the raw batches, one over the
        # transformed ones (the batches written as tf.Examples), both fed by
        # the PCollections the analysis and the writes already consume.
        raw_statistics = batches | "RawStatistics" >> beam.CombineGlobally(
            FeatureStatsCombineFn(raw_feature_plans(self._spec)))
        transformed_statistics = analyzed["examples"] | "TransformedStatistics" >> beam.CombineGlobally(
            FeatureStatsCombineFn())
        analyzer_results = {}
        if analyzed["analyzer_results"] is not None:
            analyzer_results["analyzer_results"] = beam.pvalue.AsSingleton(analyzed["analyzer_results"])
        finalize = Finalize(
            self._spec.to_json(),
            self._staging,
            self._final_dir,
            self._manifest,
            commit=self._final_dir is not None,
            custom_fn=self._user_fn is not None,
            overwrite=self._overwrite,
            baseline_dir=self._baseline_dir,
        )
        directory = (
            batches.pipeline
            | "FinalizeTrigger" >> beam.Create([None])
            | "Finalize"
            >> beam.ParDo(
                finalize,
                stats=beam.pvalue.AsList(stats),
                used_rows=beam.pvalue.AsSingleton(used),
                rejected_rows=beam.pvalue.AsSingleton(rejected_count),
                transformed_rows=beam.pvalue.AsSingleton(analyzed["transformed_rows"]),
                **analyzer_results,
                raw_statistics=beam.pvalue.AsSingleton(raw_statistics),
                transformed_statistics=beam.pvalue.AsSingleton(transformed_statistics),
                written=beam.pvalue.AsList(rejected_files),
                **done,
            )
        )
        return {"directory": directory, "transformed": analyzed["transformed"]}
