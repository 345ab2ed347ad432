"""One benchmark approach per function; run each in its own process:

    python -m benchmarks.approaches NAME --parquet P --csv C --spec S --out DIR --result R.json

Every approach does the same job on the same file: analyze, transform every
row, write the transformed rows. featurebridge and the TFT approaches
(tft_arrow, tft_arrow_2proc, tft_csv, tft_dicts) follow the spec file, so they
run the text spec (tf-idf) too; pyarrow, sklearn, spark and mltransform
hard-code the main spec (means, variances, top-10k vocabularies with counts,
10 quantile buckets). The result JSON holds ``work_s`` (input read to output
written, imports and start-up excluded), ``process_s`` (from main's start),
``output`` and, for featurebridge, ``rows``; an approach that cannot run here
writes ``skipped`` instead. The runner (`benchmarks.run`) times the whole
process (command to result) around it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from typing import Callable, Dict

__all__ = ["APPROACHES", "main"]

APPROACHES: Dict[str, Callable] = {}


def _approach(name):
    def register(fn):
        APPROACHES[name] = fn
        return fn

    return register


def _columns():
    from benchmarks.data import FLOAT_COLUMNS, QUANTILE_COLUMN, STRING_COLUMNS

    return FLOAT_COLUMNS, list(STRING_COLUMNS), QUANTILE_COLUMN


def _fresh(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, exist_ok=True)
    return path


# ---------------------------------------------------------------------------


@_approach("featurebridge")
def featurebridge(parquet, csv, spec, out, extra=()):
    from featurebridge.pipelines import analyze

    t0 = time.monotonic()
    manifest = analyze.run(["--input", parquet, "--spec", spec, "--output", out, "--overwrite", *extra])
    return {"work_s": time.monotonic() - t0, "rows": manifest["rows"]["used"], "output": "gzip tf.Example TFRecord"}


@_approach("featurebridge_plain")
def featurebridge_plain(parquet, csv, spec, out):
    """featurebridge with its fast analyzer switched off (plain TFT analyzers)."""
    return featurebridge(parquet, csv, spec, out, extra=["--analyzer", "tft"])


@_approach("featurebridge_csv")
def featurebridge_csv(parquet, csv, spec, out):
    return featurebridge(csv, csv, spec, out)


def _to_list_batch(batch, spec):
    """Flat Parquet batch -> the large_list layout TFT's VarLen adapter wants
    (null -> empty list). Vectorised; what a user of the Arrow path writes."""
    import numpy as np
    import pyarrow as pa

    arrays = []
    for c in spec.columns:
        arr = batch.column(c.name)
        valid = arr.is_valid().to_numpy(zero_copy_only=False)
        offsets = np.zeros(len(arr) + 1, np.int64)
        np.cumsum(valid, out=offsets[1:])
        target = pa.large_binary() if c.type == "string" else pa.float32()
        arrays.append(pa.LargeListArray.from_arrays(pa.array(offsets), arr.drop_null().cast(target)))
    return pa.RecordBatch.from_arrays(arrays, names=[c.name for c in spec.columns])


def _tft_arrow(parquet, spec_path, out, beam_args=()):
    import apache_beam as beam
    import tensorflow_transform.beam as tft_beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from tfx_bsl.tfxio.parquet_tfxio import ParquetTFXIO

    from featurebridge.transforms.analyze import tensor_adapter_config
    from featurebridge.transforms.preprocessing import build_preprocessing_fn
    from featurebridge.transforms.spec import load_spec

    spec = load_spec(spec_path)
    config = tensor_adapter_config(spec)
    t0 = time.monotonic()
    _fresh(out)
    with beam.Pipeline(options=PipelineOptions(list(beam_args))) as p:
        with tft_beam.Context(temp_dir=os.path.join(out, "tmp")):
            batches = (
                p
                | ParquetTFXIO(parquet, column_names=spec.column_names).BeamSource()
                | beam.Map(_to_list_batch, spec)
            )
            (transformed, metadata), transform_fn = (batches, config) | tft_beam.AnalyzeAndTransformDataset(
                build_preprocessing_fn(spec), output_record_batches=True
            )
            _ = transform_fn | tft_beam.WriteTransformFn(out)
            _ = (
                (transformed, metadata)
                | tft_beam.EncodeTransformedDataset()
                | beam.io.WriteToTFRecord(os.path.join(out, "transformed", "part"), file_name_suffix=".tfrecord.gz")
            )
    return time.monotonic() - t0


@_approach("tft_arrow")
def tft_arrow(parquet, csv, spec, out):
    return {"work_s": _tft_arrow(parquet, spec, out), "output": "gzip tf.Example TFRecord"}


@_approach("tft_csv")
def tft_csv(parquet, csv, spec_path, out):
    """Plain TFT reading the CSV (tfx_bsl's CsvTFXIO, the schema from the spec's
    raw feature spec), the same preprocessing_fn and outputs as `tft_arrow`: what
    a TFT user writes for a CSV job. The cold-start comparison runs it."""
    import apache_beam as beam
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import schema_utils
    from tfx_bsl.tfxio.csv_tfxio import CsvTFXIO

    from featurebridge.transforms.preprocessing import build_preprocessing_fn, raw_feature_spec
    from featurebridge.transforms.spec import load_spec

    spec = load_spec(spec_path)
    t0 = time.monotonic()
    _fresh(out)
    source = CsvTFXIO(csv, column_names=spec.column_names, skip_header_lines=1,
                      schema=schema_utils.schema_from_feature_spec(raw_feature_spec(spec)))
    with beam.Pipeline() as p:
        with tft_beam.Context(temp_dir=os.path.join(out, "tmp")):
            batches = p | source.BeamSource()
            (transformed, metadata), transform_fn = (batches, source.TensorAdapterConfig()) | (
                tft_beam.AnalyzeAndTransformDataset(build_preprocessing_fn(spec), output_record_batches=True))
            _ = transform_fn | tft_beam.WriteTransformFn(out)
            _ = (
                (transformed, metadata)
                | tft_beam.EncodeTransformedDataset()
                | beam.io.WriteToTFRecord(os.path.join(out, "transformed", "part"), file_name_suffix=".tfrecord.gz")
            )
    return {"work_s": time.monotonic() - t0, "output": "gzip tf.Example TFRecord"}


@_approach("tft_arrow_2proc")
def tft_arrow_2proc(parquet, csv, spec, out):
    args = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
    return {"work_s": _tft_arrow(parquet, spec, out, args), "output": "gzip tf.Example TFRecord"}


@_approach("tft_dicts")
def tft_dicts(parquet, csv, spec_path, out):
    """TFT as its getting-started guide shows: instance dicts, beam.Create,
    DatasetMetadata from a feature spec, ExampleProtoCoder for the output."""
    import apache_beam as beam
    import pyarrow.parquet as pq
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

    from featurebridge.transforms.preprocessing import build_preprocessing_fn, raw_feature_spec
    from featurebridge.transforms.spec import load_spec

    spec = load_spec(spec_path)
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(raw_feature_spec(spec)))
    t0 = time.monotonic()
    _fresh(out)
    rows = pq.read_table(parquet).to_pylist()
    raw = [{k: ([] if v is None else [v]) for k, v in r.items()} for r in rows]
    del rows
    with beam.Pipeline() as p:
        with tft_beam.Context(temp_dir=os.path.join(out, "tmp")):
            data = p | beam.Create(raw, reshuffle=False)
            (transformed, transformed_metadata), transform_fn = (data, metadata) | tft_beam.AnalyzeAndTransformDataset(
                build_preprocessing_fn(spec)
            )
            coder = tft.coders.ExampleProtoCoder(transformed_metadata.schema)
            _ = transform_fn | tft_beam.WriteTransformFn(out)
            _ = (
                transformed
                | beam.Map(coder.encode)
                | beam.io.WriteToTFRecord(os.path.join(out, "transformed", "part"), file_name_suffix=".tfrecord.gz")
            )
    return {"work_s": time.monotonic() - t0, "output": "gzip tf.Example TFRecord"}


@_approach("mltransform")
def mltransform(parquet, csv, spec_path, out):
    """Beam MLTransform with its TFT ops; the mean fill is a Beam combine +
    side input because MLTransform has no missing-value op."""
    import apache_beam as beam
    import numpy as np
    import pyarrow.parquet as pq
    from apache_beam.ml.transforms.base import MLTransform
    from apache_beam.ml.transforms.tft import Bucketize, ComputeAndApplyVocabulary, ScaleToZScore

    floats, strings, q = _columns()
    t0 = time.monotonic()
    _fresh(out)
    rows = pq.read_table(parquet).to_pylist()

    def fill(row, means):
        return {
            **{c: np.array([means[c] if row[c] is None else row[c]], np.float32) for c in floats},
            **{c: np.array([row[c]]) for c in strings},
            q: np.array([row[q]], np.float32),
        }

    with beam.Pipeline() as p:
        data = p | beam.Create(rows, reshuffle=False)
        means = {
            c: beam.pvalue.AsSingleton(
                data
                | f"Present{c}" >> beam.FlatMap(lambda r, c=c: [] if r[c] is None else [r[c]])
                | f"Mean{c}" >> beam.combiners.Mean.Globally()
            )
            for c in floats
        }
        filled = data | "Fill" >> beam.Map(lambda r, **m: fill(r, m), **means)
        transform = (
            MLTransform(write_artifact_location=os.path.join(out, "artifacts"))
            .with_transform(ScaleToZScore(columns=floats))
            .with_transform(ComputeAndApplyVocabulary(columns=strings, top_k=10_000, num_oov_buckets=1))
            .with_transform(Bucketize(columns=[q], num_buckets=10))
        )
        _ = (
            filled
            | transform
            | beam.Map(lambda row: json.dumps({k: np.asarray(v).tolist() for k, v in row._asdict().items()}))
            | beam.io.WriteToText(os.path.join(out, "transformed", "part"), file_name_suffix=".jsonl.gz")
        )
    return {"work_s": time.monotonic() - t0, "output": "gzip JSON lines"}


@_approach("sklearn")
def sklearn(parquet, csv, spec_path, out):
    import numpy as np
    import pandas as pd
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import KBinsDiscretizer, StandardScaler

    floats, strings, q = _columns()
    t0 = time.monotonic()
    _fresh(out)
    df = pd.read_parquet(parquet)
    result = {}
    x = StandardScaler().fit_transform(SimpleImputer(strategy="mean").fit_transform(df[floats].to_numpy()))
    for i, c in enumerate(floats):
        result[c + "_zscore"] = x[:, i].astype(np.float32)
    for c in strings:
        counts = df[c].value_counts()
        vocab = counts.index[:10_000]
        codes = pd.Index(vocab).get_indexer(df[c])
        result[c + "_vocabulary"] = np.where(codes < 0, len(vocab), codes).astype(np.int64)
    bins = KBinsDiscretizer(n_bins=10, encode="ordinal", strategy="quantile", quantile_method="averaged_inverted_cdf")
    result[q + "_bucketize"] = bins.fit_transform(df[[q]]).ravel().astype(np.int64)
    pd.DataFrame(result).to_parquet(os.path.join(out, "transformed.parquet"))
    return {"work_s": time.monotonic() - t0, "output": "Parquet"}


@_approach("pyarrow")
def pyarrow_one_pass(parquet, csv, spec_path, out):
    """A rough lower bound: one columnar read, vectorised statistics (exact
    quantiles), vectorised mapping, one Parquet write."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    floats, strings, q = _columns()
    t0 = time.monotonic()
    _fresh(out)
    table = pq.read_table(parquet)
    result = {}
    for c in floats:
        col = table.column(c)
        mean = pc.mean(col).as_py()
        filled = pc.fill_null(col, mean)
        std = pc.stddev(filled).as_py() or 1.0
        result[c + "_zscore"] = pc.divide(pc.subtract(filled, mean), std).cast(pa.float32())
    for c in strings:
        counts = pc.value_counts(table.column(c)).flatten()
        order = np.argsort(-counts[1].to_numpy(), kind="stable")
        vocab = counts[0].take(pa.array(order[:10_000]))
        idx = pc.index_in(table.column(c), value_set=vocab)
        result[c + "_vocabulary"] = pc.fill_null(idx, len(vocab)).cast(pa.int64())
    col = table.column(q)
    bounds = pc.quantile(col, q=[i / 10 for i in range(1, 10)]).to_numpy()
    result[q + "_bucketize"] = pa.array(np.searchsorted(bounds, col.to_numpy(), side="right").astype(np.int64))
    pq.write_table(pa.table(result), os.path.join(out, "transformed.parquet"))
    return {"work_s": time.monotonic() - t0, "output": "Parquet"}


@_approach("spark")
def spark(parquet, csv, spec_path, out):
    import importlib.util

    if importlib.util.find_spec("pyspark") is None:
        return {"skipped": "pyspark is not installed (the `spark` extra: `make bench` installs it)"}
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        return {"skipped": "no Java on PATH and no JAVA_HOME (Spark 4 needs Java 17 or 21)"}
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import Imputer, QuantileDiscretizer, StandardScaler, StringIndexer, VectorAssembler
    from pyspark.sql import SparkSession

    floats, strings, q = _columns()
    session = (
        SparkSession.builder.master("local[2]")
        .config("spark.driver.memory", "4g")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    t0 = time.monotonic()
    _fresh(out)
    df = session.read.parquet(parquet)
    filled = [c + "_filled" for c in floats]
    stages = [
        Imputer(inputCols=floats, outputCols=filled, strategy="mean"),
        VectorAssembler(inputCols=filled, outputCol="floats_vec"),
        StandardScaler(inputCol="floats_vec", outputCol="floats_zscore", withMean=True, withStd=True),
        QuantileDiscretizer(inputCol=q, outputCol=q + "_bucketize", numBuckets=10, relativeError=0.01),
    ]
    # StringIndexer has no top-k: keep a frequency-ordered index and send ids >= 10k to one OOV id.
    stages += [StringIndexer(inputCol=c, outputCol=c + "_index", stringOrderType="frequencyDesc") for c in strings]
    model = Pipeline(stages=stages).fit(df)
    from pyspark.sql import functions as F

    result = model.transform(df).select(
        "floats_zscore",
        q + "_bucketize",
        *[F.least(F.col(c + "_index"), F.lit(10_000.0)).alias(c + "_vocabulary") for c in strings],
    )
    result.write.mode("overwrite").parquet(os.path.join(out, "transformed"))
    elapsed = time.monotonic() - t0
    _stop_spark(session)
    return {"work_s": elapsed, "output": "Parquet"}


def _stop_spark(session):
    """Stops Spark and waits for its JVM, so the JVM's CPU time and peak RSS
    reach this process's rusage (the runner reads them with os.wait4); the JVM
    leaves when its stdin closes."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway  # pylint: disable=protected-access
    session.stop()
    proc = getattr(gateway, "proc", None)
    if gateway is not None:
        gateway.shutdown()
    if proc is not None:
        proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except Exception:  # noqa: BLE001 - a JVM that does not leave only loses its rusage
            proc.kill()
            proc.wait()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=sorted(APPROACHES))
    parser.add_argument("--parquet", required=True)
    parser.add_argument("--csv", required=True)
    parser.add_argument("--spec", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--result", required=True)
    args = parser.parse_args(argv)
    started = time.monotonic()
    result = APPROACHES[args.name](args.parquet, args.csv, args.spec, args.out)
    result["process_s"] = time.monotonic() - started
    with open(args.result, "w", encoding="utf-8") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    code = main()
    # The TFT instance-dict and MLTransform runs finished their work and wrote
    # their result, then died with SIGSEGV (exit -11) in interpreter teardown
    # (TensorFlow/Beam native threads racing Python finalization; seen at 50k
    # and 200k, logs in benchmarks/out/). The work is done and measured by then,
    # so the child skips teardown: flush, then leave at once.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
