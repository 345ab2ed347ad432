"""The ``input:`` block of a feature spec: how the input files are written.

`InputFormat` holds the CSV dialect (delimiter, quote, header or column
names), the text encoding, the default null markers and whether values lose
their leading spaces. The readers apply it to files; the TF graph applies the
parts that concern values (null markers, leading spaces) to served rows too.
Plain data: validated by featurebridge.transforms.spec_parse.
"""

from __future__ import annotations

import dataclasses

from featurebridge.transforms.spec_tables import DEFAULT_NULL_MARKERS

__all__ = ["InputFormat"]


@dataclasses.dataclass(frozen=True)
class InputFormat:
    """How the input files are written (the CSV dialect applies to CSV only).

    Attributes:
      delimiter: the CSV field separator (one character).
      quote: the CSV quote character (one character).
      header: whether the first CSV line names the columns.
      column_names: the CSV columns in order, when `header` is false.
      encoding: the text encoding of CSV and JSON lines files.
      null_markers: the default null markers of every column.
      skip_initial_space: drop the spaces that start a string or timestamp
        value (pandas' ``skipinitialspace``, for files written ``a, b, c``).
        The serving graph drops them too.
    """

    delimiter: str = ","
    quote: str = '"'
    header: bool = True
    column_names: tuple[str, ...] = ()
    encoding: str = "utf-8"
    null_markers: tuple[str, ...] = DEFAULT_NULL_MARKERS
    skip_initial_space: bool = False

    def to_dict(self) -> dict:
        """The fields that differ from the defaults."""
        default = InputFormat()
        out = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value != getattr(default, field.name):
                out[field.name] = list(value) if isinstance(value, tuple) else value
        return out

