"""`berth train mlm`: masked-LM pretraining on raw text, from scratch or from a checkpoint.

From scratch (`base` None): a WordPiece vocabulary is trained on the training text (or taken from
`tokenizer`), and an encoder of `arch`/`size` is built with random weights. From a checkpoint
(`base`, e.g. the packaged MiniLM): its tokenizer and weights, continued on the new text (domain
adaptation). Lines longer than `max_length` are cut into consecutive windows; every window is
[CLS] ... [SEP]. Masks are re-drawn for every batch from a per-epoch generator (dynamic masking).

The loop reuses the fine-tuning loop's parts (length-bucketed batches, AdamW with warm-up and
linear decay, atomic checkpoint). `max_minutes` bounds the training time: the number of steps
the schedule decays over is re-estimated from the measured step time, so the learning rate still
reaches zero at the budget. `epochs=0` writes the randomly initialised encoder and its tokenizer
(the baseline the pretrained one is compared with).
"""

from __future__ import annotations

import json
import os
import random
import shlex
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from model.batching import collate, length_bucketed_batches

SUMMARY_NAME = "berth_pretrain.json"
_INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")
# Under max_minutes the step budget is first estimated after a few steps (the warm-up, a share of
# the budget, is then known early), and re-estimated regularly as the machine's speed varies.
STEP_ESTIMATE_FIRST = 10
STEP_ESTIMATE_EVERY = 50


@dataclass
class MLMConfig:
    train: str
    out: str
    dev: str | None = None
    base: str | None = None  # continue from this checkpoint; None: from scratch
    arch: str = "bert"
    size: str = "small"
    config_overrides: str = ""  # key=value,... on top of the preset (from scratch)
    tokenizer: str | None = None  # reuse this checkpoint's tokenizer instead of training one
    vocab_size: int = 8000
    max_length: int = 128
    mlm_probability: float = 0.15
    whole_word: bool = False
    dropout: float | None = None  # every dropout rate while pretraining; None: the config's
    epochs: int = 10
    max_minutes: float | None = None
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    max_grad_norm: float = 1.0
    seed: int = 42
    threads: int | None = None
    eval_batch_size: int = 128
    precision: str = "auto"  # fp32, bf16 autocast, or auto: bf16 where the CPU has AMX (model.precision)


def read_lines(path: str | Path) -> list[str]:
    """Non-empty lines of a raw text file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"text file not found: {path}")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise ValueError(f"{path}: no text")
    return lines


def encode_lines(tokenizer, lines: list[str], max_length: int) -> list[dict]:
    """Windows of at most `max_length` tokens; `word_ids` numbers the words of each window from 0
    (-1 on [CLS]/[SEP]) for whole-word masking and to tell real tokens from specials."""
    enc = tokenizer(lines, truncation=True, max_length=max_length, return_overflowing_tokens=True,
                    stride=0, padding=False, return_token_type_ids=True)
    features = []
    for i in range(len(enc["input_ids"])):
        renumber: dict[int, int] = {}
        words = [-1 if w is None else renumber.setdefault(w, len(renumber)) for w in enc.word_ids(i)]
        feature = {key: enc[key][i] for key in _INPUT_KEYS if key in enc}
        feature["word_ids"] = words
        features.append(feature)
    return features


def collate_mlm(features: list[dict], pad_id: int) -> tuple[dict, object]:
    """(padded model inputs, word ids [b, s] padded with -1)."""
    import torch

    batch = collate(features, pad_id)
    width = batch["input_ids"].size(1)
    words = torch.tensor([f["word_ids"] + [-1] * (width - len(f["word_ids"])) for f in features])
    return batch, words


def mlm_loss(model, feeds: dict, labels) -> tuple[object, int, int]:
    """(mean cross-entropy over the selected tokens, correct predictions, selected tokens)."""
    import torch

    from model.pretrain.backbones import mlm_parts
    from model.pretrain.masking import IGNORE

    selected = labels != IGNORE
    count = int(selected.sum().item())
    parts = mlm_parts(model)
    if parts is not None:
        encoder, head = parts
        hidden = encoder(**feeds).last_hidden_state  # [b, s, h]
        # The head only where a prediction is asked, and in fp32 even under bf16 autocast: the
        # vocabulary projection of the tied embedding measured 6x slower in bf16 than in fp32 here
        # (1.1 ms vs 6 ms per matmul on TextCNN small), and fp32 logits keep the softmax exact.
        with torch.autocast("cpu", enabled=False):
            logits = head(hidden[selected].float())  # [n, vocab]
    else:
        logits = model(**feeds).logits[selected]
    target = labels[selected]
    loss = torch.nn.functional.cross_entropy(logits, target) if count else logits.sum() * 0.0
    correct = int((logits.argmax(-1) == target).sum().item()) if count else 0
    return loss, correct, count


def set_dropout(model, rate: float) -> int:
    """Set every dropout module of `model` to `rate` (transformers' attention reads its module's
    `p` at call time, so attention dropout follows too); returns how many were set. The config is
    untouched: a checkpoint pretrained without dropout still fine-tunes with its configured rates,
    so pretrained and random arms of a comparison fine-tune alike."""
    import torch

    modules = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    for module in modules:
        module.p = rate
    return len(modules)


def build_model_and_tokenizer(cfg: MLMConfig, train_lines: list[str], attention: str = "sdpa"):
    """(MLM model, tokenizer, how they were made) for the config: from `base`, or from scratch."""
    from transformers import AutoConfig, AutoModelForMaskedLM

    from model.heads import attention_kwargs, load_tokenizer, register_architectures
    from model.pretrain.backbones import build_config, parse_overrides
    from model.pretrain.vocab import train_wordpiece

    register_architectures()
    if cfg.base:
        model_type = AutoConfig.from_pretrained(cfg.base).model_type
        model = AutoModelForMaskedLM.from_pretrained(cfg.base, **attention_kwargs(model_type, attention))
        return model, load_tokenizer(cfg.base), {"from": "checkpoint", "base": cfg.base}
    if cfg.tokenizer:
        tokenizer, origin = load_tokenizer(cfg.tokenizer), {"tokenizer_from": cfg.tokenizer}
    else:
        t0 = time.time()
        tokenizer = train_wordpiece(train_lines, cfg.vocab_size)
        origin = {"tokenizer_trained_seconds": round(time.time() - t0, 1)}
    config = build_config(cfg.arch, cfg.size, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                          overrides=parse_overrides(cfg.config_overrides))
    model = AutoModelForMaskedLM.from_config(config, **attention_kwargs(config.model_type, attention))
    return model, tokenizer, {"from": "scratch", "arch": cfg.arch, "size": cfg.size, **origin}


def pretrain(cfg: MLMConfig, log=print) -> dict:
    """Pretrain, write `cfg.out` (model, tokenizer, berth_pretrain.json); returns the summary."""
    import torch

    from model.heads import input_names, save_checkpoint
    from model.precision import attention_for, autocast, resolve_precision
    from model.pretrain.backbones import parameter_count
    from model.pretrain.masking import MaskingConfig, epoch_generator
    from model.train import _replace_dir, adamw, check_out, set_seed

    if cfg.dropout is not None and not 0.0 <= cfg.dropout < 1.0:
        raise ValueError(f"--dropout must be in [0, 1), got {cfg.dropout}")
    # `out` is replaced whole at the end (`--out data/` deleted the data, as it did for train).
    check_out(Path(cfg.out), SUMMARY_NAME)
    started = time.time()
    set_seed(cfg.seed)
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    train_lines = read_lines(cfg.train)
    dev_lines = read_lines(cfg.dev) if cfg.dev else []
    precision = resolve_precision(cfg.precision)
    model, tokenizer, origin = build_model_and_tokenizer(cfg, train_lines, attention_for(precision))
    if cfg.dropout is not None:
        # Short runs on little compute learn faster without it (Geiping & Goldstein's "cramming"
        # recipe), and the random draws it saves are costly on CPU: TextCNN small pretrained 1.7x
        # as fast at 0 here (docs/pretraining.md, session 6).
        origin["dropout_modules_set"] = set_dropout(model, cfg.dropout)
    features = encode_lines(tokenizer, train_lines, cfg.max_length)
    dev_features = encode_lines(tokenizer, dev_lines, cfg.max_length) if dev_lines else []
    special = set(tokenizer.all_special_ids)
    masking = MaskingConfig(
        mask_id=tokenizer.mask_token_id, probability=cfg.mlm_probability, whole_word=cfg.whole_word,
        random_ids=torch.tensor([i for i in range(len(tokenizer)) if i not in special]),
    )
    params = parameter_count(model.config)
    n_tokens = sum(len(f["input_ids"]) for f in features)
    log(f"mlm: {model.config.model_type} {params['total']:,} encoder parameters, vocabulary "
        f"{len(tokenizer)}; {len(train_lines)} lines -> {len(features)} windows ({n_tokens:,} tokens), "
        f"{len(dev_features)} dev windows; training precision {precision}")

    per_epoch = -(-len(features) // cfg.batch_size)
    planned = max(1, cfg.epochs * per_epoch)
    plan = {"steps": planned}
    optimizer = adamw(model, cfg.lr, cfg.weight_decay)

    def factor(step: int) -> float:  # reads plan["steps"], which a time budget may lower
        warmup = max(1, int(plan["steps"] * cfg.warmup_ratio))
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (plan["steps"] - step) / max(1, plan["steps"] - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    names = input_names(model)
    lengths = [len(f["input_ids"]) for f in features]
    rng = random.Random(cfg.seed)
    budget = cfg.max_minutes * 60 if cfg.max_minutes else None
    out = Path(cfg.out)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    epochs, step, train_seconds = [], 0, 0.0
    try:
        for epoch in range(1, cfg.epochs + 1):
            if step >= plan["steps"]:
                break
            generator = epoch_generator(cfg.seed, epoch)
            batches = length_bucketed_batches(lengths, cfg.batch_size, rng)
            model.train()
            t0, loss_sum, n_batches, correct, count, tokens = time.time(), 0.0, 0, 0, 0, 0
            for idx in batches:
                batch, words = collate_mlm([features[i] for i in idx], tokenizer.pad_token_id)
                inputs, labels = _corrupt(batch, words, masking, generator)
                with autocast(precision):
                    loss, right, n = mlm_loss(model, {k: v for k, v in inputs.items() if k in names}, labels)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                loss_sum, n_batches = loss_sum + loss.item(), n_batches + 1
                correct, count = correct + right, count + n
                tokens += int(batch["attention_mask"].sum().item())
                elapsed = train_seconds + time.time() - t0
                if budget and (step == STEP_ESTIMATE_FIRST or step % STEP_ESTIMATE_EVERY == 0):
                    # Steps left that fit in the budget at the mean speed so far, up or down (the
                    # first steps are slow, a neighbour's load comes and goes), never past the epochs.
                    plan["steps"] = min(planned, step + int((budget - elapsed) / (elapsed / step)))
                if step % 100 == 0:
                    log(f"  step {step}/{plan['steps']}: loss {loss_sum / n_batches:.3f}, "
                        f"{tokens / (time.time() - t0):.0f} tokens/s")
                if step >= plan["steps"] or (budget and elapsed >= budget):
                    break
            seconds = time.time() - t0
            train_seconds += seconds
            record = {"epoch": epoch, "steps": n_batches,
                      "train_loss": round(loss_sum / max(1, n_batches), 4),
                      "train_mlm_accuracy": round(correct / max(1, count), 4),
                      "train_seconds": round(seconds, 1), "tokens_per_s": round(tokens / seconds, 1)}
            if dev_features:
                record["dev"] = evaluate_mlm(model, tokenizer, dev_features, masking, names, cfg)
            epochs.append(record)
            dev_note = (f", dev loss {record['dev']['loss']:.3f} accuracy {record['dev']['accuracy']:.3f}"
                        if dev_features else "")
            log(f"epoch {epoch}: loss {record['train_loss']:.3f}{dev_note}, {seconds:.0f} s, "
                f"{record['tokens_per_s']:.0f} tokens/s")
            if budget and train_seconds >= budget:
                break
        stopped = "time budget" if step < cfg.epochs * per_epoch else "epochs"
        save_checkpoint(model, tokenizer, tmp)
        summary = _summary(cfg, model, tokenizer, origin, params, features, epochs, step, train_seconds,
                           stopped, started)
        (tmp / SUMMARY_NAME).write_text(json.dumps(summary, indent=2) + "\n")
        _replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary


def _corrupt(batch: dict, words, masking, generator) -> tuple[dict, object]:
    from model.pretrain.masking import mask_tokens

    ids, labels = mask_tokens(batch["input_ids"], words, masking, generator)
    return {**batch, "input_ids": ids}, labels


def evaluate_mlm(model, tokenizer, features: list[dict], masking, names, cfg: MLMConfig) -> dict:
    """Loss and accuracy on the dev windows under one fixed masking (the same every epoch)."""
    import torch

    from model.pretrain.masking import epoch_generator

    model.eval()
    generator = epoch_generator(cfg.seed, 0)
    lengths = [len(f["input_ids"]) for f in features]
    loss_sum, correct, count = 0.0, 0, 0
    with torch.inference_mode():
        for idx in length_bucketed_batches(lengths, cfg.eval_batch_size, rng=None):
            batch, words = collate_mlm([features[i] for i in idx], tokenizer.pad_token_id)
            inputs, labels = _corrupt(batch, words, masking, generator)
            loss, right, n = mlm_loss(model, {k: v for k, v in inputs.items() if k in names}, labels)
            loss_sum, correct, count = loss_sum + loss.item() * n, correct + right, count + n
    model.train()
    return {"loss": round(loss_sum / max(1, count), 4), "accuracy": round(correct / max(1, count), 4),
            "masked_tokens": count}


def command_line(cfg: MLMConfig) -> str:
    """The `berth train mlm` command that reproduces this run."""
    parts = ["berth", "train", "mlm"]
    for key, value in asdict(cfg).items():
        if value is None or value == "" or value is False:
            continue
        flag = f"--{key.replace('_', '-')}"
        parts += [flag] if value is True else [flag, shlex.quote(str(value))]
    return " ".join(parts)


def _resolved(precision: str) -> str:
    from model.precision import resolve_precision

    return resolve_precision(precision)


def _summary(cfg, model, tokenizer, origin, params, features, epochs, steps, train_seconds, stopped,
             started) -> dict:
    import tokenizers
    import torch
    import transformers

    from model.train import _cpu_model

    return {
        "command": command_line(cfg),
        "args": asdict(cfg),
        "model_type": model.config.model_type,
        "origin": origin,
        "training_precision": _resolved(cfg.precision),
        "parameters": params,
        "vocab_size": len(tokenizer),
        "train_windows": len(features),
        "train_tokens": sum(len(f["input_ids"]) for f in features),
        "steps": steps,
        "stopped_by": stopped if cfg.epochs else "epochs=0: random initialisation, not trained",
        "epochs": epochs,
        "train_seconds": round(train_seconds, 1),
        "wall_seconds": round(time.time() - started, 1),
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "processor": _cpu_model()},
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                     "transformers": transformers.__version__, "tokenizers": tokenizers.__version__},
    }
