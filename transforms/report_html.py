"""The report page's HTML: sections built from featurebridge.transforms.report's
RunStatistics. Every value that comes from data or from a user (column names,
values, paths, warnings) is escaped here, once, by `_e`.
"""

from __future__ import annotations

import html
import math
from typing import Any, Iterable, List, Mapping, Optional, Sequence

from featurebridge.transforms import drift, report_plots

__all__ = ["render_page"]

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#202124;background:#f6f7f9}
header{background:#fff;border-bottom:1px solid #dadce0;padding:16px 28px}
main{padding:8px 28px 40px}
h1{font-size:22px;margin:0 0 6px}h2{font-size:18px;margin:28px 0 10px}h3{font-size:15px;margin:0 0 6px;word-break:break-all}
nav a{margin-right:14px}a{color:#1a56c9}
table{border-collapse:collapse;background:#fff;max-width:100%}td a,td code{overflow-wrap:anywhere}td,th{border:1px solid #e0e2e6;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f1f3f4;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
.row{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}.row .feature{width:480px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:14px;align-items:start}
.feature{background:#fff;border:1px solid #dadce0;border-radius:8px;padding:12px 14px;max-width:640px}
.feature table{width:100%;margin-top:6px;font-size:13px}.feature td,.feature th{border:none;border-bottom:1px solid #eee}
.type{color:#5f6368;font-weight:400;font-size:12px;margin-left:6px}
.plot svg{width:100%;height:auto;display:block}
.warn{background:#fef7e0;border-left:4px solid #f9ab00;padding:6px 10px;margin:4px 0;list-style:none}
.note{font-size:12px;margin:2px 0 0}.bad{color:#c5221f;font-weight:600}.ok{color:#188038}.muted{color:#5f6368}
meter{width:120px;vertical-align:middle}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return _e(value)
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e15):
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else _e(value)
    return _e(value)


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    """A table of already-escaped cells; columns in `numeric` right-aligned."""
    out = ["<table><tr>", *(f"<th>{h}</th>" for h in head), "</tr>"]
    for row in rows:
        cells = (f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
        out += ["<tr>", *cells, "</tr>"]
    out.append("</table>")
    return "".join(out)


def _header(run, baseline) -> str:
    m = run.manifest
    rows = m.get("rows", {})
    per_file = rows.get("per_file", {})
    parts = [f"<h1>featurebridge statistics: {_e(run.shown_path)}</h1>"]
    if rows:
        parts.append(
            f"<p><b>{_num(rows.get('read', 0))}</b> rows read, <b>{_num(rows.get('used', 0))}</b> used, "
            f"<b>{_num(rows.get('rejected', 0))}</b> rejected.</p>"
        )
    elif run.raw_examples:
        parts.append(f"<p><b>{_num(run.raw_examples)}</b> rows in the statistics (no manifest yet).</p>")
    facts = [("spec", m.get("spec_source")), ("runner", m.get("runner")), ("analyzer", m.get("analyzer")),
             ("input format", m.get("input_format")), ("started", m.get("started")), ("finished", m.get("finished")),
             ("baseline", baseline.path if baseline else None)]
    facts_html = " · ".join(f"{k}: <code>{_e(v)}</code>" for k, v in facts if v)
    if facts_html:
        parts.append(f'<p class="muted">{facts_html}</p>')
    inputs = m.get("inputs", [])
    if inputs:
        body = []
        for i in inputs:
            counts = per_file.get(i.get("path"), {})
            body.append([f"<code>{_e(i.get('path', ''))}</code>", _num(i.get("bytes", "")),
                         _num(counts.get("read", "")), _num(counts.get("used", "")), _num(counts.get("rejected", ""))])
        parts.append("<details><summary>Inputs (" + _num(len(inputs)) + " files)</summary>"
                     + _table(["file", "bytes", "read", "used", "rejected"], body, (1, 2, 3, 4)) + "</details>")
    return "<header>" + "".join(parts) + "</header>"


def _nav(run, baseline) -> str:
    links = [("warnings", "Warnings"), ("label", "Label"), ("rejected", "Rejected rows")]
    if baseline is not None:
        links.append(("drift", "Drift"))
    links += [("raw", f"Raw columns ({len(run.raw)})"), ("transformed", f"Transformed features ({len(run.transformed)})")]
    return "<nav>" + "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in links) + "</nav>"


def _warnings(run) -> str:
    warnings = [w for w in run.manifest.get("warnings", []) or []]
    body = "".join(f'<li class="warn">{_e(w)}</li>' for w in warnings) or '<p class="ok">No warnings.</p>'
    return f'<section id="warnings"><h2>Warnings</h2><ul style="padding:0">{body}</ul></section>'


def _label(run) -> str:
    label = run.constants.get("label") or (run.manifest.get("spec") or {}).get("label") or {}
    column = label.get("column") if isinstance(label, Mapping) else None
    view = run.raw.get(column) if column else None
    out = ['<section id="label"><h2>Label</h2>']
    if not column:
        out.append('<p class="muted">The spec names no label.</p>')
    elif view is None:
        out.append(f"<p>Label column <code>{_e(column)}</code>: not in the statistics.</p>")
    else:
        kind = label.get("kind", "")
        out.append(f"<p>Label column <code>{_e(column)}</code> ({_e(kind)}).</p>")
        classes = view.classes or view.top_values
        if classes:
            total = sum(c for _, c in classes) or 1.0
            out.append('<div class="row"><div>' + _table(
                ["class", "rows", "share"], ([_e(v), _num(c), f"{c / total:.1%}"] for v, c in classes), (1, 2)
            ) + '</div><div class="feature plot">'
                + report_plots.top_values_plot(classes, salt="label") + "</div></div>")
        else:
            out.append('<div class="feature plot">' + report_plots.numeric_plot(view.fine, salt="label")[0] + "</div>")
    out.append("</section>")
    return "".join(out)


def _rejected(run) -> str:
    by = (run.manifest.get("rows") or {}).get("rejected_by") or {}
    out = ['<section id="rejected"><h2>Rejected rows</h2>']
    if not by:
        out.append('<p class="ok">No rows were rejected.</p>' if run.manifest.get("rows") else
                   '<p class="muted">No row counts (no manifest).</p>')
    else:
        rows = []
        for key, count in sorted(by.items(), key=lambda kv: (-kv[1], kv[0])):
            column, _, reason = str(key).partition(": ")
            rows.append([f"<code>{_e(column)}</code>", _e(reason), _num(count)])
        out.append(_table(["column", "reason", "rows"], rows, (2,)))
        out.append('<p class="muted">Each rejected row, with its reason, is in rejected/*.jsonl.</p>')
    out.append("</section>")
    return "".join(out)


def _anchor(section: str, names: Sequence[str], name: str) -> str:
    return f"{section}-{sorted(names).index(name)}" if name in names else ""


def _drift(run, baseline) -> str:
    rows = drift.compare("raw", run.raw, baseline.raw) + drift.compare("transformed", run.transformed, baseline.transformed)
    rows.sort(key=lambda r: (not r.drifted, r.measure != "missing", -(r.value if r.value is not None else -1.0)))
    body = []
    for r in rows:
        names = set(run.raw if r.section == "raw" else run.transformed)
        anchor = _anchor(r.section, list(names), r.feature)
        name = f'<a href="#{anchor}">{_e(r.feature)}</a>' if anchor else _e(r.feature)
        verdict = '<span class="bad">drift</span>' if r.drifted else '<span class="ok">ok</span>'
        body.append([_e(r.section), name, _e(r.measure), _num(r.value) if r.value is not None else "–",
                     _num(r.threshold) if r.threshold is not None else "–", verdict + (" " + _e(r.note) if r.note else "")])
    drifted = sum(r.drifted for r in rows)
    return (
        f'<section id="drift"><h2>Drift against the baseline</h2><p>Baseline: <code>{_e(baseline.path)}</code>. '
        f"<b>{drifted}</b> of {len(rows)} features drifted. L-infinity: the largest change in a value's share "
        f"(categorical); Jensen-Shannon: divergence of the histograms (numeric, base 2, 0 to 1). Each feature's "
        f"plot below overlays the baseline.</p>"
        + _table(["section", "feature", "measure", "value", "threshold", ""], body, (3, 4)) + "</section>"
    )


def _feature(section: str, anchor: str, view, base) -> str:
    salt = anchor
    if view.top_values or view.kind == "string":
        plot = report_plots.top_values_plot(
            view.top_values, base.top_values if base is not None else None,
            view.values_total, base.values_total if base is not None else 0.0, salt=salt)
    elif view.kind == "numeric":
        plot, note = report_plots.numeric_plot(view.fine, base.fine if base is not None else None, salt=salt,
                                               integer=view.type_name == "INT")
        if note:
            plot += f'<p class="muted note">x axis: {_e(note)}.</p>'
    else:
        plot = '<p class="muted">No distribution for this type.</p>'
    rows = [["count", _num(view.count)],
            ["missing", f'<meter min="0" max="1" value="{view.missing_share:.4f}"></meter> '
                        f"{view.missing_share:.1%} ({_num(view.missing)})"]]
    # Markers as the readers name them: "<empty>", "<null>", "<nan>" or the spec's own ("NA").
    rows += [[f"missing as <code>{_e(m)}</code>", _num(c)] for m, c in view.missing_by]
    rows += [[_e(k), _num(v)] for k, v in view.numbers]
    if view.num_nan:
        rows.append(["NaN", _num(view.num_nan)])
    if base is not None:
        rows.append(["baseline count / missing", f"{_num(base.count)} / {base.missing_share:.1%}"])
    table = "<table>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"
    return (f'<section class="feature" id="{anchor}" data-feature="{_e(view.name)}" data-section="{section}">'
            f'<h3>{_e(view.name)}<span class="type">{_e(view.type_name)}</span></h3>'
            f'<div class="plot">{plot}</div>{table}</section>')


def _number(view, key: str) -> str:
    return next((_num(v) for k, v in view.numbers if k == key), "")


def _glance(section: str, views: Mapping[str, Any], names: Sequence[str]) -> str:
    """One line per feature, Facets Overview style, each linking to its card."""
    rows = []
    for i, n in enumerate(names):
        v = views[n]
        share = f"{v.missing_share:.1%}"
        rows.append([f'<a href="#{section}-{i}">{_e(n)}</a>', _e(v.type_name), _num(v.count),
                     f'<span class="bad">{share}</span>' if v.missing_share >= 0.05 else share,
                     _number(v, "distinct"), _number(v, "mean"), _number(v, "min"), _number(v, "max")])
    return _table(["feature", "type", "count", "missing", "distinct", "mean", "min", "max"], rows, (2, 3, 4, 5, 6, 7))


def _features(section: str, title: str, views: Mapping[str, Any], base: Optional[Mapping[str, Any]]) -> str:
    names = sorted(views)
    cards: List[str] = [
        _feature(section, f"{section}-{i}", views[n], base.get(n) if base is not None else None)
        for i, n in enumerate(names)
    ]
    if not cards:
        return f'<section id="{section}"><h2>{_e(title)}</h2><p class="muted">No statistics.</p></section>'
    return (f'<section id="{section}"><h2>{_e(title)}</h2>{_glance(section, views, names)}'
            f'<div class="grid" style="margin-top:14px">{"".join(cards)}</div></section>')


def render_page(run, baseline=None) -> str:
    """The whole page as text.

    Args:
      run: featurebridge.transforms.report.RunStatistics of the analyze output.
      baseline: the same for the baseline run, or None (no drift section).
    """
    title = f"featurebridge statistics: {run.shown_path}"
    return "".join([
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        '<link rel="icon" href="data:,">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        _header(run, baseline),
        "<main>", _nav(run, baseline), _warnings(run), _label(run), _rejected(run),
        _drift(run, baseline) if baseline is not None else "",
        _features("raw", "Raw columns", run.raw, baseline.raw if baseline else None),
        _features("transformed", "Transformed features", run.transformed, baseline.transformed if baseline else None),
        '<p class="muted">Statistics: pre_transform_stats/FeatureStats.pb and post_transform_stats/FeatureStats.pb '
        "(TFDV DatasetFeatureStatisticsList protos: tfdv.load_stats_binary, Facets Overview).</p>",
        "</main></body></html>",
    ])
