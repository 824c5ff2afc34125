"""Tokenized features: NER labels on first word pieces, QA windows and answer positions,
length-bucketed batches and right padding."""

from __future__ import annotations

import random

import pytest

from model.batching import collate, length_bucketed_batches
from model.data import Answer, QAExample, TextExample, TokenExample
from model.features import IGNORE, answer_token_span, encode_classify, encode_ner, encode_qa
from model.heads import load_tokenizer


@pytest.fixture(scope="module")
def tokenizer(tiny_checkpoints):
    return load_tokenizer(tiny_checkpoints("bert", "base"))


def test_ner_labels_on_first_piece_only(tokenizer):
    # "paris" is one vocabulary word; "xq" splits into "x ##q"; "visited" is whole.
    ex = TokenExample(tokens=["paris", "xq", "visited"], tags=["B-LOC", "B-PER", "O"])
    (f,) = encode_ner(tokenizer, [ex], {"O": 0, "B-LOC": 1, "B-PER": 2}, max_length=32)
    pieces = tokenizer.convert_ids_to_tokens(f["input_ids"])
    assert pieces == ["[CLS]", "paris", "x", "##q", "visited", "[SEP]"]
    assert f["labels"] == [IGNORE, 1, 2, IGNORE, 0, IGNORE]
    assert f["word_ids"] == [-1, 0, 1, 1, 2, -1]


def test_ner_label_all_pieces_continues_the_tag(tokenizer):
    # "xq" (x ##q) and "u.s." (u . s .): later pieces learn I-X after B-X, and the tag itself
    # when the label set has no I- form; specials stay ignored.
    ex = TokenExample(tokens=["xq", "u.s.", "visited", "xq"], tags=["B-PER", "B-LOC", "O", "I-PER"])
    label2id = {"O": 0, "B-LOC": 1, "I-LOC": 2, "B-PER": 3, "I-PER": 4}
    (f,) = encode_ner(tokenizer, [ex], label2id, max_length=32, label_pieces="all")
    pieces = tokenizer.convert_ids_to_tokens(f["input_ids"])
    assert pieces == ["[CLS]", "x", "##q", "u", ".", "s", ".", "visited", "x", "##q", "[SEP]"]
    assert f["labels"] == [IGNORE, 3, 4, 1, 2, 2, 2, 0, 4, 4, IGNORE]
    (g,) = encode_ner(tokenizer, [ex], {"O": 0, "B-LOC": 1, "B-PER": 3, "I-PER": 4}, 32, "all")
    assert g["labels"][3:7] == [1, 1, 1, 1]  # no I-LOC: the B- tag carries on
    with pytest.raises(ValueError, match="label_pieces"):
        encode_ner(tokenizer, [ex], label2id, 32, label_pieces="every")


def test_classify_label_forms(tokenizer):
    single = encode_classify(tokenizer, [TextExample("good", "b")], {"a": 0, "b": 1},
                             "single_label_classification", 16)
    multi = encode_classify(tokenizer, [TextExample("good", ["c", "a"])], {"a": 0, "b": 1, "c": 2},
                            "multi_label_classification", 16)
    pair = encode_classify(tokenizer, [TextExample("good", 2.5, text_pair="bad")], {}, "regression", 16)
    assert single[0]["labels"] == 1
    assert multi[0]["labels"] == [1.0, 0.0, 1.0]
    assert pair[0]["labels"] == 2.5
    assert tokenizer.convert_ids_to_tokens(pair[0]["input_ids"]) == ["[CLS]", "good", "[SEP]", "bad", "[SEP]"]
    assert pair[0]["token_type_ids"] == [0, 0, 0, 1, 1]


def _qa(context: str, answer: str | None) -> QAExample:
    answers = [Answer(answer, context.index(answer))] if answer else []
    return QAExample(id="q", question="where ?", context=context, answers=answers)


def test_qa_windows_overlap_and_keep_the_question(tokenizer):
    context = " ".join(["the", "river"] * 10 + ["paris"] + ["the", "bank"] * 10)  # 41 words, 1 token each
    features, windows = encode_qa(tokenizer, [_qa(context, "paris")], max_length=16, doc_stride=4)
    q_len = 4  # [CLS] where ? [SEP]
    room = 16 - q_len - 1
    assert len(features) > 1 and all(len(f["input_ids"]) <= 16 for f in features)
    for f in features:
        assert tokenizer.convert_ids_to_tokens(f["input_ids"][:q_len]) == ["[CLS]", "where", "?", "[SEP]"]
    # Consecutive windows share doc_stride context tokens.
    spans = [[off for off in w.offsets if off is not None] for w in windows]
    assert spans[1][:4] == spans[0][room - 4 : room]
    # Exactly the windows holding "paris" point at it; the others at CLS.
    hits = [(f["start_positions"], f["end_positions"]) for f in features if f["start_positions"]]
    assert hits and all(s == e for s, e in hits)
    for f, w in zip(features, windows, strict=True):
        s = f["start_positions"]
        if s:
            assert context[w.offsets[s][0] : w.offsets[s][1]] == "paris"
        else:
            assert all(context[a:b] != "paris" for a, b in (o for o in w.offsets if o is not None))


def test_answer_span_mapping_through_offsets():
    context = "new york is big"
    offsets = [None, None, (0, 3), (4, 8), (9, 11), (12, 15), None]
    ex = QAExample("q", "?", context, [Answer("new york", 0)])
    assert answer_token_span(ex, offsets) == (2, 3)
    # Answer partly outside the window -> CLS.
    assert answer_token_span(ex, [None, (4, 8), (9, 11), None]) == (0, 0)
    # An answer that starts inside a token maps to that token.
    assert answer_token_span(QAExample("q", "?", context, [Answer("ork is", 5)]), offsets) == (3, 4)
    assert answer_token_span(QAExample("q", "?", context, []), offsets) == (0, 0)


def test_length_bucketed_batches():
    lengths = [random.Random(i).randint(1, 100) for i in range(1000)]
    batches = length_bucketed_batches(lengths, 10, random.Random(0))
    assert sorted(i for b in batches for i in b) == list(range(1000))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 10  # random batches of 10 would spread ~80
    assert batches != length_bucketed_batches(lengths, 10, random.Random(1))
    ordered = length_bucketed_batches(lengths, 10, None)
    flat = [lengths[i] for b in ordered for i in b]
    assert flat == sorted(lengths)


def test_collate_pads_right():
    feats = [
        {"input_ids": [2, 7, 3], "attention_mask": [1, 1, 1], "labels": [-100, 1, -100], "word_ids": [0]},
        {"input_ids": [2, 3], "attention_mask": [1, 1], "labels": [-100, -100], "word_ids": [0]},
    ]
    batch = collate(feats, pad_id=0, token_labels=True)
    assert batch["input_ids"].tolist() == [[2, 7, 3], [2, 3, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [[-100, 1, -100], [-100, -100, -100]]
    assert "word_ids" not in batch
    hot = collate([{"input_ids": [1], "labels": [1.0, 0.0]}, {"input_ids": [1, 2], "labels": [0.0, 1.0]}], 0)
    assert hot["labels"].dtype.is_floating_point and hot["labels"].tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_a_question_too_long_for_the_window_is_a_value_error(tiny_checkpoints):
    """Found by review: the tokenizer panics (a BaseException) when the question leaves a window
    no more context than the stride; encode_qa names the example instead."""
    tok = load_tokenizer(tiny_checkpoints("bert", "base"))
    ctx = "john visited paris and the capital of france is paris . " * 10
    question = "who " * 80 + "visited paris ?"
    n = len(tok(question, add_special_tokens=False)["input_ids"])
    room = 128 - n - tok.num_special_tokens_to_add(pair=True)
    ok = QAExample("a", "who visited paris ?", ctx, [Answer("john", 0)], source="dev.json:3")
    long_q = QAExample("b", question, ctx, [Answer("john", 0)], source="dev.json:9")
    assert encode_qa(tok, [ok, long_q], 128, room - 1)[0]
    with pytest.raises(ValueError, match=rf"dev.json:9 \(id b\): the question has {n} tokens, which leaves "
                                         rf"{room} context tokens.*--doc-stride {room}"):
        encode_qa(tok, [ok, long_q], 128, room)


def test_a_long_question_is_named_once_by_its_source(tiny_checkpoints):
    tok = load_tokenizer(tiny_checkpoints("bert", "base"))
    ex = QAExample("q7", "who " * 20 + "?", "john visited paris .", [Answer("john", 0)],
                   source="dev.json: data[0].paragraphs[0].qas[7] (id q7)")
    with pytest.raises(ValueError) as exc:
        encode_qa(tok, [ex], 16, 4)
    assert str(exc.value).startswith("dev.json: data[0].paragraphs[0].qas[7] (id q7): the question has ")
