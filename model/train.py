"""One training loop for every task: AdamW, warm-up then linear decay, gradient clipping,
length-bucketed batches, evaluation each epoch, the best checkpoint kept, and a run summary.

The checkpoint is written into a private temporary directory beside `out` and renamed into
place at the end, so other tools never see a half-written `out`.
"""

from __future__ import annotations

import json
import os
import platform
import random
import re
import shlex
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from model.batching import collate, length_bucketed_batches
from model.data import label_order, read_examples
from model.evaluate import MAIN_METRIC, evaluate
from model.features import encode_classify, encode_ner, encode_qa
from model.heads import (
    PROBLEM_TYPES,
    build_task_model,
    input_names,
    load_tokenizer,
    save_checkpoint,
    usable_positions,
)
from model.labels import check_known_labels, labels_of_examples
from model.precision import attention_for, autocast, resolve_precision
from model.typos import AttackStats, attack_examples, parse_augment

SUMMARY_NAME = "berth_train.json"
DEFAULT_MAX_LENGTH = {"classify": 128, "ner": 256, "qa": 256}


@dataclass
class TrainConfig:
    task: str
    base: str
    train: str
    dev: str
    out: str
    format: str
    epochs: int = 2
    batch_size: int = 32
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    max_length: int | None = None  # per-task default above
    doc_stride: int = 64
    seed: int = 42
    threads: int | None = None  # torch intra-op threads; default: all cores
    eval_batch_size: int = 64
    problem_type: str | None = None  # classify: inferred from the labels when None
    threshold: float = 0.5  # multi-label decision threshold for evaluation
    label_pieces: str = "first"  # ner: train only words' first pieces, or all pieces (features.encode_ner)
    augment: str | None = None  # "typos" or "typos=RATE": misspell training words afresh each epoch
    precision: str = "auto"  # fp32, bf16 autocast, or auto: bf16 where the CPU has AMX (model.precision)
    layer_lr_decay: float = 1.0  # each layer below the head learns at this fraction of the one above


def infer_problem_type(examples: list) -> str:
    kinds = {type(ex.label) for ex in examples}
    if kinds == {list}:
        return "multi_label_classification"
    if kinds == {float} or kinds == {float, str} and all(_is_number(ex.label) for ex in examples):
        return "regression"
    if kinds == {str}:
        return "single_label_classification"
    raise ValueError(f"{examples[0].source.rsplit(':', 1)[0]}: labels mix lists, names and numbers")


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def set_seed(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(cfg: TrainConfig, log=print) -> dict:
    """Train, keep the best epoch by the dev headline metric, write `cfg.out`; returns the summary."""
    import torch

    max_length = check_config(cfg)
    started = time.time()
    set_seed(cfg.seed)
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    train_examples, dev_examples, labels, problem_type = _read_data(cfg)
    precision = resolve_precision(cfg.precision)
    tokenizer = load_tokenizer(cfg.base)
    model = build_task_model(cfg.base, cfg.task, labels, problem_type,
                             attn_implementation=attention_for(precision))
    features = _encode(cfg, tokenizer, train_examples, labels, problem_type, max_length)
    log(f"{cfg.task}: {len(train_examples)} train examples -> {len(features)} features, "
        f"{len(dev_examples)} dev examples; labels: {labels}; problem type: {problem_type}; "
        f"training precision: {precision}")

    augment = parse_augment(cfg.augment)
    per_epoch = len(features) * (2 if augment and augment.keep_clean else 1)
    optimizer, scheduler = _optimizer(model, cfg, steps=cfg.epochs * -(-per_epoch // cfg.batch_size))
    lengths = [len(f["input_ids"]) for f in features]
    rng = random.Random(cfg.seed)
    eval_options = dict(max_length=max_length, batch_size=cfg.eval_batch_size, doc_stride=cfg.doc_stride,
                        threshold=cfg.threshold)
    out = Path(cfg.out)
    check_out(out)  # again: it may have appeared while the data was read
    remove_stale_partials(out)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    epochs, best = [], None
    previous_handler = _terminate_like_interrupt()
    try:
        for epoch in range(1, cfg.epochs + 1):
            noise = {}
            if augment:
                # Fresh typos every epoch; tags stay per word and QA answers are re-located.
                stats = AttackStats()
                noisy = attack_examples(train_examples, seed=cfg.seed, rate=augment.rate, epoch=epoch,
                                        stats=stats)
                if augment.keep_clean:
                    noisy = train_examples + noisy
                features = _encode(cfg, tokenizer, noisy, labels, problem_type, max_length)
                lengths = [len(f["input_ids"]) for f in features]
                noise = {"augment": {"rate": augment.rate, "keep_clean": augment.keep_clean,
                                     **stats.as_dict()}}
            batches = length_bucketed_batches(lengths, cfg.batch_size, rng)
            loss, seconds = _train_epoch(model, tokenizer, features, batches, optimizer, scheduler, cfg,
                                         precision, desc=f"epoch {epoch}/{cfg.epochs}")
            t1 = time.time()
            metrics = evaluate(cfg.task, model, tokenizer, dev_examples, **eval_options)
            record = {"epoch": epoch, "texts": len(features), "train_loss": loss,
                      "train_seconds": round(seconds, 1), "texts_per_s": round(len(features) / seconds, 1),
                      "eval_seconds": round(time.time() - t1, 1), "dev": metrics, **noise}
            epochs.append(record)
            improved = best is None or metrics["main"] > best["dev"]["main"]
            log(f"epoch {epoch}: loss {loss:.4f}, dev {metrics['metric']} "
                f"{metrics['main']:.4f}{' (best so far, saved)' if improved else ''}, "
                f"{seconds:.0f} s training, {record['texts_per_s']} texts/s")
            if improved:
                best = record
                save_checkpoint(model, tokenizer, tmp)
        summary = _summary(cfg, max_length, labels, problem_type, epochs, best, started)
        (tmp / SUMMARY_NAME).write_text(json.dumps(summary, indent=2) + "\n")
        _replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
    return summary


def check_config(cfg: TrainConfig) -> int:
    """Refuse settings that would crash or waste the run, before any data is read; each
    ValueError names the command-line option (`berth train` prints it as one line). Returns the
    max length to train at: `cfg.max_length`, else the task's default capped at what the base's
    position embeddings allow."""
    if cfg.epochs is None or cfg.epochs < 1:
        raise ValueError(f"--epochs must be at least 1, not {cfg.epochs}")
    if cfg.batch_size is None or cfg.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, not {cfg.batch_size}")
    if cfg.eval_batch_size is None or cfg.eval_batch_size < 1:
        raise ValueError(f"--eval-batch-size must be at least 1, not {cfg.eval_batch_size}")
    if cfg.threads is not None and cfg.threads < 1:
        raise ValueError(f"--threads must be at least 1, not {cfg.threads}")
    if not cfg.lr > 0:
        raise ValueError(f"--lr must be above 0, not {cfg.lr}")
    if not 0.0 < cfg.layer_lr_decay <= 1.0:
        raise ValueError(f"--layer-lr-decay must be in (0, 1], not {cfg.layer_lr_decay}")
    max_length = cfg.max_length or DEFAULT_MAX_LENGTH[cfg.task]
    least = MIN_MAX_LENGTH_QA if cfg.task == "qa" else MIN_MAX_LENGTH
    if cfg.max_length is not None and cfg.max_length < least:
        raise ValueError(f"--max-length must be at least {least} for {cfg.task}, not {cfg.max_length}")
    config = Path(cfg.base) / "config.json"
    if not config.is_file():
        raise ValueError(f"--base must be a checkpoint directory with a config.json; {cfg.base} has none")
    try:
        usable = usable_positions(json.loads(config.read_text()))
    except (OSError, ValueError) as exc:
        raise ValueError(f"--base must be a checkpoint directory with a readable config.json: "
                         f"{config}: {exc}") from None
    if cfg.max_length is None and usable is not None:
        max_length = min(max_length, usable)
    if usable is not None and max_length > usable:
        raise ValueError(f"--max-length must be at most {usable}, the positions {cfg.base} has, "
                         f"not {max_length}")
    if cfg.task == "qa" and not 0 <= cfg.doc_stride < max_length // 2:
        raise ValueError(f"--doc-stride must be at least 0 and under half of --max-length ({max_length}), "
                         f"not {cfg.doc_stride}")
    check_out(Path(cfg.out))
    return max_length


MIN_MAX_LENGTH = 3  # [CLS] [SEP] and one token: 1 would disable truncation, 2 trains on specials only
MIN_MAX_LENGTH_QA = 8  # [CLS] question [SEP] context [SEP], some room for each


def check_out(out: Path, summary_name: str = SUMMARY_NAME) -> None:
    """`out` is replaced whole at the end: refuse one that holds anything but a berth checkpoint
    (one with `summary_name`: berth_train.json, or berth_pretrain.json for `berth train mlm`)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ValueError(f"--out must be a new directory or a berth checkpoint; {out} is a file")
    if (out / summary_name).is_file() or not any(out.iterdir()):
        return
    raise ValueError(f"--out must be a new or empty directory or a berth checkpoint; {out} holds other "
                     f"files (no {summary_name}) and would be replaced")


def remove_stale_partials(out: Path) -> None:
    """Delete `.NAME.partial-PID` siblings of `out` left by runs whose process is gone (killed)."""
    if not out.parent.is_dir():
        return
    for path in out.parent.glob(f".{out.name}.partial-*"):
        pid = path.name.rsplit("-", 1)[1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _terminate_like_interrupt():
    """Make SIGTERM (docker stop, CI timeouts) unwind like Ctrl-C (SystemExit 143), so the partial
    checkpoint is removed; returns the handler to restore, or None where none can be set (not the
    main thread)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise SystemExit(128 + signum)  # the status a shell reports for a SIGTERM-killed process

    previous = signal.signal(signal.SIGTERM, handler)
    return previous if previous is not None else signal.SIG_DFL


def _read_data(cfg: TrainConfig) -> tuple[list, list, list[str] | None, str | None]:
    """(train examples, dev examples, labels, problem type), dev labels checked against train's."""
    train_examples = read_examples(cfg.train, cfg.format, cfg.task)
    dev_examples = read_examples(cfg.dev, cfg.format, cfg.task)
    if not train_examples or not dev_examples:
        raise ValueError(f"no examples in {cfg.train if not train_examples else cfg.dev}")
    labels, problem_type = None, None
    if cfg.task == "classify":
        problem_type = cfg.problem_type or infer_problem_type(train_examples)
        if problem_type not in PROBLEM_TYPES:
            raise ValueError(f"problem type must be one of {PROBLEM_TYPES}")
        if problem_type == "regression":
            labels = ["score"]
            train_examples = [_as_float(ex) for ex in train_examples]
            dev_examples = [_as_float(ex) for ex in dev_examples]
        else:
            labels = labels_of_examples("classify", train_examples, label_order(cfg.format))
    elif cfg.task == "ner":
        labels = labels_of_examples("ner", train_examples)
    if labels and problem_type != "regression":
        check_known_labels(cfg.task, dev_examples, labels)
    return train_examples, dev_examples, labels, problem_type


def _encode(cfg: TrainConfig, tokenizer, examples: list, labels: list[str] | None, problem_type: str | None,
            max_length: int) -> list[dict]:
    label2id = {name: i for i, name in enumerate(labels or [])}
    if cfg.task == "classify":
        return encode_classify(tokenizer, examples, label2id, problem_type, max_length)
    if cfg.task == "ner":
        return encode_ner(tokenizer, examples, label2id, max_length, cfg.label_pieces)
    return encode_qa(tokenizer, examples, max_length, cfg.doc_stride)[0]


def _train_epoch(model, tokenizer, features: list[dict], batches: list[list[int]], optimizer, scheduler,
                 cfg: TrainConfig, precision: str, desc: str) -> tuple[float, float]:
    """One pass over `batches`; returns (mean loss, seconds). The bar shows loss and texts/s."""
    import torch
    from tqdm import tqdm

    model.train()
    # Inputs the model takes, plus its targets; anything else on the features stays out.
    keep = {*input_names(model), "labels", "start_positions", "end_positions"}
    t0, seen, loss_sum = time.time(), 0, 0.0
    bar = tqdm(batches, desc=desc, unit="batch", file=sys.stderr, dynamic_ncols=True,
               mininterval=1.0 if sys.stderr.isatty() else 30.0)  # a log file gets a line per 30 s
    for step, idx in enumerate(bar, 1):
        batch = collate([features[i] for i in idx], tokenizer.pad_token_id, token_labels=cfg.task == "ner")
        with autocast(precision):
            loss = model(**{k: v for k, v in batch.items() if k in keep}).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        seen += len(idx)
        loss_sum += loss.item()
        bar.set_postfix(loss=f"{loss_sum / step:.4f}", texts_per_s=f"{seen / (time.time() - t0):.1f}",
                        refresh=False)
    bar.close()
    return loss_sum / max(len(batches), 1), time.time() - t0


def command_line(cfg: TrainConfig) -> str:
    """The `berth train` command that reproduces this run, every setting spelled out."""
    parts = ["berth", "train", cfg.task]
    for key, value in asdict(cfg).items():
        if key == "task" or value is None:
            continue
        parts += [f"--{key.replace('_', '-')}", shlex.quote(str(value))]
    return " ".join(parts)


def _as_float(ex):
    from dataclasses import replace

    try:
        return replace(ex, label=float(ex.label))
    except (TypeError, ValueError):
        raise ValueError(f"{ex.source}: regression label {ex.label!r} is not a number") from None


def adamw(model, lr: float, weight_decay: float, layer_lr_decay: float = 1.0):
    """AdamW without weight decay on biases and LayerNorm weights; with `layer_lr_decay` < 1 the
    rate falls geometrically from the head down to the embeddings (`parameter_depths`).

    Layer-wise decay (ULMFiT's discriminative rates, as ELECTRA fine-tunes): the head and top
    layers adapt to the task at the full rate while the lower layers, whose features pretraining
    made general, move less.

    The fused kernel: the per-tensor (foreach) one spent 160 ms a step on MiniLM's 22M parameters
    here, a quarter of the step; fused measured a third of that, same update rule.
    """
    import torch

    if not 0.0 < layer_lr_decay <= 1.0:
        raise ValueError(f"layer_lr_decay must be in (0, 1], got {layer_lr_decay}")
    depths = parameter_depths(model)
    top = max(depths.values(), default=0)
    groups: dict[tuple[int, bool], list] = {}
    for name, param in model.named_parameters():
        groups.setdefault((depths[name], param.ndim >= 2), []).append(param)
    return torch.optim.AdamW(
        [{"params": params, "weight_decay": weight_decay if decayed else 0.0,
          "lr": lr * layer_lr_decay ** (top - depth)}
         for (depth, decayed), params in sorted(groups.items())],
        lr=lr, fused=True,
    )


# Encoder layer i of BERT, RoBERTa, DistilBERT (`…layer.i.`), TextCNN (`…layers.i.`) and ALBERT's
# shared group (`…albert_layer_groups.i.`).
_LAYER_INDEX = re.compile(r"(?:^|\.)(?:layer|layers|albert_layer_groups)\.(\d+)\.")


def parameter_depths(model) -> dict[str, int]:
    """Each parameter's depth from the input: 0 for the embeddings (ALBERT's projection out of
    them included), i + 1 for encoder layer i, and one above the last layer for the pooler and
    the task head."""
    depths: dict[str, int | None] = {}
    for name, _param in model.named_parameters():
        match = _LAYER_INDEX.search(name)
        depths[name] = int(match.group(1)) + 1 if match else 0 if "embedding" in name else None
    top = max((d for d in depths.values() if d is not None), default=0) + 1
    return {name: top if depth is None else depth for name, depth in depths.items()}


def _optimizer(model, cfg: TrainConfig, steps: int):
    """AdamW (`adamw`); warm-up then linear decay to 0."""
    import torch

    optimizer = adamw(model, cfg.lr, cfg.weight_decay, cfg.layer_lr_decay)
    warmup = int(steps * cfg.warmup_ratio)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (steps - step) / max(1, steps - warmup))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _replace_dir(new: Path, out: Path) -> None:
    """Put `new` at `out` by renames only, so `out` is either the old or the complete new one."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(old)
    new.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def _summary(cfg, max_length, labels, problem_type, epochs, best, started) -> dict:
    import tokenizers
    import torch
    import transformers

    return {
        "command": command_line(cfg),
        "args": {**asdict(cfg), "max_length": max_length},
        "task": cfg.task,
        "labels": labels,
        "problem_type": problem_type,
        "metric": MAIN_METRIC["qa" if cfg.task == "qa" else "ner" if cfg.task == "ner" else problem_type],
        "best_epoch": best["epoch"],
        "best": best["dev"]["main"],
        "epochs": epochs,
        "train_seconds": round(sum(e["train_seconds"] for e in epochs), 1),
        "wall_seconds": round(time.time() - started, 1),
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "processor": _cpu_model(), "platform": platform.platform()},
        "training_precision": resolve_precision(cfg.precision),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "tokenizers": tokenizers.__version__},
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
