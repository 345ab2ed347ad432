"""Unknown flags: every command refuses flags no parser of it defines.

Beam drops a flag no PipelineOptions class defines with no more than a log
line, so a misspelt option (--analyser) would silently do nothing. Every
command checks its command line here first, before any work, and names the
closest known flag.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import re
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.options.pipeline_options import _BeamArgumentParser  # Beam's own option parser

from featurebridge.pipelines.runner_config import RUNNER_CONFIG_FLAG, RUNNER_ONLY_OPTIONS
from featurebridge.transforms.errors import UsageError

__all__ = ["GLOBAL_FLAGS", "LOG_LEVELS", "UnknownOptionError", "check_options", "split_global_flags", "unknown_options"]

# Flags every command takes, handled by the CLI before the command's own
# options (and never handed on to Beam): how many values each takes.
GLOBAL_FLAGS: Dict[str, int] = {"--quiet": 0, "--log_level": 1}
LOG_LEVELS = ("debug", "info", "warning", "error")

# How many values a flag takes: 0, 1, 2... or argparse's "?", "*", "+", "...".
_Arity = Union[int, str]
_Own = Union[str, type]


class UnknownOptionError(UsageError):
    """The command line has flags no parser of the command defines.

    Attributes:
      command: the featurebridge command ("analyze"...).
      unknown: [(flag as typed, closest known flag or None)].
    """

    def __init__(self, command: str, unknown: Sequence[Tuple[str, Optional[str]]], beam: bool = True):
        self.command = command
        self.unknown = list(unknown)
        lines = []
        for flag, suggestion in self.unknown:
            hint = f"; did you mean {suggestion}?" if suggestion else ""
            lines.append(f"featurebridge {command}: unknown option {flag}{hint}")
        also = "; any Beam pipeline option is accepted too" if beam else ""
        lines.append(f"See `featurebridge {command} --help` for its options{also}.")
        super().__init__("\n".join(lines))


class _FlagTable(_BeamArgumentParser):
    """Collects option strings and how many values each takes. Definitions are
    registered without their types, choices or defaults mattering, and a later
    definition of the same flag replaces an earlier one (classes share flags)."""

    def __init__(self):
        super().__init__(allow_abbrev=False, conflict_handler="resolve")

    def error(self, message):  # never parses; keep the base class from exiting
        raise UsageError(message)

    def add_options(self, source: _Own) -> None:
        if isinstance(source, str):
            flag = source if source.startswith("-") else f"--{source}"
            if flag not in self._option_string_actions:
                self.add_argument(flag, nargs="?")
        else:
            source._add_argparse_args(self)  # pylint: disable=protected-access

    def arities(self) -> Dict[str, _Arity]:
        table: Dict[str, _Arity] = {}
        for flag, action in self._option_string_actions.items():
            nargs = action.nargs
            table[flag] = 1 if nargs is None else nargs
        return table


def _beam_option_classes() -> List[type]:
    """Every registered PipelineOptions subclass, subclasses of subclasses too."""
    found: Dict[type, None] = {}
    todo = list(PipelineOptions.__subclasses__())
    while todo:
        cls = todo.pop(0)
        if cls not in found:
            found[cls] = None
            todo.extend(cls.__subclasses__())
    return list(found)


def _import_runner(argv: Sequence[str]) -> None:
    """Imports the module of the runner argv names (``--runner X``), as Beam would
    when it runs the job, so options that module defines (DaskOptions) are known."""
    name = None
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == "--runner" and i + 1 < len(argv):
            name = argv[i + 1]
        elif arg.startswith("--runner="):
            name = arg.split("=", 1)[1]
    if not name:
        return
    known = {path.rsplit(".", 1)[-1].lower(): path for path in StandardOptions.ALL_KNOWN_RUNNERS}
    path = known.get(name.lower(), known.get(name.lower() + "runner", name))
    if "." in path:
        try:
            importlib.import_module(path.rsplit(".", 1)[0])
        except Exception:  # pylint: disable=broad-except  # Beam reports a bad runner itself
            pass


def _flag_arities(own: Iterable[_Own] = (), beam: bool = True) -> Dict[str, _Arity]:
    table = _FlagTable()
    if beam:
        for cls in _beam_option_classes():
            table.add_options(cls)
    for source in own:
        table.add_options(source)
    arities = table.arities()
    arities.update(GLOBAL_FLAGS)
    if beam:
        arities.setdefault(RUNNER_CONFIG_FLAG, 1)
        for names in RUNNER_ONLY_OPTIONS.values():
            for name in names:
                arities.setdefault(f"--{name}", "?")  # Beam keeps them: value or boolean
    return arities


_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _is_flag(arg: str) -> bool:
    """'-x...', '--x...': not a negative number, not a lone '-'."""
    return arg.startswith("-") and arg != "-" and not _NUMBER.match(arg)


def _is_value(arg: str, arities: Dict[str, _Arity]) -> bool:
    """Whether argparse reads ``arg`` after a flag as that flag's value: it does
    unless it is a flag, where a text with a space is a value unless it
    starts ``--known_flag=``."""
    if not _is_flag(arg):
        return True
    return " " in arg and arg.split("=", 1)[0] not in arities


def unknown_options(argv: Sequence[str], own: Iterable[_Own] = (), beam: bool = True) -> List[str]:
    """Flags in argv that no parser defines, as typed (without ``=value``), in order.

    Args:
      argv: what the command hands on (to Beam, when ``beam``), before any
        runner config is expanded: that file's options are checked when it loads.
      own: the command's own options: classes with ``_add_argparse_args`` (their
        flags and how many values each takes) or flag names ("--holdout").
      beam: whether Beam options are accepted too: those of every registered
        PipelineOptions subclass (and of the module of the runner ``--runner``
        names), RUNNER_ONLY_OPTIONS and --runner_config.

    ``--flag=value`` and ``--flag value`` both work. After a flag that takes a
    value, the next word is its value whenever argparse would read it so
    (negative numbers, text with a space, '-'), so it is never checked as a flag.
    Beam defines ``--no_x`` flags one by one: ``--no_x`` is known only where some
    parser defines it, never because ``--x`` exists.
    """
    argv = list(argv)
    if beam:
        _import_runner(argv)
    arities = _flag_arities(own, beam)
    unknown: List[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            break  # argparse: what follows is positional
        if not _is_flag(arg):
            continue  # the value of an unknown flag, or a stray word
        flag = arg.split("=", 1)[0]
        if flag not in arities:
            if flag not in unknown:
                unknown.append(flag)
            continue
        arity = arities[flag]
        if "=" in arg or arity == 0:
            continue
        if arity == argparse.REMAINDER:
            break  # the rest of argv is its values
        most = arity if isinstance(arity, int) else (1 if arity == argparse.OPTIONAL else len(argv))
        taken = 0
        while taken < most and i < len(argv) and _is_value(argv[i], arities):
            i += 1
            taken += 1
    return unknown


def _suggest(flag: str, known: Iterable[str], preferred: Iterable[str] = ()) -> Optional[str]:
    """The known flag closest to ``flag`` (difflib), or None when none is close.
    Dashes and underscores count alike; on a tie the command's own flag wins."""

    def key(name: str) -> str:
        return name.lstrip("-").replace("-", "_").lower()

    preferred = set(preferred)
    by_key: Dict[str, str] = {}
    for name in sorted(known, key=lambda n: (n not in preferred, n)):
        if name.startswith("--"):
            by_key.setdefault(key(name), name)
    word = key(flag)
    close = difflib.get_close_matches(word, list(by_key), n=5)
    if not close:
        return None

    def rank(candidate: str):
        ratio = difflib.SequenceMatcher(None, candidate, word).ratio()
        return ratio, by_key[candidate] in preferred

    return by_key[max(close, key=rank)]


def check_options(command: str, argv: Sequence[str], own: Iterable[_Own] = (), beam: bool = True) -> None:
    """Refuses flags no parser defines (see unknown_options).

    Raises:
      UnknownOptionError: one line per unknown flag, with the closest known flag.
    """
    own = list(own)
    unknown = unknown_options(argv, own, beam)
    if not unknown:
        return
    known = _flag_arities(own, beam)
    preferred = _flag_arities(own, beam=False)
    raise UnknownOptionError(command, [(f, _suggest(f, known, preferred)) for f in unknown], beam=beam)


def split_global_flags(argv: Sequence[str]) -> Tuple[Optional[str], List[str]]:
    """Takes ``--quiet`` and ``--log_level LEVEL`` (``--log_level=LEVEL``) out
    of a command line, wherever they stand before a ``--``.

    Returns:
      (level or None when neither was given, the rest of argv in order).
      ``--quiet`` is ``--log_level warning``; of several, the last wins.

    Raises:
      UsageError: --log_level without a value or with one not in LOG_LEVELS.
    """
    level: Optional[str] = None
    rest: List[str] = []
    argv = list(argv)
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            rest.extend(argv[i - 1:])
            break
        if arg == "--quiet":
            level = "warning"
        elif arg == "--log_level" or arg.startswith("--log_level="):
            if "=" in arg:
                value = arg.split("=", 1)[1]
            elif i < len(argv) and not _is_flag(argv[i]):
                value = argv[i]
                i += 1
            else:
                raise UsageError(f"--log_level needs a value: one of {', '.join(LOG_LEVELS)}.")
            if value.lower() not in LOG_LEVELS:
                raise UsageError(f"--log_level {value!r} is not a level; use one of {', '.join(LOG_LEVELS)}.")
            level = value.lower()
        else:
            rest.append(arg)
    return level, rest
