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
from typing import Any, Dict, List, Mapping, Optional, Tuple

from featurebridge.transforms import layout
from featurebridge.transforms.drift import Bucket
from featurebridge.transforms.errors import ArtifactError

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
REPORT_HTML = "report.html"

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
_MISSING_BY_MARKER = "missing_by_marker/"
_CLASS_COUNTS = "class_counts"
_TOP_VALUES = "top_values"
_FINE = "quantiles"


def _ranked(custom) -> List[Tuple[str, float]]:
    return [(b.label, float(b.sample_count)) for b in custom.rank_histogram.buckets]


def _custom(view: FeatureView, custom) -> None:
    which = custom.WhichOneof("val")
    name = custom.name
    if name.startswith(_MISSING_BY_MARKER) and which == "num":
        view.missing_by.append((name[len(_MISSING_BY_MARKER):], custom.num))
    elif "missing" in name.lower() and which == "num":
        view.missing_by.append((name, custom.num))
    elif name == _CLASS_COUNTS and which == "rank_histogram":
        view.classes = _ranked(custom)
    elif name == _FINE and which == "histogram":
        view.fine = [(b.low_value, b.high_value, b.sample_count) for b in custom.histogram.buckets]
    elif which == "rank_histogram" and not view.top_values:
        view.top_values = _ranked(custom)
    elif which == "num":
        view.numbers.append((name, custom.num))
    elif which == "str":
        view.numbers.append((name, custom.str))


def load_statistics(path: str):
    """Reads a binary DatasetFeatureStatisticsList (what the analyze pass
    writes; TFDV's `load_stats_binary` reads the same).

    Raises:
      ArtifactError: the file is missing or not such a proto.
    """
    from google.protobuf.message import DecodeError
    from tensorflow_metadata.proto.v0 import statistics_pb2

    stats = statistics_pb2.DatasetFeatureStatisticsList()
    try:
        with open(path, "rb") as f:
            stats.ParseFromString(f.read())
    except (OSError, DecodeError) as e:
        raise ArtifactError(
            f"Cannot read the statistics {path}: {e}. It should be a binary "
            "tensorflow_metadata DatasetFeatureStatisticsList written by `featurebridge analyze`; "
            "run the analyze again to rewrite it."
        ) from None
    return stats


def feature_views(stats) -> Tuple[int, Dict[str, FeatureView]]:
    """(num_examples, {name: FeatureView}) of the first dataset in a
    DatasetFeatureStatisticsList (the whole data; TFDV's later ones are
    slices). No dataset: (0, {})."""
    if not stats.datasets:
        return 0, {}
    dataset = stats.datasets[0]
    views = [FeatureView.from_proto(f) for f in dataset.features]
    return int(dataset.num_examples), {v.name: v for v in views}


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
