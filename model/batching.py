"""Length-bucketed batches and per-batch right padding.

Sorting by length within large shuffled pools cuts padding (a big speed win on CPU) while
keeping batches random from epoch to epoch.
"""

from __future__ import annotations

import random

# Keys that are not model inputs (kept on features for evaluation only).
META_KEYS = ("word_ids",)


def length_bucketed_batches(
    lengths: list[int], batch_size: int, rng: random.Random | None, pool_batches: int = 50
) -> list[list[int]]:
    """Index batches of similar lengths.

    rng None: one deterministic pass sorted by length (evaluation). Otherwise shuffle, cut into
    pools of `pool_batches` batches, sort each pool by length, batch it, and shuffle the batches.
    """
    order = list(range(len(lengths)))
    if rng is None:
        order.sort(key=lambda i: lengths[i])
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(order)
    pool = batch_size * pool_batches
    batches = []
    for p in range(0, len(order), pool):
        chunk = sorted(order[p : p + pool], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


SEQUENCE_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def collate(features: list[dict], pad_id: int, token_labels: bool = False) -> dict:
    """Pad a list of features on the right into a dict of tensors.

    token_labels: labels are one per token (NER) and are padded with -100 like the inputs.
    """
    import torch

    width = max(len(f["input_ids"]) for f in features)
    batch = {}
    for key in features[0]:
        if key in META_KEYS:
            continue
        values = [f[key] for f in features]
        if key in SEQUENCE_KEYS or (key == "labels" and token_labels):
            fill = {"input_ids": pad_id, "labels": -100}.get(key, 0)
            values = [v + [fill] * (width - len(v)) for v in values]
        # Float labels: multi-hot (multi-label) or targets (regression); everything else is ids.
        is_float = isinstance(_first_scalar(values), float)
        batch[key] = torch.tensor(values, dtype=torch.float32 if is_float else torch.long)
    return batch


def _first_scalar(values: list):
    value = values[0]
    while isinstance(value, list):
        value = value[0]
    return value
