"""One feature's statistics flattened from TFDV's FeatureNameStatistics proto
into what the report draws: counts, the numbers of its table, histogram
buckets, top values, class counts and missing counts by marker. Reads the
analyze pass's conventions (featurebridge.transforms.stats_proto) and any
other DatasetFeatureStatisticsList; no TensorFlow.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Tuple

from featurebridge.transforms.drift import Bucket
from featurebridge.transforms.stats_proto import (
    CUSTOM_CLASS_COUNTS,
    CUSTOM_MISSING_BY_MARKER,
    CUSTOM_QUANTILES,
)

__all__ = ["FeatureView", "feature_views"]

_QUANTILES = 1  # statistics_pb2.Histogram.QUANTILES


@dataclasses.dataclass
class FeatureView:
    """One feature's statistics, flattened from a FeatureNameStatistics proto.

    Attributes:
      name: the feature's name (or its path joined with ".").
      type_name: INT, FLOAT, STRING, BYTES or STRUCT.
      kind: "numeric", "string" or "other" (which stats the proto holds).
      count: examples with a value (num_non_missing).
      missing: examples without one (num_missing).
      numbers: (label, value) rows for the table: min, max, mean, std...
      histogram: (low, high, count) buckets, the standard histogram if there
        is one, else the quantiles; [] for none.
      histogram_kind: "standard", "quantiles" or "".
      num_nan: NaN count of that histogram.
      fine: finer buckets for plots (the "quantiles" custom stat: 100
        percentile intervals), else `histogram`.
      top_values: (value, count) pairs, most frequent first ([] for numbers
        but a label's).
      values_total: what top value counts are shares of (all values).
      classes: the label's exact class counts ("class_counts"), else [].
      missing_by: (marker, count) pairs: "missing_by_marker/MARKER" custom
        stats (or others naming "missing").
    """

    name: str
    type_name: str = "STRING"
    kind: str = "other"
    count: int = 0
    missing: int = 0
    numbers: List[Tuple[str, Any]] = dataclasses.field(default_factory=list)
    histogram: List[Bucket] = dataclasses.field(default_factory=list)
    histogram_kind: str = ""
    num_nan: float = 0.0
    fine: List[Bucket] = dataclasses.field(default_factory=list)
    top_values: List[Tuple[str, float]] = dataclasses.field(default_factory=list)
    values_total: float = 0.0
    classes: List[Tuple[str, float]] = dataclasses.field(default_factory=list)
    missing_by: List[Tuple[str, float]] = dataclasses.field(default_factory=list)

    @property
    def missing_share(self) -> float:
        """missing / (count + missing); 0.0 with no examples."""
        total = self.count + self.missing
        return self.missing / total if total else 0.0

    @classmethod
    def from_proto(cls, feature) -> "FeatureView":
        """Flattens a statistics_pb2.FeatureNameStatistics. Stats it lacks stay
        empty (a feature without values has no histogram and no top values)."""
        from tensorflow_metadata.proto.v0 import statistics_pb2

        name = feature.name or ".".join(feature.path.step)
        view = cls(name=name, type_name=statistics_pb2.FeatureNameStatistics.Type.Name(feature.type))
        which = feature.WhichOneof("stats")
        if which == "num_stats":
            _numeric(view, feature.num_stats)
        elif which == "string_stats":
            _strings(view, feature.string_stats)
        elif which in ("bytes_stats", "struct_stats"):
            common = getattr(feature, which).common_stats
            view.count, view.missing = int(common.num_non_missing), int(common.num_missing)
        for custom in feature.custom_stats:
            _custom(view, custom)
        view.fine = view.fine or view.histogram
        return view


def _common(view: FeatureView, common) -> None:
    view.count, view.missing = int(common.num_non_missing), int(common.num_missing)
    view.values_total = float(common.tot_num_values or common.num_non_missing)


def _numeric(view: FeatureView, stats) -> None:
    view.kind = "numeric"
    _common(view, stats.common_stats)
    if view.count:
        view.numbers += [("min", stats.min), ("max", stats.max), ("mean", stats.mean), ("std", stats.std_dev),
                         ("median", stats.median), ("zeros", int(stats.num_zeros))]
    chosen = sorted(stats.histograms, key=lambda h: h.type == _QUANTILES)
    if chosen:
        h = chosen[0]
        view.histogram = [(b.low_value, b.high_value, b.sample_count) for b in h.buckets]
        view.histogram_kind = "quantiles" if h.type == _QUANTILES else "standard"
        view.num_nan = float(h.num_nan)


def _strings(view: FeatureView, stats) -> None:
    view.kind = "string"
    _common(view, stats.common_stats)
    view.numbers.append(("distinct", int(stats.unique)))
    if stats.avg_length:
        view.numbers.append(("avg length", stats.avg_length))
    top = [(v.value, float(v.frequency)) for v in stats.top_values]
    ranked = [(b.label, float(b.sample_count)) for b in stats.rank_histogram.buckets]
    view.top_values = ranked if len(ranked) > len(top) else top


# Custom stats the analyze pass writes (featurebridge.transforms.stats_proto).


def _ranked(custom) -> List[Tuple[str, float]]:
    return [(b.label, float(b.sample_count)) for b in custom.rank_histogram.buckets]


def _custom(view: FeatureView, custom) -> None:
    which = custom.WhichOneof("val")
    name = custom.name
    if name.startswith(CUSTOM_MISSING_BY_MARKER) and which == "num":
        view.missing_by.append((name[len(CUSTOM_MISSING_BY_MARKER):], custom.num))
    elif "missing" in name.lower() and which == "num":
        view.missing_by.append((name, custom.num))
    elif name == CUSTOM_CLASS_COUNTS and which == "rank_histogram":
        view.classes = _ranked(custom)
    elif name == CUSTOM_QUANTILES and which == "histogram":
        view.fine = [(b.low_value, b.high_value, b.sample_count) for b in custom.histogram.buckets]
    elif which == "rank_histogram" and not view.top_values:
        view.top_values = _ranked(custom)
    elif which == "num":
        view.numbers.append((name, custom.num))
    elif which == "str":
        view.numbers.append((name, custom.str))


def feature_views(stats) -> Tuple[int, Dict[str, FeatureView]]:
    """(num_examples, {name: FeatureView}) of the first dataset in a
    DatasetFeatureStatisticsList (the whole data; TFDV's later ones are
    slices). No dataset: (0, {})."""
    if not stats.datasets:
        return 0, {}
    dataset = stats.datasets[0]
    views = [FeatureView.from_proto(f) for f in dataset.features]
    return int(dataset.num_examples), {v.name: v for v in views}
