"""The last step of an analyze pass: reconcile the row counts, write
constants.json, the data statistics (TFDV protos), the raw metadata, the
report and manifest.json, and move the staged directory into place.

`Finalize` is a DoFn run once, after every artifact is written (its side
inputs complete only then); the checks it applies, and the wording of the
errors they raise, live here too.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

import apache_beam as beam
import numpy as np

from featurebridge.transforms import layout
from featurebridge.transforms.errors import CountMismatchError, EmptyDataError
from featurebridge.transforms.spec import FeatureSpec

__all__ = [
    "Finalize",
    "TEMP_SUBDIR",
    "bucket_tie_warnings",
    "check_every_fill_computable",
    "check_not_empty",
    "constant_column_warnings",
    "describe_rejections",
    "sum_stats",
]

_LOG = logging.getLogger(__name__)

# TFT's scratch directory inside the staging directory (removed before commit).
TEMP_SUBDIR = "_tmp"


def sum_stats(stats: Iterable[Mapping]) -> Tuple[Dict[str, object], Dict[str, Dict[str, int]]]:
    """Adds up the readers' per-file counts.

    Args:
      stats: one dict per source file: {source, read, used, rejected,
        rejected_by?: {"column: reason": count}, present?: {...}}.

    Returns:
      ({read, used, rejected, rejected_by}, {source: {read, used, rejected}}),
      `rejected_by` sorted most frequent first. No stats give zeros and {}.
    """
    total: Dict[str, object] = {"read": 0, "used": 0, "rejected": 0}
    per_file = {}
    rejected_by: dict = {}
    for s in stats:
        per_file[s["source"]] = {k: s[k] for k in ("read", "used", "rejected")}
        for k in ("read", "used", "rejected"):
            total[k] += s[k]
        for problem, count in s.get("rejected_by", {}).items():
            rejected_by[problem] = rejected_by.get(problem, 0) + count
    total["rejected_by"] = dict(sorted(rejected_by.items(), key=lambda kv: (-kv[1], kv[0])))
    return total, dict(sorted(per_file.items()))


def describe_rejections(rejected_by, examples=(), limit: int = 5) -> str:
    """Counts by "column: reason" (most frequent first) and a few example rows, in words.

    Args:
      rejected_by: {"column: reason": count}; empty gives "".
      examples: rejected rows' JSON lines; lines that are not JSON are skipped.
      limit: how many kinds to name before "N more kind(s)".
    """
    items = sorted(rejected_by.items(), key=lambda kv: (-kv[1], kv[0]))
    parts = [f"{count} x {problem}" for problem, count in items[:limit]]
    if len(items) > limit:
        parts.append(f"{len(items) - limit} more kind(s)")
    text = "; ".join(parts)
    shown = []
    for line in examples:
        try:
            r = json.loads(line)
        except ValueError:
            continue
        where = f"{r.get('source')} row {r.get('row')}"
        column = f", column {r['column']!r} = {r.get('value')!r}" if r.get("column") else ""
        shown.append(f"{where}{column}: {r.get('reason')}")
    if shown:
        text += ". For example: " + " | ".join(shown)
    return text


def check_not_empty(used_rows: int, rejected_rows: int, sources, rejected_by=None, examples=()) -> None:
    """Raises EmptyDataError when no row was used: every row rejected (with
    the reasons, in words) or no data rows at all."""
    if used_rows == 0:
        where = ", ".join(sorted(sources)[:5]) or "the input"
        if rejected_rows:
            raise EmptyDataError(
                f"All {rejected_rows} input rows were rejected ({where}), so there is "
                f"nothing to analyze. By column and reason: {describe_rejections(rejected_by or {}, examples)}. "
                "Fix the data, or the spec (column types, null_markers, input: options "
                "such as the delimiter, or the missing-value policies), then rerun; "
                "no output directory was written."
            )
        raise EmptyDataError(
            f"The input has no data rows ({where}). Analyzing an empty dataset would "
            "produce meaningless constants; point --input at non-empty files."
        )


def check_every_fill_computable(spec: FeatureSpec, stats, used_rows: int) -> None:
    """A mean / median / most-frequent fill of a column with no value at all
    would bake a default (plain TFT's mean of nothing is 0.0) into the graph:
    raises EmptyDataError instead. Stats without "present" counts skip the check."""
    for column in spec.columns:
        if column.missing.policy not in ("mean", "median", "most_frequent"):
            continue
        if all("present" in s for s in stats) and not sum(s["present"].get(column.name, 0) for s in stats):
            raise EmptyDataError(
                f"Column '{column.name}' has no value in any of the {used_rows} rows used, so its "
                f"'{column.missing.policy}' fill cannot be computed. Give it a constant fill "
                "(missing: {constant: VALUE}), set missing: reject, or drop the column from the spec."
            )


def constant_column_warnings(features: Mapping[str, Mapping]) -> List[str]:
    """Scalings whose column had one distinct value: TFT then maps every value
    through a sigmoid (0.5 for the one seen value) instead of scaling it.
    Features without min/max (or a None min: no value) give no warning."""
    warnings = []
    for name, f in sorted(features.items()):
        if f.get("transform") in ("scale_0_1", "min_max") and f.get("min") is not None and f["min"] >= f["max"]:
            warnings.append(
                f"{name}: column '{f['column']}' has one distinct value ({f['min']}), so TFT maps it through "
                "a sigmoid instead of scaling it; check the data, or drop the transform."
            )
    return warnings


def bucket_tie_warnings(features: Mapping[str, Mapping]) -> List[str]:
    """Quantile buckets whose boundaries tie (a column with many equal values:
    nine boundaries of which five are 0): values fall into fewer buckets than
    asked, and the tied ones stay empty. Features without boundaries give no
    warning."""
    warnings = []
    for name, f in sorted(features.items()):
        boundaries = np.ravel(np.asarray(f.get("boundaries") or [], np.float64))
        if f.get("transform") != "bucketize" or boundaries.size < 2:
            continue
        distinct, counts = np.unique(boundaries, return_counts=True)
        if distinct.size == boundaries.size:
            continue
        tied = ", ".join(f"{v:g} x{c}" for v, c in zip(distinct, counts) if c > 1)
        warnings.append(
            f"{name}: column '{f['column']}' asked for {f.get('num_buckets', boundaries.size + 1)} quantile buckets, "
            f"but its {boundaries.size} boundaries hold only "
            f"{distinct.size} distinct value{'s' if distinct.size > 1 else ''} ({tied}), so at most "
            f"{distinct.size + 1} buckets are used and the rest "
            "stay empty (buckets lost to ties: many rows share those values). Use fewer buckets, transform the "
            "column first (log, clip), or treat the repeated value apart (a vocabulary or an indicator feature)."
        )
    return warnings


class Finalize(beam.DoFn):
    """Runs once after every write: reconciles counts, writes constants.json and
    manifest.json, and moves the staged directory into place.

    Side inputs of `process`: stats (the readers' per-file counts), used_rows,
    rejected_rows, transformed_rows, analyzer_results (the numeric analyzer
    results `{key: [floats]}` of a spec-built run, None for a user's
    preprocessing_fn), raw_statistics and transformed_statistics
    (`featurebridge.transforms.data_stats.FeatureStatsCombineFn` outputs; None
    writes no statistics), and any number of "written" lists that only order it
    after the writes. Yields the finished directory's path.

    Writes, besides constants.json and manifest.json: the statistics protos
    (`featurebridge.transforms.stats_proto`; the readers' per-file
    "missing_by_marker" counts become their by-marker custom stats), the raw
    schema in metadata/ (TFT's layout), and report.html
    (`featurebridge.transforms.report.write_report`, against `baseline_dir`
    when given), all before the manifest is sealed, so it digests them.

    With `commit`, the staged directory becomes `final_dir`
    (`featurebridge.transforms.staging.commit_directory`): with `overwrite` an
    existing `final_dir` is replaced; without it nothing there is deleted or
    replaced, and a `final_dir` that appeared after the run was set up fails
    the commit, the results staying in the staging directory.

    Raises (failing the pipeline): CountMismatchError, EmptyDataError,
    OutputExistsError (without `overwrite`, `final_dir` exists at commit).
    """

    def __init__(self, spec_json, staging, final_dir, manifest_base, commit, custom_fn=False, overwrite=False,
                 baseline_dir: Optional[str] = None):
        self._baseline_dir = baseline_dir
        self._custom_fn = custom_fn
        self._overwrite = bool(overwrite)
        self._spec_json = spec_json
        self._staging = staging
        self._final_dir = final_dir
        self._manifest_base = manifest_base
        self._commit = commit

    def process(self, _, stats, used_rows, rejected_rows, transformed_rows, written,
                analyzer_results: Optional[Mapping] = None, raw_statistics: Optional[Mapping] = None,
                transformed_statistics: Optional[Mapping] = None, **artifacts_written):
        import shutil

        from featurebridge.transforms import constants_json
        from featurebridge.transforms import provenance

        spec = FeatureSpec.from_text(self._spec_json, trusted=True)
        totals, per_file = sum_stats(stats)
        used_rows = used_rows or 0
        if stats and (
            totals["read"] != totals["used"] + totals["rejected"]
            or totals["used"] != used_rows
            or totals["rejected"] != rejected_rows
        ):
            raise CountMismatchError(
                f"Row counts do not reconcile: read={totals['read']}, used={used_rows} "
                f"(reader said {totals['used']}), rejected={rejected_rows} (reader said "
                f"{totals['rejected']}). This is a bug in featurebridge; please report it "
                "with the input that triggers it."
            )
        check_not_empty(used_rows, rejected_rows, per_file, totals["rejected_by"], self._rejected_examples())
        if transformed_rows != used_rows:
            raise CountMismatchError(
                f"{used_rows} rows went into TFT but {transformed_rows} transformed "
                "examples were written. This is a bug in featurebridge; please report it."
            )
        if not self._custom_fn:
            check_every_fill_computable(spec, stats, used_rows)
        payload = constants_json.compute_constants(
            self._staging, spec, numeric=analyzer_results, custom_preprocessing_fn=self._custom_fn
        )
        provenance.write_json_atomic(os.path.join(self._staging, layout.CONSTANTS_JSON), payload)
        warnings = constant_column_warnings(payload.get("features", {}))
        warnings += bucket_tie_warnings(payload.get("features", {}))
        for warning in warnings:
            _LOG.warning(warning)
        shutil.rmtree(os.path.join(self._staging, TEMP_SUBDIR), ignore_errors=True)
        self._write_raw_metadata(spec)
        statistics = self._write_statistics(raw_statistics, transformed_statistics, stats)
        manifest = dict(self._manifest_base)
        manifest.update(
            rows={
                "read": totals["read"] if stats else used_rows + rejected_rows,
                "used": used_rows,
                "rejected": rejected_rows,
                "rejected_by": totals["rejected_by"],
                "per_file": per_file,
            },
            spec_digest=spec.digest(),
            warnings=warnings,
        )
        if statistics is not None:
            manifest["statistics"] = statistics
            from featurebridge.transforms.report import write_report

            # Before the seal: the manifest digests the report too.
            try:
                write_report(self._staging, self._baseline_dir, manifest=manifest)
            except Exception as e:  # pylint: disable=broad-except  # the analysis is done: keep it
                problem = (
                    f"report.html was not written ({type(e).__name__}: {e}). The statistics are in "
                    f"{layout.PRE_TRANSFORM_STATS_DIR}/ and {layout.POST_TRANSFORM_STATS_DIR}/; "
                    f"`featurebridge report {self._final_dir}` draws the page again (please report this bug)."
                )
                _LOG.warning("%s", problem)
                manifest["warnings"] = [*manifest["warnings"], problem]
        provenance.seal_manifest(self._staging, manifest)
        if self._commit:
            yield self._commit_to_final()
        else:
            yield self._staging

    def _write_raw_metadata(self, spec: FeatureSpec) -> None:
        """The raw schema in TFT's layout (what TFX's Transform writes), so
        `tft.TFTransformOutput(OUT).raw_metadata` and `.raw_feature_spec()` work."""
        from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

        from featurebridge.transforms.preprocessing import raw_feature_spec

        schema = schema_utils.schema_from_feature_spec(raw_feature_spec(spec))
        metadata_io.write_metadata(dataset_metadata.DatasetMetadata(schema),
                                   os.path.join(self._staging, layout.RAW_METADATA_DIR))

    def _write_statistics(self, raw: Optional[Mapping], transformed: Optional[Mapping], stats) -> Optional[dict]:
        """Writes the statistics protos; returns the manifest's summary of them
        ({files, raw: {column: {missing_share, distinct...}}, missing_by_marker}),
        None without statistics."""
        from featurebridge.transforms import stats_proto
        from featurebridge.transforms.data_stats import merge_marker_counts

        if raw is None or transformed is None:
            return None
        markers = merge_marker_counts(s.get("missing_by_marker") for s in stats)
        files = {}
        for subdir, summary, name, by_marker in (
            (layout.PRE_TRANSFORM_STATS_DIR, raw, stats_proto.PRE_TRANSFORM_DATASET, markers),
            (layout.POST_TRANSFORM_STATS_DIR, transformed, stats_proto.POST_TRANSFORM_DATASET, None),
        ):
            stats_proto.write_statistics(self._staging, subdir,
                                         stats_proto.build_statistics(summary, name, by_marker))
            files[name] = os.path.join(subdir, layout.FEATURE_STATS_FILE)
        result = {"files": files, "raw": stats_proto.statistics_summary(raw["features"])}
        if markers:
            result["missing_by_marker"] = markers
        if self._baseline_dir:
            result["baseline"] = os.path.abspath(self._baseline_dir)
        return result

    def _rejected_examples(self, limit: int = 3):
        """The first rejected rows' JSON lines, from the staged rejected/ files."""
        import glob

        lines = []
        for path in sorted(glob.glob(os.path.join(self._staging, layout.REJECTED_DIR, "*"))):
            with open(path, encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        lines.append(line)
                    if len(lines) >= limit:
                        return lines
        return lines

    def _commit_to_final(self):
        from featurebridge.transforms.staging import commit_directory

        return commit_directory(self._staging, self._final_dir, overwrite=self._overwrite)
