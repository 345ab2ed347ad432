"""The expansion service's log lines: one record per line, whatever a caller sent.

`SafeFormatter` escapes control characters (newlines included) in every
message and caps its length, so a caller's namespace or name cannot forge
log lines or fill the disk; a traceback (for bugs, never sent to callers)
still prints as usual below its message. `setup_logging` installs it.
"""

from __future__ import annotations

import logging
import re

__all__ = ["MAX_LOG_MESSAGE_CHARS", "SafeFormatter", "setup_logging"]

MAX_LOG_MESSAGE_CHARS = 2000
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def _escape(match: "re.Match[str]") -> str:
    return match.group(0).encode("unicode_escape").decode("ascii")


class SafeFormatter(logging.Formatter):
    """A Formatter whose messages are one line of at most MAX_LOG_MESSAGE_CHARS."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        message = _CONTROL.sub(_escape, record.message)
        if len(message) > MAX_LOG_MESSAGE_CHARS:
            message = f"{message[:MAX_LOG_MESSAGE_CHARS]}... ({len(message)} chars)"
        record.message = message
        return super().formatMessage(record)


def setup_logging(level: int = logging.INFO) -> None:
    """Logs to stderr through `SafeFormatter` (replacing any handlers)."""
    handler = logging.StreamHandler()
    handler.setFormatter(SafeFormatter(_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Beam logs a line per string type hint it meets at INFO: dozens per Expand.
    logging.getLogger("apache_beam.typehints.native_type_compatibility").setLevel(max(level, logging.WARNING))
