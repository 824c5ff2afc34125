"""NER aggregation on hand-made probabilities over real tiny-tokenizer encodings."""

from __future__ import annotations

import numpy as np
import pytest

from service.tasks.ner import aggregate, decode_entities, softmax, stitch
from service.tasks.windows import text_windows
from tests.tiny import NER_LABELS, tiny_tokenizer

LABELS = NER_LABELS  # O, B-PER, I-PER, B-LOC, I-LOC, B-ORG, I-ORG


def probs_row(label: str, p: float) -> np.ndarray:
    """A probability row with `p` on `label` and the rest spread evenly."""
    row = np.full(len(LABELS), (1 - p) / (len(LABELS) - 1))
    row[LABELS.index(label)] = p
    return row


def entities(text: str, rows: dict[str, tuple[str, float] | list[tuple[str, float]]], **kw):
    """Run the decoder on `text` with per-token rows keyed by token string (others: O at 0.9).

    A key maps to one (label, p) or to a list, one per occurrence of that token in order.
    """
    tok = tiny_tokenizer()
    (window,) = text_windows(tok, text, 128, 0)
    enc = tok.encode(text)
    seen: dict[str, int] = {}
    logits = np.zeros((len(window), len(LABELS)))
    for pos, token in enumerate(enc.tokens):
        spec = rows.get(token, ("O", 0.9))
        if isinstance(spec, list):
            spec = spec[seen.get(token, 0)]
            seen[token] = seen.get(token, 0) + 1
        logits[pos] = np.log(probs_row(*spec))
    return [
        (e.label, round(e.score, 6), e.text, e.start, e.end)
        for e in decode_entities(text, [window], [logits], LABELS, **kw)
    ]


TEXT = "John Smithson visited Paris"  # john | smith ##s ##o ##n | visited | paris


def test_none_gives_every_piece_with_its_full_tag():
    got = entities(
        TEXT, {"john": ("B-PER", 0.8), "smith": ("I-PER", 0.7), "##s": ("I-PER", 0.6)}, aggregation="none"
    )
    assert got == [
        ("B-PER", 0.8, "John", 0, 4),
        ("I-PER", 0.7, "Smith", 5, 10),
        ("I-PER", 0.6, "s", 10, 11),
    ]


def test_simple_merges_b_i_pieces_and_averages_scores():
    rows = {
        "john": ("B-PER", 0.8),
        "smith": ("I-PER", 0.7),
        "##s": ("I-PER", 0.6),
        "##o": ("I-PER", 0.5),
        "##n": ("I-PER", 0.4),
        "paris": ("B-LOC", 0.9),
    }
    got = entities(TEXT, rows, aggregation="simple")
    assert got == [("PER", 0.6, "John Smithson", 0, 13), ("LOC", 0.9, "Paris", 22, 27)]


def test_simple_splits_a_word_whose_pieces_disagree():
    # Without word fusion, a piece tagged O cuts the entity in the middle of the word.
    rows = {
        "john": ("B-PER", 0.8),
        "smith": ("I-PER", 0.7),
        "##s": ("I-PER", 0.6),
        "##o": ("O", 0.5),
        "##n": ("I-PER", 0.6),
    }
    got = entities(TEXT, rows, aggregation="simple")
    assert [g[2] for g in got] == ["John Smiths", "n"]


def test_two_adjacent_b_entities_stay_apart():
    rows = {"john": ("B-PER", 0.8), "smith": ("B-PER", 0.7)}
    got = entities("John Smith", rows, aggregation="simple")
    assert got == [("PER", 0.8, "John", 0, 4), ("PER", 0.7, "Smith", 5, 10)]
    assert entities("John Smith", rows, aggregation="first") == got


def test_i_after_other_type_starts_a_new_entity():
    rows = {"john": ("B-PER", 0.8), "smith": ("I-LOC", 0.7)}
    got = entities("John Smith", rows, aggregation="simple")
    assert got == [("PER", 0.8, "John", 0, 4), ("LOC", 0.7, "Smith", 5, 10)]


def test_first_takes_the_first_piece_label_for_the_whole_word():
    # smith=B-PER, later pieces say LOC / O: `first` makes the whole word PER with smith's score.
    rows = {"smith": ("B-PER", 0.6), "##s": ("B-LOC", 0.99), "##o": ("O", 0.99), "##n": ("I-LOC", 0.9)}
    assert entities(TEXT, rows, aggregation="first") == [("PER", 0.6, "Smithson", 5, 13)]


def test_max_takes_the_most_confident_piece():
    rows = {"smith": ("B-PER", 0.6), "##s": ("B-LOC", 0.99), "##o": ("O", 0.95), "##n": ("I-LOC", 0.9)}
    assert entities(TEXT, rows, aggregation="max") == [("LOC", 0.99, "Smithson", 5, 13)]


def test_average_takes_argmax_of_mean_probabilities():
    rows = {"smith": ("B-PER", 0.6), "##s": ("B-LOC", 0.99), "##o": ("B-LOC", 0.2), "##n": ("B-LOC", 0.5)}
    got = entities(TEXT, rows, aggregation="average")
    expected = np.mean([probs_row(*rows[t]) for t in ("smith", "##s", "##o", "##n")], axis=0)
    assert got == [("LOC", round(float(expected[LABELS.index("B-LOC")]), 6), "Smithson", 5, 13)]


def test_group_score_is_mean_of_word_scores():
    rows = {"john": ("B-PER", 0.8), "smith": ("I-PER", 0.4), "##s": ("I-PER", 0.99)}
    got = entities(TEXT, rows, aggregation="first")
    assert got == [("PER", 0.6, "John Smithson", 0, 13)]


def test_ignore_labels_and_threshold():
    rows = {"john": ("B-PER", 0.8), "paris": ("B-LOC", 0.5)}
    assert [g[0] for g in entities(TEXT, rows, aggregation="first")] == ["PER", "LOC"]
    assert [g[0] for g in entities(TEXT, rows, aggregation="first", ignore_labels=["O", "LOC"])] == ["PER"]
    with_o = entities(TEXT, rows, aggregation="first", ignore_labels=[])
    assert [g[0] for g in with_o] == ["PER", "O", "LOC"] and with_o[1][2] == "Smithson visited"
    assert [g[0] for g in entities(TEXT, rows, aggregation="first", threshold=0.6)] == ["PER"]
    # With `none` the ignore list holds full tags.
    assert entities(TEXT, rows, aggregation="none", ignore_labels=["O", "B-LOC"])[0][0] == "B-PER"


def test_labels_without_bio_prefix_group_as_continuations():
    labels = ["O", "PER", "LOC"]
    tok = tiny_tokenizer()
    (w,) = text_windows(tok, "John Smith visited Paris", 64, 0)
    logits = np.full((len(w), 3), -5.0)
    logits[:, 0] = 5
    logits[1:3, 1] = 10  # john smith → PER
    logits[4, 2] = 10  # paris → LOC
    got = decode_entities("John Smith visited Paris", [w], [logits], labels, aggregation="simple")
    assert [(e.label, e.text) for e in got] == [("PER", "John Smith"), ("LOC", "Paris")]


def test_scores_are_plain_floats_and_probabilities():
    text = "John Smith visited Paris"
    tok = tiny_tokenizer()
    (w,) = text_windows(tok, text, 64, 0)
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(len(w), len(LABELS))).astype(np.float32)
    for agg in ("none", "simple", "first", "average", "max"):
        for e in decode_entities(text, [w], [logits], LABELS, aggregation=agg, ignore_labels=[]):
            assert type(e.score) is float and 0 < e.score <= 1
            assert e.text == text[e.start : e.end]
    # ignoring nothing with `none` returns every piece, specials excluded
    pieces = decode_entities(text, [w], [logits], LABELS, aggregation="none", ignore_labels=[])
    assert len(pieces) == len(w) - 2


def test_bad_arguments_are_named():
    tok = tiny_tokenizer()
    (w,) = text_windows(tok, "John", 64, 0)
    with pytest.raises(ValueError, match="aggregation"):
        decode_entities("John", [w], [np.zeros((len(w), 7))], LABELS, aggregation="mean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="labels"):
        decode_entities("John", [w], [np.zeros((len(w), 5))], LABELS)
    with pytest.raises(ValueError, match="cover"):
        decode_entities("John", [w], [np.zeros((1, 7))], LABELS)


def test_padded_logits_rows_are_ignored_and_empty_text_has_no_entities():
    tok = tiny_tokenizer()
    (w,) = text_windows(tok, "John", 64, 0)
    padded = np.zeros((len(w) + 5, 7))
    padded[1, 1] = 9
    padded[len(w) :, 3] = 99  # padding rows must not leak in
    got = decode_entities("John", [w], [padded], LABELS)
    assert [(e.label, e.text) for e in got] == [("PER", "John")]
    (empty,) = text_windows(tok, "", 64, 0)
    assert decode_entities("", [empty], [np.zeros((len(empty), 7))], LABELS) == []


def test_softmax_is_stable():
    p = softmax(np.array([[1000.0, 0.0], [-1000.0, -1000.0]]))
    assert np.allclose(p, [[1, 0], [0.5, 0.5]])
    tokens = stitch(*_one("John"))
    assert np.allclose(tokens.probs.sum(axis=1), 1)
    assert aggregate("John", tokens, LABELS, "first", ignore_labels=[])[0].text == "John"


def _one(text: str):
    tok = tiny_tokenizer()
    (w,) = text_windows(tok, text, 64, 0)
    return [w], [np.zeros((len(w), len(LABELS)))]
