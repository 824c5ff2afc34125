"""Subcommands of `berth` for this package (registered by service.cli): loadtest and bench."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `berth loadtest` and `berth bench`; locust, aiohttp and onnxruntime load only when run."""
    from loadtest.run import add_arguments

    loadtest = subparsers.add_parser(
        "loadtest", help="headless locust run of a scenario (CSV, HTML, summary)"
    )
    add_arguments(loadtest)
    loadtest.set_defaults(func=_loadtest)

    bench = subparsers.add_parser(
        "bench", help="ceiling vs service vs naive baseline on the same texts, or a memory soak (--soak)"
    )
    bench.add_argument(
        "--models-dir", type=Path, default=Path("models"), help="bundles folder (default models/)"
    )
    bench.add_argument("--embed-model", default="minilm", help="embedding bundle (default minilm)")
    bench.add_argument(
        "--classify-model", default="sentiment", help="classification bundle (default sentiment)"
    )
    bench.add_argument(
        "--embed-checkpoint",
        type=Path,
        default=None,
        help="torch checkpoint for the naive embed baseline (default: the bundle's source)",
    )
    bench.add_argument(
        "--classify-checkpoint",
        type=Path,
        default=None,
        help="torch checkpoint for the naive classify baseline (default: the bundle's source)",
    )
    bench.add_argument("--duration", type=float, default=20.0, help="seconds measured per HTTP scenario (20)")
    bench.add_argument("--warmup", type=float, default=3.0, help="seconds of unmeasured load first (3)")
    bench.add_argument("--texts", type=int, default=1024, help="texts for the in-process ceiling (1024)")
    bench.add_argument("--skip", default="", help="comma list of parts to skip: naive, classify, service")
    bench.add_argument(
        "--out", type=Path, default=Path("reports/bench.md"), help="markdown table (reports/bench.md)"
    )
    bench.add_argument(
        "--soak",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="instead of the comparison: mixed traffic for SECONDS, server RSS sampled",
    )
    bench.set_defaults(func=_bench)


def _loadtest(args: argparse.Namespace) -> int:
    from service.cli import require_extra

    require_extra("locust", "loadtest")
    from loadtest.run import run

    return run(args)


def _bench(args: argparse.Namespace) -> int:
    from service.cli import require_extra

    require_extra("aiohttp", "loadtest")
    if args.soak > 0:
        from loadtest.soak import soak

        return soak(args)
    from loadtest.bench import bench

    return bench(args)
