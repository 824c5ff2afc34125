"""BERT's masked-LM corruption: select 15% of the real tokens (or of the words, for whole-word
masking); of the selected tokens 80% become [MASK], 10% a random token, 10% stay as they are.
Only selected tokens are predicted (labels elsewhere are IGNORE).

Masks are drawn when a batch is built, from a generator seeded per epoch, so every epoch sees a
new masking of the same text (RoBERTa's dynamic masking) and a seed reproduces a run exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

IGNORE = -100


@dataclass(frozen=True)
class MaskingConfig:
    mask_id: int
    random_ids: torch.Tensor  # token ids a "random token" is drawn from (the vocabulary minus specials)
    probability: float = 0.15
    whole_word: bool = False
    mask_ratio: float = 0.8  # of the selected: [MASK]
    random_ratio: float = 0.1  # of the selected: a random token; the rest stay unchanged


def mask_tokens(input_ids: torch.Tensor, word_ids: torch.Tensor, cfg: MaskingConfig,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(corrupted input ids, labels) for a padded batch.

    input_ids, word_ids: [batch, seq] int64; word_ids is the word index of each token within its
    row, -1 for special tokens and padding (never selected). With `cfg.whole_word` the draw is one
    per word and selects all its pieces; otherwise one per token.
    """
    real = word_ids >= 0  # [b, s]
    if cfg.whole_word:
        words = int(word_ids.max().item()) + 1 if real.any() else 1
        per_word = torch.rand((input_ids.size(0), words), generator=generator) < cfg.probability  # [b, w]
        selected = per_word.gather(1, word_ids.clamp(min=0)) & real
    else:
        selected = (torch.rand(input_ids.shape, generator=generator) < cfg.probability) & real
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE))
    roll = torch.rand(input_ids.shape, generator=generator)
    to_mask = selected & (roll < cfg.mask_ratio)
    to_random = selected & (roll >= cfg.mask_ratio) & (roll < cfg.mask_ratio + cfg.random_ratio)
    corrupted = input_ids.clone()
    corrupted[to_mask] = cfg.mask_id
    picks = torch.randint(len(cfg.random_ids), (int(to_random.sum().item()),), generator=generator)
    corrupted[to_random] = cfg.random_ids[picks]
    return corrupted, labels


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The masking generator of one epoch: a fresh, reproducible stream per (seed, epoch)."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch)
