"""The experiments of docs/pretraining.md.

`sst2`: does MLM pretraining help? The same architecture is fine-tuned on binary SST-2 from the
pretrained checkpoint and from a random initialisation (same config, same vocabulary, a fresh
init per seed), with the same recipes for both: for each seed, each learning rate of `--lrs` and
each layer-wise rate decay of `--layer-lr-decays`; each arm is scored at its own best recipe
(mean over the seeds), and the grid, the per-arm mean and spread, and the gain are written as JSON.

    python -m model.pretrain.study sst2 --pretrained runs/pretrain/bert-small --seeds 1,2,3 \\
        --lrs 3e-5,1e-4,3e-4 --train data/sst/train.txt --dev data/sst/dev.txt \\
        --out runs/pretrain/study/bert-small

`params`: the encoder parameter counts of the BERT, ALBERT and TextCNN presets.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

from model.pretrain.backbones import ARCHS, SIZES, build_config, parameter_count


def init_like(pretrained: Path, out: Path, seed: int) -> Path:
    """A checkpoint with `pretrained`'s config and tokenizer and freshly drawn random weights."""
    import torch
    from transformers import AutoConfig, AutoModelForMaskedLM

    from model.heads import load_tokenizer, register_architectures, save_checkpoint

    register_architectures()
    torch.manual_seed(seed)
    model = AutoModelForMaskedLM.from_config(AutoConfig.from_pretrained(pretrained))
    save_checkpoint(model, load_tokenizer(pretrained), out)
    return out


def spread(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation, min and max."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values)}


def sst2_study(args: argparse.Namespace, log=print) -> dict:
    """Both arms fine-tuned with every recipe of the grid (each learning rate of `args.lrs` times
    each layer-wise rate decay of `args.layer_lr_decays`) for every seed; each arm is then scored
    at its own best recipe (highest mean over the seeds), so neither arm is judged at a setting
    that suits only the other (from scratch usually wants a higher rate, and no layer decay)."""
    from model.train import TrainConfig, train

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    decays = args.layer_lr_decays
    recipes = [(lr, decay) for lr in args.lrs for decay in decays]
    runs: list[dict] = []
    for seed in args.seeds:
        random_base = init_like(Path(args.pretrained), out / f"random-init-{seed}", seed)
        for lr, decay in recipes:
            name = recipe_name(lr, decay)
            for arm, base in (("pretrained", args.pretrained), ("random", random_base)):
                run_dir = out / f"{arm}-{seed}-lr{name.replace(' ', '-')}"
                cfg = TrainConfig(task="classify", base=str(base), train=args.train, dev=args.dev,
                                  out=str(run_dir), format="sst2", epochs=args.epochs,
                                  batch_size=args.batch_size, lr=lr, max_length=args.max_length, seed=seed,
                                  threads=args.threads, layer_lr_decay=decay)
                t0 = time.time()
                prefix = f"  [{arm} seed {seed} lr {name}] "
                summary = train(cfg, log=lambda msg, prefix=prefix: log(prefix + msg))
                runs.append({"arm": arm, "seed": seed, "lr": lr, "layer_lr_decay": decay,
                             "best_dev_accuracy": summary["best"],
                             "best_epoch": summary["best_epoch"],
                             "dev_accuracy_per_epoch": [e["dev"]["accuracy"] for e in summary["epochs"]],
                             "train_seconds": summary["train_seconds"],
                             "wall_seconds": round(time.time() - t0, 1),
                             "command": summary["command"]})
                log(f"{arm} seed {seed} lr {name}: dev accuracy {summary['best']:.4f} "
                    f"(epoch {summary['best_epoch']})")
                if not args.keep_checkpoints:
                    shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(random_base, ignore_errors=True)

    def accuracies(arm: str, lr: float, decay: float) -> list[float]:
        return [r["best_dev_accuracy"] for r in runs
                if r["arm"] == arm and r["lr"] == lr and r["layer_lr_decay"] == decay]

    arm_names = ("pretrained", "random")
    grid = {arm: {recipe_name(lr, decay): {**spread(accuracies(arm, lr, decay)), "lr": lr,
                                            "layer_lr_decay": decay}
                  for lr, decay in recipes} for arm in arm_names}
    arms = {arm: max(grid[arm].values(), key=lambda cell: cell["mean"]) for arm in arm_names}
    pretrain_summary = Path(args.pretrained) / "berth_pretrain.json"
    result = {
        "pretrained": args.pretrained,
        "pretraining": json.loads(pretrain_summary.read_text()) if pretrain_summary.is_file() else None,
        "recipe": {"epochs": args.epochs, "batch_size": args.batch_size, "lrs": args.lrs,
                   "layer_lr_decays": decays, "max_length": args.max_length, "threads": args.threads},
        "runs": runs, "grid": grid, "arms": arms,
        "gain_points": round(100 * (arms["pretrained"]["mean"] - arms["random"]["mean"]), 2),
        "fine_tune_seconds": round(sum(r["wall_seconds"] for r in runs), 1),
    }
    if result["pretraining"]:
        keep = ("command", "parameters", "steps", "stopped_by", "train_seconds", "wall_seconds")
        result["pretraining"] = {k: result["pretraining"][k] for k in keep}
    (out / "study.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def recipe_name(lr: float, layer_lr_decay: float) -> str:
    """A grid cell's name: the learning rate, and the layer-wise decay when there is one."""
    return f"{lr:g}" if layer_lr_decay == 1.0 else f"{lr:g} decay {layer_lr_decay:g}"


def params_table(vocab_sizes: tuple[int, ...] = (8000, 30000)) -> list[dict]:
    """Encoder parameters of every preset (same hidden size and depth per size name)."""
    rows = []
    for vocab in vocab_sizes:
        for size in SIZES:
            counts = {arch: parameter_count(build_config(arch, size, vocab)) for arch in ARCHS}
            for arch in ARCHS:
                cfg = build_config(arch, size, vocab)
                ratio = round(counts["bert"]["total"] / counts[arch]["total"], 2)
                rows.append({"vocab": vocab, "size": size, "arch": arch, "hidden": cfg.hidden_size,
                             "layers": cfg.num_hidden_layers,
                             "embedding": getattr(cfg, "embedding_size", None),
                             **counts[arch], "bert_over_this": ratio})
    return rows


def _floats(text: str) -> list[float]:
    """A comma list of numbers (`--lrs 1e-3,2e-3`)."""
    return [float(x) for x in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.pretrain.study",
                                     description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="study", required=True)
    sst = sub.add_parser("sst2", help="pretrained vs random initialisation, fine-tuned on SST-2")
    sst.add_argument("--pretrained", required=True, help="checkpoint written by `berth train mlm`")
    sst.add_argument("--train", required=True)
    sst.add_argument("--dev", required=True)
    sst.add_argument("--out", required=True)
    sst.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 3])
    sst.add_argument("--epochs", type=int, default=3)
    sst.add_argument("--batch-size", type=int, default=32)
    sst.add_argument("--lrs", type=_floats, default=[1e-4],
                     help="fine-tuning learning rates, each arm scored at its best (comma list)")
    sst.add_argument("--layer-lr-decays", type=_floats, default=[1.0],
                     help="layer-wise learning-rate decays tried with every rate (comma list; 1: none)")
    sst.add_argument("--max-length", type=int, default=64)
    sst.add_argument("--threads", type=int, default=2)
    sst.add_argument("--keep-checkpoints", action="store_true")
    sub.add_parser("params", help="parameter counts of the presets, as JSON lines")
    args = parser.parse_args(argv)
    if args.study == "params":
        for row in params_table():
            print(json.dumps(row))
        return 0
    result = sst2_study(args, log=lambda msg: print(msg, flush=True))
    print(json.dumps({"arms": result["arms"], "gain_points": result["gain_points"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
