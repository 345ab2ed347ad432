"""`featurebridge lineage PATH [--verify] [--json]`: where an output came from.

Prints the chain predictions -> model -> analyzed -> input files and spec as
a tree (rich), each step with its manifest's digest, the link to it by
digest, versions, runner and engine, and times; ``--json`` prints the same
as one JSON object for machines. ``--verify`` recomputes every digest
(`featurebridge.transforms.lineage.trace`) and lists what changed.

Exit status: 0 when every link (and with --verify every digest) holds, 1
when something changed or is missing, 2 when PATH is not a featurebridge
output or its own manifest is damaged (the CLI's usage-error status).
No TensorFlow is imported.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, List, Optional, Sequence

__all__ = ["main", "print_help", "render", "run"]

_EXIT_CHANGED = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="featurebridge lineage",
        description=(
            "Where an output came from: predictions -> model -> analyzed -> input files and spec, each "
            "step linked by the sha256 of the manifest it was made from. Exit 1 when something changed."
        ),
    )
    parser.add_argument(
        "path", metavar="PATH",
        help="a `featurebridge run` output, a predictions directory or file, a model (or its serving export), "
        "or an analyze output",
    )
    parser.add_argument(
        "--verify", action="store_true",
        help="recompute every digest (each step's files, the upstream manifests, input files, spec, "
        "preprocessing_fn module) and say what changed",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the tree")
    return parser


def print_help() -> None:
    _parser().print_help()


def _short(digest: Optional[str], n: int = 12) -> str:
    if not digest:
        return "(none recorded)"
    digest = str(digest)
    head = digest if digest.startswith("sha256:") else f"sha256:{digest}"
    return head[: len("sha256:") + n] + "…"


def _when(step: Dict[str, Any]) -> str:
    started, finished, elapsed = step.get("started"), step.get("finished"), step.get("elapsed_seconds")
    if not started:
        return "times not recorded"
    same_day = finished and str(finished)[:11] == str(started)[:11]
    text = f"{started} → {str(finished)[11:] if same_day else finished or '?'}"
    return text + (f" ({elapsed:g} s)" if elapsed is not None else "")


def _engine(step: Dict[str, Any]) -> str:
    runner, engine = step.get("runner") or "?", step.get("engine")
    if isinstance(engine, dict):
        name = engine.get("engine") or engine.get("runner")
        version = engine.get("version")
        extra = " ".join(str(x) for x in (name, version) if x)
        return f"{runner} ({extra})" if extra and extra != runner else runner
    return runner


def _rows(rows: Any) -> str:
    if not isinstance(rows, dict):
        return ""
    return ", ".join(f"{k} {v}" for k, v in rows.items() if isinstance(v, (int, float)))


def _step_lines(step: Dict[str, Any]) -> List[str]:
    lines = [f"manifest  {_short(step['manifest_sha256'])}  (job {step.get('job')})"]
    link = step.get("link")
    if link:
        state = {True: "holds", False: "DOES NOT HOLD", None: "by path only"}[link.get("holds")]
        where = " (found by digest: moved)" if link.get("found_by") == "digest" else ""
        lines.append(f"linked by {_short(link.get('manifest_sha256'))}: {state}{where}")
    lines.append(f"ran       {_when(step)}")
    lines.append(f"runner    {_engine(step)}")
    versions = step.get("versions") or {}
    if versions:
        lines.append("versions  " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    if step["kind"] == "analyzed":
        fn = step.get("preprocessing_fn")
        source = step.get("preprocessing_fn_source") or {}
        lines.append(f"analyzer  {step.get('analyzer') or 'not recorded'}"
                     + (f"; preprocessing_fn {fn} ({_short(source.get('sha256'))} of {source.get('path')})"
                        if fn and source else f"; preprocessing_fn {fn}" if fn else ""))
        spec = step.get("spec") or {}
        lines.append(f"spec      {_short(spec.get('digest'))}  from {spec.get('source') or '?'}")
    elif step["kind"] == "model":
        lines.append(f"model     {step.get('model_type') or '?'}, {step.get('epochs') or '?'} epoch(s), "
                     f"spec {_short(step.get('spec_digest'))}")
    elif step["kind"] == "predictions" and step.get("serving"):
        serving = step["serving"]
        version = serving.get("version")
        lines.append(f"serving   {serving.get('path')}" + (f" (version {version})" if version is not None else "")
                     + f", saved_model.pb {_short(serving.get('saved_model_sha256'))}")
    rows = _rows(step.get("rows"))
    if rows:
        lines.append(f"rows      {rows}")
    lines.append(f"files     {step.get('outputs')} written, each with its sha256 in manifest.json")
    return lines


def render(result: Dict[str, Any], console=None) -> None:
    """Prints a lineage (`Lineage.to_dict()`) as a tree, then what does not hold."""
    from rich.console import Console
    from rich.text import Text
    from rich.tree import Tree

    if console is None:
        # A terminal: lines wrap inside the tree. A pipe or file: whole lines (grep finds paths).
        console = Console(highlight=False, width=None if sys.stdout.isatty() else 10_000)
    steps = result["steps"]
    root = Tree(Text(f"lineage of {result['start']}", style="bold"))
    run = result.get("run")
    node = root
    if run:
        node = root.add(Text(f"run  finished {run.get('finished')}, {run.get('elapsed_seconds')} s; "
                             f"summary.json links {len(run.get('stages') or {})} stage(s) by manifest sha256"))
    for step in steps:
        label = Text()
        label.append(f"{step['kind']}", style="bold cyan")
        label.append(f"  {step['path']}")
        for line in _step_lines(step):
            label.append("\n" + line)
        node = node.add(label)
        inputs = step.get("inputs") or []
        if inputs:
            files = node.add(Text(f"inputs  {len(inputs)} file(s)", style="bold"))
            for entry in inputs:
                files.add(Text(f"{entry.get('path')}  {_short(entry.get('sha256'))}  {entry.get('bytes')} bytes"))
    console.print(root)
    findings = result["findings"]
    failed = [f for f in findings if f["failed"]]
    for f in findings:
        mark = "✗" if f["failed"] else "·"
        text = Text(f"{mark} {f['kind'].upper()} {f['what']} ({f['step']}): {f['path']}", style="bold red" if f["failed"] else "")
        if f.get("expected") or f.get("found"):
            text.append(f"\n    expected {f.get('expected') or '(none recorded)'}\n    found    {f.get('found') or '(nothing)'}")
        text.append(f"\n    {f['message']}")
        console.print(text)
    checked = ", ".join(f"{k}: {v}" for k, v in result["checked"].items())
    if failed:
        console.print(Text(f"{len(failed)} thing(s) changed or missing" + (f"; checked {checked}" if checked else ""),
                           style="bold red"))
    elif result["verified"]:
        console.print(Text(f"verified: every digest holds ({checked})", style="bold green"))
    else:
        console.print(f"every link holds ({checked}); --verify recomputes every file's digest")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the command; returns the exit status (0 holds, 1 changed).

    Raises:
      ArtifactError: PATH is not a featurebridge output, or its own
        manifest.json or summary.json is damaged.
    """
    from featurebridge.transforms.lineage import trace

    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    lineage = trace(args.path, verify=args.verify)
    result = lineage.to_dict()
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        render(result)
    return 0 if lineage.ok else _EXIT_CHANGED


def run(argv: Optional[Sequence[str]] = None) -> None:
    """The CLI's entry: exits 1 (SystemExit) when something changed."""
    status = main(argv)
    if status:
        raise SystemExit(status)


if __name__ == "__main__":
    sys.exit(main())
