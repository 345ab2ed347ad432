"""The fast analyze path's one combine (issue 6): which analyzer inputs and
outputs a spec needs (`Plan`), the vectorised accumulator over per-batch
analyzer inputs (`StatsCombineFn`: numpy moments and min/max per column,
TFT's own C++ quantile sketch, pyarrow value counts), and the extraction of
the plan's outputs from it (`extract_outputs`, `numeric_results`).

`featurebridge.transforms.fast_analyze` wires these into a TFT
``ptransform_analyzer``; see its docstring for why the results equal plain
TFT's.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import tensorflow as tf
from tensorflow_transform import analyzers as tft_analyzers

from featurebridge.transforms import preprocessing as fb_pre
from featurebridge.transforms.spec import FeatureSpec

__all__ = ["MIN_MAX", "Plan", "StatsCombineFn", "extract_outputs", "numeric_results"]

MIN_MAX = ("scale_0_1", "min_max")
# TFT drops these tokens from text vocabularies (analyzers._EMPTY_STRING_OR_NEWLINE_CHARS_REGEX).
_TOKEN_DROP_REGEX = r"^$|[\n\r]"


# ---------------------------------------------------------------------------
# The plan: which analyzer inputs and outputs the spec needs, in order.


class Plan:
    """Inputs (after the row count) and outputs of the single analyzer."""

    def __init__(self, spec: FeatureSpec, part: str):
        # TFT wraps every output of a ptransform_analyzer given asset defaults as
        # an asset, so numeric outputs ("numeric") and vocabulary files ("vocab")
        # come from two analyzers, both in the same (single) phase.
        self.numeric: List[Tuple[str, bool, List[Tuple[str, str, int]]]] = []  # (column, mean_fill, [(kind, output, buckets)])
        self.vocab: List[Tuple[str, str, Optional[int]]] = []  # (column, output, top_k)
        for c in spec.columns:
            wants = [(t.type, t.output, t.options.get("num_buckets", 0)) for t in c.transforms
                     if t.type in ("zscore", "bucketize") + MIN_MAX]
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
                elif kind in MIN_MAX:
                    self.outputs += [(f"{output}/min", tf.float32, [], None), (f"{output}/max", tf.float32, [], None)]
                else:
                    self.outputs.append((f"{output}/boundaries", tf.float32, [1, buckets - 1], None))
        for _, output, _ in self.vocab:
            # The trace-time stand-in file must parse as a "count token" line.
            count, token = tft_analyzers.get_empy_vocabulary_dummy_value(tf.string)
            self.outputs.append((f"{output}/vocabulary", tf.string, [], b"%d %s" % (max(int(count), 1), tf.compat.as_bytes(token))))


class _Accumulator:
    __slots__ = ("rows", "moments", "extremes", "sketches", "counts")

    def __init__(self, plan: Plan, quantile_combiners):
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


class StatsCombineFn(beam.CombineFn):
    """Vectorised accumulators for every analyzer of the plan, batch at a time."""

    def __init__(self, plan: Plan):
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
        self._wants_extremes = [any(kind in MIN_MAX for kind, _, _ in wants) for _, _, wants in plan.numeric]

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


def numeric_results(outputs: list, plan: Plan) -> Dict[str, List[float]]:
    """The plan's numeric outputs as {key: [floats]} (vocabulary files left out)."""
    return {
        key: [float(x) for x in np.ravel(np.asarray(value, np.float32))]
        for (key, _, _, _), value in zip(plan.outputs, outputs)
        if not key.endswith("/vocabulary")
    }


def extract_outputs(acc: _Accumulator, plan: Plan, temp_dir: str) -> list:
    """The accumulator -> the plan's outputs, in order (vocabularies written as
    files under `temp_dir`, their paths as outputs)."""
    values: Dict[str, object] = {}
    combiners = StatsCombineFn(plan)._quantile_combiners
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
            elif kind in MIN_MAX:
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
    return [values[key] for key, _, _, _ in plan.outputs]
