"""The `berth` command: one entry point whose subcommands live with the package they drive.

Each package exposes `register(subparsers)` in a small CLI module that imports nothing heavy
at module level, so `berth serve` works in the torch-free service image while `berth train`
and `berth export` import torch only when they run.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Order is the order of `berth --help`.
COMMAND_MODULES = ("model.cli", "export.cli", "export.defaults", "service.commands", "loadtest.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="berth", description="Train, export and serve BERT-family encoders."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        return 130
    except MissingExtraError as exc:
        print(f"berth {args.command}: {exc}", file=sys.stderr)
        return 2
    return int(result or 0)


class MissingExtraError(RuntimeError):
    """A subcommand needs an optional dependency group that is not installed."""


def require_extra(module: str, extra: str) -> None:
    """Fail with an install hint when `module` (e.g. torch) is not importable."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"needs `{module}`; install it with: pip install 'berth-serve[{extra}]'"
        ) from exc


if __name__ == "__main__":
    sys.exit(main())
