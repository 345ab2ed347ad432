"""The statistics report of an analyze output: OUT/report.html, one
self-contained page (inline CSS and SVG plots; no script, no network) drawn
from the TFDV statistics protos the analyze pass wrote, its manifest and
constants, and optionally a baseline run's statistics for drift.

Imports no TensorFlow: only tensorflow_metadata's protos, numpy and matplotlib.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, Mapping, Optional

from featurebridge.transforms import layout
from featurebridge.transforms.errors import ArtifactError
from featurebridge.transforms.report_views import FeatureView, feature_views
from featurebridge.transforms.stats_proto import load_statistics

__all__ = [
    "FeatureView",
    "POST_TRANSFORM_STATS",
    "PRE_TRANSFORM_STATS",
    "REPORT_HTML",
    "RunStatistics",
    "feature_views",
    "load_run",
    "load_statistics",
    "write_report",
]

PRE_TRANSFORM_STATS = os.path.join("pre_transform_stats", "FeatureStats.pb")
POST_TRANSFORM_STATS = os.path.join("post_transform_stats", "FeatureStats.pb")
REPORT_HTML = layout.REPORT_HTML


@dataclasses.dataclass
class RunStatistics:
    """One analyze output, read for the report.

    Attributes:
      path: the directory.
      manifest: its manifest ({} when not written yet).
      constants: its constants.json ({} when absent).
      raw, transformed: {name: FeatureView} of the raw columns and of the
        transformed features ({} when that statistics file is absent).
      raw_examples, transformed_examples: num_examples of each.
      shown_path: the directory as the page names it: `path`, or where the
        analyze pass is about to move it (its --output) when it reports on
        its staging directory.
    """

    path: str
    manifest: Mapping[str, Any]
    constants: Mapping[str, Any]
    raw: Dict[str, FeatureView]
    transformed: Dict[str, FeatureView]
    raw_examples: int = 0
    transformed_examples: int = 0
    shown_path: str = ""

    def __post_init__(self):
        self.shown_path = self.shown_path or self.path


def _json(path: str) -> Mapping[str, Any]:
    if not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (OSError, ValueError) as e:
        raise ArtifactError(f"Cannot read {path}: {e}. Run the analyze again to rewrite it.") from None
    return value if isinstance(value, dict) else {}


def load_run(path: str, manifest: Optional[Mapping[str, Any]] = None) -> RunStatistics:
    """Reads an analyze output's statistics, manifest and constants.

    Args:
      path: the analyze output directory (or a `featurebridge run` output,
        whose analyzed/ is used).
      manifest: the manifest to use instead of path/manifest.json (the
        analyze pass passes its own before sealing it; the page then names
        the directory by its pipeline_options.output).

    Raises:
      ArtifactError: `path` is not a directory, or has neither statistics file.
    """
    if os.path.isdir(os.path.join(path, layout.ANALYZED_DIR)) and not os.path.exists(
        os.path.join(path, PRE_TRANSFORM_STATS)
    ):
        path = os.path.join(path, layout.ANALYZED_DIR)
    if not os.path.isdir(path):
        raise ArtifactError(
            f"{path} is not a directory. Pass the --output directory of `featurebridge analyze` "
            "(or of `featurebridge run`)."
        )
    pre, post = os.path.join(path, PRE_TRANSFORM_STATS), os.path.join(path, POST_TRANSFORM_STATS)
    if not os.path.exists(pre) and not os.path.exists(post):
        if not os.path.exists(os.path.join(path, layout.CONSTANTS_JSON)):
            job = _json(os.path.join(path, layout.MANIFEST)).get("job") if os.path.exists(
                os.path.join(path, layout.MANIFEST)) else None
            raise ArtifactError(
                f"{path} is not an analyze output" + (f" (its {layout.MANIFEST} is of a {job!r} run)" if job else "")
                + f": it has no {PRE_TRANSFORM_STATS}, {POST_TRANSFORM_STATS} or {layout.CONSTANTS_JSON}. Pass the "
                "--output directory of `featurebridge analyze` (or of `featurebridge run`)."
            )
        raise ArtifactError(
            f"{path} is an analyze output without statistics: neither {PRE_TRANSFORM_STATS} nor "
            f"{POST_TRANSFORM_STATS} is there. Analyze outputs written by featurebridge 0.1 before "
            "statistics existed have none: run `featurebridge analyze` again."
        )
    raw_n, raw = feature_views(load_statistics(pre)) if os.path.exists(pre) else (0, {})
    post_n, post_views = feature_views(load_statistics(post)) if os.path.exists(post) else (0, {})
    # A manifest handed over is the analyze pass's own, on its staging directory.
    shown = (manifest.get("pipeline_options") or {}).get("output") if manifest is not None else None
    return RunStatistics(
        path=path,
        shown_path=str(shown or path),
        manifest=manifest if manifest is not None else _json(os.path.join(path, layout.MANIFEST)),
        constants=_json(os.path.join(path, layout.CONSTANTS_JSON)),
        raw=raw,
        transformed=post_views,
        raw_examples=raw_n,
        transformed_examples=post_n,
    )


def write_report(
    analyzed_dir: str, baseline_dir: Optional[str] = None, *, manifest: Optional[Mapping[str, Any]] = None,
    output: Optional[str] = None,
) -> str:
    """Writes the statistics report of an analyze output as one
    self-contained HTML page.

    Args:
      analyzed_dir: the analyze output (its pre_transform_stats/ and
        post_transform_stats/ FeatureStats.pb, manifest.json, constants.json).
      baseline_dir: another analyze output to compare with (drift per feature:
        L-infinity distance of categorical values, Jensen-Shannon divergence
        of numeric histograms), or None.
      manifest: the manifest to show instead of analyzed_dir/manifest.json
        (for a caller that has not written it yet).
      output: where to write the page; default analyzed_dir/report.html.

    Returns:
      The path of the page written (atomically: a reader never sees half).

    Raises:
      ArtifactError: a directory is not an analyze output with statistics.
    """
    from featurebridge.transforms.report_html import render_page

    run = load_run(analyzed_dir, manifest)
    baseline = load_run(baseline_dir) if baseline_dir else None
    page = render_page(run, baseline)
    path = output or os.path.join(run.path, REPORT_HTML)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(page)
    os.replace(tmp, path)
    return path
