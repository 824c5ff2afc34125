"""Probe for docs/pretraining.md: does mean pooling let an MLM-pretrained BERT use its pretraining
on SST-2, where the product's [CLS]-pooled classifier (transformers' BertForSequenceClassification)
does not? Fine-tunes a `berth train mlm` BERT checkpoint and a random initialisation of the same
config with a mean-pooled linear head, 3 epochs, batch 32, AdamW with 10% warm-up and linear decay,
bf16 autocast, max length 64, and prints one JSON line per run (dev accuracy per epoch).

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/sst2-pooling-probe.py --checkpoint runs/pretrain/bert-small \
        --pooling mean --lrs 3e-4

A probe, not a product path: it uses model/'s SST reader but its own short loop (no length
bucketing, so it runs about half as fast as `berth train classify`).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, BertModel, PreTrainedTokenizerFast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from model.data.sst import read_sst  # noqa: E402


class PooledClassifier(nn.Module):
    def __init__(self, encoder: BertModel, pooling: str) -> None:
        super().__init__()
        self.encoder, self.pooling = encoder, pooling
        self.dropout = nn.Dropout(0.1)
        self.out = nn.Linear(encoder.config.hidden_size, 2)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        if self.pooling == "mean":
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            vector = (hidden * weights).sum(1) / weights.sum(1)
        else:
            vector = hidden[:, 0]
        return self.out(self.dropout(vector))


def batches(data, size, rng=None):
    order = list(range(len(data)))
    if rng is not None:
        rng.shuffle(order)
    for start in range(0, len(order), size):
        rows = [data[j] for j in order[start:start + size]]
        width = max(len(ids) for ids, _ in rows)
        ids = torch.tensor([ids + [0] * (width - len(ids)) for ids, _ in rows])
        yield ids, (ids != 0).long(), torch.tensor([label for _, label in rows])


def fine_tune(args, train, dev, arm: str, seed: int, lr: float) -> list[float]:
    torch.manual_seed(seed)
    rng = random.Random(seed)
    if arm == "pretrained":
        encoder = BertModel.from_pretrained(args.checkpoint, add_pooling_layer=False)
    else:
        encoder = BertModel(AutoConfig.from_pretrained(args.checkpoint), add_pooling_layer=False)
    model = PooledClassifier(encoder, args.pooling)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    steps = args.epochs * math.ceil(len(train) / 32)
    warm = int(0.1 * steps)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: s / max(1, warm) if s < warm else max(0.0, (steps - s) / max(1, steps - warm)))
    accuracies = []
    for _ in range(args.epochs):
        model.train()
        for ids, mask, y in batches(train, 32, rng):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = nn.functional.cross_entropy(model(ids, mask).float(), y)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
        model.eval()
        correct = 0
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            for ids, mask, y in batches(dev, 64):
                correct += (model(ids, mask).argmax(-1) == y).sum().item()
        accuracies.append(correct / len(dev))
    return accuracies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="a `berth train mlm` BERT checkpoint")
    parser.add_argument("--pooling", choices=("mean", "cls"), default="mean")
    parser.add_argument("--lrs", default="3e-4")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train", type=Path, default=Path("data/sst/train.txt"))
    parser.add_argument("--dev", type=Path, default=Path("data/sst/dev.txt"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    specials = {"pad_token": "[PAD]", "cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]",
                "unk_token": "[UNK]"}
    tok = PreTrainedTokenizerFast(tokenizer_file=str(args.checkpoint / "tokenizer.json"), **specials)
    train_ex, dev_ex = read_sst(args.train), read_sst(args.dev)
    label_ids = {label: i for i, label in enumerate(sorted({e.label for e in train_ex}))}

    def encode(examples):
        ids = tok([e.text for e in examples], truncation=True, max_length=64)["input_ids"]
        return [(row, label_ids[e.label]) for row, e in zip(ids, examples, strict=True)]

    train, dev = encode(train_ex), encode(dev_ex)
    for lr in (float(x) for x in args.lrs.split(",")):
        for seed in (int(x) for x in args.seeds.split(",")):
            for arm in ("pretrained", "random"):
                start = time.time()
                acc = fine_tune(args, train, dev, arm, seed, lr)
                row = {"pooling": args.pooling, "lr": lr, "seed": seed, "arm": arm, "best": max(acc),
                       "per_epoch": [round(a, 4) for a in acc], "seconds": round(time.time() - start)}
                print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
