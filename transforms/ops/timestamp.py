"""Timestamp parts (year, month, day, day_of_week, day_of_year, hour, minute)
of an ISO 8601 column, as int features: no analyzer."""

from __future__ import annotations

from featurebridge.transforms.ops.base import Op
from featurebridge.transforms.spec_tables import TIMESTAMP_PARTS

__all__ = ["TIMESTAMP_OPS", "TimestampPart"]


class TimestampPart(Op):
    """One part of the wall-clock time as written (day_of_week: Monday = 0)."""

    COLUMN_TYPES = ("timestamp",)
    ROW_TYPE = int

    def graph(self, x, constants):
        import tensorflow as tf

        from featurebridge.transforms.graph_rules import timestamp_part

        return {self.output: tf.identity(timestamp_part(x, self.TYPE), name=self.output)}


TIMESTAMP_OPS = tuple(type(f"Timestamp_{part}", (TimestampPart,), {"TYPE": part}) for part in TIMESTAMP_PARTS)
