"""Length-prefixed frames between the expansion service and its construction
worker: each frame is a 4-byte big-endian length and that many bytes, over a
pipe of its own (never stdout, where libraries may print).

A message is a JSON header frame followed by one bytes frame (a serialized
protobuf, or empty).
"""

from __future__ import annotations

import json
import struct
from typing import BinaryIO, Optional, Tuple

__all__ = ["MAX_FRAME_BYTES", "FrameError", "read_message", "write_message"]

# The largest frame either side accepts: above the largest gRPC message the
# service sends (--max_message_bytes caps it far lower by default).
MAX_FRAME_BYTES = 1 << 30
_LENGTH = struct.Struct(">I")


class FrameError(RuntimeError):
    """The other side closed the pipe or sent a frame that is not ours."""


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    parts = []
    while n:
        chunk = stream.read(n)
        if not chunk:
            raise FrameError("the pipe was closed mid-message")
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def _read_frame(stream: BinaryIO) -> Optional[bytes]:
    head = stream.read(_LENGTH.size)
    if not head:
        return None
    if len(head) < _LENGTH.size:
        head += _read_exact(stream, _LENGTH.size - len(head))
    (length,) = _LENGTH.unpack(head)
    if length > MAX_FRAME_BYTES:
        raise FrameError(f"a frame of {length} bytes is over the {MAX_FRAME_BYTES}-byte limit")
    return _read_exact(stream, length)


def write_message(stream: BinaryIO, header: dict, body: bytes = b"") -> None:
    """Writes one message (a JSON header and a bytes body) and flushes."""
    encoded = json.dumps(header).encode("utf-8")
    stream.write(_LENGTH.pack(len(encoded)) + encoded + _LENGTH.pack(len(body)))
    stream.write(body)
    stream.flush()


def read_message(stream: BinaryIO) -> Optional[Tuple[dict, bytes]]:
    """The next message, or None when the other side closed the pipe cleanly.

    Raises:
      FrameError: the pipe closed mid-message, or a frame is malformed.
    """
    header = _read_frame(stream)
    if header is None:
        return None
    body = _read_frame(stream)
    if body is None:
        raise FrameError("the pipe was closed between a header and its body")
    try:
        return json.loads(header.decode("utf-8")), body
    except ValueError:
        raise FrameError("a message header is not JSON") from None
