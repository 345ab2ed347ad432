"""The feature spec's vocabulary: the column types, missing-value policies,
label kinds a spec may name, and the spellings every stage
shares (null markers, bool words, the timestamp pattern).

These tables are the one definition the spec parser, the readers, the TF
graph and the tf.Example builder all read, so a value means the same thing
everywhere. Plain data: this module imports nothing.
"""

from __future__ import annotations

from typing import Mapping

__all__ = [
    "BOOL_SPELLINGS",
    "COLUMN_TYPES",
    "DEFAULT_NULL_MARKERS",
    "LABEL_KINDS",
    "MISSING_POLICIES",
    "NUMBER",
    "NUMERIC_TYPES",
    "REQUIRED",
    "SPLIT_FEATURE",
    "STORAGE_TYPES",
    "TIMESTAMP_PARTS",
    "TIMESTAMP_PATTERN",
]

COLUMN_TYPES = ("float", "int", "string", "bool", "timestamp")
# How each column type is held in Arrow batches, tf.Examples and the TF graph:
# a bool is an int 0/1 (tf.Example has no bool), a timestamp its ISO 8601 text.
STORAGE_TYPES: Mapping[str, str] = {
    "float": "float",
    "int": "int",
    "string": "string",
    "bool": "int",
    "timestamp": "string",
}
# What pandas.read_csv reads as missing by default (besides an empty cell).
DEFAULT_NULL_MARKERS = (
    "NA", "N/A", "n/a", "NaN", "nan", "-NaN", "-nan", "null", "NULL", "None",
    "<NA>", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "1.#IND", "1.#QNAN",
)
# ISO 8601 date or date-time, wall-clock time as written: 2024-03-01,
# 2024-03-01 14:05, 2024-03-01T14:05:09.123Z. The readers (pyarrow, RE2) and
# the graph (tf.strings.regex_full_match, RE2) use this same pattern.
TIMESTAMP_PATTERN = (
    r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
    r"([T ]([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,9})?)?Z?)?"
)
# A transformed feature every analyze output carries: the row's bucket (0-99)
# for the train/eval split (see preprocessing.split_bucket). Not a model input.
SPLIT_FEATURE = "__split_bucket__"
# How a bool cell may be written (compared lower-cased): the readers and the
# tf.Example builder both use this one table.
BOOL_SPELLINGS: Mapping[str, int] = {
    "true": 1, "t": 1, "yes": 1, "y": 1, "1": 1, "1.0": 1,
    "false": 0, "f": 0, "no": 0, "n": 0, "0": 0, "0.0": 0,
}
# Parts a timestamp column derives as int features (day_of_week: Monday = 0).
TIMESTAMP_PARTS = ("year", "month", "day", "day_of_week", "day_of_year", "hour", "minute")
LABEL_KINDS = ("binary", "multiclass", "regression")
MISSING_POLICIES = ("mean", "median", "most_frequent", "constant", "reject")

# The column types numeric transforms and mean/median fills apply to.
NUMERIC_TYPES = ("float", "int")
# Option schemas: a default of REQUIRED means the option must be given; NUMBER
# accepts an int or a float. Each transform type's schema lives with its op
# (featurebridge.transforms.ops, TRANSFORM_TYPES there).
REQUIRED = object()
NUMBER = (int, float)
