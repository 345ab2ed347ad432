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
    "binned",
    "bulk_range",
    "compare",
    "grid",
    "jensen_shannon_divergence",
    "l_infinity_distance",
]

# TFDV has no default: its users set `drift_comparator` thresholds in the
# schema per feature. These are ours, for the report's "drift" flag: a value's
# share moving by 10 points; a normal column's mean moving by about half a
# standard deviation (0.045 at 0.5, 0.098 at 0.75; two samples of one
# distribution give ~0.001-0.005).
L_INFINITY_THRESHOLD = 0.1
JS_DIVERGENCE_THRESHOLD = 0.05

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


_BINS = 24


def _finite(buckets: Sequence[Bucket]) -> List[Bucket]:
    return [b for b in buckets if np.isfinite(b[0]) and np.isfinite(b[1])]


def bulk_range(buckets: Sequence[Bucket]) -> Tuple[float, float, str]:
    """(low, high, note): the range that holds a distribution's bulk. From
    fine quantile buckets (at least 50), an outer percentile bucket wider than
    a fifth of the whole range is left out (a long tail would squeeze the rest
    into one bin) and `note` says so; otherwise the full range and "".
    No finite buckets: (nan, nan, "")."""
    finite = _finite(buckets)
    if not finite:
        return float("nan"), float("nan"), ""
    lo, hi = min(b[0] for b in finite), max(b[1] for b in finite)
    if len(finite) < 50 or hi <= lo:
        return lo, hi, ""
    notes = []
    first, last = finite[0], finite[-1]
    if last[1] - last[0] > 0.2 * (hi - lo):
        notes.append(f"the top 1% of values (up to {hi:.4g}) lies beyond the right edge")
        hi = last[0]
    if first[1] - first[0] > 0.2 * (hi - lo) and first[1] < hi:
        notes.append(f"the bottom 1% of values (down to {lo:.4g}) lies beyond the left edge")
        lo = first[1]
    return lo, hi, "; ".join(notes)


def _equal_width(buckets: Sequence[Bucket]) -> bool:
    widths = np.array([hi - lo for lo, hi, _ in buckets], dtype=float)
    return bool(len(widths) == 0 or np.allclose(widths, widths[0], rtol=1e-6))


def grid(buckets: Sequence[Bucket], baseline: Optional[Sequence[Bucket]] = None,
         integer: bool = False) -> Tuple[np.ndarray, str]:
    """The common bins two histograms are drawn and compared on: equal-width
    bins over both runs' bulk (`bulk_range`); for integers, bins of the same
    whole number of values (one value each up to a range of 30); a lone
    equal-width histogram of at most 48 buckets keeps its own buckets.

    Returns:
      (bin edges, a note on the range left out, "" for none). No finite
      buckets on either side: (empty array, "").
    """
    sides = [buckets] + ([baseline] if baseline is not None else [])
    ranges = [bulk_range(side) for side in sides]
    found = [(lo, hi) for lo, hi, _ in ranges if np.isfinite(lo)]
    if not found:
        return np.zeros(0), ""
    lo, hi = min(r[0] for r in found), max(r[1] for r in found)
    note = ranges[0][2]
    if baseline is not None and ranges[1][2]:
        note = "; ".join(n for n in (note, f"baseline: {ranges[1][2]}") if n)
    if integer:
        lo, hi = np.floor(lo), np.ceil(hi)
        width = max(np.ceil((hi - lo + 1) / (_BINS * 1.25)), 1.0)
        return np.arange(lo - 0.5, hi + width, width), note
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    bins = _BINS
    if all(_equal_width(side) and 0 < len(side) <= 2 * _BINS for side in sides) and len(sides) == 1:
        bins = len(buckets)
    return np.linspace(lo, hi, bins + 1), note


def binned(buckets: Sequence[Bucket], edges: np.ndarray, clamp: bool = False) -> np.ndarray:
    """A histogram's counts moved onto the bins between `edges`, values
    spread evenly inside each bucket (as TFDV does to compare histograms); a
    point mass (low == high) goes to the bin holding it.

    Args:
      buckets: (low, high, count) triples.
      edges: ascending bin edges.
      clamp: counts below or above the edges go to the first or last bin
        (else they are left out).

    Returns:
      Counts per bin (len(edges) - 1); zeros for no buckets.
    """
    counts = np.zeros(max(len(edges) - 1, 0))
    if not len(counts):
        return counts
    first, last = edges[0], edges[-1]
    for lo, hi, count in _finite(buckets):
        if not count:
            continue
        if hi <= lo:
            if first <= lo <= last or clamp:
                counts[int(np.clip(np.searchsorted(edges, lo, side="right") - 1, 0, len(counts) - 1))] += count
            continue
        overlap = np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0, None)
        counts += count * overlap / (hi - lo)
        if clamp:
            counts[0] += count * max(min(hi, first) - lo, 0.0) / (hi - lo)
            counts[-1] += count * max(hi - max(lo, last), 0.0) / (hi - lo)
    return counts


def jensen_shannon_divergence(
    buckets: Sequence[Bucket], baseline: Sequence[Bucket], nan: float = 0.0, baseline_nan: float = 0.0,
    integer: bool = False,
) -> float:
    """The Jensen-Shannon divergence (base 2, in [0, 1]) of two numeric
    histograms, TFDV's numeric drift measure: both are moved onto common bins
    (`grid`, the bins the report draws; counts beyond them in the end bins),
    NaN counts are one more bin, and JS = (KL(p||m) + KL(q||m)) / 2 with
    m = (p + q) / 2.

    Args:
      buckets: this side's (low, high, count) buckets.
      baseline: the baseline's buckets.
      nan: this side's NaN count; baseline_nan: the baseline's.
      integer: the values are whole numbers (`grid`).

    Returns:
      0.0 when both sides are empty; 1.0 when exactly one is.
    """
    edges, _ = grid(buckets, baseline, integer)
    p = np.concatenate([binned(buckets, edges, clamp=True), [nan]])
    q = np.concatenate([binned(baseline, edges, clamp=True), [baseline_nan]])
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
    if a.fine or b.fine:
        # The finest histogram each run has (100 percentile buckets from the
        # analyze pass): 10 equal-width buckets put a skewed column's bulk in
        # one bucket, and two runs' different maxima then read as drift.
        value = jensen_shannon_divergence(a.fine, b.fine, a.num_nan, b.num_nan, integer=a.type_name == "INT")
        return DriftRow(section, name, "Jensen-Shannon", value, JS_DIVERGENCE_THRESHOLD, value > JS_DIVERGENCE_THRESHOLD)
    return DriftRow(section, name, "-", None, None, False, "no distribution in either run")
