"""The report's plots: small matplotlib figures (object API, SVG backend, no
pyplot state) rendered to inline SVG text. Each takes already-computed
statistics: histogram buckets or (value, count) pairs.
"""

from __future__ import annotations

import io
import re
from typing import Optional, Sequence, Tuple

import numpy as np
from matplotlib import rc_context
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from featurebridge.transforms.drift import Bucket, binned, grid

__all__ = ["BASELINE_COLOR", "COLOR", "numeric_plot", "top_values_plot"]

COLOR = "#3367d6"
BASELINE_COLOR = "#e8710a"
_TOP = 12
_LABEL_CHARS = 22
# Text stays text (small, selectable, no embedded glyphs); no metadata dates.
_RC = {
    "svg.fonttype": "none",
    "font.size": 8,
    "font.family": "sans-serif",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 8,
}


def _label(text: str) -> str:
    """User text made safe for a matplotlib label: no mathtext ($), no control
    characters, at most _LABEL_CHARS characters."""
    text = re.sub(r"[\x00-\x1f\x7f]", " ", str(text)).replace("$", r"\$")
    return text if len(text) <= _LABEL_CHARS else text[: _LABEL_CHARS - 1] + "…"


def _svg(fig: Figure, salt: str) -> str:
    buf = io.StringIO()
    with rc_context({**_RC, "svg.hashsalt": salt}):
        FigureCanvasSVG(fig).print_svg(buf, metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _figure(height: float = 1.9, left: float = 0.6):
    """A figure 4.6 in wide with fixed margins in inches (a layout engine
    would cost twice the drawing time)."""
    with rc_context(_RC):
        fig = Figure(figsize=(4.6, height))
        fig.subplots_adjust(left=left / 4.6, right=0.97, bottom=0.42 / height, top=1 - 0.12 / height)
        ax = fig.add_subplot()
    return fig, ax


def numeric_plot(
    buckets: Sequence[Bucket], baseline: Optional[Sequence[Bucket]] = None, salt: str = "", what: str = "rows",
    integer: bool = False,
) -> Tuple[str, str]:
    """A histogram as inline SVG, on the bins `featurebridge.transforms.drift.grid`
    chooses (the ones the Jensen-Shannon divergence compares): buckets spread
    evenly inside, point masses in their bin; with `baseline`, both as shares
    of their totals, overlaid.

    Args:
      buckets: (low, high, count) triples; may be empty ("no values").
      baseline: the baseline run's buckets, or None.
      salt: unique per plot on a page (the SVG's clip-path ids derive from it).
      what: the y label's noun without a baseline.
      integer: the values are whole numbers.

    Returns:
      (an ``<svg>`` element as text, a note on the range left out or "").
    """
    edges, note = grid(buckets, baseline, integer)
    fig, ax = _figure()
    with rc_context(_RC):
        if len(edges):
            sides = [(buckets, COLOR, "this run")]
            if baseline is not None:
                sides.append((baseline, BASELINE_COLOR, "baseline"))
            for side, color, name in sides:
                counts = binned(side, edges)
                total = sum(c for _, _, c in side)
                if baseline is not None and total:
                    counts = counts / total
                ax.stairs(counts, edges, fill=baseline is None, color=color, alpha=0.85 if baseline is None else 1,
                          linewidth=1.4, label=name)
            if baseline is not None:
                ax.legend(frameon=False, loc="best")
            ax.xaxis.set_major_locator(MaxNLocator(7, integer=integer))
            ax.yaxis.set_major_locator(MaxNLocator(4))
        else:
            ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
        ax.set_ylabel("share" if baseline is not None else what)
        ax.ticklabel_format(axis="both", style="sci", scilimits=(-4, 5), useOffset=False)
    return _svg(fig, salt), note


def top_values_plot(
    items: Sequence[Tuple[str, float]], baseline: Optional[Sequence[Tuple[str, float]]] = None,
    total: float = 0.0, baseline_total: float = 0.0, salt: str = "",
) -> str:
    """The most frequent values as horizontal bars (most frequent on top); with
    `baseline`, this run's and the baseline's shares side by side for the
    values most frequent in either.

    Args:
      items: (value, count) pairs, most frequent first; may be empty.
      baseline: the baseline's pairs, or None.
      total, baseline_total: what the counts are shares of (0: their sum).
      salt: unique per plot on a page.

    Returns:
      An ``<svg>`` element as text.
    """
    if baseline is None:
        shown = list(items[:_TOP])
        values = [c for _, c in shown]
        names = [v for v, _ in shown]
    else:
        p_total = total or float(sum(c for _, c in items)) or 1.0
        q_total = baseline_total or float(sum(c for _, c in baseline)) or 1.0
        p = {v: c / p_total for v, c in items}
        q = {v: c / q_total for v, c in baseline}
        names = sorted(set(p) | set(q), key=lambda v: -max(p.get(v, 0), q.get(v, 0)))[:_TOP]
    rows = max(len(names), 1)
    # Room for the longest label shown (8 pt text: ~0.065 in a character).
    longest = max((len(_label(v)) for v in names), default=1)
    fig, ax = _figure(height=min(0.7 + 0.16 * rows * (2 if baseline is not None else 1), 3.6),
                      left=min(0.35 + 0.065 * longest, 1.6))
    with rc_context(_RC):
        y = np.arange(len(names))
        if not names:
            ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
        elif baseline is None:
            ax.barh(y, values, color=COLOR)
            ax.set_xlabel("count")
        else:
            ax.barh(y - 0.2, [p.get(v, 0) for v in names], height=0.4, color=COLOR, label="this run")
            ax.barh(y + 0.2, [q.get(v, 0) for v in names], height=0.4, color=BASELINE_COLOR, label="baseline")
            ax.set_xlabel("share")
            ax.legend(frameon=False, loc="lower right")
        ax.set_yticks(y, [_label(v) for v in names])
        ax.invert_yaxis()
    return _svg(fig, salt)
