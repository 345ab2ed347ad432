"""A faster analyze pass that still yields a genuine TFT transform_fn (issue 6).

Plain TFT, as `build_preprocessing_fn` uses it, needs two analysis phases per
column with a mean fill (the fill's mean, then the z-score's mean/variance on
filled values), one Beam combine per analyzer, and counts every vocabulary
token as its own Beam element. Pipeline construction alone (thousands of Beam
nodes) costs tens of seconds, and `AnalyzeConstants` repeats it.

Here every analyzer the spec needs is one `tft.experimental.ptransform_analyzer`
in ONE phase: a single Beam CombineGlobally whose accumulator is vectorised
(numpy moments per column, TFT's own C++ quantile sketch via
`tft.analyzers.QuantilesCombiner`, pyarrow value counts merged with a
group-by). The z-score of mean-filled values comes from the moments of the
present values (a mean fill leaves the mean unchanged and adds zero squared
deviation), and the quantiles of filled values get the missing rows added as
copies of the fill before extraction. Results become constants in the graph
with TFT's own mapping code (`tft.apply_buckets`, TFT's vocabulary lookup and
its file format), so the transform_fn loads with `tft.TFTransformOutput`, and
its outputs equal plain TFT's up to float rounding and the quantile sketch's
error bound. The same combine also yields the numeric results for
constants.json, as a PCollection handed over through an `AnalyzerResults`
holder, so no second analysis pass is needed.

Min/max scaling (scale_0_1, min_max) takes min and max from the same combine
and applies TFT's formula. Specs using anything else (median / most-frequent
fills, text transforms, multiclass string labels, a user's preprocessing_fn) go
through the plain TFT path: see `fast_path_unsupported`.
"""

from __future__ import annotations

from typing import Dict, List, Optional

import apache_beam as beam
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform import mappers as tft_mappers
from tensorflow_transform import tf_utils

from featurebridge.transforms import preprocessing as fb_pre
from featurebridge.transforms.fast_combine import MIN_MAX, Plan, StatsCombineFn, extract_outputs, numeric_results
from featurebridge.transforms.spec import TIMESTAMP_PARTS, FeatureSpec

__all__ = ["AnalyzerResults", "build_fast_preprocessing_fn", "fast_path_unsupported"]

_NO_ANALYZER = ("hash", "log1p", "clip", "identity", *TIMESTAMP_PARTS)
_FAST_ANALYZER = ("zscore", "bucketize", "vocabulary", "scale_0_1", "min_max")


def fast_path_unsupported(spec: FeatureSpec) -> Optional[str]:
    """Why `spec` needs the plain TFT path, or None when the fast path covers it."""
    for c in spec.columns:
        policy = c.missing.policy
        if policy not in ("mean", "constant", "reject"):
            return f"column {c.name!r} uses missing policy {policy!r}"
        if policy == "mean" and c.type != "float":
            return f"column {c.name!r} is {c.type} with a mean fill (rounded fill)"
        for t in c.transforms:
            if t.type not in _NO_ANALYZER + _FAST_ANALYZER:
                return f"transform {t.type!r} on {c.name!r}"
            if t.type == "vocabulary" and (t.options.get("frequency_threshold") or 0) > 1:
                return f"vocabulary {t.output!r} has a frequency_threshold"
    if spec.label and spec.label.kind == "multiclass" and spec.column(spec.label.column).type == "string":
        return "multiclass string label (label vocabulary)"
    return None


class AnalyzerResults:
    """Where the fast path's analyzers leave their numeric results for constants.json.

    Give one to `build_fast_preprocessing_fn`; while TFT applies the analysis
    (``tft_beam.AnalyzeDataset`` / ``AnalyzeAndTransformDataset``), each of the
    fn's analyzers that TFT expands into the pipeline adds a PCollection with
    one element, its numeric results ``{key: [floats]}``. TFT may trace the fn
    more than once (the traces that only build graphs expand nothing), so only
    the analyzers really in the pipeline are collected. Read the result with
    `pcollection` after the analysis has been applied.

    Pickling (the preprocessing_fn travels to workers) drops the collected
    PCollections: they belong to pipeline construction only.
    """

    def __init__(self):
        self._parts: List[beam.PCollection] = []

    def __getstate__(self):
        return {"_parts": []}

    def add(self, pcoll: beam.PCollection) -> None:
        """Records one analyzer's results (called from `_SpecStats.expand`)."""
        self._parts.append(pcoll)

    def pcollection(self, pipeline: beam.Pipeline, label: str = "AnalyzerResults") -> beam.PCollection:
        """One element: every collected analyzer's results merged into one dict
        ({} when the spec needs no analyzer, so none was applied)."""
        if len(self._parts) == 1:
            return self._parts[0]
        if not self._parts:
            return pipeline | f"{label}None" >> beam.Create([{}])
        return (
            tuple(self._parts)
            | f"{label}Flatten" >> beam.Flatten()
            | f"{label}Merge" >> beam.CombineGlobally(_merge_results).without_defaults()
        )


def _merge_results(parts) -> Dict[str, List[float]]:
    merged: Dict[str, List[float]] = {}
    for part in parts:
        merged.update(part)
    return merged


class _SpecStats(tft_beam.experimental.PTransformAnalyzer):
    """PCollection of per-batch analyzer inputs -> one PCollection per output.

    With `results`, a plan with numeric outputs also adds a one-element
    PCollection of them, ``{key: [floats]}``, to it (see `AnalyzerResults`).
    """

    def __init__(self, plan: Plan, results: Optional[AnalyzerResults]):
        super().__init__()
        self._plan = plan
        self._results = results

    def expand(self, pcoll):
        combined = pcoll | "Combine" >> beam.CombineGlobally(StatsCombineFn(self._plan))
        extracted = combined | "Extract" >> beam.Map(extract_outputs, self._plan, self.base_temp_dir)
        if self._results is not None and self._plan.numeric:  # the vocabulary plan has none
            self._results.add(extracted | "Numeric" >> beam.Map(numeric_results, self._plan))
        return tuple(
            extracted | f"Output{i}" >> beam.Map(lambda r, i=i: r[i]) for i in range(len(self._plan.outputs))
        )


def build_fast_preprocessing_fn(spec: FeatureSpec, results: Optional[AnalyzerResults] = None):
    """The fast equivalent of `build_preprocessing_fn(spec)` (same output names,
    dtypes and values), analyzing in one phase with one vectorised combine.

    Args:
      spec: a spec for which `fast_path_unsupported(spec)` is None.
      results: receives, when TFT applies the analysis, the numeric analyzer
        results for constants.json (keys as `build_constants_fn` names them),
        or None.

    Raises:
      ValueError: if the spec needs the plain path.
    """
    reason = fast_path_unsupported(spec)
    if reason:
        raise ValueError(f"The fast analyze path does not cover this spec: {reason}. Use build_preprocessing_fn.")
    plans = [p for p in (Plan(spec, "numeric"), Plan(spec, "vocab")) if p.outputs]

    def preprocessing_fn(inputs):
        got = {}
        for plan in plans:
            got.update(_analyze(plan, inputs))

        filled = {}
        for column in spec.columns:
            with tf.name_scope(f"raw_{column.name}"):
                x = inputs[column.name]
                fill = got[f"{column.name}/fill"] if column.missing.policy == "mean" else fb_pre.fill_value(column, x)
                filled[column.name] = fb_pre.to_dense(x, fill)
        outputs: Dict[str, tf.Tensor] = {}
        for column in spec.columns:
            x = filled[column.name]
            for t in column.transforms:
                if t.type == "zscore":
                    outputs[t.output] = _z_score(tf.cast(x, tf.float32), got[f"{t.output}/mean"], got[f"{t.output}/var"], t.output)
                elif t.type in MIN_MAX:
                    low, high = (0.0, 1.0) if t.type == "scale_0_1" else (t.options["output_min"], t.options["output_max"])
                    outputs[t.output] = _scale_min_max(
                        tf.cast(x, tf.float32), got[f"{t.output}/min"], got[f"{t.output}/max"], low, high, t.output
                    )
                elif t.type == "bucketize":
                    outputs[t.output] = tft.apply_buckets(tf.cast(x, tf.float32), got[f"{t.output}/boundaries"], name=t.output)
                elif t.type == "vocabulary":
                    outputs[t.output] = _apply_frequency_vocabulary(
                        fb_pre.as_string(x), got[f"{t.output}/vocabulary"], t.options["num_oov_buckets"], t.output
                    )
                else:
                    fb_pre.apply_transform(t, x, outputs)
        for cross in spec.crosses:
            outputs[cross.output] = fb_pre.cross_tensor(cross, filled)
        if spec.label:
            outputs[spec.label.column] = fb_pre.label_tensor(spec, filled[spec.label.column])
        return outputs

    def _analyze(plan, inputs):
        first = inputs[spec.columns[0].name]
        analyzer_inputs = [tf.reshape(first.dense_shape[0], [1])]
        for name, mean_fill, _ in plan.numeric:
            x = inputs[name]
            if mean_fill:  # present values; the fill is an output of this same analyzer
                analyzer_inputs.append(tf.cast(x.values, tf.float32))
            else:
                analyzer_inputs.append(tf.cast(fb_pre.to_dense(x, fb_pre.fill_value(spec.column(name), x)), tf.float32))
        for name, _, _ in plan.vocab:
            x = inputs[name]
            dense = fb_pre.to_dense(x, fb_pre.fill_value(spec.column(name), x))
            analyzer_inputs.append(fb_pre.as_string(dense))
        vocab = bool(plan.vocab)
        outputs = tft.experimental.ptransform_analyzer(
            analyzer_inputs,
            _SpecStats(plan, results),
            output_dtypes=[d for _, d, _, _ in plan.outputs],
            output_shapes=[s for _, _, s, _ in plan.outputs],
            output_asset_default_values=[a for _, _, _, a in plan.outputs] if vocab else None,
            name="featurebridge_vocabularies" if vocab else "featurebridge_stats",
        )
        return {key: value for (key, _, _, _), value in zip(plan.outputs, outputs)}

    return preprocessing_fn


def _z_score(x: tf.Tensor, mean: tf.Tensor, var: tf.Tensor, name: str) -> tf.Tensor:
    """tft.scale_to_z_score's formula: (x - mean) / sqrt(var), or x - mean when var is 0."""
    with tf.name_scope(name):
        numerator = x - mean
        denominator = tf.sqrt(var)
        return tf.where(tf.not_equal(denominator, 0), tf.divide(numerator, denominator), numerator)


def _scale_min_max(x: tf.Tensor, low_x: tf.Tensor, high_x: tf.Tensor, output_min: float, output_max: float,
                   name: str) -> tf.Tensor:
    """tft.scale_by_min_max's formula (tft.scale_to_0_1 is output range [0, 1]):
    (x - min) / (max - min) projected on the range, or sigmoid(x) projected when
    min >= max (one distinct value). TFT has no public "apply" half for it."""
    with tf.name_scope(name):
        numerator = x - low_x
        scaled = tf.where(
            tf.cast(tf.zeros_like(numerator) + tf.cast(low_x < high_x, numerator.dtype), tf.bool),
            numerator / (high_x - low_x),
            tf.math.sigmoid(x),
        )
        return scaled * (output_max - output_min) + output_min


def _apply_frequency_vocabulary(x: tf.Tensor, vocabulary_file: tf.Tensor, num_oov_buckets: int, name: str) -> tf.Tensor:
    """Token ids from a text vocabulary stored WITH frequencies ("count token"
    lines), exactly as tft.compute_and_apply_vocabulary(store_frequency=True)
    maps them: same table construction, OOV hashing, space escaping and
    schema annotation (min/max id, bucket count).

    The only private TFT call in featurebridge, kept here on purpose: TFT's
    public `tft.apply_vocabulary` has no `store_frequency` argument, so it
    would read a whole "count token" line as the key; its `lookup_fn` hook
    would mean re-implementing TFT's table and annotations. The vocabulary
    files must keep frequencies because plain TFT writes them so (identical
    files, see tests/test_fast_path.py) and constants.json reads the counts.
    """
    return tft_mappers._apply_vocabulary_internal(  # pylint: disable=protected-access
        tf_utils.maybe_format_vocabulary_input(x),  # compute_and_apply_vocabulary escapes spaces too
        vocabulary_file,
        -1,
        num_oov_buckets,
        lookup_fn=None,
        store_frequency=True,
        file_format="text",
        name=name,
    )
