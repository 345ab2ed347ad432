"""Bounds on a feature spec, so that no spec, however written, makes the
parser or the jobs built from it amplify: a few bytes of spec never become
gigabytes of memory or hours of work.

`SpecLimits` holds the bounds; `active_limits()` is the process-wide default
the parser applies (the CLI's ``--spec_limit NAME=N`` and the expansion
service's own option change it once at start, with `parse_limit_overrides` and
`set_active_limits`). `UNLIMITED` is for featurebridge's own canonical spec
(a manifest, a worker's copy), which was checked when it was first parsed.
The ``check_*`` functions are the refusals the parser calls: each raises a
SpecError naming where, the field, the value (an excerpt), the bound and how
to raise it.

The values, chosen from what TFT and TF can hold and what a model built from
the spec can train:

- spec_bytes 1 MiB: a spec of 2,000 columns with options is ~200 KB; YAML
  parsing is checked before it starts, a file's size before it is read.
- depth 12, nodes 100,000: a spec nests 6 levels (spec, columns, column,
  transforms, transform, ngram_range); 100,000 YAML nodes hold the largest
  spec the other bounds allow. Anchors and aliases are refused outright.
- columns 2,000, transforms 4,000 in all, 64 per column, crosses 200 of at
  most 8 columns: every transform is a TF sub-graph and a model input; the
  transform graph and the Keras model grow with each one.
- num_buckets 10,000: bucketize keeps num_buckets - 1 boundaries and TFT's
  quantiles sketch grows with them on every worker; beyond that, quantiles
  of real data are repeated values.
- top_k, vocab_size 1,000,000: a vocabulary file and its lookup table stay
  in the memory of every worker and every serving process.
- hash_buckets 1,000,000 (hash transforms and crosses): the model embeds
  hash_buckets rows of up to 32 floats (128 MB at the bound).
- num_oov_buckets 100,000: each is a row of the embedding too.
- ngram 8 (largest n of ngram_range): tf.strings.ngrams makes one output per
  width per token, so n words give ~n^2 / 2 n-grams of ~n^2 text.
- frequency_threshold, and every integer anywhere: int64, which is what TF
  holds; floats (min_max, clip, constants) must be finite.
- name_chars 128 (column, transform and cross names: graph node names and
  signature keys), source_chars 1,024 (file header names), string_chars
  4,096 (string constants, ``positive``), separator_chars 16, null_markers
  1,000 of null_marker_chars 256: each is compared with every cell of the
  input, in the readers and in the serving graph.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable, Mapping, Optional, Sequence

from featurebridge.transforms.errors import SpecError, UsageError, excerpt

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "SpecLimits",
    "UNLIMITED",
    "active_limits",
    "check_chars",
    "check_count",
    "check_float",
    "check_int",
    "check_strings",
    "check_structure",
    "check_text_size",
    "check_total",
    "check_transform_options",
    "depth_error",
    "excerpt_list",
    "nodes_error",
    "parse_limit_overrides",
    "set_active_limits",
]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_RAISE = "raise it with --spec_limit {name}=N"


@dataclasses.dataclass(frozen=True)
class SpecLimits:
    """The bounds a spec is checked against (see the module docstring for why
    each value). Every field is a positive integer; the names are those of
    ``--spec_limit NAME=N``."""

    spec_bytes: int = 1_048_576
    depth: int = 12
    nodes: int = 100_000
    columns: int = 2_000
    transforms: int = 4_000
    transforms_per_column: int = 64
    crosses: int = 200
    cross_columns: int = 8
    num_buckets: int = 10_000
    top_k: int = 1_000_000
    vocab_size: int = 1_000_000
    hash_buckets: int = 1_000_000
    num_oov_buckets: int = 100_000
    ngram: int = 8
    name_chars: int = 128
    source_chars: int = 1_024
    string_chars: int = 4_096
    separator_chars: int = 16
    null_marker_chars: int = 256
    null_markers: int = 1_000

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= INT64_MAX:
                raise UsageError(f"spec limit {field.name} must be a positive integer; got {excerpt(value)}.")

    @classmethod
    def names(cls) -> tuple:
        """The bounds' names, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def with_overrides(self, overrides: Iterable[str]) -> "SpecLimits":
        """These limits with ``NAME=N`` overrides applied (see `parse_limit_overrides`)."""
        return parse_limit_overrides(overrides, base=self)


# Featurebridge's own canonical spec (checked when it was first parsed) is re-read with these.
UNLIMITED = SpecLimits(**{name: INT64_MAX for name in SpecLimits.names()})
_active = SpecLimits()


def active_limits() -> SpecLimits:
    """The process-wide limits the parser applies when a caller passes none."""
    return _active


def set_active_limits(limits: SpecLimits) -> SpecLimits:
    """Makes `limits` the process-wide default; returns the previous one."""
    global _active  # pylint: disable=global-statement
    if not isinstance(limits, SpecLimits):
        raise TypeError(f"set_active_limits takes a SpecLimits; got {type(limits).__name__}.")
    previous, _active = _active, limits
    return previous


def parse_limit_overrides(overrides: Iterable[str], base: Optional[SpecLimits] = None) -> SpecLimits:
    """``["num_buckets=20000", ...]`` -> `base` (default: the defaults) with those bounds.

    An empty list gives `base` unchanged. A later override of the same name wins.

    Raises:
      UsageError: an override is not NAME=N, names no bound (the message lists
        the valid names) or N is not a positive integer.
    """
    base = base if base is not None else SpecLimits()
    names = SpecLimits.names()
    changes = {}
    for text in overrides or ():
        name, sep, raw = str(text).partition("=")
        name = name.strip()
        if not sep:
            raise UsageError(f"--spec_limit takes NAME=N (e.g. num_buckets=20000); got {excerpt(text)}.")
        if name not in names:
            raise UsageError(
                f"unknown spec limit {excerpt(name)}; the spec limits are {', '.join(names)} "
                "(see README, 'Spec limits')."
            )
        try:
            value = int(raw.strip())
        except ValueError:
            value = None
        if value is None or not 1 <= value <= INT64_MAX:
            raise UsageError(f"spec limit {name} needs a positive integer; got {excerpt(raw.strip())}.")
        changes[name] = value
    return dataclasses.replace(base, **changes)


def _limit_error(where: str, field: str, what: str, limit_name: str, bound: int, unit: str = "") -> SpecError:
    hint = _RAISE.format(name=limit_name)
    return SpecError(
        f"{where}: field {field!r} {what}; the most allowed is {bound}{unit} (spec limit {limit_name}; {hint})."
    )


def excerpt_list(items: Iterable[Any], most: int = 10) -> str:
    """``['a', 'b']``: the items' excerpts, the first `most` then "and N more"."""
    items = list(items)
    shown = ", ".join(excerpt(item, 40) for item in items[:most])
    more = f", and {len(items) - most} more" if len(items) > most else ""
    return f"[{shown}{more}]"


def check_count(items: Sequence, limit_name: str, where: str, field: str, limits: SpecLimits) -> None:
    """Refuses a list longer than the bound `limit_name`."""
    bound = getattr(limits, limit_name)
    if len(items) > bound:
        raise _limit_error(where, field, f"has {len(items)} entries", limit_name, bound)


def check_total(count: int, limit_name: str, where: str, limits: SpecLimits) -> None:
    """Refuses a running total (transforms across all columns) above the bound `limit_name`."""
    bound = getattr(limits, limit_name)
    if count > bound:
        raise SpecError(
            f"{where}: the spec has {count} {limit_name} in all so far; the most allowed is {bound} "
            f"(spec limit {limit_name}; {_RAISE.format(name=limit_name)})."
        )


def check_chars(text: Any, limit_name: str, where: str, field: str, limits: SpecLimits) -> None:
    """Refuses a string longer than the bound `limit_name` (others pass: their type is checked elsewhere)."""
    bound = getattr(limits, limit_name)
    if isinstance(text, str) and len(text) > bound:
        raise _limit_error(where, field, f"is {excerpt(text)}", limit_name, bound, " characters")


def check_strings(items: Sequence, count_limit: str, chars_limit: str, where: str, field: str, limits: SpecLimits) -> None:
    """Refuses a list of strings with more than `count_limit` entries or an entry over `chars_limit`."""
    check_count(items, count_limit, where, field, limits)
    for item in items:
        check_chars(item, chars_limit, where, field, limits)


def check_int(value: Any, limit_name: str, where: str, field: str, limits: SpecLimits) -> None:
    """Refuses an integer above the bound `limit_name` (None and non-integers pass)."""
    bound = getattr(limits, limit_name)
    if isinstance(value, int) and not isinstance(value, bool) and value > bound:
        raise _limit_error(where, field, f"is {excerpt(value)}", limit_name, bound)


def check_float(value: Any, where: str, field: str) -> None:
    """Refuses a NaN or infinite float."""
    if isinstance(value, float) and not math.isfinite(value):
        raise SpecError(f"{where}: field {field!r} is {value}; it must be a finite number.")


# transform option -> the bound on it
_OPTION_LIMITS = {name: name for name in ("num_buckets", "top_k", "vocab_size", "hash_buckets", "num_oov_buckets")}
_FLOAT_OPTIONS = ("output_min", "output_max", "min", "max")


def check_transform_options(options: Mapping[str, Any], where: str, limits: SpecLimits) -> None:
    """Bounds a transform's (type-checked) options: sizes, ngram width, separator, finite floats."""
    for option, limit_name in _OPTION_LIMITS.items():
        check_int(options.get(option), limit_name, where, option, limits)
    for option in _FLOAT_OPTIONS:
        check_float(options.get(option), where, option)
    check_chars(options.get("separator"), "separator_chars", where, "separator", limits)
    if options.get("ngram_range"):
        widest = options["ngram_range"][-1]
        if widest > limits.ngram:
            raise _limit_error(
                where, "ngram_range", f"is {excerpt(options['ngram_range'])} (n-grams of up to {excerpt(widest)} words)",
                "ngram", limits.ngram, " words",
            )


def check_text_size(size: int, source: str, limits: SpecLimits) -> None:
    """Refuses spec text (or a spec file) of more than ``spec_bytes`` bytes."""
    if size > limits.spec_bytes:
        raise SpecError(
            f"{source[:300]}: the spec is {size} bytes; the most allowed is {limits.spec_bytes} bytes "
            f"(spec limit spec_bytes; {_RAISE.format(name='spec_bytes')})."
        )


def depth_error(source: str, depth: int, limits: SpecLimits) -> SpecError:
    """The refusal of a spec nested deeper than ``depth``."""
    return SpecError(
        f"{source}: the spec nests {depth} levels deep; the most allowed is {limits.depth} "
        f"(spec limit depth; {_RAISE.format(name='depth')})."
    )


def nodes_error(source: str, limits: SpecLimits) -> SpecError:
    """The refusal of a spec of more than ``nodes`` values."""
    return SpecError(
        f"{source}: the spec has more than {limits.nodes} values (YAML nodes); the most allowed is "
        f"{limits.nodes} (spec limit nodes; {_RAISE.format(name='nodes')})."
    )


def check_structure(data: Any, source: str, limits: SpecLimits) -> None:
    """Walks parsed spec data once, without recursion: refuses nesting deeper
    than ``depth``, more than ``nodes`` values (keys count) and any integer
    outside int64, naming its path (``columns[0].transforms[1].num_buckets``).
    A structure that contains itself is refused as too deep."""
    todo = [(data, 1, "")]
    nodes = 0
    while todo:
        value, depth, path = todo.pop()
        nodes += 1
        kind = type(value)
        if kind is str or kind is float or kind is bool or value is None:
            continue
        if kind is dict or kind is list or isinstance(value, (Mapping, list, tuple)):
            if depth > limits.depth:
                raise depth_error(source, depth, limits)
            if nodes + len(todo) + 2 * len(value) > limits.nodes:
                raise nodes_error(source, limits)
            if isinstance(value, Mapping):
                for key, item in value.items():
                    label = key if isinstance(key, str) and len(key) <= 40 else excerpt(key, 40)
                    where = f"{path}.{label}" if path else str(label)
                    todo.append((key, depth + 1, where))
                    todo.append((item, depth + 1, where))
            else:
                todo.extend((item, depth + 1, f"{path}[{i}]") for i, item in enumerate(value))
        elif isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
            raise SpecError(
                f"{source}: {path or 'the spec'}: the integer {excerpt(value)} does not fit in 64 bits; "
                f"spec integers must be between {INT64_MIN} and {INT64_MAX}."
            )
