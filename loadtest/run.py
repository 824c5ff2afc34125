"""Headless locust run of one scenario: CSV + HTML report and a one-line summary.

    python -m loadtest.run --scenario embed_bulk --users 4 --duration 30s \
        --host http://127.0.0.1:8000 --out reports/

Exit status: locust's, which the locustfile sets from the thresholds (1 = a limit was broken);
2 for arguments refused before locust starts.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

from loadtest.scenarios import SCENARIOS

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
API_KEY_ENV = "BERTH_LT_API_KEY"  # how the key reaches the locust users (never on a command line)
_TIMESPAN = re.compile(r"(?:(?P<h>[0-9]+)h)?(?:(?P<m>[0-9]+)m)?(?:(?P<s>[0-9]+)s)?")


def duration_seconds(text: str) -> int:
    """Seconds in a locust time span (20, 20s, 3m, 2h, 1h20m, 3h30m10s); ValueError unless > 0.

    Stricter than locust's own parser, which reads a prefix ('500ms' as 500 minutes) and takes
    0 as "no limit": a load run here always ends.
    """
    text = text.strip()
    match = _TIMESPAN.fullmatch(text)
    if re.fullmatch("[0-9]+", text):
        seconds = int(text)
    elif text and match:
        seconds = sum(int(match[unit] or 0) * factor for unit, factor in (("h", 3600), ("m", 60), ("s", 1)))
    else:
        raise ValueError(f"invalid run time {text!r}; use locust syntax: 30s, 2m, 1h30m, or seconds")
    if seconds <= 0:
        raise ValueError(f"run time must be > 0, got {text!r} (locust would run without a limit)")
    return seconds


def _duration(text: str) -> str:
    try:
        duration_seconds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text.strip()


def scenario_names(spec: str) -> list[str]:
    """The scenario list of --scenario (['mix'] for the weighted mix); ValueError when unusable."""
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise ValueError("empty; name scenarios (comma-separated) or mix")
    if names == ["mix"]:
        return names
    if "mix" in names:
        raise ValueError(f"mix is all scenarios and cannot be part of a list, got {spec!r}")
    for name in names:
        if name not in SCENARIOS:
            raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)} or mix")
    return names


def _scenario(spec: str) -> str:
    try:
        return ",".join(scenario_names(spec))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _users(text: str) -> int:
    try:
        users = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if users < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {users}")
    return users


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenario",
        type=_scenario,
        default="embed_interactive",
        help=f"comma-separated, or 'mix' alone for all weighted ({', '.join(SCENARIOS)}); "
        "default embed_interactive",
    )
    parser.add_argument("--users", type=_users, default=16, help="concurrent users, >= 1 (default 16)")
    parser.add_argument(
        "--spawn-rate",
        type=_non_negative,
        default=0.0,
        help="users started per second (default 0: all at once)",
    )
    parser.add_argument(
        "--duration",
        type=_duration,
        default="30s",
        help="run time > 0, locust syntax: 30s, 2m, 1h30m or seconds (default 30s)",
    )
    parser.add_argument("--host", default="http://127.0.0.1:8000", help="berth base URL")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="report folder (default reports/)")
    parser.add_argument(
        "--api-key",
        metavar="KEY",
        default=os.environ.get("BERTH_API_KEY", ""),
        help="sent as 'Authorization: Bearer KEY' (default: $BERTH_API_KEY; empty: no header)",
    )
    parser.add_argument(
        "--rate",
        type=_non_negative,
        default=0.0,
        help="fixed total requests/s (open model, FixedRateUser); 0 = closed loop",
    )
    parser.add_argument("--max-fail-ratio", type=float, default=0.01, help="gate: failure ratio (0.01)")
    parser.add_argument("--max-p95-ms", type=float, default=None, help="gate: p95 latency in ms")


def report_prefix(args: argparse.Namespace) -> Path:
    """Where this run's reports go: <out>/<label>, the label naming the scenarios."""
    return args.out / "+".join(scenario_names(args.scenario))


def locust_command(args: argparse.Namespace) -> tuple[list[str], Path]:
    """The locust command line for these arguments, and the summary file it will write."""
    names = scenario_names(args.scenario)
    prefix = report_prefix(args)
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
        f"{duration_seconds(args.duration)}s",
        "--csv",
        str(prefix),
        "--html",
        f"{prefix}.html",
        "--scenario",
        "" if names == ["mix"] else ",".join(names),
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


def locust_env(args: argparse.Namespace) -> dict[str, str]:
    """locust's environment: ours, plus the API key for the users (empty: they send none)."""
    return {**os.environ, API_KEY_ENV: args.api_key or ""}


def run(args: argparse.Namespace) -> int:
    try:  # parsed arguments are already checked; a hand-made namespace may not be
        scenario_names(args.scenario)
        duration_seconds(args.duration)
    except ValueError as exc:
        print(f"loadtest: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    cmd, summary_path = locust_command(args)
    # What an earlier run left under the same name must not pass for this run's results.
    timing_path = Path(f"{report_prefix(args)}_server_timing.csv")
    for stale in (summary_path, timing_path):
        stale.unlink(missing_ok=True)
    code = subprocess.call(cmd, env=locust_env(args))
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        server = ""
        if summary.get("queue_p50_ms") is not None and summary.get("inference_p50_ms") is not None:
            server = (
                f", server p50 queue {summary['queue_p50_ms']:.1f} ms, "
                f"inference {summary['inference_p50_ms']:.1f} ms"
            )
        print(
            f"loadtest {args.scenario} @ {args.host} ({args.users} users, {args.duration}): "
            f"{summary['requests_per_s']:.1f} req/s, {summary['texts_per_s']:.1f} texts/s, "
            f"p50/p95/p99 {summary['p50_ms']}/{summary['p95_ms']}/{summary['p99_ms']} ms, "
            f"failures {summary['failures']}/{summary['requests']}{server} -> {args.out}/"
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
