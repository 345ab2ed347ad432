"""Values never change silently (issue 13): ints are exact or rejected, one
rule per type whether or not the chunk holds another bad cell."""

import decimal
import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurebridge.transforms import validation
from featurebridge.transforms.io import read_file
from featurebridge.transforms.spec import FeatureSpec

SPEC = FeatureSpec.from_text(
    """
columns:
  - {name: n, type: int, missing: {constant: 0}, transforms: [zscore]}
  - {name: x, type: float, missing: mean, transforms: [zscore]}
  - {name: b, type: bool, missing: {constant: false}}
"""
)
INT_SPEC = FeatureSpec.from_text("columns:\n  - {name: n, type: int, missing: {constant: 0}, transforms: [zscore]}\n")
FLOAT_SPEC = FeatureSpec.from_text("columns:\n  - {name: x, type: float, missing: mean, transforms: [zscore]}\n")

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
OUT_OF_RANGE = "is outside int64's range [-9223372036854775808, 9223372036854775807]"
# A cell that is bad in any numeric column: its chunk takes the slow path.
BAD = "oops"


def _read(path, spec):
    """(values per used row as {column: list}, rejected rows, stats); checks
    that the stats reconcile."""
    rows, rejected, stats = [], [], None
    for kind, value in read_file(str(path), spec):
        if kind == "batch":
            rows += value.to_pylist()
        elif kind == "rejected":
            rejected.append(value)
        else:
            stats = value
    assert stats["read"] == stats["used"] + stats["rejected"]
    assert stats["used"] == len(rows) and stats["rejected"] == len(rejected)
    return rows, rejected, stats


def _read_csv(tmp_path, column, cells, spec):
    path = tmp_path / f"{column}.csv"
    path.write_text(column + "\n" + "".join(c + "\n" for c in cells), encoding="utf-8")
    return _read(path, spec)


def _both_paths(tmp_path, column, cell, spec):
    """[(rows, rejected)] for `cell` alone in its chunk (the fast path) and
    beside a bad cell (the slow path); the bad row's rejection is dropped."""
    out = []
    for cells in ([cell], [cell, BAD]):
        rows, rejected, _ = _read_csv(tmp_path, column, cells, spec)
        if len(cells) == 2:
            assert [r.value for r in rejected if r.row == 2] == [BAD]
            rejected = [r for r in rejected if r.row != 2]
        out.append((rows, rejected))
    return out


@pytest.mark.parametrize(
    "cell, expected",
    [
        ("9007199254740993", 2**53 + 1),  # a float round trip makes it ...992
        ("-9007199254740993", -(2**53) - 1),
        ("9223372036854775807", INT64_MAX),
        ("-9223372036854775808", INT64_MIN),
        ("9223372036854775807.000", INT64_MAX),
        ("3.0", 3),  # pandas writes int columns with gaps so
        ("42.", 42),
        ("+42", 42),
        ("-0", 0),
        ("007", 7),
        ("0000000000000000000000000042", 42),
        ("-0000000000000000000009223372036854775808.0", INT64_MIN),
        ("  12  ", 12),
    ],
)
def test_int_text_is_exact_on_both_paths(tmp_path, cell, expected):
    for rows, rejected in _both_paths(tmp_path, "n", cell, INT_SPEC):
        assert rejected == []
        assert rows == [{"n": [expected]}]


@pytest.mark.parametrize(
    "cell",
    [
        "9223372036854775808",
        "-9223372036854775809",
        "99999999999999999999",
        "18446744073709551616.0",
        "1" + "0" * 5000,  # beyond Python's int() digit limit: no int() needed
    ],
)
def test_int_text_outside_int64_is_rejected_not_clamped(tmp_path, cell):
    for rows, rejected in _both_paths(tmp_path, "n", cell, INT_SPEC):
        assert rows == []
        (r,) = rejected
        assert (r.row, r.column, r.value, r.code) == (1, "n", cell[:200], "out of int64 range")
        assert OUT_OF_RANGE in r.reason and "store the column as a string" in r.reason
        assert r.reason.startswith(cell[:20])


@pytest.mark.parametrize(
    "cell",
    ["0x10", "0X10", "1e3", "1E+3", "1_000", "3.5", "3.01", "1.0e0", "\u0663", "\uff11", "inf", "NAN", "--1", "+-1",
     "+", "-", ".0", "0b1", "1 000", "12abc"],
)
def test_malformed_int_text_is_rejected_on_both_paths(tmp_path, cell):
    for rows, rejected in _both_paths(tmp_path, "n", cell, INT_SPEC):
        assert rows == []
        (r,) = rejected
        assert (r.column, r.value, r.reason, r.code) == ("n", cell, validation._NOT_AN_INT[0], "not an int")


def test_int_column_mixing_every_kind_of_cell(tmp_path):
    cells = ["1", "9007199254740993", "0x10", "\"\"", "99999999999999999999", "-9223372036854775808", "3.0", "NA"]
    rows, rejected, stats = _read_csv(tmp_path, "n", cells, INT_SPEC)
    assert rows == [{"n": [1]}, {"n": [2**53 + 1]}, {"n": []}, {"n": [INT64_MIN]}, {"n": [3]}, {"n": []}]
    assert [(r.row, r.code) for r in rejected] == [(3, "not an int"), (5, "out of int64 range")]
    assert stats["rejected_by"] == {"n: not an int": 1, "n: out of int64 range": 1}


# Arrow's string -> float64 cast is the one rule; these probe its edges.
FLOAT_CELLS = [
    "1.5", "-2", "+5", ".5", "1.", "1e3", "1E+3", "2.5e-3", "00012", "-0",
    "inf", "-inf", "Infinity", "INF", "nan", "NAN", "+nan", "nan(1)",
    "0x10", "0X1p3", "1_000", "1e", "e5", ".", "1d", "\u0663", "\uff11", "12abc", "1e400", "-1e-400",
    "9007199254740993",
]


def _outcome(rows, rejected):
    """One row's fate: ("value", v) or ("missing",) or ("rejected", reason, code)."""
    if rejected:
        (r,) = rejected
        return ("rejected", r.reason, r.code)
    ((row,),) = [list(r.values()) for r in rows]
    return ("value", row[0]) if row else ("missing",)


@pytest.mark.parametrize("cell", FLOAT_CELLS)
def test_float_text_same_outcome_on_both_paths(tmp_path, cell):
    fast, slow = (_outcome(*o) for o in _both_paths(tmp_path, "x", cell, FLOAT_SPEC))
    assert fast == slow
    try:
        arrow = pa.array([cell]).cast(pa.float64())[0].as_py()
    except pa.ArrowInvalid:
        assert fast == ("rejected", "not a valid float", "not a float")
    else:  # Arrow's value, then the float32 checks: inf rejected, NaN missing
        if math.isinf(arrow):
            assert fast[0] == "rejected" and fast[2] == "infinite"
        elif math.isnan(arrow):
            assert fast == ("missing",)
        else:
            assert fast == ("value", pytest.approx(arrow, rel=1e-7))


def test_float_text_decisions_pinned(tmp_path):
    # A few outcomes written out, so a change of Arrow's parser shows here.
    cells = ["1e3", "0x10", "1_000", "inf", "nan", ".5"]
    rows, rejected, _ = _read_csv(tmp_path, "x", cells, FLOAT_SPEC)
    assert rows == [{"x": [1000.0]}, {"x": []}, {"x": [0.5]}]
    assert [(r.row, r.code) for r in rejected] == [(2, "not a float"), (3, "not a float"), (4, "infinite")]


def test_float_slow_path_finds_every_bad_cell(tmp_path):
    cells = [str(i / 4) if i % 7 else f"bad{i}" for i in range(1, 300)]
    rows, rejected, _ = _read_csv(tmp_path, "x", cells, FLOAT_SPEC)
    assert [r.row for r in rejected] == [i for i in range(1, 300) if i % 7 == 0]
    assert [r["x"][0] for r in rows] == [i / 4 for i in range(1, 300) if i % 7]


def test_jsonl_numbers_keep_their_exact_value(tmp_path):
    path = tmp_path / "d.jsonl"
    lines = [
        '{"n": 9007199254740993}',
        '{"n": 99999999999999999999}',
        '{"n": -9223372036854775808}',
        '{"n": 3.0}',
        '{"n": -9223372036854775809}',
        '{"n": 2.5}',
    ]
    path.write_text("\n".join(lines) + "\n")
    rows, rejected, _ = _read(path, INT_SPEC)
    assert rows == [{"n": [2**53 + 1]}, {"n": [INT64_MIN]}, {"n": [3]}]
    assert [(r.row, r.value, r.code) for r in rejected] == [
        (2, "99999999999999999999", "out of int64 range"),
        (5, "-9223372036854775809", "out of int64 range"),
        (6, "2.5", "not an int"),
    ]


def test_parquet_native_numbers_into_int_and_bool_columns(tmp_path):
    path = tmp_path / "d.parquet"
    table = pa.table(
        {
            "n": pa.array([1, 2**63, 2**64 - 1, None, INT64_MAX, 7, 8], pa.uint64()),
            "x": pa.array([2**53 + 1, 1, 2, 3, 4, 5, 6], pa.int64()),  # int64 into a float column
            "b": pa.array([1, 0, 1, None, 1, 2**63, 2], pa.uint64()),
        }
    )
    pq.write_table(table, path)
    rows, rejected, stats = _read(path, SPEC)
    assert rows == [
        {"n": [1], "x": [float(2**53)], "b": [1]},
        {"n": [], "x": [3.0], "b": []},
        {"n": [INT64_MAX], "x": [4.0], "b": [1]},
    ]
    by_row = {r.row: r for r in rejected}
    assert sorted(by_row) == [2, 3, 6, 7]
    assert (by_row[2].column, by_row[2].value, by_row[2].code) == ("n", str(2**63), "out of int64 range")
    assert OUT_OF_RANGE in by_row[2].reason
    assert (by_row[3].value, by_row[3].code) == (str(2**64 - 1), "out of int64 range")
    assert (by_row[6].column, by_row[6].code) == ("b", "not a bool")
    assert (by_row[7].column, by_row[7].code) == ("b", "not a bool")
    assert stats["rejected_by"] == {"n: out of int64 range": 2, "b: not a bool": 2}


def test_parquet_floats_and_decimals_into_an_int_column(tmp_path):
    floats = [1e19, 2.5, -(2.0**63), 3.0, None, 2.0**63, float("inf"), 9007199254740992.0]
    decimals = [decimal.Decimal(v) if v is not None else None for v in
                ["12345678901234567890", "2.5", "-9223372036854775808", "3.00", None, "9223372036854775808", "1", "42"]]
    for values, arrow_type in ((floats, pa.float64()), (decimals, pa.decimal128(24, 2))):
        path = tmp_path / "d.parquet"
        pq.write_table(pa.table({"n": pa.array(values, arrow_type)}), path)
        rows, rejected, _ = _read(path, INT_SPEC)
        tail = [{"n": [2**53]}] if arrow_type == pa.float64() else [{"n": [1]}, {"n": [42]}]
        assert rows == [{"n": [INT64_MIN]}, {"n": [3]}, {"n": []}] + tail
        codes = {r.row: r.code for r in rejected}
        expected = {1: "out of int64 range", 2: "not an int", 6: "out of int64 range"}
        if arrow_type == pa.float64():
            expected[7] = "not an int"  # inf
        assert codes == expected, arrow_type


def test_table_to_batch_native_python_ints():
    # The cross-language path: rows.py builds native arrays, or text when
    # pyarrow cannot hold the values natively.
    cases = [
        (pa.array([1, 2**53 + 1, INT64_MIN, INT64_MAX, None], pa.int64()), [1, 2**53 + 1, INT64_MIN, INT64_MAX], []),
        (pa.array([2**63, 5], pa.uint64()), [5], [(1, str(2**63))]),
        (pa.array([str(2**63), "5", str(-(2**63) - 1), str(2**53 + 1)], pa.string()), [5, 2**53 + 1],
         [(1, str(2**63)), (3, str(-(2**63) - 1))]),
    ]
    for array, used, bad in cases:
        batch, rejected = validation.table_to_batch(pa.table({"n": array}), INT_SPEC)
        assert [v for row in batch.column("n").to_pylist() for v in row] == used
        assert [(r.row, r.value) for r in rejected] == bad
        assert all(r.code == "out of int64 range" for r in rejected)
        assert batch.num_rows + len(rejected) == len(array)


def test_rows_column_array_with_an_int_beyond_int64():
    from featurebridge.transforms import rows

    array = rows._column_array([1, 2**63, None])
    batch, rejected = validation.table_to_batch(pa.table({"n": array}), INT_SPEC)
    assert batch.column("n").to_pylist() == [[1], []]
    assert [(r.row, r.code) for r in rejected] == [(2, "out of int64 range")]


def test_jsonl_bool_and_float_unchanged(tmp_path):
    # Nothing else changes: bool spellings, NaN as missing, float32 range.
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"n": 1, "x": 1.5, "b": True},
        {"n": 2, "x": "nan", "b": "yes"},
        {"n": 3, "x": 1e39, "b": "0"},
    ]) + "\n")
    rows, rejected, _ = _read(path, SPEC)
    assert rows == [{"n": [1], "x": [1.5], "b": [1]}, {"n": [2], "x": [], "b": [1]}]
    assert [(r.row, r.code) for r in rejected] == [(3, "beyond float32")]
