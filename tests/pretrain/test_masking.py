"""BERT's 80/10/10 masking: rates within tolerance, specials never touched, whole words together,
and a new draw every epoch (dynamic masking) that a seed reproduces."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from model.pretrain.masking import IGNORE, MaskingConfig, epoch_generator, mask_tokens  # noqa: E402

MASK, SPECIALS, VOCAB = 4, {0, 1, 2, 3, 4}, 1000  # [PAD] [UNK] [CLS] [SEP] [MASK]


def _batch(rows: int = 256, width: int = 128, seed: int = 0, pieces_per_word: int = 1):
    """Random rows of real tokens between [CLS] and [SEP], right-padded to `width`, with word ids."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(width // 2, width + 1, (rows,), generator=g)
    ids = torch.randint(5, VOCAB, (rows, width), generator=g)
    words = torch.full((rows, width), -1)
    for r, n in enumerate(lengths.tolist()):
        ids[r, 0], ids[r, n - 1], ids[r, n:] = 2, 3, 0
        words[r, 1 : n - 1] = torch.arange(n - 2) // pieces_per_word
    return ids, words


def _config(**kw) -> MaskingConfig:
    return MaskingConfig(mask_id=MASK, random_ids=torch.arange(5, VOCAB), **kw)


def test_rates_are_15_percent_then_80_10_10():
    ids, words = _batch()
    out, labels = mask_tokens(ids, words, _config(), epoch_generator(1, 1))
    real = words >= 0
    selected = labels != IGNORE
    n_real, n_sel = int(real.sum()), int(selected.sum())
    assert n_sel / n_real == pytest.approx(0.15, abs=0.01)  # ~24k real tokens: sd of the rate ~0.002
    masked = (out == MASK) & selected
    unchanged = (out == ids) & selected
    randomised = selected & ~masked & ~unchanged
    assert int(masked.sum()) / n_sel == pytest.approx(0.8, abs=0.02)
    # A "random" token equal to the original by chance counts as unchanged (1 in 995).
    assert int(randomised.sum()) / n_sel == pytest.approx(0.1, abs=0.015)
    assert int(unchanged.sum()) / n_sel == pytest.approx(0.1, abs=0.015)


def test_labels_are_the_originals_at_selected_positions_only():
    ids, words = _batch(rows=64)
    out, labels = mask_tokens(ids, words, _config(), epoch_generator(2, 1))
    selected = labels != IGNORE
    assert torch.equal(labels[selected], ids[selected])
    # Nothing outside the selection changes, and specials and padding are never selected.
    assert torch.equal(out[~selected], ids[~selected])
    assert not selected[words < 0].any()
    assert set(out[selected & (out != MASK)].tolist()).isdisjoint(SPECIALS)


def test_whole_word_masking_takes_every_piece_of_a_selected_word():
    ids, words = _batch(rows=128, pieces_per_word=3)
    _, labels = mask_tokens(ids, words, _config(whole_word=True), epoch_generator(3, 1))
    selected = labels != IGNORE
    word_rates = []
    for r in range(ids.size(0)):
        row_words = words[r][words[r] >= 0]
        for w in row_words.unique().tolist():
            picked = selected[r][words[r] == w]
            assert picked.all() or not picked.any(), f"row {r} word {w} partly masked"
            word_rates.append(bool(picked.any()))
    assert sum(word_rates) / len(word_rates) == pytest.approx(0.15, abs=0.015)


def test_token_masking_splits_words():
    ids, words = _batch(rows=64, pieces_per_word=3)
    _, labels = mask_tokens(ids, words, _config(), epoch_generator(3, 1))
    selected = labels != IGNORE
    partial = sum(
        0 < int(selected[r][words[r] == w].sum()) < 3
        for r in range(ids.size(0)) for w in words[r][words[r] >= 0].unique().tolist()
    )
    assert partial > 100  # without whole-word masking a word's pieces are drawn one by one


def test_dynamic_masking_new_each_epoch_and_reproducible():
    ids, words = _batch(rows=32)
    cfg = _config()
    first = mask_tokens(ids, words, cfg, epoch_generator(42, 1))
    again = mask_tokens(ids, words, cfg, epoch_generator(42, 1))
    second = mask_tokens(ids, words, cfg, epoch_generator(42, 2))
    other_seed = mask_tokens(ids, words, cfg, epoch_generator(43, 1))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    overlap = ((first[1] != IGNORE) & (second[1] != IGNORE)).sum() / (first[1] != IGNORE).sum()
    assert overlap < 0.3  # independent draws overlap on ~15% of the selected positions
    assert not torch.equal(first[1], other_seed[1])
