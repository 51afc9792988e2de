"""`python -m core <command> ...`: the headless, reproducible face of every job.

Each subcommand lives in ``core/commands/<name>.py`` and exposes ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``. Heavy imports happen inside ``run``
so that ``--help`` answers at once.
"""

import argparse
import importlib
import sys
import traceback

from core.errors import DeepLanguageError, UsageError

# Order is the order `--help` lists them in.
COMMANDS = [
    "demo_corpus",
    "prepare",
    "train",
    "evaluate",
    "identify",
    "enroll",
    "setup_model",
    "tune",
    "study",
    "probe",
    "report",
]


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The CLI's parser. With ``only``, just that subcommand gets its arguments: some read
    their defaults from modules that import torch, which other commands shouldn't pay for."""
    parser = argparse.ArgumentParser(
        prog="python -m core",
        description="deepLanguage: spoken language identification and pretraining studies.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMANDS:
        module = importlib.import_module(f"core.commands.{module_name}")
        sub = subparsers.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                         help="show full tracebacks on errors")
        if only in (None, module.NAME):
            module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((word for word in argv if not word.startswith("-")), None)
    # Without a command (`python -m core --help`), no subcommand's arguments are built: some import torch.
    args = build_parser(only=command or "").parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except DeepLanguageError as error:
        if args.debug:
            traceback.print_exc()
        print(f"error: {error}", file=sys.stderr)
        return 2 if isinstance(error, UsageError) else 1
    except KeyboardInterrupt:
        print("interrupted: work finished so far is kept; run the same command again to resume.",
              file=sys.stderr)
        return 130
    except Exception as error:  # a bug, not the user's fault: say so briefly unless --debug
        if args.debug:
            raise
        print(f"internal error: {type(error).__name__}: {error} (run again with --debug for details)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
