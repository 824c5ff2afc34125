"""Headless locust run of one scenario: CSV + HTML report and a one-line summary.

    python -m loadtest.run --scenario embed_bulk --users 4 --duration 30s \
        --host http://127.0.0.1:8000 --out reports/

Exit status: locust's, which the locustfile sets from the thresholds (1 = a limit was broken).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from loadtest.scenarios import SCENARIOS

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenario",
        default="embed_interactive",
        help=f"comma-separated, or 'mix' for all weighted ({', '.join(SCENARIOS)})",
    )
    parser.add_argument("--users", type=int, default=16, help="concurrent users (default 16)")
    parser.add_argument(
        "--spawn-rate", type=float, default=0.0, help="users started per second (default: all)"
    )
    parser.add_argument("--duration", default="30s", help="run time, locust syntax: 30s, 2m (default 30s)")
    parser.add_argument("--host", default="http://127.0.0.1:8000", help="berth base URL")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="report folder (default reports/)")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="fixed total requests/s (open model, FixedRateUser); 0 = closed loop",
    )
    parser.add_argument("--max-fail-ratio", type=float, default=0.01, help="gate: failure ratio (0.01)")
    parser.add_argument("--max-p95-ms", type=float, default=None, help="gate: p95 latency in ms")


def locust_command(args: argparse.Namespace) -> tuple[list[str], Path]:
    """The locust command line for these arguments, and the summary file it will write."""
    label = "mix" if args.scenario == "mix" else args.scenario.replace(",", "+")
    prefix = args.out / label
    summary = Path(f"{prefix}_summary.json")
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--only-summary",
        "-H",
        args.host,
        "-u",
        str(args.users),
        "-r",
        str(args.spawn_rate or args.users),
        "-t",
        args.duration,
        "--csv",
        str(prefix),
        "--html",
        f"{prefix}.html",
        "--scenario",
        "" if args.scenario == "mix" else args.scenario,
        "--max-fail-ratio",
        str(args.max_fail_ratio),
        "--summary-file",
        str(summary),
        "--stop-timeout",
        "10",
    ]
    if args.max_p95_ms is not None:
        cmd += ["--max-p95-ms", str(args.max_p95_ms)]
    if args.rate > 0:
        cmd += ["--target-rps", str(args.rate), "FixedRateUser"]
    else:
        cmd += ["ClosedLoopUser"]
    return cmd, summary


def run(args: argparse.Namespace) -> int:
    for name in filter(None, args.scenario.split(",")):
        if name != "mix" and name not in SCENARIOS:
            print(
                f"loadtest: unknown scenario {name!r}; choose from {', '.join(SCENARIOS)} or mix",
                file=sys.stderr,
            )
            return 2
    args.out.mkdir(parents=True, exist_ok=True)
    cmd, summary_path = locust_command(args)
    code = subprocess.call(cmd)
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        print(
            f"loadtest {args.scenario} @ {args.host} ({args.users} users, {args.duration}): "
            f"{summary['requests_per_s']:.1f} req/s, {summary['texts_per_s']:.1f} texts/s, "
            f"p50/p95/p99 {summary['p50_ms']}/{summary['p95_ms']}/{summary['p99_ms']} ms, "
            f"failures {summary['failures']}/{summary['requests']} -> {args.out}/"
        )
        for violation in summary["violations"]:
            print(f"loadtest: threshold broken: {violation}")
    else:
        print(f"loadtest: locust exited {code} without a summary (see its output above)", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.run", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
