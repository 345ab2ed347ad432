"""The one-pass analyzer (issue 14): every analyzer of a spec in ONE Beam
combine over the Arrow RecordBatches, then TFT bakes the results into a
genuine transform_fn.

How it runs:

1. `AnalyzeSpec` applies one `beam.CombineGlobally(OnePassCombineFn)` to the
   RecordBatches. Its accumulator holds, per column, the vectorised
   statistics its fill and its ops ask for (`featurebridge.transforms.ops`:
   numpy moments, TFT's C++ quantile sketch, pyarrow token counts), fed one
   RecordBatch at a time and merged across bundles; no TensorFlow graph runs
   over the data. The extracted results (`Analysis`, one element) travel on
   as a PCollection.
2. A spec with tf-idf needs one more count that depends on the finished
   vocabulary (rows holding an out-of-vocabulary n-gram); it comes from a
   narrow second pass over `oov_input` with the first pass's vocabularies as
   a side input.
3. `build_one_pass_preprocessing_fn` returns a TFT preprocessing_fn whose
   analyzers are two `tft.experimental.ptransform_analyzer`s (numbers;
   vocabulary files) that take their values from that PCollection, so TFT
   writes a normal transform_fn: constants in the graph, vocabularies as
   assets, loadable by `tft.TFTransformOutput`, the mapping done by TFT's own
   mappers where they exist. TFT's analysis then needs no data at all
   (`AnalyzeAndTransform` gives it an empty dataset).

The result equals plain TFT's analyzers (`--analyzer tft`, the oracle in
tests/test_one_pass_oracle.py) up to float rounding and the quantile sketch's
bound. Edge cases: an empty input gives TFT's defaults (zero moments, empty
vocabularies with TFT's stand-in token); the analyze job refuses empty input
before this point.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa

from featurebridge.transforms.ops import LabelOp, fill_for, ops_of
from featurebridge.transforms.ops.stats import Moments, Quantiles
from featurebridge.transforms.ops.text import OOV_DOCUMENTS, ROWS, TfIdf
from featurebridge.transforms.spec import FeatureSpec

__all__ = ["AnalyzeSpec", "AnalysisHolder", "OnePassCombineFn", "SpecPlan", "build_one_pass_preprocessing_fn",
           "numeric_results"]

_VOCABULARY = "/vocabulary"
# The numeric results constants.json reads (see constants_json.compute_constants).
_CONSTANT_SUFFIXES = ("/fill", "/mean", "/var", "/min", "/max", "/boundaries")


class SpecPlan:
    """Which statistics each column needs, and who reads them.

    Attributes:
      columns: [(column, fill, ops, label op or None, [requests, deduplicated])]
        for every column of the spec, in spec order.
      tfidf: the spec's tf-idf ops.
    """

    def __init__(self, spec: FeatureSpec):
        self.spec = spec
        by_column = ops_of(spec)
        self.columns = []
        self.tfidf: List[TfIdf] = []
        for column in spec.columns:
            fill = fill_for(column)
            ops = by_column[column.name]
            label = LabelOp(spec.label, column) if spec.label and spec.label.column == column.name else None
            requests = list(dict.fromkeys(
                [*fill.requests(), *(r for op in ops for r in op.requests()), *(label.requests() if label else ())]
            ))
            self.columns.append((column, fill, ops, label, requests))
            self.tfidf += [op for op in ops if isinstance(op, TfIdf)]

    def extract(self, rows: int, accumulators: Mapping[Tuple[str, object], Any], missing: Mapping[str, int],
                oov_documents: Optional[Mapping[str, int]] = None) -> Dict[str, Any]:
        """Every result of the spec from the merged accumulators: {key: numpy
        value or vocabulary lines}, plus {(OOV_DOCUMENTS, output): n} inputs."""
        results: Dict[str, Any] = {}
        for column, fill, ops, label, requests in self.columns:
            if not requests:
                continue
            accs = {r: accumulators[(column.name, r)] for r in requests}
            unfilled = {r: r.extract(accs[r], None, 0) for r in fill.requests()}
            fill_value = fill.value(unfilled) if fill.requests() else fill.known()
            results.update(fill.results(unfilled))
            n_missing = missing.get(column.name, 0)
            stats: Dict[Any, Any] = {r: r.extract(accs[r], fill_value, n_missing) for r in requests}
            stats[ROWS] = rows
            for op in ops:
                if isinstance(op, TfIdf):
                    stats[(OOV_DOCUMENTS, op.output)] = (oov_documents or {}).get(op.output, 0)
                results.update(op.results(stats))
            if label is not None:
                results.update(label.results(stats))
        return results

    def fill_value(self, name: str, accumulators: Mapping[Tuple[str, object], Any]):
        """Column `name`'s fill value: from its present values' statistics
        for a data-dependent policy, else the spec's (None: no fill)."""
        for column, fill, _, _, _ in self.columns:
            if column.name == name:
                if not fill.requests():
                    return fill.known()
                return fill.value({r: r.extract(accumulators[(name, r)], None, 0) for r in fill.requests()})
        raise KeyError(name)

    def result_shapes(self) -> Dict[str, Any]:
        """The results of an empty input: every key with its dtype and shape
        (what the trace needs before any data is seen)."""
        empty = OnePassCombineFn(self).create_accumulator()
        return self.extract(0, empty["stats"], {})


class OnePassCombineFn(beam.CombineFn):
    """RecordBatches -> every statistic of a `SpecPlan`, vectorised per batch.

    The accumulator is {"rows": int, "missing": {column: int},
    "stats": {(column, request): request accumulator}}; a row's missing value
    is an empty list in its column (the readers' rule)."""

    def __init__(self, plan: SpecPlan):
        self._plan = plan

    def create_accumulator(self):
        stats = {}
        for column, _, _, _, requests in self._plan.columns:
            for r in requests:
                stats[(column.name, r)] = r.create()
        return {"rows": 0, "missing": {}, "stats": stats}

    def add_input(self, acc, batch: pa.RecordBatch):
        acc["rows"] += batch.num_rows
        for column, _, _, _, requests in self._plan.columns:
            if not requests:
                continue
            lists = batch.column(batch.schema.get_field_index(column.name))
            values = lists.flatten()
            acc["missing"][column.name] = acc["missing"].get(column.name, 0) + batch.num_rows - len(values)
            numbers = None
            for r in requests:
                key = (column.name, r)
                if isinstance(r, (Moments, Quantiles)):
                    if numbers is None:
                        numbers = values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
                    acc["stats"][key] = r.add(acc["stats"][key], numbers)
                else:
                    acc["stats"][key] = r.add(acc["stats"][key], values)
        return acc

    def merge_accumulators(self, accumulators):
        accumulators = iter(accumulators)
        result = next(accumulators)
        for acc in accumulators:
            result["rows"] += acc["rows"]
            for name, n in acc["missing"].items():
                result["missing"][name] = result["missing"].get(name, 0) + n
            for (name, r), value in acc["stats"].items():
                result["stats"][(name, r)] = r.merge(result["stats"][(name, r)], value)
        return result

    def compact(self, acc):
        for (name, r), value in acc["stats"].items():
            if isinstance(value, list) and len(value) > 1:
                acc["stats"][(name, r)] = r.merge(value, [])
        return acc

    def extract_output(self, acc):
        return acc


def _finish(acc, plan: SpecPlan, oov_documents=None) -> Dict[str, Any]:
    return plan.extract(acc["rows"], acc["stats"], acc["missing"], oov_documents)


def _tfidf_vocabularies(acc, plan: SpecPlan) -> Dict[str, set]:
    """{tf-idf output: its vocabulary's escaped tokens} from the first pass
    (only each tf-idf's own counts are extracted, with its column's fill)."""
    out = {}
    for op in plan.tfidf:
        name = op.column.name
        (request,) = op.requests()
        table = request.extract(acc["stats"][(name, request)], plan.fill_value(name, acc["stats"]),
                                acc["missing"].get(name, 0))
        out[op.output] = set(op.vocabulary_tokens({request: table}))
    return out


class _CountOovRows(beam.DoFn):
    """Per batch: {tf-idf output: rows holding an n-gram outside its vocabulary},
    and {column: missing rows} for the fill's own n-grams."""

    def __init__(self, plan: SpecPlan):
        self._plan = plan

    def process(self, batch: pa.RecordBatch, vocabularies):
        counts = {}
        for op in self._plan.tfidf:
            values = batch.column(batch.schema.get_field_index(op.column.name)).flatten()
            counts[op.output] = op.rows_with_oov(values, vocabularies[op.output])
            counts[("missing", op.output)] = batch.num_rows - len(values)
        yield counts


def _sum_counts(parts) -> Dict[Any, int]:
    total: Dict[Any, int] = {}
    for part in parts:
        for key, n in part.items():
            total[key] = total.get(key, 0) + n
    return total


def _finish_with_oov(acc, counts, plan: SpecPlan) -> Dict[str, Any]:
    vocabularies = _tfidf_vocabularies(acc, plan)
    oov = {}
    for op in plan.tfidf:
        oov[op.output] = counts.get(op.output, 0)
        missing = counts.get(("missing", op.output), 0)
        fill = plan.fill_value(op.column.name, acc["stats"])
        if missing and fill is not None:  # missing rows hold the fill's text
            text = fill if isinstance(fill, bytes) else str(fill).encode()
            oov[op.output] += missing * op.rows_with_oov(pa.array([text], pa.large_binary()), vocabularies[op.output])
    return _finish(acc, plan, oov)


class AnalyzeSpec(beam.PTransform):
    """RecordBatches -> one element: every analyzer result of the spec
    ({key: numpy value, or vocabulary lines for ``.../vocabulary`` keys}).

    Args:
      spec: the feature spec the batches follow.
      oov_input: for a spec with tf-idf, a second PCollection of the same
        batches (typically a second read) for the out-of-vocabulary count;
        without it the first is used (the runner then keeps every batch until
        the first pass ends).
    """

    def __init__(self, spec: FeatureSpec, oov_input=None):
        super().__init__()
        self._plan = SpecPlan(spec)
        self._oov_input = oov_input

    def expand(self, batches):
        plan = self._plan
        combined = batches | "OnePass" >> beam.CombineGlobally(OnePassCombineFn(plan))
        if not plan.tfidf:
            return combined | "Results" >> beam.Map(_finish, plan)
        vocabularies = combined | "TfIdfVocabularies" >> beam.Map(_tfidf_vocabularies, plan)
        source = self._oov_input if self._oov_input is not None else batches
        counts = (
            source
            | "CountOovRows" >> beam.ParDo(_CountOovRows(plan), beam.pvalue.AsSingleton(vocabularies))
            | "SumOovRows" >> beam.CombineGlobally(_sum_counts)
        )
        return combined | "Results" >> beam.Map(_finish_with_oov, beam.pvalue.AsSingleton(counts), plan)


def numeric_results(results: Mapping[str, Any]) -> Dict[str, List[float]]:
    """The numeric results constants.json reads: {key: [floats]}."""
    return {
        key: [float(x) for x in np.ravel(np.asarray(value, np.float64))]
        for key, value in results.items()
        if isinstance(key, str) and key.endswith(_CONSTANT_SUFFIXES)
    }


class AnalysisHolder:
    """Hands `AnalyzeSpec`'s PCollection to the preprocessing_fn's analyzers
    while TFT expands them (pipeline construction only: pickling drops it)."""

    def __init__(self, analysis: Optional[beam.PCollection] = None):
        self.analysis = analysis

    def __getstate__(self):
        return {"analysis": None}


def _import_tf():
    import tensorflow as tf
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam

    return tf, tft, tft_beam


def _packed(results: Mapping[str, Any], keys: List[str]) -> np.ndarray:
    """Every numeric result, in `keys` order, as one flat float64 vector (one
    analyzer output: TFT builds Beam stages and graph nodes per output)."""
    parts = [np.ravel(np.asarray(results[k], np.float64)) for k in keys]
    return np.concatenate(parts) if parts else np.zeros(0, np.float64)


def _write_vocabularies(results: Mapping[str, Any], keys: List[str], temp_dir: str) -> list:
    import tensorflow as tf

    out_dir = os.path.join(temp_dir, "featurebridge_vocabularies")
    tf.io.gfile.makedirs(out_dir)
    paths = []
    for key in keys:
        path = os.path.join(out_dir, key[: -len(_VOCABULARY)].replace("/", "_"))
        with tf.io.gfile.GFile(path, "wb") as f:
            f.write(b"".join(line + b"\n" for line in results[key]))
        paths.append(path.encode())
    return paths


def _make_analyzer_class():
    _, _, tft_beam = _import_tf()

    class _FromAnalysis(tft_beam.experimental.PTransformAnalyzer):
        """A ptransform_analyzer whose values come from `AnalyzeSpec`'s
        PCollection (its own input, the analysis dataset, is left unread)."""

        def __init__(self, holder: AnalysisHolder, keys: List[str], vocabulary: bool):
            super().__init__()
            self._holder = holder
            self._keys = keys
            self._vocabulary = vocabulary

        def expand(self, pcoll):
            if self._holder.analysis is None:
                raise RuntimeError("the one-pass analysis was not applied before TFT's; see AnalyzeAndTransform")
            if self._vocabulary:
                picked = self._holder.analysis | "WriteVocabularies" >> beam.Map(
                    _write_vocabularies, self._keys, self.base_temp_dir)
                return tuple(picked | f"Output{i}" >> beam.Map(lambda r, i=i: r[i]) for i in range(len(self._keys)))
            return (self._holder.analysis | "Packed" >> beam.Map(_packed, self._keys),)

    return _FromAnalysis


def build_one_pass_preprocessing_fn(spec: FeatureSpec, holder: AnalysisHolder):
    """The TFT preprocessing_fn of `spec` whose analyzer results come from
    `holder.analysis` (an `AnalyzeSpec` output applied in the same pipeline).

    Same output names, dtypes and values as
    `featurebridge.transforms.preprocessing.build_preprocessing_fn(spec)`.
    """
    from featurebridge.transforms.graph_rules import to_dense
    from featurebridge.transforms.preprocessing import cross_tensor

    plan = SpecPlan(spec)
    shapes = plan.result_shapes()
    numeric_keys = [k for k in shapes if not k.endswith(_VOCABULARY)]
    vocabulary_keys = [k for k in shapes if k.endswith(_VOCABULARY)]
    analyzer_class = _make_analyzer_class()

    def preprocessing_fn(inputs):
        tf, tft, _ = _import_tf()
        constants: Dict[str, Any] = {}
        first = inputs[spec.columns[0].name]
        unread = [tf.reshape(tf.cast(first.dense_shape[0], tf.float32), [1])]
        if numeric_keys:
            sizes = [int(np.asarray(shapes[k]).size) for k in numeric_keys]
            (packed,) = tft.experimental.ptransform_analyzer(
                unread, analyzer_class(holder, numeric_keys, False),
                output_dtypes=[tf.float64], output_shapes=[[sum(sizes)]],
                name="featurebridge_analysis",
            )
            start = 0
            for key, size in zip(numeric_keys, sizes):
                like = np.asarray(shapes[key])
                value = tf.reshape(packed[start:start + size], like.shape)
                constants[key] = tf.cast(value, tf.as_dtype(like.dtype))
                start += size
        if vocabulary_keys:
            paths = tft.experimental.ptransform_analyzer(
                unread, analyzer_class(holder, vocabulary_keys, True),
                output_dtypes=[tf.string] * len(vocabulary_keys),
                output_shapes=[[]] * len(vocabulary_keys),
                output_asset_default_values=[shapes[k][0] for k in vocabulary_keys],
                name="featurebridge_vocabularies",
            )
            constants.update(zip(vocabulary_keys, paths))
        filled = {}
        for column, fill, _, _, _ in plan.columns:
            with tf.name_scope(f"raw_{column.name}"):
                x = inputs[column.name]
                filled[column.name] = to_dense(x, fill.graph(x, constants))
        outputs: Dict[str, Any] = {}
        for column, _, ops, label, _ in plan.columns:
            for op in ops:
                outputs.update(op.graph(filled[column.name], constants))
            if label is not None:
                outputs[label.output] = label.graph(filled[column.name], constants)
        for cross in spec.crosses:
            outputs[cross.output] = cross_tensor(cross, filled)
        return outputs

    return preprocessing_fn
