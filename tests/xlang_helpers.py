"""What the cross-language tests share, whichever client calls the expansion
service (Beam's Python client in test_expansion_portable, the Java module in
test_java_engines): the input rows, JSON-lines I/O, the in-process reference
run of the stages, and the comparisons against it."""

from __future__ import annotations

import csv
import glob
import json
import os
from typing import Dict, List, Optional

import pytest

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from tests.expansion_helpers import SPEC, Raw

__all__ = [
    "assert_close",
    "assert_rows_equal",
    "held_out_rows",
    "in_process_run",
    "raw_rows",
    "read_jsonl",
    "strip_rejected",
    "to_json",
    "write_jsonl",
]

_RUN: Dict[str, dict] = {}


def raw_rows() -> List[Raw]:
    """120 usable rows (some x and c missing, filled by the spec) and one whose label is missing."""
    rows = []
    for i in range(120):
        x = None if i % 11 == 0 else float((i * 37) % 101) / 7.0
        c = None if i % 13 == 0 else ["red", "green", "blue", "green"][i % 4]
        rows.append(Raw(f"id{i:03d}", x, c, i % 2))
    rows.append(Raw("bad1", None, "red", None))  # label missing: rejected
    return rows


def to_json(row) -> str:
    return json.dumps(row._asdict(), sort_keys=True)


def write_jsonl(pcoll, path: str, label: str):
    """Writes a PCollection of Rows to ``path`` (one file), one JSON object per line."""
    return (
        pcoll
        | f"{label}Json" >> beam.Map(to_json)
        | f"{label}Write" >> beam.io.WriteToText(path, num_shards=1, shard_name_template="")
    )


def read_jsonl(path: str) -> List[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _by_id(rows: List[dict]) -> Dict[str, dict]:
    return {r["id"]: r for r in rows}


def assert_rows_equal(actual: List[dict], expected: List[dict]) -> None:
    """Same ids, same fields, equal values (floats within 1e-5)."""
    a, e = _by_id(actual), _by_id(expected)
    assert sorted(a) == sorted(e)
    for key in e:
        assert set(a[key]) == set(e[key]), key
        for field, value in e[key].items():
            if isinstance(value, float):
                assert a[key][field] == pytest.approx(value, rel=1e-5, abs=1e-6), (key, field)
            else:
                assert a[key][field] == value, (key, field)


def assert_close(got, want, where: str) -> None:
    """Equal JSON values, floats within 1e-5 (combiners may sum in another order)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want), where
        for k in want:
            assert_close(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            assert_close(g, w, f"{where}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-5, abs=1e-6), where
    else:
        assert got == want, where


def strip_rejected(rows: List[dict]) -> List[tuple]:
    """Rejected rows without their batch source and row number (runner-specific)."""
    return sorted((r["column"], r["value"], r["reason"]) for r in rows)


def in_process_run(tmp_path_factory) -> dict:
    """The stages run in process on the DirectRunner, once per test process:
    {"dir": the analyze output, "output": transformed rows, "rejected": rejected rows}."""
    if "run" not in _RUN:
        from featurebridge.transforms.xlang import AnalyzeAndTransformRows

        tmp = tmp_path_factory.mktemp("in_process")
        analyzed = str(tmp / "analyzed")
        with beam.Pipeline(options=PipelineOptions(runner="DirectRunner")) as p:
            result = p | beam.Create(raw_rows()).with_output_types(Raw) | AnalyzeAndTransformRows(SPEC, analyzed)
            write_jsonl(result["output"], str(tmp / "output.jsonl"), "Out")
            write_jsonl(result["rejected"], str(tmp / "rejected.jsonl"), "Rej")
        _RUN["run"] = {
            "dir": analyzed,
            "output": read_jsonl(str(tmp / "output.jsonl")),
            "rejected": read_jsonl(str(tmp / "rejected.jsonl")),
        }
    return _RUN["run"]


def held_out_rows(job, spec):
    """The demo's held-out CSV as (beam.Rows with the spec's raw columns, their Row type)."""
    from apache_beam.typehints.row_type import RowTypeConstraint

    parse = {"float": float, "int": lambda v: int(float(v)), "string": str}
    held_out = sorted(glob.glob(os.path.join(job.data, "*.csv")))[-1]
    rows = []
    with open(held_out, encoding="utf-8", newline="") as f:
        for record in csv.DictReader(f):
            values = {}
            for c in spec.columns:
                text = record.get(c.name)
                values[c.name] = None if text is None or text.strip() == "" else parse[c.type](text)
            rows.append(beam.Row(**values))
    python_types = {"float": float, "int": int, "string": str}
    row_type = RowTypeConstraint.from_fields([(c.name, Optional[python_types[c.type]]) for c in spec.columns])
    return rows, row_type
