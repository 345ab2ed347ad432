"""TFRecord files of tf.train.Example to records of raw cells.

A TFRecord is a sequence of frames (length, its checksum, the record, its
checksum: len(record) + 16 bytes). A damaged or truncated frame makes the rest
of the file unreadable, so it is an InputError naming the file, the frame's
byte offset in the (uncompressed) stream and how many records came before it,
never a quiet loss of the records after it. A record that is not a
tf.train.Example, holds several values, or a bytes value that is not UTF-8 is
a rejected row.
"""

from __future__ import annotations

import re
from typing import Iterator, Sequence, Tuple

from apache_beam.io.filesystems import FileSystems

from featurebridge.transforms.errors import InputError
from featurebridge.transforms.file_bytes import NOT_UTF8, not_utf8_reason, open_input
from featurebridge.transforms.validation import RejectedRow

__all__ = ["tfrecord_records"]

_FRAME_OVERHEAD = 16  # 8-byte length, 4-byte length CRC, 4-byte data CRC
_UTF8_ADVICE = "TFRecord text features are UTF-8: fix the value upstream, or write it as UTF-8"


def _damaged(path: str, offset: int, count: int, detail: str) -> InputError:
    stream = "uncompressed stream" if path.endswith(".gz") else "file"
    hint = " Is it a TFRecord file at all? Check --format." if count == 0 else ""
    return InputError(
        f"{path}: damaged TFRecord at byte {offset} of the {stream} ({detail}), after {count} record(s) "
        f"read: the rest of the file cannot be read, so its rows would be neither used nor counted. "
        f"Re-create the file, or leave it out of the input.{hint}"
    )


def _detail(message: str) -> str:
    """TF's DataLossError message without its op decorations."""
    if "truncated record" in message:
        return "the file ends inside a record: truncated"
    if "corrupted record" in message:
        return "a record's length or checksum does not match: corrupted"
    message = re.sub(r"\{\{[^}]*\}\}|\[Op:[^\]]*\].*$", "", message).strip()
    return message or "unreadable record"


def _check_gzip(path: str) -> None:
    """Reads a .gz file to its end: raises the gzip layer's InputError, if any."""
    with open_input(path) as f:
        while f.read(1 << 24):
            pass


def _file_size(path: str):
    try:
        return FileSystems.match([path])[0].metadata_list[0].size_in_bytes
    except Exception:  # Beam raises different types per filesystem; the check is extra.
        return None


def tfrecord_records(path: str, columns: Sequence[str]) -> Iterator[Tuple[int, object]]:
    """Yields (1-based record number, {column: text or None} | RejectedRow).

    A feature absent from a record is a missing value (None). Bytes values
    are decoded as UTF-8 (strictly); numbers become their repr.

    Raises:
      InputError: a damaged or truncated frame, or a damaged gzip stream.
    """
    import tensorflow as tf  # Imported here: the other formats do not need TF.

    compressed = path.endswith(".gz")
    try:
        iterator = iter(tf.data.TFRecordDataset(path, compression_type="GZIP" if compressed else ""))
    except tf.errors.OpError as e:
        raise InputError(f"{path}: cannot be opened as TFRecord: {e.message}. Check the path and --format.") from None
    number = offset = 0
    while True:
        try:
            raw = next(iterator).numpy()
        except StopIteration:
            break
        except tf.errors.DataLossError as e:
            if compressed:
                _check_gzip(path)
            raise _damaged(path, offset, number, _detail(e.message)) from None
        except tf.errors.OpError as e:
            raise InputError(f"{path}: cannot be read as TFRecord: {_detail(e.message)}. Check the file.") from None
        number += 1
        offset += len(raw) + _FRAME_OVERHEAD
        yield number, _example_record(path, number, raw, columns)
    size = None if compressed else _file_size(path)
    if size is not None and size > offset:
        # TF stops quietly when fewer than 12 bytes of a frame are left.
        raise _damaged(path, offset, number, f"{size - offset} byte(s) after the last whole record: truncated")


def _example_record(path: str, number: int, raw: bytes, columns: Sequence[str]) -> object:
    import tensorflow as tf

    try:
        example = tf.train.Example.FromString(raw)
    except Exception:  # protobuf raises DecodeError; keep the row, say why.
        return RejectedRow(path, number, None, None, "record is not a tf.train.Example", "not a tf.Example")
    record: dict = {}
    for c in columns:
        feature = example.features.feature.get(c)
        kind = feature.WhichOneof("kind") if feature is not None else None
        values = list(getattr(feature, kind).value) if kind else []
        if len(values) > 1:
            return RejectedRow(path, number, c, str(values[:5])[:200], f"expected one value, got {len(values)}", "several values")
        if not values:
            record[c] = None
            continue
        v = values[0]
        if not isinstance(v, bytes):
            record[c] = repr(v)
            continue
        try:
            record[c] = v.decode("utf-8")
        except UnicodeDecodeError as e:
            shown = v.decode("utf-8", errors="backslashreplace")[:200]
            return RejectedRow(path, number, c, shown, not_utf8_reason(v, e, _UTF8_ADVICE), NOT_UTF8)
    return record
