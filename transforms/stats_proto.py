"""The data statistics as TFDV's `DatasetFeatureStatisticsList` protos
(tensorflow_metadata.proto.v0.statistics_pb2), the files TFDV and Facets
read, in TFX Transform's layout: ``OUT/pre_transform_stats/FeatureStats.pb``
(raw columns) and ``OUT/post_transform_stats/FeatureStats.pb`` (transformed
features), binary-serialized. TensorFlow Data Validation is not needed to
write or read them.

Conventions (what a reader, such as the HTML report, can rely on):

* one dataset per file, named "pre_transform" or "post_transform";
  num_examples is the number of rows used (rejected rows are not in it);
* one FeatureNameStatistics per feature, identified by ``path.step = [name]``;
  type INT, FLOAT or STRING; numbers in ``num_stats``, strings (also text and
  timestamps) in ``string_stats``;
* ``common_stats``: num_non_missing / num_missing count rows (a row is missing
  when it holds no value), min/max/avg/tot_num_values the values per row;
* ``num_stats``: mean, std_dev (population), num_zeros, min, median, max, and
  two histograms: STANDARD (10 equal-width buckets, counts estimated from the
  quantile sketch) and QUANTILES (10 equal-mass buckets); ``num_nan`` on both;
* ``string_stats``: unique (estimate, exact below 1024 distinct), avg_length
  (bytes), top_values (20 most frequent) and rank_histogram (50);
* ``custom_stats`` (names are constants of this module):
  ``missing_by_marker/<marker>`` (num; raw only: which marker made a cell
  missing, see `featurebridge.transforms.data_stats.count_missing_markers`),
  ``class_counts`` (rank_histogram, exact;
  the label only), ``top_values`` (rank_histogram; a bool or int label's most
  frequent values), ``quantiles`` (histogram of the 100 percentile intervals:
  a finer distribution for plots), ``distinct`` (num; a number's distinct
  count estimate, which num_stats has no field for; INT features only).
"""

from __future__ import annotations

import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import numpy as np

__all__ = [
    "CUSTOM_CLASS_COUNTS",
    "CUSTOM_DISTINCT",
    "CUSTOM_MISSING_BY_MARKER",
    "CUSTOM_QUANTILES",
    "CUSTOM_TOP_VALUES",
    "POST_TRANSFORM_DATASET",
    "PRE_TRANSFORM_DATASET",
    "build_statistics",
    "class_counts",
    "load_statistics",
    "statistics_summary",
    "write_statistics",
]

PRE_TRANSFORM_DATASET = "pre_transform"
POST_TRANSFORM_DATASET = "post_transform"
CUSTOM_MISSING_BY_MARKER = "missing_by_marker/"
CUSTOM_CLASS_COUNTS = "class_counts"
CUSTOM_DISTINCT = "distinct"
CUSTOM_TOP_VALUES = "top_values"
CUSTOM_QUANTILES = "quantiles"

HISTOGRAM_BUCKETS = 10
TOP_VALUES = 20
RANK_BUCKETS = 50


def _pb():
    from tensorflow_metadata.proto.v0 import statistics_pb2

    return statistics_pb2


def _standard_histogram(hist, quantiles: np.ndarray, count: int) -> None:
    """Equal-width buckets over [min, max]; each percentile interval's mass
    spread over the buckets it overlaps (a point mass where it has no width)."""
    low, high = float(quantiles[0]), float(quantiles[-1])
    if high <= low:
        hist.buckets.add(low_value=low, high_value=high, sample_count=float(count))
        return
    edges = np.linspace(low, high, HISTOGRAM_BUCKETS + 1)
    counts = np.zeros(HISTOGRAM_BUCKETS)
    mass = count / (len(quantiles) - 1)
    for a, b in zip(quantiles[:-1], quantiles[1:]):
        if b <= a:
            counts[min(int(np.searchsorted(edges, a, side="right")) - 1, HISTOGRAM_BUCKETS - 1)] += mass
            continue
        overlap = np.clip(np.minimum(edges[1:], b) - np.maximum(edges[:-1], a), 0, None)
        counts += mass * overlap / (b - a)
    for i in range(HISTOGRAM_BUCKETS):
        hist.buckets.add(low_value=float(edges[i]), high_value=float(edges[i + 1]), sample_count=float(counts[i]))


def _quantiles_histogram(hist, quantiles: np.ndarray, count: int, buckets: int) -> None:
    step = (len(quantiles) - 1) // buckets
    for i in range(buckets):
        hist.buckets.add(low_value=float(quantiles[i * step]), high_value=float(quantiles[(i + 1) * step]),
                         sample_count=count / buckets)


def _rank_histogram(hist, pairs) -> None:
    for rank, (label, count) in enumerate(pairs):
        hist.buckets.add(low_rank=rank, high_rank=rank, label=label, sample_count=float(count))


def _feature(out, f: Mapping[str, Any], markers: Optional[Mapping[str, int]]) -> None:
    pb = _pb()
    out.path.step.append(f["name"])
    out.type = pb.FeatureNameStatistics.Type.Value(f["type"])
    if f["kind"] == "numeric":
        stats = out.num_stats
        common = stats.common_stats
    else:
        stats = out.string_stats
        common = stats.common_stats
    present = f["rows"] - f["missing"]
    common.num_non_missing = present
    common.num_missing = f["missing"]
    common.min_num_values = f["min_values"]
    common.max_num_values = f["max_values"]
    common.tot_num_values = f["values"]
    common.avg_num_values = f["values"] / present if present else 0.0
    if f["kind"] == "numeric":
        stats.num_zeros = f["zeros"]
        if f["count"]:
            q = np.asarray(f["quantiles"], np.float64)
            stats.mean, stats.std_dev = f["mean"], f["std"]
            stats.min, stats.max = f["min"], f["max"]
            stats.median = float(q[len(q) // 2])
            standard = stats.histograms.add(type=pb.Histogram.STANDARD, num_nan=f["nan"])
            _standard_histogram(standard, q, f["count"])
            quantile = stats.histograms.add(type=pb.Histogram.QUANTILES, num_nan=f["nan"])
            _quantiles_histogram(quantile, q, f["count"], HISTOGRAM_BUCKETS)
            fine = out.custom_stats.add(name=CUSTOM_QUANTILES)
            fine.histogram.type = pb.Histogram.QUANTILES
            fine.histogram.num_nan = f["nan"]
            _quantiles_histogram(fine.histogram, q, f["count"], len(q) - 1)
        elif f["nan"]:
            stats.histograms.add(type=pb.Histogram.STANDARD, num_nan=f["nan"])
        if f.get("top"):
            _rank_histogram(out.custom_stats.add(name=CUSTOM_TOP_VALUES).rank_histogram, f["top"][:TOP_VALUES])
    else:
        stats.unique = f["distinct"]
        stats.avg_length = f["avg_length"]
        top = f.get("top") or []
        for value, count in top[:TOP_VALUES]:
            stats.top_values.add(value=value, frequency=count)
        _rank_histogram(stats.rank_histogram, top[:RANK_BUCKETS])
    if f["kind"] == "numeric" and f["distinct"] is not None:
        out.custom_stats.add(name=CUSTOM_DISTINCT, num=f["distinct"])
    for marker, n in (markers or {}).items():
        out.custom_stats.add(name=CUSTOM_MISSING_BY_MARKER + marker, num=n)
    if f.get("classes"):
        _rank_histogram(out.custom_stats.add(name=CUSTOM_CLASS_COUNTS).rank_histogram, f["classes"])


def build_statistics(summary: Mapping[str, Any], dataset: str,
                     missing_by_marker: Optional[Mapping[str, Mapping[str, int]]] = None):
    """A `DatasetFeatureStatisticsList` with one dataset from a
    `featurebridge.transforms.data_stats.FeatureStatsCombineFn` output.

    Args:
      summary: {"rows": n, "features": [feature summaries]}. Zero rows give a
        dataset with num_examples 0 and every feature all-missing.
      dataset: the dataset's name (PRE_TRANSFORM_DATASET or POST_TRANSFORM_DATASET).
      missing_by_marker: {column: {marker: count}} (raw columns), written as
        custom stats ``missing_by_marker/<marker>``.
    """
    pb = _pb()
    result = pb.DatasetFeatureStatisticsList()
    ds = result.datasets.add(name=dataset, num_examples=summary["rows"])
    for f in summary["features"]:
        _feature(ds.features.add(), f, (missing_by_marker or {}).get(f["name"]))
    return result


def write_statistics(directory: str, subdir: str, statistics) -> str:
    """Writes `statistics` binary-serialized as directory/subdir/FeatureStats.pb; returns the path."""
    from featurebridge.transforms.layout import FEATURE_STATS_FILE

    os.makedirs(os.path.join(directory, subdir), exist_ok=True)
    path = os.path.join(directory, subdir, FEATURE_STATS_FILE)
    with open(path, "wb") as f:
        f.write(statistics.SerializeToString())
    return path


def load_statistics(path: str):
    """Reads a binary `DatasetFeatureStatisticsList` (what the analyze pass
    writes; TFDV's `load_stats_binary` reads the same).

    Raises:
      ArtifactError: the file is missing or not such a proto.
    """
    from google.protobuf.message import DecodeError

    from featurebridge.transforms.errors import ArtifactError

    statistics = _pb().DatasetFeatureStatisticsList()
    try:
        with open(path, "rb") as f:
            statistics.ParseFromString(f.read())
    except (OSError, DecodeError) as e:
        raise ArtifactError(
            f"Cannot read the statistics {path}: {e}. It should be a binary "
            "tensorflow_metadata DatasetFeatureStatisticsList written by `featurebridge analyze`; "
            "run the analyze again to rewrite it."
        ) from None
    return statistics


def class_counts(statistics, feature: str) -> List[Tuple[str, float]]:
    """The label ``feature``'s exact class counts (custom stat
    `CUSTOM_CLASS_COUNTS`) as [(value, count)], most frequent first; [] when
    the statistics have no such feature or counts."""
    for dataset in statistics.datasets:
        for f in dataset.features:
            if list(f.path.step) == [feature] or f.name == feature:
                for custom in f.custom_stats:
                    if custom.name == CUSTOM_CLASS_COUNTS and custom.WhichOneof("val") == "rank_histogram":
                        return [(b.label, float(b.sample_count)) for b in custom.rank_histogram.buckets]
    return []


def _short(x: float) -> float:
    """Seven significant digits (float32's): 14.285714 for 14.285714149475098."""
    return float(f"{x:.7g}")


def statistics_summary(features: Iterable[Mapping[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """The manifest's short view: {feature: {missing_share, distinct?}} (plus
    min/max/mean for numbers), rounded."""
    out: Dict[str, Dict[str, Any]] = {}
    for f in features:
        entry: Dict[str, Any] = {
            "missing_share": round(f["missing"] / f["rows"], 6) if f["rows"] else 0.0,
        }
        if f["distinct"] is not None:
            entry["distinct"] = f["distinct"]
        if f["kind"] == "numeric" and f["count"]:
            entry.update(min=_short(f["min"]), max=_short(f["max"]), mean=_short(f["mean"]))
        out[f["name"]] = entry
    return out
