"""Hand-made analyze outputs for the report tests: the statistics protos
(tensorflow_metadata's DatasetFeatureStatisticsList, as the analyze pass
writes them), a manifest and constants, in a directory, in milliseconds."""

from __future__ import annotations

import json
import os
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
from tensorflow_metadata.proto.v0 import statistics_pb2

__all__ = ["HOSTILE", "numeric_feature", "string_feature", "write_analyzed", "write_stats"]

# A value and a column name that would run as script if the page did not escape them.
HOSTILE = "<script>document.title='pwned'</script>&$x$"


def numeric_feature(name: str, values: Sequence[float], missing: int = 0, int_type: bool = False,
                    markers: Optional[Mapping[str, int]] = None):
    """A FeatureNameStatistics with num_stats from `values`: common stats,
    min/max/mean/std, a 10-bucket standard histogram and a 10-bucket quantiles
    one, a 100-bucket "quantiles" custom histogram, and per-marker missing
    counts as custom_stats "missing_by_marker/MARKER" (as
    featurebridge.transforms.stats_proto writes them)."""
    f = statistics_pb2.FeatureNameStatistics()
    f.path.step.append(name)
    f.type = f.INT if int_type else f.FLOAT
    v = np.asarray(values, dtype=float)
    s = f.num_stats
    s.common_stats.num_non_missing = len(v)
    s.common_stats.num_missing = missing
    s.common_stats.tot_num_values = len(v)
    if len(v):
        s.min, s.max, s.mean, s.std_dev = v.min(), v.max(), v.mean(), v.std()
        s.median = float(np.median(v))
        s.num_zeros = int((v == 0).sum())
        counts, edges = np.histogram(v, bins=10)
        h = s.histograms.add(type=statistics_pb2.Histogram.STANDARD)
        for lo, hi, c in zip(edges[:-1], edges[1:], counts):
            h.buckets.add(low_value=lo, high_value=hi, sample_count=float(c))
        q = np.quantile(v, np.linspace(0, 1, 11))
        h = s.histograms.add(type=statistics_pb2.Histogram.QUANTILES)
        for lo, hi in zip(q[:-1], q[1:]):
            h.buckets.add(low_value=lo, high_value=hi, sample_count=len(v) / 10)
        fine = f.custom_stats.add(name="quantiles").histogram
        fine.type = statistics_pb2.Histogram.QUANTILES
        q = np.quantile(v, np.linspace(0, 1, 101))
        for lo, hi in zip(q[:-1], q[1:]):
            fine.buckets.add(low_value=lo, high_value=hi, sample_count=len(v) / 100)
    for marker, count in (markers or {}).items():
        f.custom_stats.add(name=f"missing_by_marker/{marker}", num=count)
    return f


def string_feature(name: str, counts: Mapping[str, int], missing: int = 0):
    """A FeatureNameStatistics with string_stats: unique, top_values and a rank
    histogram from {value: count}."""
    f = statistics_pb2.FeatureNameStatistics()
    f.path.step.append(name)
    f.type = f.STRING
    s = f.string_stats
    total = sum(counts.values())
    s.common_stats.num_non_missing = total
    s.common_stats.num_missing = missing
    s.common_stats.tot_num_values = total
    s.unique = len(counts)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    for rank, (value, count) in enumerate(ranked):
        if rank < 10:
            s.top_values.add(value=value, frequency=count)
        s.rank_histogram.buckets.add(low_rank=rank, high_rank=rank, label=value, sample_count=count)
    return f


def write_stats(path: str, features, num_examples: int) -> None:
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    d = stats.datasets.add(name="all", num_examples=num_examples)
    d.features.extend(features)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(stats.SerializeToString())


def write_analyzed(directory: str, seed: int = 0, shift: float = 0.0, hostile: bool = False,
                   drop: Tuple[str, ...] = ()) -> Dict[str, object]:
    """Writes a fake analyze output under `directory`: raw columns age (float),
    pages (int), device and city (strings), label `purchased`; transformed
    age_z, pages_01, device_id; a manifest with rejected rows and a warning.

    Args:
      seed: the random seed of the values.
      shift: added to age and to device's skew (a drifted baseline).
      hostile: adds a column named HOSTILE with HOSTILE among its values.
      drop: raw column names to leave out.

    Returns:
      {"raw": [names], "transformed": [names]}.
    """
    rng = np.random.default_rng(seed)
    n = 500
    age = rng.normal(38 + shift * 10, 11, n)
    pages = rng.poisson(4, n)
    devices = {"mobile": int(300 - shift * 200), "desktop": int(150 + shift * 150), "tablet": 50}
    raw = [
        numeric_feature("age", age, missing=12, markers={"NA": 8, "<empty>": 4}),
        numeric_feature("pages", pages, int_type=True),
        string_feature("device", devices, missing=3),
        string_feature("city", {f"city_{i:03d}": int(200 / (i + 1)) + 1 for i in range(40)}),
        numeric_feature("purchased", [0] * 380 + [1] * 120, int_type=True),
    ]
    classes = raw[-1].custom_stats.add(name="class_counts").rank_histogram
    for rank, (label, count) in enumerate([("0", 380), ("1", 120)]):
        classes.buckets.add(low_rank=rank, high_rank=rank, label=label, sample_count=count)
    if hostile:
        raw.append(string_feature(HOSTILE, {HOSTILE: 5, "plain": 3}))
    raw = [f for f in raw if f.path.step[0] not in drop]
    transformed = [
        numeric_feature("age_z", (age - age.mean()) / age.std()),
        numeric_feature("pages_01", pages / max(pages.max(), 1)),
        numeric_feature("device_id", rng.integers(0, 3, n), int_type=True),
    ]
    write_stats(os.path.join(directory, "pre_transform_stats", "FeatureStats.pb"), raw, n)
    write_stats(os.path.join(directory, "post_transform_stats", "FeatureStats.pb"), transformed, n)
    rejected_by = {"age: not a float": 2, "(row): wrong number of fields": 1}
    if hostile:
        rejected_by[f"{HOSTILE}: {HOSTILE}"] = 1
    manifest = {
        "job": "analyze",
        "inputs": [{"path": os.path.join(directory, "in.csv"), "bytes": 1234, "sha256": "0" * 64}],
        "rows": {"read": n + 3, "used": n, "rejected": 3, "rejected_by": rejected_by,
                 "per_file": {os.path.join(directory, "in.csv"): {"read": n + 3, "used": n, "rejected": 3}}},
        "runner": "DirectRunner",
        "spec_source": "spec.yaml",
        "warnings": ["pages_01: column 'pages' has one distinct value (3), so TFT maps it through a sigmoid"]
        + ([HOSTILE] if hostile else []),
    }
    with open(os.path.join(directory, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    with open(os.path.join(directory, "constants.json"), "w") as f:
        json.dump({"columns": {}, "features": {}, "label": {"column": "purchased", "kind": "binary"}}, f)
    return {"raw": [f.path.step[0] for f in raw], "transformed": [f.path.step[0] for f in transformed]}
