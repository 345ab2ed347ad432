"""Bad files (issue 13): every input row is in the output or rejected with its
reason; a file that cannot be read as a whole is an InputError naming the
file (and the column) and saying what to do, on the launcher where it can be
seen there, and never another error type."""

import gzip
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurebridge.transforms import csv_blocks
from featurebridge.transforms.io import InputError, ReadRawData, read_file
from featurebridge.transforms.spec import FeatureSpec

SPEC = FeatureSpec.from_text(
    """
columns:
  - {name: x, type: float, missing: mean, transforms: [zscore]}
  - {name: n, type: int, missing: {constant: 0}, transforms: [{type: bucketize, num_buckets: 2}]}
  - {name: s, type: string, missing: reject, transforms: [vocabulary]}
"""
)


# pyarrow cannot hand a row that is not UTF-8 to the invalid row handler: it
# reports the decode error as "Exception ignored" and fails the read, which
# the reader then redoes with the bytes marked (csv_blocks). Expected here.
PYARROW_IGNORED_ROW = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def _collect(path, spec=SPEC, **kwargs):
    """(used rows as {column: values} with __row__, rejected rows, stats)."""
    batches, rejected, stats = [], [], None
    for kind, value in read_file(str(path), spec, include_position=True, **kwargs):
        if kind == "batch":
            batches.append(value)
        elif kind == "rejected":
            rejected.append(value)
        else:
            stats = value
    table = pa.Table.from_batches(batches).to_pydict() if batches else {}
    return table, rejected, stats


def _fails_everywhere(path, pattern, spec=SPEC):
    """The launcher check and the reader both raise InputError matching `pattern`."""
    with pytest.raises(InputError, match=pattern):
        ReadRawData(str(path), spec)
    with pytest.raises(InputError, match=pattern):
        _collect(path, spec)


# ---------------------------------------------------------------------------
# 1. Duplicate header names


def test_a_duplicated_column_the_spec_reads_is_ambiguous(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("x,n,s,n\n1,2,a,3\n")
    _fails_everywhere(
        path,
        re.escape(f"{path}: column name(s) ['n'] appear more than once in the file's header (its columns: ['x', 'n', 's', 'n'])")
        + r".*Rename the copies in the file so that each name is unique, and point the spec column's `source:` at the one to read",
    )
    parquet = tmp_path / "dup.parquet"
    table = pa.Table.from_arrays([pa.array([1.0]), pa.array([2]), pa.array(["a"]), pa.array([3])], names=["x", "n", "s", "n"])
    pq.write_table(table, parquet)
    _fails_everywhere(parquet, re.escape(f"{parquet}: column name(s) ['n'] appear more than once"))


def test_duplicates_among_columns_the_spec_does_not_read_are_allowed(tmp_path):
    path = tmp_path / "extra.csv"
    path.write_text("x,extra,n,s,extra\n1,a,2,a,b\n")
    ReadRawData(str(path), SPEC)
    table, rejected, stats = _collect(path)
    assert rejected == [] and table["n"] == [[2]] and stats["used"] == 1


# ---------------------------------------------------------------------------
# 2. Text that is not UTF-8


@PYARROW_IGNORED_ROW
def test_csv_cells_that_are_not_utf8_reject_their_rows(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(b"x,n,s\n1,2,a\xff\n3,4,b\n5\xe9,6,caf\xe9\n7,8,ok \xe2\x82\xac\n9\xe9\n")
    ReadRawData(str(path), SPEC)  # the header is fine: the launcher lets the file through
    table, rejected, stats = _collect(path)
    assert table["__row__"] == [[2], [4]] and table["s"] == [[b"b"], ["ok €".encode()]]
    first, second, third = sorted(rejected, key=lambda r: r.row)
    assert (first.row, first.column, first.value, first.code) == (1, "s", "a\\xff", "not UTF-8")
    assert first.reason == (
        "not valid UTF-8 text (byte 0xff at offset 1); the spec's input.encoding is 'utf-8': "
        "set it to the file's encoding or fix the cell"
    )
    assert (second.row, second.column, second.value) == (3, "x", "5\\xe9")
    assert [(c, v, k) for c, v, _, k in second.more] == [("s", "caf\\xe9", "not UTF-8")]
    # pyarrow cannot hand this row to the invalid row handler as text; it is still reported.
    assert (third.row, third.column, third.value, third.code) == (5, None, "9\\xe9", "wrong number of fields")
    assert stats["read"] == 5 and stats["used"] == 2 and stats["rejected"] == 3
    assert stats["rejected_by"] == {"(row): wrong number of fields": 1, "s: not UTF-8": 2, "x: not UTF-8": 1}


def test_a_header_that_is_not_utf8_names_the_column(tmp_path):
    path = tmp_path / "header.csv"
    path.write_bytes(b"x,n\xe9,s\n1,2,a\n")
    _fails_everywhere(path, re.escape(
        f"{path}: the header row is not valid UTF-8 text (column 'n\\\\xe9', byte 0xe9 at offset 1); "
        "the spec's input.encoding is 'utf-8': set it to the file's encoding, or fix the header."
    ))


@PYARROW_IGNORED_ROW
def test_a_bad_cell_after_the_first_block_keeps_every_row_once(tmp_path):
    # Over one 4 MiB block of good rows first: the rows already handed out
    # are not handed out again when the file is read again with its bad bytes marked.
    path = tmp_path / "late.csv"
    count = 200_000
    lines = [f"{i},{i},value-{i:09d}".encode() for i in range(count)]
    bad = {150_000, 150_001, 199_999}
    for i in bad:
        lines[i] = f"{i},{i},v".encode() + b"\x80"
    lines[180_000] = b"1,\xe9"  # wrong number of fields, and not UTF-8
    lines[170_000] = b"1,2"  # wrong number of fields
    path.write_bytes(b"x,n,s\n" + b"\n".join(lines) + b"\n")
    assert path.stat().st_size > 5 << 20
    table, rejected, stats = _collect(path)
    expected_used = [i + 1 for i in range(count) if i not in bad and i not in (170_000, 180_000)]
    assert [r[0] for r in table["__row__"]] == expected_used
    assert [r[0] for r in table["n"]] == [i - 1 for i in expected_used]
    assert sorted((r.row, r.code) for r in rejected) == [
        (150_001, "not UTF-8"), (150_002, "not UTF-8"), (170_001, "wrong number of fields"),
        (180_001, "wrong number of fields"), (200_000, "not UTF-8"),
    ]
    assert [r.value for r in rejected if r.row == 180_001] == ["1,\\xe9"]
    assert stats["read"] == count and stats["used"] + stats["rejected"] == count


def test_jsonl_lines_that_are_not_utf8_are_rejected_not_changed(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(
        b'{"x": 1, "n": 1, "s": "a\xff"}\n'
        b'{"x": 2, "n": 2, "s": "b"}\n'
        b'{"x": 3, "n": 3, "s": "c\\ud800"}\n'
    )
    table, rejected, stats = _collect(path)
    assert table["s"] == [[b"b"]] and stats["read"] == 3 and stats["rejected"] == 2
    first, second = rejected
    assert (first.row, first.column, first.code) == (1, None, "not UTF-8")
    assert first.value == '{"x": 1, "n": 1, "s": "a\\xff"}'
    assert first.reason.startswith("not valid UTF-8 text (byte 0xff at offset 24); the spec's input.encoding is 'utf-8'")
    assert (second.row, second.column, second.code) == (3, "s", "not UTF-8")
    assert "lone UTF-16 surrogate" in second.reason


# ---------------------------------------------------------------------------
# 3. Parquet column types


@pytest.mark.parametrize(
    "array, spec_type, kind",
    [
        (pa.array([[1.0, 2.0]]), "float", "nested"),
        (pa.array([{"a": 1}]), "int", "nested"),
        (pa.array([[("k", 1)]], pa.map_(pa.string(), pa.int64())), "string", "nested"),
        (pa.array([1_700_000_000_000_000], pa.timestamp("us")), "int", "other"),
        (pa.array([b"1.5"], pa.binary()), "float", "other"),
        (pa.array([1.5]), "timestamp", "other"),
    ],
    ids=["list-float", "struct-int", "map-string", "timestamp-int", "binary-float", "float-timestamp"],
)
def test_a_parquet_column_of_an_unreadable_type_names_file_column_and_types(tmp_path, array, spec_type, kind):
    spec = FeatureSpec.from_text(
        "columns:\n"
        f"  - {{name: c, type: {spec_type}, transforms: [{'year' if spec_type == 'timestamp' else 'identity'}]}}\n"
        "  - {name: ok, type: float, transforms: [zscore]}\n"
    )
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"ok": [1.0], "c": array}), path)
    file_type = pq.read_schema(path).field("c").type
    message = re.escape(f"{path}: column 'c' has Arrow type {file_type} in the Parquet file, which a {spec_type} spec column cannot read")
    message += r" \(it is nested: .*\)\. Flatten it upstream" if kind == "nested" else r" \(a \w+ column reads Parquet columns of kind .*\)\. Write the column"
    _fails_everywhere(path, message + r".*point the spec column's `source:` at another column", spec)


def test_parquet_types_the_spec_can_read(tmp_path):
    spec = FeatureSpec.from_text(
        "columns:\n"
        "  - {name: cat, type: string, transforms: [vocabulary]}\n"
        "  - {name: flag, type: bool, transforms: [identity]}\n"
        "  - {name: n, type: int, missing: {constant: 0}, transforms: [identity]}\n"
        "  - {name: day, type: string, missing: {constant: '?'}, transforms: [vocabulary]}\n"
        "  - {name: raw, type: string, missing: {constant: '?'}, transforms: [vocabulary]}\n"
    )
    path = tmp_path / "ok.parquet"
    table = pa.table({
        "cat": pa.array(["a", "b", "a", "c"]).dictionary_encode(),  # a pandas categorical
        "flag": pa.array([1.0, 0.0, 1.0, 1.0]),  # pandas' int column with missing values
        "n": pa.array([1.0, None, 3.0, 4.0]),
        "day": pa.array([0, 1, None, 3], pa.date32()),
        "raw": pa.array([b"x", b"y", b"\xff", None], pa.binary()),
    })
    pq.write_table(table, path)
    ReadRawData(str(path), spec)
    used, rejected, stats = _collect(path, spec)
    assert used["__row__"] == [[1], [2], [4]]
    assert used["cat"] == [[b"a"], [b"b"], [b"c"]] and used["flag"] == [[1], [0], [1]]
    assert used["day"] == [[b"1970-01-01"], [b"1970-01-02"], [b"1970-01-04"]]
    assert [(r.row, r.column, r.value, r.code) for r in rejected] == [(3, "raw", "\\xff", "not UTF-8")]
    assert rejected[0].reason.startswith("not valid UTF-8 text (byte 0xff at offset 0); Parquet text must be UTF-8")
    assert stats["read"] == 4 and stats["used"] == 3


def test_each_bad_cell_of_a_long_parquet_text_column_is_found(tmp_path):
    values = [f"v{i}".encode() for i in range(5000)]
    bad = [0, 1234, 1235, 4999]
    for i in bad:
        values[i] = b"\xc3("  # a lead byte without its continuation
    path = tmp_path / "long.parquet"
    pq.write_table(pa.table({"x": np.arange(5000.0), "n": np.arange(5000), "s": pa.array(values, pa.binary())}), path)
    used, rejected, stats = _collect(path)
    assert [r.row for r in rejected] == [i + 1 for i in bad] and {r.value for r in rejected} == {"\\xc3("}
    assert [r[0] for r in used["__row__"]] == [i + 1 for i in range(5000) if i not in bad]
    assert stats["used"] == 4996


# ---------------------------------------------------------------------------
# 4. gzip


def test_gzip_files_are_read_and_bad_ones_name_the_file(tmp_path):
    text = "x,n,s\n" + "".join(f"{i},{i},v{i}\n" for i in range(20_000))
    good = tmp_path / "good.csv.gz"
    good.write_bytes(gzip.compress(text.encode()))
    ReadRawData(str(good), SPEC)
    assert _collect(good)[2]["used"] == 20_000
    jsonl = tmp_path / "good.jsonl.gz"
    jsonl.write_bytes(gzip.compress(b'{"x": 1, "n": 2, "s": "a"}\n'))
    assert _collect(jsonl)[0]["s"] == [[b"a"]]

    plain = tmp_path / "plain.csv.gz"
    plain.write_text(text)
    not_gzip = r"not a valid gzip file \(Not a gzipped file .*\): re-create it, or drop \.gz from the name if it is not compressed\."
    _fails_everywhere(plain, re.escape(str(plain)) + ": " + not_gzip)
    plain_jsonl = tmp_path / "plain.jsonl.gz"
    plain_jsonl.write_text('{"x": 1}\n')
    with pytest.raises(InputError, match=re.escape(str(plain_jsonl)) + ": " + not_gzip):
        _collect(plain_jsonl)

    data = np.random.default_rng(0).integers(0, 10**9, 100_000).astype(str)
    compressed = gzip.compress(("x,n,s\n" + "".join(f"{v},1,a\n" for v in data)).encode())
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(compressed[: len(compressed) // 2])
    truncated = re.escape(f"{cut}: truncated gzip stream after {len(compressed) // 2} bytes of the file (")
    with pytest.raises(InputError, match=truncated + r"\d+ bytes uncompressed\): the file ends inside the compressed data\. Re-create it"):
        _collect(cut)
    cut_jsonl = tmp_path / "cut.jsonl.gz"
    cut_jsonl.write_bytes(gzip.compress(b'{"x": 1, "n": 2, "s": "a"}\n' * 1000)[:-12])
    with pytest.raises(InputError, match=re.escape(f"{cut_jsonl}: truncated gzip stream")):
        _collect(cut_jsonl)


# ---------------------------------------------------------------------------
# 5. Rows longer than a read block


def test_a_10_mb_cell_is_read_with_every_row_and_its_number(tmp_path):
    path = tmp_path / "big.csv"
    before = [f"{i},{i},v{i}" for i in range(300_000)]  # over 4 MiB: a block is handed out first
    before[10] = "1,2"  # a bad row before the cell...
    after = [f"{i},{i},w{i}" for i in range(300_001, 300_100)]
    after[5] = "1,2,3,4"  # ...and one after it
    cell = "z" * (10 << 20)
    path.write_text("x,n,s\n" + "\n".join(before) + "\n\n" + f"7,300000,{cell}\n" + "\n".join(after) + "\n")
    used, rejected, stats = _collect(path)
    rows = [r[0] for r in used["__row__"]]
    expected = [i + 1 for i in range(300_100) if i not in (10, 300_006)]
    assert rows == expected
    assert [v[0] for v in used["n"]] == [i - 1 for i in expected]
    assert used["s"][rows.index(300_001)] == [cell.encode()]
    assert [(r.row, r.code) for r in rejected] == [(11, "wrong number of fields"), (300_007, "wrong number of fields")]
    assert stats["read"] == 300_100 and stats["used"] == 300_098


def test_a_long_first_row_and_the_row_length_cap(tmp_path, monkeypatch):
    path = tmp_path / "first.csv"
    path.write_text("x,n,s\n1,1," + "z" * (3 << 20) + "\n2,2,b\n")
    ReadRawData(str(path), SPEC)  # the header is read past a 1 MiB block
    assert _collect(path)[0]["__row__"] == [[1], [2]]
    monkeypatch.setattr(csv_blocks, "MAX_BLOCK", 1 << 20)
    _fails_everywhere(
        path,
        re.escape(f"{path}: a row is longer than 1 MiB, the longest row featurebridge reads. Shorten that row's cells"),
    )


def test_row_numbers_without_a_header_row(tmp_path):
    spec = FeatureSpec.from_text(
        "input: {header: false, column_names: [x, n, s]}\n"
        "columns:\n"
        "  - {name: x, type: float, transforms: [zscore]}\n"
        "  - {name: s, type: string, transforms: [vocabulary]}\n"
    )
    path = tmp_path / "noheader.csv"
    path.write_text("1,2,a\n1,2\n3,4,b\n")
    used, rejected, _ = _collect(path, spec)
    assert used["__row__"] == [[1], [3]] and [r.row for r in rejected] == [2]


# ---------------------------------------------------------------------------
# 6. TFRecord


def _example(i, text=None):
    import tensorflow as tf

    value = text if text is not None else f"v{i}".encode()
    return tf.train.Example(features=tf.train.Features(feature={
        "x": tf.train.Feature(float_list=tf.train.FloatList(value=[float(i)])),
        "n": tf.train.Feature(int64_list=tf.train.Int64List(value=[i])),
        "s": tf.train.Feature(bytes_list=tf.train.BytesList(value=[value])),
    })).SerializeToString()


def _write_tfrecord(path, records):
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path)) as w:
        for r in records:
            w.write(r)


def test_a_damaged_or_truncated_tfrecord_fails_with_the_offset(tmp_path):
    records = [_example(i) for i in range(22)]
    path = tmp_path / "d.tfrecord"
    _write_tfrecord(path, records)
    data = bytearray(path.read_bytes())
    frames = np.cumsum([0] + [len(r) + 16 for r in records])
    flipped = len(data) // 2
    damaged = int(np.searchsorted(frames, flipped, side="right")) - 1  # the record holding that byte
    data[flipped] ^= 0xFF
    path.write_bytes(bytes(data))
    what_to_do = "the rest of the file cannot be read, so its rows would be neither used nor counted. Re-create the file, or leave it out of the input."
    with pytest.raises(InputError, match=re.escape(
        f"{path}: damaged TFRecord at byte {frames[damaged]} of the file (a record's length or checksum does not match: corrupted), "
        f"after {damaged} record(s) read: {what_to_do}"
    )):
        _collect(path)

    five = tmp_path / "five.tfrecord"
    _write_tfrecord(five, records[:5])
    whole = five.read_bytes()
    for cut in (5, 40, len(whole) - int(frames[4]) - 3):  # in the data, in the header, 3 bytes of a header left
        truncated = tmp_path / f"cut{cut}.tfrecord"
        truncated.write_bytes(whole[:-cut])
        with pytest.raises(InputError, match=re.escape(f"{truncated}: damaged TFRecord at byte {frames[4]} of the file (") + r".*truncated\), after 4 record\(s\) read"):
            _collect(truncated)

    not_gzip = tmp_path / "plain.tfrecord.gz"
    not_gzip.write_bytes(whole)
    with pytest.raises(InputError, match=re.escape(f"{not_gzip}: not a valid gzip file (Not a gzipped file")):
        _collect(not_gzip)


def test_tfrecord_bytes_that_are_not_utf8_reject_their_row(tmp_path):
    import tensorflow as tf

    path = tmp_path / "t.tfrecord.gz"
    with tf.io.TFRecordWriter(str(path), options="GZIP") as w:
        for i, text in enumerate([b"a", b"b\xff", b"c"]):
            w.write(_example(i, text))
    used, rejected, stats = _collect(path)
    assert used["s"] == [[b"a"], [b"c"]] and stats["read"] == 3
    (bad,) = rejected
    assert (bad.row, bad.column, bad.value, bad.code) == (2, "s", "b\\xff", "not UTF-8")
    assert bad.reason.startswith("not valid UTF-8 text (byte 0xff at offset 1); TFRecord text features are UTF-8")


# ---------------------------------------------------------------------------
# Whatever the damage, only InputError, naming the file.


def _garbage_files():
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, 5000, dtype=np.uint8).tobytes()
    csv_gz = bytearray(gzip.compress(("x,n,s\n" + "1,2,a\n" * 50_000).encode()))
    csv_gz[len(csv_gz) // 2 :] = noise[: len(csv_gz) - len(csv_gz) // 2]
    return {
        "noise.parquet": noise,
        "noise.csv": b"x,n,s\n" + noise,
        "noise.csv.gz": bytes(csv_gz),
        "noise.jsonl": noise,
        "noise.jsonl.gz": gzip.compress(b'{"x": 1}\n')[:10] + noise,
        "empty.csv.gz": b"",
        "parquet.csv": _parquet_bytes(),
        "noise.tfrecord": noise,
    }


def _parquet_bytes():
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"x": [1.0]}), sink)
    return sink.getvalue().to_pybytes()


@PYARROW_IGNORED_ROW
def test_damaged_files_raise_only_input_errors_that_name_them(tmp_path):
    for name, data in _garbage_files().items():
        path = tmp_path / name
        path.write_bytes(data)
        for check in (lambda: ReadRawData(str(path), SPEC), lambda: _collect(path)):
            try:
                check()
            except InputError as e:
                assert str(path) in str(e), (name, str(e))
            # any other exception fails the test with its traceback
