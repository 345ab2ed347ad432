"""The op seam (issue 14): one class per transform type.

An `Op` is a spec transform bound to its column. It owns everything the
rest of featurebridge needs to know about that transform type:

- its option schema (`OPTIONS`, `COLUMN_TYPES`) and the checks beyond types
  (`check_options`), read by the spec parser;
- the statistics its analyzer needs (`requests`), accumulated in one pass
  over Arrow RecordBatches by `featurebridge.transforms.one_pass`
  (vectorised, mergeable accumulators of `featurebridge.transforms.ops.stats`);
- its TF mapping, twice: from plain TFT analyzers (`tft_graph`, the oracle and
  the `--analyzer tft` path) and from the one pass's results baked in as
  constants (`graph`), both giving the same transform_fn up to float
  rounding and the quantile sketch's bound;
- its numeric results (`results`), its constants.json entry (`describe`), the
  Python type of its output fields in Beam Rows (`row_fields`), how the model
  should read its outputs (`model_hints`) and the rows it rejects
  (`reject_rule`).

TensorFlow is imported inside the graph methods only: parsing a spec (which
reads `OPTIONS`) must not pay TensorFlow's import.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from typing import Any, Callable, ClassVar, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

__all__ = ["Op", "RejectRule", "VocabularyInfo", "analyzer_name"]

# ---------------------------------------------------------------- named analyzers
# Every TFT analyzer an op creates is named (`analyzer_name`), so its asset
# and vocabulary names are stable. TFT still logs "Analyzer (X) node's cache
# key varies on repeated tracing" (absl, WARNING) for each analyzer whose
# input depends on another analyzer's output (a column filled with its mean,
# then z-scored; tf-idf's document frequencies over its vocabulary): when it
# traces again, the first analyzer's output is a constant where it was a
# placeholder, so the input's path hash differs. TFT's own text says the
# warning "is safe to ignore if you either specify `name` for all analyzers or
# if the order in which they are invoked is deterministic": both hold for
# ours. `_NamedAnalyzerNote` drops it for analyzers registered here (in the
# process that traces: the launcher or a worker); a user's own analyzers still warn.
_NAMED: set = set()
_NAMED_LOCK = threading.Lock()
_CACHE_KEY_WARNING = "node's cache key varies on repeated tracing"
_UNIQUIFIED = re.compile(r"_\d+$")


class _NamedAnalyzerNote(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if _CACHE_KEY_WARNING not in str(record.msg) or not record.args:
            return True
        scope = str(record.args[0]).split("/", 1)[0]
        return scope not in _NAMED and _UNIQUIFIED.sub("", scope) not in _NAMED


_NOTE = _NamedAnalyzerNote()


def analyzer_name(name: str) -> str:
    """Registers ``name`` as the ``name=`` of one of our TFT analyzers and
    returns it (see the note above `_NamedAnalyzerNote`)."""
    with _NAMED_LOCK:
        _NAMED.add(name)
        absl_logger = logging.getLogger("absl")
        if _NOTE not in absl_logger.filters:
            absl_logger.addFilter(_NOTE)
    return name



@dataclasses.dataclass(frozen=True)
class RejectRule:
    """Rows an op cannot transform, rejected by the readers before analysis.

    Attributes:
      bad: present values (numpy) -> boolean mask of the values to reject.
      reason: the rejected row's reason, for people.
      code: the short code counted in the manifest (`rows.rejected_by`).
    """

    bad: Callable[[np.ndarray], np.ndarray]
    reason: str
    code: str


# What constants.json and the model know of a vocabulary of the analyze output:
# name -> {"vocabulary_size": int, "vocabulary_file": path, "top": [entries]},
# or None when there is no such vocabulary. Supplied by the caller, which has
# the TFTransformOutput.
VocabularyInfo = Callable[[str], Optional[Dict[str, Any]]]


class Op:
    """One transform of one column. Subclasses set the class attributes and
    override what their type needs; the defaults fit an op without analyzer.

    Attributes:
      transform: the spec's `Transform` (type, output, options).
      column: the spec's `Column` it applies to.
      output: the transformed feature's name.
      options: the transform's options, defaults filled in.
    """

    TYPE: ClassVar[str] = ""
    COLUMN_TYPES: ClassVar[Tuple[str, ...]] = ()
    # option -> (python types, default); REQUIRED (spec_tables) means it must be given.
    OPTIONS: ClassVar[Mapping[str, tuple]] = {}
    # The Python type of the output's Row field (None: the column's stored type).
    ROW_TYPE: ClassVar[Any] = float

    def __init__(self, transform, column):
        self.transform = transform
        self.column = column
        self.output = transform.output
        self.options = transform.options

    # --- the spec -----------------------------------------------------------------

    @classmethod
    def check_options(cls, options: Dict[str, Any]) -> Optional[str]:
        """What is wrong with type-checked `options` (None: nothing). May
        normalise them in place."""
        return None

    def output_names(self) -> List[str]:
        """The transformed features this op produces."""
        return [self.output]

    def row_fields(self, stored_type: type) -> List[Tuple[str, Any]]:
        """(name, Python type) of each output field of a Beam Row."""
        return [(self.output, stored_type if self.ROW_TYPE is None else self.ROW_TYPE)]

    def reject_rule(self) -> Optional[RejectRule]:
        """Values this op cannot take (None: it takes every value)."""
        return None

    # --- analysis -----------------------------------------------------------------

    def requests(self) -> Sequence[object]:
        """The statistics of the (filled) column this op's analyzer needs, as
        `featurebridge.transforms.ops.stats` requests; () for no analyzer."""
        return ()

    def results(self, stats: Mapping[object, object]) -> Dict[str, Any]:
        """Its analyzer's results from the extracted `stats` (request ->
        value): numeric arrays keyed ``<output>/<stat>``, vocabularies keyed
        ``<output>/vocabulary`` as "count token" lines."""
        return {}

    # --- the graph ----------------------------------------------------------------

    def tft_graph(self, x) -> Dict[str, Any]:
        """Its outputs from the filled dense column `x`, with plain TFT analyzers."""
        return self.graph(x, {})

    def graph(self, x, constants: Mapping[str, Any]) -> Dict[str, Any]:
        """Its outputs from `x` with the analyzer `results` as tensors
        (`constants`, keyed as `results` keys them)."""
        raise NotImplementedError(self.TYPE)

    def tft_results(self, x) -> Dict[str, Any]:
        """Its numeric results as plain TFT analyzer tensors (keys as
        `results`), for the oracle path's constants.json; vocabularies left out."""
        return {}

    # --- what others read ---------------------------------------------------------

    def describe(self, numeric: Mapping[str, List[float]], vocabulary: VocabularyInfo) -> Dict[str, Any]:
        """Its constants.json entry (beside "transform" and "column")."""
        return dict(self.options)

    def model_hints(self, vocabulary: VocabularyInfo) -> Dict[str, Tuple[str, int, Optional[str]]]:
        """{output: (kind, size, weights feature)} the model can rely on:
        kind "categorical", "bag" or "bag_weights"; {} to let the schema decide."""
        return {}
