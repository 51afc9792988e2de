"""`python -m core report`: a study's report, as one self-contained HTML file or one JSON object."""

import argparse
from pathlib import Path

NAME = "report"
HELP = ("a study's report: speed-up per (pretraining x target) cell with CI, paired test, Holm and effect size; "
        "dose-response; the similarity test; probes; as one offline HTML file (--out) or JSON (--json)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--study", required=True, type=Path, help="study folder made by `python -m core study`")
    output = parser.add_mutually_exclusive_group(required=True)
    output.add_argument("--out", type=Path, metavar="FILE.html",
                        help="write the HTML report here (plotly inlined: it draws with the network off)")
    output.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.add_argument("--no-cache", action="store_true",
                        help="recompute instead of reading <study>/report_summary.json")


def run(args: argparse.Namespace) -> int:
    from core.study.report import study_summary
    from core.study.report_html import summary_json, write_report

    if args.json:
        print(summary_json(study_summary(args.study, use_cache=not args.no_cache)))
        return 0
    if args.no_cache:
        study_summary(args.study, use_cache=False)  # refreshes the cache the HTML then reads
    path = write_report(args.study, args.out)
    print(f"report -> {path}")
    return 0
