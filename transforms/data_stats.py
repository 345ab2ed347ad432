"""Statistics of the data, computed in the analyze pass: one Beam combine over
the raw RecordBatches and one over the transformed ones.

`FeatureStatsCombineFn` summarises each column of the batches it is fed,
vectorised per batch (numpy, pyarrow.compute) and with tfx_bsl's sketches, the
ones TFDV uses: `QuantilesSketch` (quantiles, median, histograms),
`KmvSketch` (distinct-count estimate) and `MisraGriesSketch` (top values).
`count_missing_markers` counts, per column, which marker made a cell missing
(the readers' rule, `featurebridge.transforms.validation`), for the readers'
per-file stats. `featurebridge.transforms.stats_proto` turns the summaries
into TFDV's `DatasetFeatureStatisticsList` protos.

This module imports no TensorFlow.
"""

from __future__ import annotations

import pickle
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "FeaturePlan",
    "FeatureStatsCombineFn",
    "MARKER_EMPTY",
    "MARKER_NAN",
    "MARKER_NULL",
    "count_missing_markers",
    "merge_marker_counts",
    "raw_feature_plans",
]

# TFDV's defaults where it has one (num_top_values=20, 10 histogram buckets, epsilon 0.01).
QUANTILE_EPSILON = 0.01
QUANTILE_POINTS = 100  # the sketch is read at 101 points: percentiles
KMV_BUCKETS = 1024  # distinct counts below this are exact
TOP_K_BUCKETS = 200  # Misra-Gries counters: counts are exact while a column has fewer distinct values
CLASS_COUNT_LIMIT = 1000  # exact label class counts up to this many classes

# How `count_missing_markers` names the missing cells that are not a null marker.
MARKER_EMPTY = "<empty>"  # an empty or blank cell
MARKER_NULL = "<null>"  # an absent value (a null in Parquet or JSON, a missing key)
MARKER_NAN = "<nan>"  # a float NaN (native, or text Arrow parses as NaN)

_NAN_TEXT = ("nan", "+nan", "-nan")


class FeaturePlan:
    """What to compute for one feature.

    Attributes:
      name: the column (raw) or feature (transformed) name.
      kind: "numeric" or "string" (None: decided from the first batch's Arrow type).
      type: TFDV's FeatureNameStatistics.Type name: "INT", "FLOAT" or "STRING".
      top_values: also keep the most frequent values (always for strings).
      class_counts: also keep exact value counts (a label's classes).
      distinct: estimate the distinct count (always for strings).
    """

    def __init__(self, name: str, kind: Optional[str] = None, type: Optional[str] = None,
                 top_values: bool = False, class_counts: bool = False, distinct: bool = True):
        self.name = name
        self.kind = kind
        self.type = type
        self.top_values = top_values or kind == "string"
        self.class_counts = class_counts
        self.distinct = distinct or kind == "string"

    def __repr__(self):
        return f"FeaturePlan({self.name!r}, {self.kind!r}, {self.type!r})"


def raw_feature_plans(spec) -> List[FeaturePlan]:
    """The plans of a spec's raw columns, in spec order: strings, text and
    timestamps as STRING; bools and a classification label also with top
    values, the label with its exact class counts; floats without a distinct
    count (as TFDV)."""
    plans = []
    # A regression target is a number like any other: no class counts.
    label = spec.label.column if spec.label and spec.label.kind != "regression" else None
    for column in spec.columns:
        kind = "string" if column.storage == "string" else "numeric"
        type_ = {"float": "FLOAT", "int": "INT", "string": "STRING"}[column.storage]
        plans.append(FeaturePlan(column.name, kind, type_, top_values=column.type == "bool" or column.name == label,
                                 class_counts=column.name == label, distinct=type_ != "FLOAT"))
    return plans


def _sketches():
    from tfx_bsl import sketches  # C++ extension: imported where the combine runs

    return sketches


class _Feature:
    """One feature's accumulator (picklable: the sketches pickle themselves)."""

    def __init__(self, plan: FeaturePlan):
        sk = _sketches()
        self.rows = 0  # rows seen
        self.missing = 0  # rows with no value
        self.values = 0  # values in all rows
        self.min_values: Optional[int] = None  # values per present row
        self.max_values: Optional[int] = None
        self.count = 0  # numeric values (NaN excluded)
        self.mean = 0.0
        self.m2 = 0.0
        self.min = np.inf
        self.max = -np.inf
        self.zeros = 0
        self.nan = 0
        self.length = 0  # total byte length of strings
        self.quantiles = sk.QuantilesSketch(QUANTILE_EPSILON, 1 << 32, 1) if plan.kind == "numeric" else None
        self.distinct = sk.KmvSketch(KMV_BUCKETS) if plan.distinct else None
        self.top = sk.MisraGriesSketch(TOP_K_BUCKETS) if plan.top_values else None
        self.classes: Optional[Dict[Any, int]] = {} if plan.class_counts else None

    def add(self, column: pa.Array, plan: FeaturePlan) -> None:
        n = len(column)
        self.rows += n
        if pa.types.is_list(column.type) or pa.types.is_large_list(column.type) or pa.types.is_fixed_size_list(
                column.type):
            lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False)
            values = column.flatten()
        else:
            lengths = column.is_valid().to_numpy(zero_copy_only=False).astype(np.int64)
            values = column.drop_null()
        if values.null_count:
            values = values.drop_null()
        present = lengths[lengths > 0]
        self.missing += n - present.size
        self.values += int(present.sum())
        if present.size:
            low, high = int(present.min()), int(present.max())
            self.min_values = low if self.min_values is None else min(self.min_values, low)
            self.max_values = high if self.max_values is None else max(self.max_values, high)
        if not len(values):
            return
        if plan.kind == "numeric":
            self._add_numbers(values)
        else:
            self.length += int(pc.sum(pc.binary_length(values)).as_py() or 0)
        if self.distinct is not None:
            self.distinct.AddValues(values)
        if self.top is not None:
            self.top.AddValues(values)
        if self.classes is not None:
            counts = pc.value_counts(values)
            for value, count in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()):
                self.classes[value] = self.classes.get(value, 0) + count
            if len(self.classes) > CLASS_COUNT_LIMIT:
                self.classes = None  # not a classification label: too many classes to list

    def _add_numbers(self, values: pa.Array) -> None:
        x = values.to_numpy(zero_copy_only=False)
        if x.dtype.kind == "f":
            nan = np.isnan(x)
            if nan.any():
                self.nan += int(nan.sum())
                x = x[~nan]
                values = pa.array(x)
            if not x.size:
                return
        x = x.astype(np.float64, copy=False)
        # Chan et al.'s parallel update of (count, mean, M2): stable for large offsets.
        count, mean = x.size, float(x.mean())
        m2 = float(np.square(x - mean).sum())
        total = self.count + count
        delta = mean - self.mean
        self.m2 += m2 + delta * delta * self.count * count / total
        self.mean += delta * count / total
        self.count = total
        self.min = min(self.min, float(x.min()))
        self.max = max(self.max, float(x.max()))
        self.zeros += int(np.count_nonzero(x == 0))
        self.quantiles.AddValues(values)

    def merge(self, other: "_Feature") -> None:
        self.rows += other.rows
        self.missing += other.missing
        self.values += other.values
        for attr, pick in (("min_values", min), ("max_values", max)):
            mine, theirs = getattr(self, attr), getattr(other, attr)
            setattr(self, attr, theirs if mine is None else mine if theirs is None else pick(mine, theirs))
        if other.count:
            total = self.count + other.count
            delta = other.mean - self.mean
            self.m2 += other.m2 + delta * delta * self.count * other.count / total
            self.mean += delta * other.count / total
            self.count = total
        self.min, self.max = min(self.min, other.min), max(self.max, other.max)
        self.zeros += other.zeros
        self.nan += other.nan
        self.length += other.length
        if self.quantiles is not None and other.quantiles is not None:
            self.quantiles.Merge(other.quantiles)
        if self.distinct is not None and other.distinct is not None:
            self.distinct.Merge(other.distinct)
        if self.top is not None and other.top is not None:
            self.top.Merge(other.top)
        if self.classes is None or other.classes is None:
            self.classes = None
        else:
            for value, count in other.classes.items():
                self.classes[value] = self.classes.get(value, 0) + count
            if len(self.classes) > CLASS_COUNT_LIMIT:
                self.classes = None

    def summary(self, plan: FeaturePlan) -> Dict[str, Any]:
        """Plain values (no sketches): what `stats_proto` writes."""
        out: Dict[str, Any] = {
            "name": plan.name, "kind": plan.kind, "type": plan.type, "rows": self.rows,
            "missing": self.missing, "values": self.values,
            "min_values": self.min_values or 0, "max_values": self.max_values or 0,
            "distinct": int(self.distinct.Estimate()) if self.distinct is not None else None,
        }
        if plan.kind == "numeric":
            out.update(count=self.count, nan=self.nan, zeros=self.zeros,
                       mean=self.mean if self.count else None,
                       std=float(np.sqrt(self.m2 / self.count)) if self.count else None,
                       min=self.min if self.count else None, max=self.max if self.count else None,
                       quantiles=[])
            if self.count:
                # Reading a sketch finalizes it: read a copy, so the accumulator stays usable.
                sketch = pickle.loads(pickle.dumps(self.quantiles))
                out["quantiles"] = [float(q) for q in sketch.GetQuantiles(QUANTILE_POINTS).flatten().to_numpy()]
        else:
            out["avg_length"] = self.length / self.values if self.values else 0.0
        if self.top is not None:
            top = pickle.loads(pickle.dumps(self.top)).Estimate()
            out["top"] = [(_text(v), float(c)) for v, c in zip(top.field(0).to_pylist(), top.field(1).to_pylist())]
        if plan.class_counts:
            out["classes"] = None if self.classes is None else sorted(
                ((_text(v), c) for v, c in self.classes.items()), key=lambda kv: (-kv[1], kv[0]))
        return out


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _kind_of(arrow_type: pa.DataType):
    """(kind, TFDV type) of a transformed column's values."""
    while pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type) or pa.types.is_fixed_size_list(
            arrow_type):
        arrow_type = arrow_type.value_type
    if pa.types.is_floating(arrow_type):
        return "numeric", "FLOAT"
    if pa.types.is_integer(arrow_type) or pa.types.is_boolean(arrow_type):
        return "numeric", "INT"
    return "string", "STRING"


class FeatureStatsCombineFn(beam.CombineFn):
    """RecordBatches -> {"rows": n, "features": [summary per feature]}.

    With `plans`, the batches' columns of those names are summarised (other
    columns are ignored; a named column absent from a batch is a bug and
    raises KeyError); without, every column of the batches, in the first
    batch's order, typed by its Arrow type (`exclude` names columns to skip:
    pass-through keys). Per feature: rows, rows with no value ("missing"),
    values per row, and for numbers count/mean/std/min/max/zeros/NaNs and
    101 quantile points (the sketch's epsilon 0.01); for strings the average
    byte length; a distinct-count estimate (exact below 1024; not for
    floats: TFDV has no field for it, and it costs as much as the
    quantiles); top values (strings, bools, the label; Misra-Gries counts,
    exact below 200 distinct)
    and a label's exact class counts (None past 1000 classes). No batches
    give zero rows and, for the raw plans, summaries of nothing (zeros).
    """

    def __init__(self, plans: Optional[Sequence[FeaturePlan]] = None, exclude: Sequence[str] = ()):
        self._plans = list(plans) if plans is not None else None
        self._exclude = set(exclude)

    def create_accumulator(self):
        plans = {p.name: p for p in self._plans or ()}
        return {"rows": 0, "plans": plans, "features": {name: _Feature(p) for name, p in plans.items()}}

    def _discover(self, acc, batch: pa.RecordBatch):
        for field in batch.schema:
            if field.name not in acc["plans"] and field.name not in self._exclude:
                kind, type_ = _kind_of(field.type)
                # A float's distinct count says little and its sketch costs as much
                # as the quantiles' (TFDV has no field for it either).
                plan = FeaturePlan(field.name, kind, type_, distinct=type_ != "FLOAT")
                acc["plans"][field.name] = plan
                feature = _Feature(plan)
                feature.rows = feature.missing = acc["rows"]  # rows before the column appeared
                acc["features"][field.name] = feature

    def add_input(self, acc, batch: pa.RecordBatch):
        if self._plans is None:
            self._discover(acc, batch)
        for name, feature in acc["features"].items():
            feature.add(batch.column(batch.schema.get_field_index(name)), acc["plans"][name])
        acc["rows"] += batch.num_rows
        return acc

    def merge_accumulators(self, accumulators: Iterable):
        accumulators = iter(accumulators)
        result = next(accumulators)
        for acc in accumulators:
            for name, feature in acc["features"].items():
                if name in result["features"]:
                    result["features"][name].merge(feature)
                else:
                    feature.rows += result["rows"]
                    feature.missing += result["rows"]
                    result["plans"][name] = acc["plans"][name]
                    result["features"][name] = feature
            for name, feature in result["features"].items():
                if name not in acc["features"]:
                    feature.rows += acc["rows"]
                    feature.missing += acc["rows"]
            result["rows"] += acc["rows"]
        return result

    def extract_output(self, acc):
        return {
            "rows": acc["rows"],
            "features": [f.summary(acc["plans"][name]) for name, f in acc["features"].items()],
        }


def count_missing_markers(table: pa.Table, spec, keep: Optional[np.ndarray] = None,
                          into: Optional[Dict[str, Dict[str, int]]] = None,
                          batch: Optional[pa.RecordBatch] = None) -> Dict[str, Dict[str, int]]:
    """Counts, per spec column, the missing cells of a reader's raw chunk by
    what made them missing, with the readers' rule
    (`featurebridge.transforms.validation`): `MARKER_NULL` (no value),
    `MARKER_EMPTY` (an empty or blank cell), the null marker as the column
    lists it ("NA", "null"...; compared after trimming), `MARKER_NAN` (a
    float column's NaN).

    Args:
      table: the chunk, with the spec's column names (as `chunk_to_batch` takes it).
      spec: the feature spec.
      keep: which rows count (the used ones); None: all.
      into: counts to add to (returned); None: a new dict.
      batch: the chunk's batch (`chunk_to_batch`, the rows of `keep`): only
        the cells it holds as missing are looked at, which is much cheaper
        (the rule is the same).

    Returns:
      {column: {marker: count}}; columns without missing cells are left out.
      An empty table adds nothing.
    """
    counts = into if into is not None else {}
    if keep is not None:
        table = table.filter(pa.array(np.asarray(keep, bool)))
    if table.num_rows == 0:
        return counts
    for column in spec.columns:
        arr = table.column(column.name)
        arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
        if batch is not None:
            lengths = pc.list_value_length(batch.column(batch.schema.get_field_index(column.name)))
            arr = arr.take(pa.array(np.flatnonzero(lengths.to_numpy(zero_copy_only=False) == 0)))
            if not len(arr):
                continue
        if pa.types.is_dictionary(arr.type):
            arr = arr.dictionary_decode()
        found: Dict[str, int] = {}
        nulls = arr.null_count
        if nulls:
            found[MARKER_NULL] = nulls
        if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
            text = pc.utf8_trim_whitespace(arr)
            empty = int(pc.sum(pc.equal(pc.utf8_length(text), 0)).as_py() or 0)
            if empty:
                found[MARKER_EMPTY] = empty
            markers = list(column.null_markers)
            if markers:
                index = pc.index_in(text, value_set=pa.array(markers, text.type))
                hits = pc.value_counts(index.drop_null())
                for i, n in zip(hits.field("values").to_pylist(), hits.field("counts").to_pylist()):
                    found[markers[i]] = n
                text = pc.if_else(pc.is_null(index), text, pa.scalar(None, text.type))
            if column.type == "float":
                nan = int(pc.sum(pc.is_in(pc.utf8_lower(text), value_set=pa.array(_NAN_TEXT, text.type))).as_py() or 0)
                if nan:
                    found[MARKER_NAN] = nan
        elif column.type == "float" and pa.types.is_floating(arr.type):
            nan = int(pc.sum(pc.is_nan(arr)).as_py() or 0)
            if nan:
                found[MARKER_NAN] = nan
        if found:
            mine = counts.setdefault(column.name, {})
            for marker, n in found.items():
                mine[marker] = mine.get(marker, 0) + n
    return counts


def merge_marker_counts(parts: Iterable[Optional[Mapping[str, Mapping[str, int]]]]) -> Dict[str, Dict[str, int]]:
    """Adds up {column: {marker: count}} dicts (None entries are skipped);
    markers sorted most frequent first."""
    total: Dict[str, Dict[str, int]] = {}
    for part in parts:
        for column, markers in (part or {}).items():
            mine = total.setdefault(column, {})
            for marker, n in markers.items():
                mine[marker] = mine.get(marker, 0) + n
    return {c: dict(sorted(m.items(), key=lambda kv: (-kv[1], kv[0]))) for c, m in sorted(total.items())}
