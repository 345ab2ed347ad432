"""Reading spec text (YAML or JSON, which is YAML) without amplification.

`load_yaml` first walks the parser's events (libyaml's C parser: fast, and it
builds nothing): anchors and aliases are refused outright (an alias bomb
repeats a few bytes into gigabytes), as are tags other than YAML's plain
ones (str, int, float, bool, null, seq, map), nesting deeper than the
``depth`` limit, more than ``nodes`` values, and numbers of more than 100
characters (YAML's base-60 integers would turn a long one into slow
arithmetic). Only then is the text loaded, by the safe C loader. Errors say
where in the text (line and column) and what is wrong, never the text itself.
"""

from __future__ import annotations

from typing import Any, Union

import yaml

from featurebridge.transforms.errors import SpecError, excerpt
from featurebridge.transforms.spec_limits import SpecLimits, depth_error, nodes_error

__all__ = ["load_yaml"]

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_PLAIN_TAGS = {None} | {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "seq", "map")}
_NUMBER_TAGS = {"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}
_NUMBER_CHARS = 100
_RESOLVER = yaml.resolver.Resolver()
_HINT = "Check indentation and quoting."


def _where(event) -> str:
    mark = event.start_mark
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "the spec"


def _check_events(text: Union[str, bytes], source: str, limits: SpecLimits) -> None:
    depth = nodes = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise SpecError(
                f"{source}: {_where(event)}: anchors and aliases are not allowed "
                "in a spec; write the values out (no &name or *name)."
            )
        if isinstance(event, (yaml.CollectionStartEvent, yaml.ScalarEvent)):
            nodes += 1
            if nodes > limits.nodes:
                raise nodes_error(source, limits)
            tag = event.tag
            if tag not in _PLAIN_TAGS:
                raise SpecError(
                    f"{source}: {_where(event)}: the tag {excerpt(tag, 40)} is not allowed in a spec; "
                    "write plain values (strings, numbers, true/false, null, lists and mappings)."
                )
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > limits.depth:
                    raise depth_error(source, depth, limits)
            elif len(event.value) > _NUMBER_CHARS and (
                tag in _NUMBER_TAGS
                or event.implicit[0] and _RESOLVER.resolve(yaml.ScalarNode, event.value, (True, False)) in _NUMBER_TAGS
            ):
                raise SpecError(
                    f"{source}: {_where(event)}: a number of {len(event.value)} characters; "
                    f"numbers in a spec have at most {_NUMBER_CHARS}."
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _yaml_problem(error: yaml.YAMLError) -> str:
    """Where and what, from a YAML error, without the quoted text of the line."""
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        problem = error.problem or error.context or "invalid YAML"
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        return f"{where}{problem[:200]}"
    if isinstance(error, yaml.reader.ReaderError):
        return f"position {error.position}: {excerpt(error.reason, 100)} (character #x{error.character:04x})" \
            if isinstance(error.character, int) else f"position {error.position}: {excerpt(error.reason, 100)}"
    return type(error).__name__


def load_yaml(text: Union[str, bytes], source: str, limits: SpecLimits) -> Any:
    """Parses spec text (YAML or JSON) into plain data, within `limits`
    (``depth``, ``nodes``; the caller checks ``spec_bytes`` first).

    Empty text gives None (the spec parser then says a spec is a mapping).

    Raises:
      SpecError: the text is not YAML/JSON, uses anchors, aliases or tags,
        or is too deep or too large; the message gives the line and column.
    """
    try:
        _check_events(text, source, limits)
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader
    except SpecError:
        raise
    except yaml.YAMLError as e:
        raise SpecError(f"{source}: not valid YAML or JSON ({_yaml_problem(e)}). {_HINT}") from None
    except (ValueError, OverflowError, TypeError, RecursionError) as e:
        # A value YAML resolves but Python cannot build (a date like 2024-13-45).
        raise SpecError(
            f"{source}: not valid YAML or JSON (a value cannot be read: {excerpt(str(e)[:200], 120)}). {_HINT}"
        ) from None
