"""One class per transform type (issue 14): the registry.

`OPS` maps a spec transform type to its `Op` class; `op_for` binds a spec
transform to its column; `TRANSFORM_TYPES` is the option schema the spec
parser reads (allowed column types, {option: (types, default)}). Adding a
transform type means one `Op` subclass here and one oracle test case
(tests/test_one_pass_oracle.py). Fills (`fill_for`) and the label
(`LabelOp`) follow the same shape.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Type

from featurebridge.transforms.ops.base import Op, RejectRule, VocabularyInfo
from featurebridge.transforms.ops.categorical import Hash, Vocabulary, as_text
from featurebridge.transforms.ops.fills import Fill, fill_for, fill_vocabulary_name
from featurebridge.transforms.ops.label import LabelOp, label_vocabulary_name
from featurebridge.transforms.ops.numeric import (
    Bucketize,
    Clip,
    Identity,
    Log1p,
    MinMax,
    Scale01,
    ZScore,
    bucketize_epsilon,
)
from featurebridge.transforms.ops.text import BagOfWords, NGrams, TfIdf
from featurebridge.transforms.ops.timestamp import TIMESTAMP_OPS

__all__ = [
    "OPS",
    "TRANSFORM_TYPES",
    "Fill",
    "LabelOp",
    "Op",
    "RejectRule",
    "VocabularyInfo",
    "as_text",
    "bucketize_epsilon",
    "fill_for",
    "fill_vocabulary_name",
    "label_vocabulary_name",
    "op_for",
    "ops_of",
    "reject_rules",
]

OPS: Mapping[str, Type[Op]] = {
    cls.TYPE: cls
    for cls in (ZScore, Scale01, MinMax, Bucketize, Vocabulary, Hash, Log1p, Clip, Identity, NGrams, BagOfWords,
                TfIdf, *TIMESTAMP_OPS)
}

# transform type -> (allowed column types, {option: (python types, default)})
TRANSFORM_TYPES: Mapping[str, tuple] = {name: (cls.COLUMN_TYPES, dict(cls.OPTIONS)) for name, cls in OPS.items()}


def op_for(transform, column) -> Op:
    """The op of spec `transform` on `column`."""
    return OPS[transform.type](transform, column)


def ops_of(spec) -> Dict[str, list]:
    """{column name: [its ops, in spec order]} for every column of `spec`."""
    return {c.name: [op_for(t, c) for t in c.transforms] for c in spec.columns}


def reject_rules(column) -> List[RejectRule]:
    """The rules of `column`'s ops that reject a row (log1p's domain, ...)."""
    rules = (op_for(t, column).reject_rule() for t in column.transforms)
    return [rule for rule in rules if rule is not None]
