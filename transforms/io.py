"""Reading raw files in a Beam pipeline: `ReadRawData` and `read_file`.

Files (CSV, Parquet, TFRecord of tf.Example, JSON lines) become Arrow
RecordBatches in the layout TFT's TensorAdapter expects
(`arrow_schema_for`), with every unusable row sent to a rejected output
together with its reason. Rows are never dropped silently: a row is either in
a batch or in the rejected output, and per-file statistics let the caller
check ``read == used + rejected``.

The formats are read by featurebridge.transforms.readers; rows are typed and
checked against the spec (missing values, null markers, bools, timestamps,
rejected rows and their reasons) by featurebridge.transforms.validation. This
module composes the two per file and runs them on Beam. Columns are read by
their file name (`Column.source`, e.g. ``petal width (cm)``) and come out
under their spec name.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
import time
import uuid
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems

from featurebridge.transforms.data_stats import count_missing_markers
from featurebridge.transforms.errors import InputError, UsageError
from featurebridge.transforms.readers import (
    FILE_ERRORS,
    FORMATS,
    check_headers,
    infer_format,
    raw_chunks,
    read_header,
    unreadable_error,
)
from featurebridge.transforms.spec import FeatureSpec
from featurebridge.transforms.validation import (
    ROW_COLUMN,
    SOURCE_COLUMN,
    RejectedRow,
    arrow_schema_for,
    chunk_to_batch,
    count_present,
    table_to_batch,
)

# The readers' and validation's names are re-exported: callers import them from here.
__all__ = [
    "FORMATS",
    "InputError",
    "ReadRawData",
    "ReadResult",
    "RejectedRow",
    "SOURCE_COLUMN",
    "ROW_COLUMN",
    "arrow_schema_for",
    "check_headers",
    "count_present",
    "infer_format",
    "PROGRESS_ENV",
    "match_files",
    "read_file",
    "read_header",
    "read_progress",
    "table_to_batch",
]

_LOG = logging.getLogger(__name__)


def match_files(patterns: str | Sequence[str]) -> List[str]:
    """Expands comma-separated glob patterns to a sorted list of files. A
    local pattern is relative to the current directory (``name-*.csv``).

    Raises:
      InputError: if a pattern matches nothing.
    """
    if isinstance(patterns, str):
        patterns = [p for p in patterns.split(",") if p.strip()]
    files: List[str] = []
    for pattern in patterns:
        given = pattern = pattern.strip()
        if "://" not in pattern:
            pattern = os.path.abspath(os.path.expanduser(pattern))
        try:
            matched = FileSystems.match([pattern])[0].metadata_list
        except Exception:  # Beam raises different types per filesystem.
            matched = []
        paths = sorted(m.path for m in matched if not m.path.endswith("/"))
        if not paths:
            raise InputError(
                f"No input files match {given!r}"
                + (f" (looked for {pattern!r})" if pattern != given else "")
                + ". Check the path and the glob (quote it so your shell does not expand it)."
            )
        files.extend(paths)
    return sorted(set(files))


def read_file(
    path: str,
    spec: FeatureSpec,
    file_format: Optional[str] = None,
    batch_size: int = 10_000,
    include_position: bool = False,
    missing_markers: bool = False,
) -> Iterator[Tuple[str, object]]:
    """Reads one file, yielding ("batch", RecordBatch), ("rejected", RejectedRow)
    and finally ("stats", {"source", "read", "used", "rejected", "present",
    "rejected_by"}), where "present" counts, per spec column, the used rows
    that had a value, and "rejected_by" counts the rejected rows' problems by
    "column: reason" (a row with two bad cells counts under both). With
    `missing_markers` (the analyze pass's statistics read), the stats also
    hold "missing_by_marker": the used rows' missing cells by what made them
    missing ({column: {marker: n}}, `data_stats.count_missing_markers`).

    An empty file yields only its stats (all zero). Every row of the file is
    counted in "read" and is either used or rejected with its reason (a CSV
    line with the wrong number of fields, a cell that is not UTF-8, a bad
    value...); a problem that makes the file unreadable as a whole raises.

    Raises:
      InputError: the file lacks a spec column or has one twice; a Parquet
        column has a type the spec column cannot read
        (`readers.PARQUET_TYPES`); a damaged gzip stream or TFRecord; the file
        cannot be parsed at all. Never another error for a problem of the
        file: each names the file (and the column, where one is at fault).
    """
    fmt = file_format or infer_format(path)
    columns = spec.column_names
    sources = spec.source_names
    read = used = rejected = 0
    present = dict.fromkeys(columns, 0)
    rejected_by: Dict[str, int] = {}
    missing_by_marker: Optional[Dict[str, Dict[str, int]]] = {} if missing_markers else None
    try:
        types = [c.type for c in spec.columns]
        for table, rows, bad in raw_chunks(path, fmt, sources, batch_size, spec.input, types):
            table = table.rename_columns(list(columns))
            for r in bad:
                yield "rejected", r
            batch, more_bad = chunk_to_batch(path, table, rows, spec, include_position) if table.num_rows else (None, [])
            for r in more_bad:
                yield "rejected", r
            for r in (*bad, *more_bad):
                for problem in r.problems():
                    rejected_by[problem] = rejected_by.get(problem, 0) + 1
            read += table.num_rows + len(bad)
            rejected += len(bad) + len(more_bad)
            if batch is not None:
                used += batch.num_rows
                count_present(batch, present)
                if missing_by_marker is not None:
                    keep = ~np.isin(rows, [r.row for r in more_bad]) if more_bad else None
                    count_missing_markers(table, spec, keep, into=missing_by_marker, batch=batch)
                yield "batch", batch
    except InputError:
        raise
    except FILE_ERRORS as e:
        raise unreadable_error(path, fmt, e) from None
    stats = {
        "source": path, "read": read, "used": used, "rejected": rejected,
        "present": present, "rejected_by": dict(sorted(rejected_by.items())),
    }
    if missing_by_marker is not None:
        stats["missing_by_marker"] = missing_by_marker
    yield "stats", stats


_PROGRESS_EVERY = 500_000

# Live progress of the reads, for the launcher's progress display
# (featurebridge.pipelines.progress). Beam's counters (namespace
# "featurebridge": rows_read, rows_rejected, files_read) are the portable
# record, but most runners report them only when the job ends; these are
# live. Under the in-memory DirectRunner the DoFns run in the launcher's
# process and update `_LIVE` directly. Where PROGRESS_ENV is set
# ("PID:DIR", by the launcher, inherited by the workers it starts:
# multi-processing DirectRunner, a local SDK worker pool) a worker in another
# process also writes its counts to DIR/<pid>.json, at most once a second.
PROGRESS_ENV = "FEATUREBRIDGE_PROGRESS"
_LIVE: Dict[str, Dict[str, float]] = {}
_LIVE_LOCK = threading.Lock()
_ANNOUNCED: set = set()
_FLUSHED = [0.0]


def _note_progress(key: str, files: int, rows: int = 0, files_done: int = 0) -> None:
    with _LIVE_LOCK:
        entry = _LIVE.setdefault(key, {"rows": 0, "files_done": 0, "files": files, "updated": 0.0})
        entry["rows"] += rows
        entry["files_done"] += files_done
        entry["updated"] = time.time()
        _write_progress_file(force=bool(files_done))


def _write_progress_file(force: bool) -> None:
    """Called with _LIVE_LOCK held."""
    setting = os.environ.get(PROGRESS_ENV, "")
    pid, _, directory = setting.partition(":")
    if not directory or pid == str(os.getpid()):
        return
    now = time.time()
    if not force and now - _FLUSHED[0] < 1.0:
        return
    _FLUSHED[0] = now
    try:
        path = os.path.join(directory, f"{os.getpid()}.json")
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(_LIVE, f)
        os.replace(path + ".tmp", path)
    except OSError:
        pass  # progress is a courtesy: never fail a read for it


def read_progress() -> Dict[str, Dict[str, float]]:
    """The reads' live counts: {"TOKEN/LABEL": {"rows", "files_done", "files",
    "updated"}}, one entry per application of a `ReadRawData` (TOKEN names
    the instance, LABEL the application: "Read", "ReadForTransform"...),
    summed over this process and the workers that report through
    PROGRESS_ENV. Empty before any read started."""
    with _LIVE_LOCK:
        merged = {key: dict(value) for key, value in _LIVE.items()}
    pid, _, directory = os.environ.get(PROGRESS_ENV, "").partition(":")
    if directory and os.path.isdir(directory):
        for name in os.listdir(directory):
            if not name.endswith(".json") or name == f"{pid}.json":
                continue
            try:
                with open(os.path.join(directory, name), encoding="utf-8") as f:
                    theirs = json.load(f)
            except (OSError, ValueError):
                continue
            for key, value in theirs.items():
                entry = merged.setdefault(key, {"rows": 0, "files_done": 0, "files": value.get("files", 0), "updated": 0.0})
                entry["rows"] += value.get("rows", 0)
                entry["files_done"] += value.get("files_done", 0)
                entry["updated"] = max(entry["updated"], value.get("updated", 0.0))
    return merged


def _first_time(token: str, path: str) -> bool:
    """Whether this process has not yet logged ``path`` for this reader
    (each ReadRawData instance reads its files up to three times: one log per file)."""
    with _LIVE_LOCK:
        if (token, path) in _ANNOUNCED:
            return False
        _ANNOUNCED.add((token, path))
        return True


class _ReadFileDoFn(beam.DoFn):
    def __init__(
        self, spec_json: str, file_format: Optional[str], batch_size: int, include_position: bool,
        progress_key: str = "", files: int = 0, missing_markers: bool = False,
    ):
        self._missing_markers = missing_markers
        self._spec_json = spec_json
        self._format = file_format
        self._batch_size = batch_size
        self._include_position = include_position
        self._progress_key = progress_key
        self._files = files
        self._spec = None
        self._rows_read = beam.metrics.Metrics.counter("featurebridge", "rows_read")
        self._rows_rejected = beam.metrics.Metrics.counter("featurebridge", "rows_rejected")
        self._files_read = beam.metrics.Metrics.counter("featurebridge", "files_read")

    def setup(self):
        self._spec = FeatureSpec.from_text(self._spec_json, trusted=True)

    def process(self, path: str):
        token = self._progress_key.split("/", 1)[0]
        tell = _first_time(token, path)
        log = _LOG.info if tell else _LOG.debug
        log("Reading %s", path)
        rows, next_report = 0, _PROGRESS_EVERY
        for kind, value in read_file(
            path, self._spec, self._format, self._batch_size, self._include_position, self._missing_markers
        ):
            if kind == "batch":
                rows += value.num_rows
                self._rows_read.inc(value.num_rows)
                _note_progress(self._progress_key, self._files, rows=value.num_rows)
                if rows >= next_report:
                    log("%s: %d rows read so far", path, rows)
                    next_report += _PROGRESS_EVERY
                yield value
            elif kind == "rejected":
                self._rows_rejected.inc()
                self._rows_read.inc()
                _note_progress(self._progress_key, self._files, rows=1)
                yield beam.pvalue.TaggedOutput("rejected", value.to_json())
            else:
                self._files_read.inc()
                _note_progress(self._progress_key, self._files, files_done=1)
                log("%s: %d rows read, %d used, %d rejected", path, value["read"], value["used"], value["rejected"])
                yield beam.pvalue.TaggedOutput("stats", value)


class ReadResult(NamedTuple):
    """The outputs of `ReadRawData`.

    Attributes:
      batches: PCollection of pa.RecordBatch in `arrow_schema_for(spec)`.
      rejected: PCollection of JSON lines, one per `RejectedRow`.
      stats: PCollection of per-file dicts {source, read, used, rejected}.
    """

    batches: beam.PCollection
    rejected: beam.PCollection
    stats: beam.PCollection


class ReadRawData(beam.PTransform):
    """Reads raw files into Arrow RecordBatches plus rejected rows.

    Files are matched on the launcher, so a pattern that matches nothing fails
    before the pipeline starts; so does a CSV or Parquet file that lacks a spec
    column or has it twice, or a Parquet column of a type the spec column
    cannot read (`check_headers`; `check_columns=False` skips it). Each file is read
    by one worker; split large inputs into several files to read them in parallel.
    With `missing_markers`, each file's stats also count its missing cells by
    marker (`read_file`; the analyze pass's statistics); `rereading()` is the
    same reader without that work, for a pass that reads the files again.
    """

    def __init__(
        self,
        file_pattern: str | Sequence[str],
        spec: FeatureSpec,
        file_format: Optional[str] = None,
        batch_size: int = 10_000,
        include_position: bool = False,
        check_columns: bool = True,
        missing_markers: bool = False,
    ):
        super().__init__()
        if file_format is not None and file_format not in FORMATS:
            raise InputError(f"--format {file_format!r} is not supported; use one of {list(FORMATS)}.")
        if batch_size < 1:
            raise UsageError(f"batch_size must be positive; got {batch_size}.")
        self.files = match_files(file_pattern)
        if file_format is None:
            formats = {infer_format(p) for p in self.files}
            if len(formats) > 1:
                raise InputError(f"Input files mix formats {sorted(formats)}; pass --format or split the input.")
        if check_columns:
            # On the launcher, once: a missing column fails here, not on each worker.
            check_headers(self.files, spec, file_format)
        self._spec = spec
        self._format = file_format
        self._batch_size = batch_size
        self._include_position = include_position
        self._missing_markers = missing_markers
        # Names this reader in the live progress and its "Reading FILE" log,
        # which is said once per file, however many times the reader is applied.
        self._token = uuid.uuid4().hex[:12]

    def rereading(self) -> "ReadRawData":
        """This reader (same files, checks already done) without the
        missing-marker counts: for a pass whose stats nobody reads."""
        again = copy.copy(self)
        again._missing_markers = False  # pylint: disable=protected-access
        return again

    def expand(self, pbegin) -> ReadResult:
        results = (
            pbegin
            | "ListFiles" >> beam.Create(self.files)
            | "SpreadFiles" >> beam.Reshuffle()
            | "ReadFiles"
            >> beam.ParDo(
                _ReadFileDoFn(
                    self._spec.to_json(), self._format, self._batch_size, self._include_position,
                    progress_key=f"{self._token}/{self.label}", files=len(self.files),
                    missing_markers=self._missing_markers,
                )
            ).with_outputs("rejected", "stats", main="batches")
        )
        return ReadResult(results.batches, results.rejected, results.stats)
