"""`featurebridge report ANALYZED [--baseline OTHER] [--output FILE]`: the
statistics report of an analyze output as one self-contained HTML page
(`featurebridge.transforms.report.write_report`), with drift against another
analyze output when --baseline is given. It writes ./report.html by default,
never into ANALYZED: ANALYZED/report.html is the analyze pass's own page,
sealed (digested) in its manifest, so `featurebridge lineage --verify` would
report a rewrite as a change.

Exit status 2 (the CLI's usage-error status) when ANALYZED or OTHER is not an
analyze output with statistics. No TensorFlow is imported.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, Optional, Sequence

__all__ = ["main", "print_help", "run", "summarize"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="featurebridge report",
        description=(
            "Write the statistics report of an analyze output: one self-contained HTML page (no network) "
            "with a plot per raw column and transformed feature, missing values by marker, the label's "
            "classes, the rejected rows by column and reason, and the warnings. With --baseline, drift per "
            "feature against another analyze output (L-infinity distance for categorical values, "
            "Jensen-Shannon divergence for numeric histograms)."
        ),
    )
    parser.add_argument(
        "analyzed", metavar="ANALYZED",
        help="an analyze output (`featurebridge analyze --output`), or a `featurebridge run` output",
    )
    parser.add_argument(
        "--baseline", metavar="OTHER", default=None,
        help="another analyze output to compare with (training data vs serving data, yesterday vs today)",
    )
    parser.add_argument(
        "--output", metavar="FILE", default="report.html",
        help="where to write the page (default: report.html in the current directory; ANALYZED/report.html is "
        "the page the analyze pass wrote and sealed in its manifest, which this command leaves alone)",
    )
    return parser


def print_help() -> None:
    """The options (the CLI calls this for `featurebridge report --help`)."""
    _parser().print_help()


def run(argv: Optional[Sequence[str]] = None) -> Dict[str, object]:
    """Writes the report; returns {"report": path, "baseline": OTHER or None}.

    Raises:
      ArtifactError: ANALYZED or OTHER is not an analyze output with
        statistics, or its statistics cannot be read.
      UsageError: --output's directory does not exist.
    """
    from featurebridge.transforms.errors import UsageError
    from featurebridge.transforms.report import write_report

    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if not os.path.isdir(os.path.dirname(os.path.abspath(args.output))):
        raise UsageError(
            f"--output {args.output!r}: its directory does not exist; create it or choose another file."
        )
    path = write_report(args.analyzed, args.baseline, output=args.output)
    return {"report": path, "baseline": args.baseline}


def summarize(result: Dict[str, object], _output: str = "") -> str:
    """What the CLI prints after `run`."""
    line = f"report: {result['report']}"
    if result.get("baseline"):
        line += f" (drift against {result['baseline']})"
    return line + "\nOpen it in a browser; it needs no network."


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the command as ``python -m featurebridge.pipelines.report``: prints
    where the page is; an error as one line, exit status 2."""
    from featurebridge.transforms.errors import FeaturebridgeError

    try:
        result = run(argv)
    except FeaturebridgeError as e:
        print(f"featurebridge report: error: {e}", file=sys.stderr)
        return 2
    print(summarize(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
