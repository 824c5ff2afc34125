"""Token windows over long texts, and entities stitched across them.

Windows are checked token for token against a Hugging Face fast tokenizer's own overflow
(`truncation=True, stride=…, return_overflowing_tokens=True`, what the HF pipelines feed models),
on the tiny WordPiece tokenizer and the packaged all-MiniLM-L6-v2 one. Stitching is checked with a
context-free fake model (logits depend only on the token), for which the stitched entities of a
long text must equal those of one window holding it all.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from service.tasks.ner import decode_entities
from service.tasks.windows import text_windows
from tests.tiny import NER_LABELS, minilm_tokenizer, tiny_bytelevel_tokenizer, tiny_tokenizer

LABELS = NER_LABELS


TOKENIZERS = {"tiny": tiny_tokenizer, "minilm": minilm_tokenizer, "bytelevel": tiny_bytelevel_tokenizer}
LONG = (
    "John Smith visited Paris and London, then the capital of France; Acme Corp works with "
    "Berlin. Café naïve émoji 😀 北京. "
) * 4


@pytest.mark.parametrize("name", TOKENIZERS)
@pytest.mark.parametrize(("max_length", "stride"), [(16, 4), (24, 0), (40, 13), (512, 8)])
def test_windows_match_hf_overflow(name, max_length, stride):
    from transformers import PreTrainedTokenizerFast

    tok = TOKENIZERS[name]()
    hf = PreTrainedTokenizerFast(tokenizer_object=TOKENIZERS[name](), model_max_length=10_000)
    ref = hf(
        LONG,
        truncation=True,
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
        return_token_type_ids=True,
    )
    windows = text_windows(tok, LONG, max_length, stride)
    assert len(windows) == len(ref["input_ids"]) >= (2 if max_length < 512 else 1)
    for k, w in enumerate(windows):
        assert w.input_ids.tolist() == ref["input_ids"][k]
        assert w.token_type_ids.tolist() == ref["token_type_ids"][k]
        assert w.special_mask.astype(int).tolist() == ref["special_tokens_mask"][k]
        assert [tuple(o) for o in w.offsets.tolist()] == [tuple(o) for o in ref["offset_mapping"][k]]
        assert w.word_ids.tolist() == [-1 if i is None else i for i in ref.word_ids(k)]
        assert len(w) <= max_length and w.attention_mask.all()


def test_windows_share_stride_tokens_and_cover_the_text():
    tok = tiny_tokenizer()
    full = tok.encode(LONG, add_special_tokens=False)
    windows = text_windows(tok, LONG, 20, 5)
    assert len(windows) >= 3
    covered = []
    for prev, cur in zip(windows, windows[1:], strict=False):
        prev_ids = prev.input_ids[prev.text_mask]
        cur_ids = cur.input_ids[cur.text_mask]
        assert prev_ids[-5:].tolist() == cur_ids[:5].tolist()
        assert cur.text_start == prev.text_start + len(prev_ids) - 5
    for w in windows:
        ids = w.input_ids[w.text_mask].tolist()
        assert ids == full.ids[w.text_start : w.text_start + len(ids)]
        covered.extend(range(w.text_start, w.text_start + len(ids)))
    assert sorted(set(covered)) == list(range(len(full.ids)))


def test_window_arguments_are_checked():
    tok = tiny_tokenizer()
    with pytest.raises(ValueError, match="stride"):
        text_windows(tok, "john", 10, 8)
    with pytest.raises(ValueError, match="no room"):
        text_windows(tok, "john", 2, 0)
    baked = minilm_tokenizer()
    baked.enable_truncation(128)
    with pytest.raises(ValueError, match="no_truncation"):
        text_windows(baked, "john", 64, 8)


# --- stitching -------------------------------------------------------------------------------

NAMES = {
    "john": "B-PER",
    "smith": "I-PER",
    "paris": "B-LOC",
    "london": "B-LOC",
    "acme": "B-ORG",
    "ac": "B-ORG",
    "corp": "I-ORG",
    "berlin": "B-LOC",
    "new": "B-LOC",
    "york": "I-LOC",
}


def context_free_logits(tok: Tokenizer, window) -> np.ndarray:
    """A fake model: each token's logits depend on the token alone (names → their tag; MiniLM
    splits acme into ac ##me)."""
    logits = np.zeros((len(window), len(LABELS)))
    logits[:, 0] = 3.0
    for pos, token_id in enumerate(window.input_ids):
        tag = NAMES.get(tok.id_to_token(int(token_id)))
        if tag:
            logits[pos, LABELS.index(tag)] = 6.0 + (token_id % 7) / 10  # token-specific scores
    return logits


def run(tok, text, max_length, stride, aggregation="first"):
    windows = text_windows(tok, text, max_length, stride)
    logits = [context_free_logits(tok, w) for w in windows]
    return windows, decode_entities(text, windows, logits, LABELS, aggregation)


@pytest.mark.parametrize("aggregation", ["none", "simple", "first", "average", "max"])
@pytest.mark.parametrize(("max_length", "stride"), [(12, 3), (17, 6), (30, 10), (9, 0)])
def test_stitched_entities_equal_one_big_window(aggregation, max_length, stride):
    tok = tiny_tokenizer()
    text = "the city of new york. " + " ".join(
        f"john smith visited paris on {d} and acme corp went to new york with berlin" for d in range(6)
    )
    windows, stitched = run(tok, text, max_length, stride, aggregation)
    assert len(windows) >= 3
    _, whole = run(tok, text, 4096, 0, aggregation)
    assert stitched == whole
    assert all(e.text == text[e.start : e.end] for e in stitched)


def test_entity_in_overlap_found_once_and_whole():
    tok = tiny_tokenizer()
    text = "the the the the john smith the the the the"
    # 10 text tokens, windows of 6 text tokens sharing 4: john smith (tokens 4, 5) in several windows,
    # and some windows cut it in half.
    windows, got = run(tok, text, 8, 4)
    assert len(windows) >= 3
    assert [(e.label, e.text, e.start) for e in got] == [("PER", "john smith", 16)]


def test_long_document_entities_in_every_third():
    tok = minilm_tokenizer()
    filler = "the river bank was quiet and the plot of the film was about a city. "
    third = filler * 5
    text = (
        third
        + "John Smith lives in Paris. "
        + third
        + "Acme Corp works in London. "
        + third
        + "New York and Berlin. "
        + filler
    )
    max_length = 64
    windows = text_windows(tok, text, max_length, 16)
    n_tokens = len(tok.encode(text, add_special_tokens=False).ids)
    assert n_tokens > 3 * max_length and len(windows) >= 4
    logits = [context_free_logits(tok, w) for w in windows]
    got = decode_entities(text, windows, logits, LABELS, "first")
    found = [(e.label, e.text) for e in got]
    assert found == [
        ("PER", "John Smith"),
        ("LOC", "Paris"),
        ("ORG", "Acme Corp"),
        ("LOC", "London"),
        ("LOC", "New York"),
        ("LOC", "Berlin"),
    ]
    for e in got:
        assert text[e.start : e.end] == e.text
    thirds = {min(e.start * 3 // len(text), 2) for e in got}
    assert thirds == {0, 1, 2}


def test_overlap_token_comes_from_the_window_where_it_has_more_context():
    tok = tiny_tokenizer()
    text = "a b c d e f g h i j"  # 10 tokens
    windows = text_windows(tok, text, 8, 4)  # text slices [0:6], [2:8], [4:10]
    assert [w.text_start for w in windows] == [0, 2, 4]
    # Each window says PER for token "e" (global index 4) with a different confidence.
    logits = []
    for k, w in enumerate(windows):
        lg = np.zeros((len(w), len(LABELS)))
        pos = w.text_positions[4 - w.text_start]
        lg[pos, LABELS.index("B-PER")] = [1.0, 2.0, 3.0][k]
        logits.append(lg)
    (e,) = decode_entities(text, windows, logits, LABELS, "none")
    # token 4 sits 2 from an edge in window 1 ([2:8]: 2 before, 3 after), 1 in window 0, 0 in window 2.
    expected = np.exp(2.0) / (np.exp(2.0) + 6)
    assert (e.text, e.start) == ("e", 8) and e.score == pytest.approx(expected)


def test_task_modules_stay_torch_free():
    import subprocess
    import sys

    code = (
        "import sys, service.tasks.windows, service.tasks.ner, service.tasks.qa; "
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
