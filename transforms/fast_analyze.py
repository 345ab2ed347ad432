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
error bound. The same combine writes ``_constants_fn/constants.json`` for
`featurebridge.transforms.constants`, so no second analysis pass is needed.

Min/max scaling (scale_0_1, min_max) takes min and max from the same combine
and applies TFT's formula. Specs using anything else (median / most-frequent
fills, text transforms, multiclass string labels, a user's preprocessing_fn) go
through the plain TFT path: see `fast_path_unsupported`.
"""

from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform import analyzers as tft_analyzers
from tensorflow_transform import mappers as tft_mappers
from tensorflow_transform import tf_utils

from featurebridge.transforms import preprocessing as fb_pre
from featurebridge.transforms.spec import TIMESTAMP_PARTS, FeatureSpec

__all__ = ["CONSTANTS_JSON", "build_fast_preprocessing_fn", "fast_path_unsupported"]

CONSTANTS_JSON = "constants.json"  # inside CONSTANTS_FN_DIR, read by featurebridge.transforms.constants
_NO_ANALYZER = ("hash", "log1p", "clip", "identity", *TIMESTAMP_PARTS)
_FAST_ANALYZER = ("zscore", "bucketize", "vocabulary", "scale_0_1", "min_max")
_MIN_MAX = ("scale_0_1", "min_max")
# TFT drops these tokens from text vocabularies (analyzers._EMPTY_STRING_OR_NEWLINE_CHARS_REGEX).
_TOKEN_DROP_REGEX = r"^$|[\n\r]"


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


# ---------------------------------------------------------------------------
# The plan: which analyzer inputs and outputs the spec needs, in order.


class _Plan:
    """Inputs (after the row count) and outputs of the single analyzer."""

    def __init__(self, spec: FeatureSpec, part: str):
        # TFT wraps every output of a ptransform_analyzer given asset defaults as
        # an asset, so numeric outputs ("numeric") and vocabulary files ("vocab")
        # come from two analyzers, both in the same (single) phase.
        self.numeric: List[Tuple[str, bool, List[Tuple[str, str, int]]]] = []  # (column, mean_fill, [(kind, output, buckets)])
        self.vocab: List[Tuple[str, str, Optional[int]]] = []  # (column, output, top_k)
        for c in spec.columns:
            wants = [(t.type, t.output, t.options.get("num_buckets", 0)) for t in c.transforms
                     if t.type in ("zscore", "bucketize") + _MIN_MAX]
            mean_fill = c.missing.policy == "mean"
            if wants or mean_fill:
                self.numeric.append((c.name, mean_fill, wants))
            for t in c.transforms:
                if t.type == "vocabulary":
                    self.vocab.append((c.name, t.output, t.options.get("top_k")))
        if part == "numeric":
            self.vocab = []
        else:
            self.numeric = []
        # Output keys in order, with (dtype, shape, asset default).
        self.outputs: List[Tuple[str, tf.DType, list, Optional[bytes]]] = []
        for name, mean_fill, wants in self.numeric:
            if mean_fill:
                self.outputs.append((f"{name}/fill", tf.float32, [], None))
            for kind, output, buckets in wants:
                if kind == "zscore":
                    self.outputs += [(f"{output}/mean", tf.float32, [], None), (f"{output}/var", tf.float32, [], None)]
                elif kind in _MIN_MAX:
                    self.outputs += [(f"{output}/min", tf.float32, [], None), (f"{output}/max", tf.float32, [], None)]
                else:
                    self.outputs.append((f"{output}/boundaries", tf.float32, [1, buckets - 1], None))
        for _, output, _ in self.vocab:
            # The trace-time stand-in file must parse as a "count token" line.
            count, token = tft_analyzers.get_empy_vocabulary_dummy_value(tf.string)
            self.outputs.append((f"{output}/vocabulary", tf.string, [], b"%d %s" % (max(int(count), 1), tf.compat.as_bytes(token))))


class _Accumulator:
    __slots__ = ("rows", "moments", "extremes", "sketches", "counts")

    def __init__(self, plan: _Plan, quantile_combiners):
        self.rows = 0
        self.moments = [np.zeros(3) for _ in plan.numeric]  # count, mean, M2 (float64)
        # min, max of the float32 analyzer inputs (kept as float32: what tft.min/tft.max see)
        self.extremes = [np.array([np.inf, -np.inf], np.float32) for _ in plan.numeric]
        self.sketches = [[q.create_accumulator() for q in qs] for qs in quantile_combiners]
        self.counts: List[List[pa.Table]] = [[] for _ in plan.vocab]


def _merge_moments(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Chan et al.'s parallel update of (count, mean, M2)."""
    n = a[0] + b[0]
    if n == 0:
        return a
    delta = b[1] - a[1]
    return np.array([n, a[1] + delta * b[0] / n, a[2] + b[2] + delta * delta * a[0] * b[0] / n])


def _compact_counts(tables: List[pa.Table]) -> List[pa.Table]:
    if len(tables) <= 1:
        return tables
    merged = pa.concat_tables(tables).group_by("token").aggregate([("count", "sum")])
    return [merged.rename_columns(["token", "count"])]


class _StatsCombineFn(beam.CombineFn):
    """Vectorised accumulators for every analyzer of the plan, batch at a time."""

    def __init__(self, plan: _Plan):
        self._plan = plan
        self._quantile_combiners = [
            [
                tft_analyzers.QuantilesCombiner(
                    buckets, fb_pre.bucketize_epsilon(buckets), np.float32,
                    has_weights=False, output_shape=[1, buckets - 1], feature_shape=[],
                )
                for kind, _, buckets in wants if kind == "bucketize"
            ]
            for _, _, wants in plan.numeric
        ]
        self._wants_extremes = [any(kind in _MIN_MAX for kind, _, _ in wants) for _, _, wants in plan.numeric]

    def create_accumulator(self):
        return _Accumulator(self._plan, self._quantile_combiners)

    def add_input(self, acc, batch):
        acc.rows += int(batch[0][0])
        offset = 1
        for i, _ in enumerate(self._plan.numeric):
            values = np.asarray(batch[offset + i], np.float64)
            if values.size:
                mean = values.mean()
                acc.moments[i] = _merge_moments(acc.moments[i], np.array([values.size, mean, ((values - mean) ** 2).sum()]))
                if self._wants_extremes[i]:
                    as_f32 = np.asarray(batch[offset + i], np.float32)
                    acc.extremes[i] = np.array(
                        [min(acc.extremes[i][0], as_f32.min()), max(acc.extremes[i][1], as_f32.max())], np.float32
                    )
            for q, sketch in zip(self._quantile_combiners[i], acc.sketches[i]):
                q.add_input(sketch, [batch[offset + i].astype(np.float32, copy=False)])
        offset += len(self._plan.numeric)
        for j, _ in enumerate(self._plan.vocab):
            tokens = pa.array(batch[offset + j], pa.binary())
            # As TFT's vocabulary does when storing frequencies (tf_utils, b/62379925).
            tokens = pc.replace_substring(tokens, " ", "__SPACE__")
            counted = pc.value_counts(tokens).flatten()
            acc.counts[j].append(pa.table({"token": counted[0], "count": counted[1]}))
            if len(acc.counts[j]) >= 16:
                acc.counts[j] = _compact_counts(acc.counts[j])
        return acc

    def merge_accumulators(self, accumulators):
        accumulators = iter(accumulators)
        result = next(accumulators)
        for acc in accumulators:
            result.rows += acc.rows
            for i in range(len(result.moments)):
                result.moments[i] = _merge_moments(result.moments[i], acc.moments[i])
                result.extremes[i] = np.array(
                    [min(result.extremes[i][0], acc.extremes[i][0]), max(result.extremes[i][1], acc.extremes[i][1])],
                    np.float32,
                )
                for q, (mine, theirs) in zip(self._quantile_combiners[i], zip(result.sketches[i], acc.sketches[i])):
                    q.merge_accumulators([mine, theirs])
            for j in range(len(result.counts)):
                result.counts[j] = _compact_counts(result.counts[j] + acc.counts[j])
        return result

    def compact(self, acc):
        acc.counts = [_compact_counts(c) for c in acc.counts]
        return acc

    def extract_output(self, acc):
        return acc


def _vocabulary_lines(tables: List[pa.Table], top_k: Optional[int]) -> List[bytes]:
    """TFT's text vocabulary with frequencies: "count token" lines, by count
    descending then token descending (bytes); empty and newline tokens dropped."""
    merged = _compact_counts(tables)
    if not merged or merged[0].num_rows == 0:
        count, token = tft_analyzers.get_empy_vocabulary_dummy_value(tf.string)
        return [b"%d %s" % (max(int(count), 1), tf.compat.as_bytes(token))]
    table = merged[0]
    keep = pc.invert(pc.match_substring_regex(table["token"].cast(pa.binary()), _TOKEN_DROP_REGEX))
    table = table.filter(keep)
    tokens = table["token"].to_pylist()
    counts = table["count"].to_numpy()
    # Sort by (count desc, token desc): Python's sort on bytes gives TFT's byte order.
    ranked = sorted(zip(counts.tolist(), tokens), reverse=True)
    if top_k is not None:
        ranked = ranked[:top_k]
    if not ranked:
        count, token = tft_analyzers.get_empy_vocabulary_dummy_value(tf.string)
        ranked = [(max(int(count), 1), tf.compat.as_bytes(token))]
    return [b"%d %s" % (c, t) for c, t in ranked]


class _SpecStats(tft_beam.experimental.PTransformAnalyzer):
    """PCollection of per-batch analyzer inputs -> one PCollection per output."""

    def __init__(self, plan: _Plan, constants_path: Optional[str]):
        super().__init__()
        self._plan = plan
        self._constants_path = constants_path

    def expand(self, pcoll):
        combined = pcoll | "Combine" >> beam.CombineGlobally(_StatsCombineFn(self._plan))
        results = combined | "Extract" >> beam.Map(self._extract, self.base_temp_dir)
        return tuple(
            results | f"Output{i}" >> beam.Map(lambda r, i=i: r[i]) for i in range(len(self._plan.outputs))
        )

    def _extract(self, acc: _Accumulator, temp_dir: str):
        plan = self._plan
        values: Dict[str, object] = {}
        combiners = _StatsCombineFn(plan)._quantile_combiners
        for i, (name, mean_fill, wants) in enumerate(plan.numeric):
            count, mean, m2 = acc.moments[i]
            missing = acc.rows - int(count) if mean_fill else 0
            fill = np.float32(mean if count else 0.0)
            if mean_fill:
                values[f"{name}/fill"] = fill
            # Filled values: the present ones plus `missing` copies of the fill.
            total = count + missing
            f_mean = (mean * count + float(fill) * missing) / total if total else 0.0
            f_m2 = m2 + count * (mean - f_mean) ** 2 + missing * (float(fill) - f_mean) ** 2
            q_index = 0
            for kind, output, buckets in wants:
                if kind == "zscore":
                    values[f"{output}/mean"] = np.float32(f_mean)
                    values[f"{output}/var"] = np.float32(f_m2 / total if total else 0.0)
                elif kind in _MIN_MAX:
                    low, high = acc.extremes[i]
                    if missing:  # the filled values include the fill itself
                        low, high = min(low, fill), max(high, fill)
                    values[f"{output}/min"] = np.float32(low)
                    values[f"{output}/max"] = np.float32(high)
                else:
                    q = combiners[i][q_index]
                    sketch = acc.sketches[i][q_index]
                    if missing:
                        q.add_input(sketch, [np.full(missing, fill, np.float32)])
                    values[f"{output}/boundaries"] = q.extract_output(sketch)[0]
                    q_index += 1
        out_dir = os.path.join(temp_dir, "featurebridge_vocabularies")
        tf.io.gfile.makedirs(out_dir)
        for j, (_, output, top_k) in enumerate(plan.vocab):
            path = os.path.join(out_dir, output)
            with tf.io.gfile.GFile(path, "wb") as f:
                f.write(b"".join(line + b"\n" for line in _vocabulary_lines(acc.counts[j], top_k)))
            values[f"{output}/vocabulary"] = path.encode()
        if self._constants_path:
            numeric = {
                k: [float(x) for x in np.ravel(np.asarray(v, np.float32))]
                for k, v in values.items() if not k.endswith("/vocabulary")
            }
            tf.io.gfile.makedirs(os.path.dirname(self._constants_path))
            with tf.io.gfile.GFile(self._constants_path, "w") as f:
                f.write(json.dumps(numeric, sort_keys=True))
        return [values[key] for key, _, _, _ in plan.outputs]


def build_fast_preprocessing_fn(spec: FeatureSpec, constants_path: Optional[str] = None):
    """The fast equivalent of `build_preprocessing_fn(spec)` (same output names,
    dtypes and values), analyzing in one phase with one vectorised combine.

    Args:
      spec: a spec for which `fast_path_unsupported(spec)` is None.
      constants_path: where to write the numeric constants as JSON (keys as
        `build_constants_fn` names them), or None.

    Raises:
      ValueError: if the spec needs the plain path.
    """
    reason = fast_path_unsupported(spec)
    if reason:
        raise ValueError(f"The fast analyze path does not cover this spec: {reason}. Use build_preprocessing_fn.")
    plans = [p for p in (_Plan(spec, "numeric"), _Plan(spec, "vocab")) if p.outputs]

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
                elif t.type in _MIN_MAX:
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
        results = tft.experimental.ptransform_analyzer(
            analyzer_inputs,
            _SpecStats(plan, None if vocab else constants_path),
            output_dtypes=[d for _, d, _, _ in plan.outputs],
            output_shapes=[s for _, _, s, _ in plan.outputs],
            output_asset_default_values=[a for _, _, _, a in plan.outputs] if vocab else None,
            name="featurebridge_vocabularies" if vocab else "featurebridge_stats",
        )
        return {key: value for (key, _, _, _), value in zip(plan.outputs, results)}

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
