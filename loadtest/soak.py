"""`berth bench --soak SECONDS`: mixed traffic against every bundle, server RSS sampled.

Starts `berth serve` on the models folder, runs the load client's weighted mix of all
scenarios (embed interactive and bulk, classify, NER documents, QA) for SECONDS, and samples
the server's resident memory every few seconds. Growth is measured from the end of the warm-up
(the first 10%, at least 60 s: arenas and caches fill then) to the end. Passes when growth is
≤ 10% and no request failed (issue 8, acceptance 4).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from loadtest.procs import REPO, berth_serve, client_command, free_port, parse_client_output, rss_mb, server

SAMPLE_EVERY_S = 5.0
MAX_GROWTH = 0.10


def growth_after_warmup(samples: list[tuple[float, float]], warmup_s: float) -> tuple[float, float, float]:
    """(RSS at the end of warm-up, RSS at the end, relative growth) from (seconds, MiB) samples."""
    after = [mb for t, mb in samples if t >= warmup_s]
    if len(after) < 2:
        raise ValueError(f"need ≥ 2 samples after the {warmup_s:.0f} s warm-up, got {len(after)}")
    base = after[0]
    # The last few samples, not the peak: RSS breathes with batch shapes; growth is the trend.
    end = sorted(after[-3:])[len(after[-3:]) // 2]
    return base, end, (end - base) / base


MIN_SOAK_S = 30.0  # enough samples after the warm-up for a growth figure


def soak(args: argparse.Namespace) -> int:
    seconds = float(args.soak)
    if seconds < MIN_SOAK_S:
        print(f"berth bench: --soak must be at least {MIN_SOAK_S:.0f} s (RSS is sampled every "
              f"{SAMPLE_EVERY_S:g} s after a warm-up), got {seconds:g}", file=sys.stderr)
        return 2
    if not args.models_dir.is_dir() or not any(args.models_dir.glob("*/berth.json")):
        print(f"berth bench: no bundle (*/berth.json) in --models-dir {args.models_dir}", file=sys.stderr)
        return 2
    warmup = max(60.0, 0.1 * seconds) if seconds >= 120 else 0.25 * seconds
    port = free_port()
    logs = args.out.parent / "bench-logs"
    samples: list[tuple[float, float]] = []
    with server(berth_serve(args.models_dir, port), port, logs / "serve-soak.log") as (url, proc):
        print(
            f"soak: {seconds:.0f} s of mixed traffic against {url} (pid {proc.pid}), warm-up {warmup:.0f} s",
            flush=True,
        )
        client = subprocess.Popen(
            client_command(url, "mix", 8, seconds, 0.0),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        start = time.monotonic()
        while client.poll() is None and time.monotonic() - start < seconds + 120:
            samples.append((time.monotonic() - start, rss_mb(proc.pid)))
            time.sleep(SAMPLE_EVERY_S)
        out, err = client.communicate(timeout=120)
        if client.returncode != 0:
            print(f"soak: load client failed: {err[-1000:]}")
            return 1
    result = parse_client_output(out)
    base, end, growth = growth_after_warmup(samples, warmup)
    peak = max(mb for _, mb in samples)
    passed = growth <= MAX_GROWTH and result["failures"] == 0
    report = (
        f"soak {seconds:.0f} s, mixed traffic (8 closed-loop clients): {result['requests']} requests, "
        f"{result['texts_per_s']:.1f} texts/s, failures {result['failures']} {result['errors'] or ''}\n"
        f"server RSS: {samples[0][1]:.0f} MiB at start, {base:.0f} MiB after {warmup:.0f} s warm-up, "
        f"{end:.0f} MiB at the end (peak {peak:.0f}): growth {growth:+.1%} "
        f"(limit {MAX_GROWTH:.0%}) -> {'PASS' if passed else 'FAIL'}"
    )
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    path = args.out.with_name("soak.json")
    path.write_text(
        json.dumps(
            {
                "seconds": seconds,
                "warmup_s": warmup,
                "client": result,
                "rss_samples_mb": samples,
                "growth": growth,
                "passed": passed,
            },
            indent=2,
        )
    )
    print(f"written to {path}")
    return 0 if passed else 1
