"""Readers: every format to the same Arrow batches; bad rows rejected with reasons."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurebridge.transforms.io import InputError, ReadRawData, infer_format, match_files, read_file
from featurebridge.transforms.spec import FeatureSpec

SPEC = FeatureSpec.from_text(
    """
columns:
  - {name: x, type: float, missing: mean, transforms: [zscore]}
  - {name: n, type: int, missing: {constant: 0}, transforms: [{type: bucketize, num_buckets: 2}]}
  - {name: s, type: string, missing: reject, transforms: [vocabulary]}
"""
)

ROWS = [
    {"x": 1.5, "n": 2, "s": "a"},
    {"x": None, "n": 3, "s": "b"},
    {"x": 2.0, "n": None, "s": "a b"},
]


def _collect(path, spec=SPEC, **kwargs):
    batches, rejected, stats = [], [], None
    for kind, value in read_file(str(path), spec, **kwargs):
        if kind == "batch":
            batches.append(value)
        elif kind == "rejected":
            rejected.append(value)
        else:
            stats = value
    table = pa.Table.from_batches(batches) if batches else None
    return table, rejected, stats


def _write_all_formats(tmp_path):
    import tensorflow as tf

    csv = tmp_path / "d.csv"
    csv.write_text("x,n,s\n1.5,2,a\n,3,b\n2.0,,a b\n")
    pq.write_table(
        pa.table({"x": [1.5, None, 2.0], "n": pa.array([2, 3, None], pa.int64()), "s": ["a", "b", "a b"]}),
        tmp_path / "d.parquet",
    )
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    with tf.io.TFRecordWriter(str(tmp_path / "d.tfrecord")) as w:
        for r in ROWS:
            feats = {"s": tf.train.Feature(bytes_list=tf.train.BytesList(value=[r["s"].encode()]))}
            if r["x"] is not None:
                feats["x"] = tf.train.Feature(float_list=tf.train.FloatList(value=[r["x"]]))
            if r["n"] is not None:
                feats["n"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[r["n"]]))
            w.write(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())
    return [csv, tmp_path / "d.parquet", tmp_path / "d.jsonl", tmp_path / "d.tfrecord"]


def test_every_format_gives_the_same_batches(tmp_path):
    expected = {"x": [[1.5], [], [2.0]], "n": [[2], [3], []], "s": [[b"a"], [b"b"], [b"a b"]]}
    for path in _write_all_formats(tmp_path):
        table, rejected, stats = _collect(path, missing_markers=True)
        assert rejected == [], path
        assert table.to_pydict() == expected, path
        # "present": per column, the used rows that had a value (expected above: x 2, n 2, s 3).
        markers = stats.pop("missing_by_marker")
        assert stats == {"source": str(path), "read": 3, "used": 3, "rejected": 0, "present": {"x": 2, "n": 2, "s": 3}, "rejected_by": {}}
        # The missing cells by what made them missing: an empty CSV cell, else no value.
        assert markers == {c: {"<empty>" if path.suffix == ".csv" else "<null>": 1} for c in ("x", "n")}, path
        assert table.schema.field("x").type == pa.large_list(pa.float32())


def test_csv_bad_rows_are_rejected_with_file_row_column_reason(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("x,n,s\n1,1,a\nabc,1,a\n1,2.5,a\n1,1\ninf,1,a\n1,1,\nnan,4,c\n-1e39,5,d\n")
    table, rejected, stats = _collect(path)
    by_row = {r.row: r for r in rejected}
    assert by_row[2].column == "x" and by_row[2].value == "abc" and by_row[2].reason == "not a valid float"
    assert by_row[3].column == "n" and by_row[3].reason == "not a valid int (write it in decimal digits, e.g. -42 or 42.0)"
    assert by_row[4].column is None and "row has 2 fields, the header has 3" in by_row[4].reason
    assert by_row[5].reason.startswith("infinite value")
    assert by_row[6].column == "s" and "missing value and the spec says reject" in by_row[6].reason
    # Finite in float64 but infinite once the graph's float32 holds it.
    assert by_row[8].column == "x" and "beyond float32's range" in by_row[8].reason
    assert all(r.source == str(path) for r in rejected)
    # NaN counts as missing: filled later by the mean, never fed to a scaling.
    assert table.to_pydict()["x"] == [[1.0], []]
    assert stats["read"] == 8 and stats["used"] == 2 and stats["rejected"] == 6
    assert stats["read"] == stats["used"] + stats["rejected"]


@pytest.mark.parametrize(
    "kind, reject, reason",
    [
        ("binary", {3: "2", 5: "-1"}, "a binary label must be 0 or 1; got {}. Map it to 0/1 upstream"),
        ("multiclass", {5: "-1"}, "a multiclass label must be a class id 0..K-1; got {}."),
        ("regression", {}, ""),
    ],
)
def test_int_labels_that_are_no_class_id_are_rejected(tmp_path, kind, reject, reason):
    spec = FeatureSpec.from_text(f"label: {{column: y, kind: {kind}}}\ncolumns: [{{name: x, type: float, transforms: [zscore]}}, {{name: y, type: int}}]\n")
    path = tmp_path / "labels.csv"
    path.write_text("x,y\n1,0\n2,1\n3,2\n4,1\n5,-1\n")
    table, rejected, stats = _collect(path, spec)
    assert {r.row: r.value for r in rejected} == reject
    for r in rejected:
        assert r.column == "y" and r.reason.startswith(reason.format(r.value)), r.reason
    assert stats["read"] == 5 and stats["used"] == 5 - len(reject)


def test_row_numbers_stay_right_after_skipped_rows(tmp_path):
    path = tmp_path / "skips.csv"
    path.write_text("x,n,s\n1,1\n2,2,a\n3\nbad,3,b\n")
    _, rejected, _ = _collect(path)
    assert sorted((r.row, r.column) for r in rejected) == [(1, None), (3, None), (4, "x")]


def test_jsonl_and_tfrecord_row_problems(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"x": 1, "n": 1, "s": "a"}\nnot json\n[1]\n{"x": [1, 2], "n": 1, "s": "a"}\n')
    table, rejected, stats = _collect(path)
    assert [r.row for r in rejected] == [2, 3, 4]
    assert rejected[0].reason.startswith("not valid JSON")
    assert rejected[2].column == "x" and rejected[2].reason == "nested values are not supported"
    assert table.num_rows == 1 and stats["read"] == 4


def test_position_columns_identify_each_row(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("x,n,s\n1,1,a\n2,2,\n3,3,c\n")
    table, _, _ = _collect(path, include_position=True)
    assert table.column("__row__").to_pylist() == [[1], [3]]
    assert table.column("__source__").to_pylist() == [[str(path).encode()]] * 2


def test_missing_column_and_unknown_format_fail_clearly(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("x,s\n1,a\n")
    with pytest.raises(InputError, match=r"d.csv: column\(s\) \['n'\] required by the feature spec are not in the file"):
        _collect(path)
    with pytest.raises(InputError, match=r"Cannot tell the format of .*\.txt.*Pass --format"):
        infer_format("data.txt")
    with pytest.raises(InputError, match=r"No input files match .*nothing-\*\.csv"):
        match_files(str(tmp_path / "nothing-*.csv"))


def test_empty_file_yields_zero_stats(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("x,n,s\n")
    table, rejected, stats = _collect(path)
    assert table is None and rejected == []
    assert stats == {"source": str(path), "read": 0, "used": 0, "rejected": 0, "present": {"x": 0, "n": 0, "s": 0}, "rejected_by": {}}


def test_read_raw_data_validates_on_the_launcher(tmp_path):
    (tmp_path / "a.csv").write_text("x,n,s\n1,1,a\n")
    (tmp_path / "b.jsonl").write_text("{}\n")
    with pytest.raises(InputError, match=r"mix formats \['csv', 'jsonl'\]"):
        ReadRawData(str(tmp_path / "*"), SPEC)
    with pytest.raises(InputError, match=r"--format 'xml' is not supported"):
        ReadRawData(str(tmp_path / "a.csv"), SPEC, file_format="xml")
    reader = ReadRawData(f"{tmp_path / 'a.csv'},{tmp_path / 'a.csv'}", SPEC)
    assert reader.files == [str(tmp_path / "a.csv")]


def test_large_csv_is_split_into_batches(tmp_path):
    path = tmp_path / "big.csv"
    rng = np.random.default_rng(0)
    values = rng.normal(size=2500)
    path.write_text("x,n,s\n" + "".join(f"{v},{i},k{i % 7}\n" for i, v in enumerate(values)))
    batches = [v for k, v in read_file(str(path), SPEC, batch_size=1000) if k == "batch"]
    assert [b.num_rows for b in batches] == [1000, 1000, 500]
    got = np.concatenate([np.array(b.column("x").flatten()) for b in batches])
    np.testing.assert_allclose(got, values.astype(np.float32))


# ---------------------------------------------------------------------------
# Users' files as they are (issue 10): null markers, dialects, header names,
# bools, timestamps, globs, early header checks, every bad column of a row.

USERS_SPEC = """
input: {delimiter: ";", quote: "'", encoding: latin-1}
columns:
  - {name: width, source: "petal width (cm)", type: float, missing: mean, transforms: [zscore]}
  - {name: city, type: string, missing: {constant: "?"}, transforms: [vocabulary]}
  - {name: region, type: string, null_markers: [], missing: reject, transforms: [vocabulary]}
  - {name: ok, type: bool, missing: reject, transforms: [identity]}
  - {name: seen, type: timestamp, missing: reject, transforms: [year, hour]}
"""


def test_null_markers_dialect_header_names_bools_and_timestamps(tmp_path):
    spec = FeatureSpec.from_text(USERS_SPEC)
    path = tmp_path / "users.csv"
    text = (
        "petal width (cm);city;region;ok;seen\n"
        "1.5;'Zürich; CH';NA;True;2024-01-31\n"
        "\n"
        "NA;None;EU;false;2024-01-31 08:15\n"
        "N/A;null;AS;1;2024-02-29T23:59:59Z\n"
        "  \n"
        "nan;  ;NA;NO;2024-03-01 00:00:00.5\n"
    )
    path.write_bytes(text.encode("latin-1"))
    table, rejected, stats = _collect(path, spec)
    assert rejected == [] and stats["read"] == stats["used"] == 4
    assert table.column("width").to_pylist() == [[1.5], [], [], []]
    assert table.column("city").to_pylist() == [["Zürich; CH".encode()], [], [], []]
    assert table.column("region").to_pylist() == [[b"NA"], [b"EU"], [b"AS"], [b"NA"]]
    assert table.column("ok").to_pylist() == [[1], [0], [1], [0]]
    assert table.column("seen").to_pylist()[2] == [b"2024-02-29T23:59:59Z"]


def test_every_bad_column_of_a_row_is_listed_and_counted(tmp_path):
    spec = FeatureSpec.from_text(USERS_SPEC.replace("input: {delimiter: \";\", quote: \"'\", encoding: latin-1}\n", ""))
    path = tmp_path / "bad.csv"
    path.write_text(
        '"petal width (cm)",city,region,ok,seen\n'
        "1,a,,maybe,31/01/2024\n"
        "2,b,EU,yes,2024-13-01\n"
        "3,c,EU,y,2024-01-01\n"
    )
    _, rejected, stats = _collect(path, spec)
    assert [r.row for r in rejected] == [1, 2]
    first = json.loads(rejected[0].to_json())
    assert (first["column"], first["code"]) == ("region", "missing")
    assert [(m["column"], m["value"], m["code"]) for m in first["more"]] == [
        ("ok", "maybe", "not a bool"),
        ("seen", "31/01/2024", "not a timestamp"),
    ]
    assert "not an ISO 8601 date or date-time" in first["more"][1]["reason"]
    assert stats["rejected_by"] == {
        "ok: not a bool": 1, "region: missing": 1, "seen: not a timestamp": 2,
    }


def test_a_relative_glob_matches_files_in_the_current_directory(tmp_path, monkeypatch):
    (tmp_path / "name-1.csv").write_text("x,n,s\n1,2,a\n")
    (tmp_path / "name-2.csv").write_text("x,n,s\n1,2,a\n")
    monkeypatch.chdir(tmp_path)
    assert match_files("name-*.csv") == [str(tmp_path / "name-1.csv"), str(tmp_path / "name-2.csv")]


def test_a_spec_column_absent_from_the_header_fails_on_the_launcher_once(tmp_path):
    (tmp_path / "a.csv").write_text("x,n,S\n1,2,a\n")
    (tmp_path / "b.csv").write_text("x,n,S\n1,2,a\n")
    with pytest.raises(InputError) as e:
        ReadRawData(str(tmp_path / "*.csv"), SPEC)
    message = str(e.value)
    assert message.startswith(f"{tmp_path / 'a.csv'}: column(s) ['s'] required by the feature spec are not in the file (its columns: ['x', 'n', 'S']) (and 1 more file(s) like it")
    assert "a spec column reads the file column named by its 'source'" in message
    spaced = FeatureSpec.from_text("columns: [{name: petal_width, type: float, transforms: [zscore]}]")
    (tmp_path / "c.csv").write_text("petal width\n1\n")
    with pytest.raises(InputError, match=r"The file has 'petal width': add `source: \"petal width\"` to spec column 'petal_width'"):
        ReadRawData(str(tmp_path / "c.csv"), spaced)


def test_header_false_takes_the_spec_column_names(tmp_path):
    spec = FeatureSpec.from_text(
        "input: {header: false, column_names: [x, n, s]}\n"
        "columns:\n"
        "  - {name: x, type: float, missing: mean, transforms: [zscore]}\n"
        "  - {name: s, type: string, missing: reject, transforms: [vocabulary]}\n"
    )
    path = tmp_path / "noheader.csv"
    path.write_text("1.5,2,a\n2.5,3,b\n")
    table, rejected, stats = _collect(path, spec)
    assert rejected == [] and table.column("s").to_pylist() == [[b"a"], [b"b"]]
    assert stats["read"] == 2


def test_skip_initial_space_reads_comma_space_files(tmp_path):
    spec = FeatureSpec.from_text(
        "input: {skip_initial_space: true, null_markers: ['?']}\n"
        "columns:\n"
        "  - {name: n, type: int, missing: reject, transforms: [identity]}\n"
        "  - {name: w, type: string, missing: {constant: unknown}, transforms: [vocabulary]}\n"
        "  - {name: y, type: string}\n"
    )
    path = tmp_path / "adult_like.csv"
    path.write_text("n,w,y\n39, State-gov, <=50K\n50, ?, >50K \n")
    table, rejected, _ = _collect(path, spec)
    assert rejected == []
    assert table.column("w").to_pylist() == [[b"State-gov"], []]
    assert table.column("y").to_pylist() == [[b"<=50K"], [b">50K "]]  # trailing spaces are data


def test_io_still_exports_the_readers_and_validation_names():
    from featurebridge.transforms import io, readers, validation

    for name in io.__all__:
        assert getattr(io, name) is not None, name
    assert io.RejectedRow is validation.RejectedRow and io.table_to_batch is validation.table_to_batch
    assert io.count_present is validation.count_present and io.infer_format is readers.infer_format
