"""Drift between two sets of feature statistics, with TFDV's measures: the
L-infinity distance of categorical value frequencies and the Jensen-Shannon
divergence of numeric histograms. Plain numpy on already-computed
statistics (histogram buckets and value counts); no TensorFlow.
"""

from __future__ import annotations

import dataclasses
from typing import List, Mapping, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "Bucket",
    "DriftRow",
    "JS_DIVERGENCE_THRESHOLD",
    "L_INFINITY_THRESHOLD",
    "common_edges",
    "compare",
    "jensen_shannon_divergence",
    "l_infinity_distance",
    "rebin",
]

# TFDV has no default: its users set `drift_comparator` thresholds in the
# schema per feature. These are ours, for the report's "drift" flag.
L_INFINITY_THRESHOLD = 0.1
JS_DIVERGENCE_THRESHOLD = 0.1

# (low, high, count): a histogram bucket; low == high is a point mass.
Bucket = Tuple[float, float, float]


def l_infinity_distance(
    counts: Mapping[str, float], baseline: Mapping[str, float], total: float = 0.0, baseline_total: float = 0.0
) -> float:
    """The largest difference between two value-frequency distributions
    (TFDV's categorical drift measure): max over values of |p(v) - q(v)|.

    Args:
      counts: {value: count} on this side (e.g. its top values).
      baseline: {value: count} on the baseline side.
      total: what the counts are shares of (the number of values, when the
        counts are only the top ones); 0 or less: their sum.
      baseline_total: the same for `baseline`.

    Returns:
      A distance in [0, 1]. A value missing from one side counts 0 there.
      Both sides empty: 0.0; one side empty: its share is 0 everywhere, so
      the distance is the other side's largest share.
    """
    p_total = total if total > 0 else float(sum(counts.values()))
    q_total = baseline_total if baseline_total > 0 else float(sum(baseline.values()))
    best = 0.0
    for value in set(counts) | set(baseline):
        p = counts.get(value, 0.0) / p_total if p_total else 0.0
        q = baseline.get(value, 0.0) / q_total if q_total else 0.0
        best = max(best, abs(p - q))
    return float(best)


def common_edges(*histograms: Sequence[Bucket]) -> np.ndarray:
    """The sorted distinct bucket boundaries of all `histograms` (empty for none)."""
    edges = {float(v) for h in histograms for lo, hi, _ in h for v in (lo, hi) if np.isfinite(v)}
    return np.array(sorted(edges), dtype=float)


def rebin(buckets: Sequence[Bucket], edges: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Moves a histogram's counts onto `edges`, assuming values spread evenly
    inside each bucket (as TFDV does to compare two histograms).

    Args:
      buckets: (low, high, count) triples; low == high is a point mass.
      edges: ascending boundaries (at least the buckets' own, e.g.
        `common_edges`).

    Returns:
      (counts per interval [edges[i], edges[i+1]), counts per edge as a point
      mass). A point mass at an edge goes to that edge's slot; one between
      edges (edges that do not include it) goes to the interval holding it.
      Empty buckets or edges give zeros.
    """
    spans = np.zeros(max(len(edges) - 1, 0))
    points = np.zeros(len(edges))
    for lo, hi, count in buckets:
        if not count or not (np.isfinite(lo) and np.isfinite(hi)):
            continue
        if hi <= lo:
            at = np.searchsorted(edges, lo)
            if at < len(edges) and edges[at] == lo:
                points[at] += count
            elif len(spans):
                spans[min(max(at - 1, 0), len(spans) - 1)] += count
            continue
        overlap = np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0, None)
        if overlap.sum() > 0:
            spans += count * overlap / overlap.sum()
    return spans, points


def jensen_shannon_divergence(
    buckets: Sequence[Bucket], baseline: Sequence[Bucket], nan: float = 0.0, baseline_nan: float = 0.0
) -> float:
    """The Jensen-Shannon divergence (base 2, in [0, 1]) of two numeric
    histograms, TFDV's numeric drift measure: both are moved onto the union of
    their boundaries (`rebin`), NaN counts are one more bucket, and
    JS = (KL(p||m) + KL(q||m)) / 2 with m = (p + q) / 2.

    Args:
      buckets: this side's (low, high, count) buckets.
      baseline: the baseline's buckets.
      nan: this side's NaN count; baseline_nan: the baseline's.

    Returns:
      0.0 when both sides are empty; 1.0 when exactly one is.
    """
    edges = common_edges(buckets, baseline)
    p = np.concatenate([*rebin(buckets, edges), [nan]])
    q = np.concatenate([*rebin(baseline, edges), [baseline_nan]])
    p_sum, q_sum = p.sum(), q.sum()
    if p_sum <= 0 and q_sum <= 0:
        return 0.0
    if p_sum <= 0 or q_sum <= 0:
        return 1.0
    p, q = p / p_sum, q / q_sum
    m = (p + q) / 2

    def kl(a):
        keep = a > 0
        return float(np.sum(a[keep] * np.log2(a[keep] / m[keep])))

    return float(min(max((kl(p) + kl(q)) / 2, 0.0), 1.0))


@dataclasses.dataclass(frozen=True)
class DriftRow:
    """One feature's drift. `measure` is "L-infinity", "Jensen-Shannon" or
    "missing" (in one run only: `value` None); `drifted` is value > threshold
    or missing on one side."""

    section: str
    feature: str
    measure: str
    value: Optional[float]
    threshold: Optional[float]
    drifted: bool
    note: str = ""


def compare(section: str, current: Mapping[str, object], baseline: Mapping[str, object]) -> List[DriftRow]:
    """Drift rows for every feature of one section (raw or transformed).

    Args:
      section: a label for the rows ("raw", "transformed").
      current: {name: FeatureView} of this run (featurebridge.transforms.report).
      baseline: the same for the baseline run.

    Returns:
      One row per feature in either side, most drifted first: features in one
      run only are flagged first, then rows by value, largest first. Features
      whose kinds differ, or that have no distribution on either side, get
      value None and a note.
    """
    rows: List[DriftRow] = []
    for name in sorted(set(current) | set(baseline)):
        a, b = current.get(name), baseline.get(name)
        if a is None or b is None:
            where = "the baseline" if a is None else "this run"
            rows.append(DriftRow(section, name, "missing", None, None, True, f"only in {where}"))
            continue
        rows.append(_measure(section, name, a, b))
    rows.sort(key=lambda r: (r.measure != "missing", -(r.value if r.value is not None else -1.0), r.feature))
    return rows


def _measure(section: str, name: str, a, b) -> DriftRow:
    if a.top_values or b.top_values:
        if a.kind != b.kind:
            return DriftRow(section, name, "L-infinity", None, None, True, f"type {b.kind} -> {a.kind}")
        value = l_infinity_distance(dict(a.top_values), dict(b.top_values), a.values_total, b.values_total)
        return DriftRow(section, name, "L-infinity", value, L_INFINITY_THRESHOLD, value > L_INFINITY_THRESHOLD)
    if a.histogram or b.histogram:
        value = jensen_shannon_divergence(a.histogram, b.histogram, a.num_nan, b.num_nan)
        return DriftRow(section, name, "Jensen-Shannon", value, JS_DIVERGENCE_THRESHOLD, value > JS_DIVERGENCE_THRESHOLD)
    return DriftRow(section, name, "-", None, None, False, "no distribution in either run")
