"""Metrics against cases worked out by hand."""

from __future__ import annotations

import pytest

from model.metrics import (
    classification_scores,
    entities,
    entity_scores,
    multilabel_scores,
    normalize_answer,
    regression_scores,
    squad_exact,
    squad_f1,
    squad_scores,
    word_tags,
)


def test_classification_accuracy_and_f1():
    gold = ["a", "a", "b", "c"]
    pred = ["a", "b", "b", "b"]
    s = classification_scores(gold, pred, ["a", "b", "c"])
    assert s["accuracy"] == 0.5
    # a: tp1 fp0 fn1 -> 2/3; b: tp1 fp2 fn0 -> P1/3 R1 -> 0.5; c: 0.  macro = (2/3 + 0.5 + 0) / 3
    assert s["macro_f1"] == pytest.approx((2 / 3 + 0.5) / 3)
    assert s["micro_f1"] == pytest.approx(0.5)  # single-label micro F1 equals accuracy


def test_multilabel_micro_macro():
    gold = [{"x", "y"}, {"y"}, set()]
    pred = [{"x"}, {"y", "z"}, {"z"}]
    s = multilabel_scores(gold, pred, ["x", "y", "z"])
    # tp: x1 y1; fp: z2; fn: y1  -> micro P 2/4, R 2/3, F1 = 4/7
    assert s["micro_f1"] == pytest.approx(4 / 7)
    # x: F1 1; y: tp1 fn1 -> 2/3; z: 0 -> macro 5/9
    assert s["macro_f1"] == pytest.approx(5 / 9)
    assert s["subset_accuracy"] == 0.0


def test_regression_scores():
    s = regression_scores([1.0, 2.0, 3.0], [2.0, 4.0, 6.0])
    assert s["pearson"] == pytest.approx(1.0)
    assert s["mse"] == pytest.approx((1 + 4 + 9) / 3)
    assert regression_scores([1.0, 2.0], [5.0, 5.0])["pearson"] == 0.0


def test_entities_conlleval_rules():
    tags = ["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-LOC", "I-ORG", "B-MISC", "B-MISC"]
    assert entities(tags) == {
        ("PER", 0, 2), ("LOC", 3, 5), ("LOC", 5, 6), ("ORG", 6, 7), ("MISC", 7, 8), ("MISC", 8, 9),
    }
    # Strict IOB2: an entity must open with B-; stray I- tags are no entity at all.
    assert entities(tags, strict=True) == {("PER", 0, 2), ("LOC", 5, 6), ("MISC", 7, 8), ("MISC", 8, 9)}
    assert entities(["I-PER"]) == {("PER", 0, 1)}
    assert entities(["B-PER", "I-LOC"], strict=True) == {("PER", 0, 1)}


def test_entity_scores_exact_type_and_boundaries():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "O", "O", "B-LOC"], ["B-LOC", "O"]]
    s = entity_scores(gold, pred)
    # gold: PER(0,2) LOC(3,4) ORG; pred: PER(0,1) wrong boundary, LOC right, LOC wrong type -> 1 tp
    assert s["precision"] == pytest.approx(1 / 3)
    assert s["recall"] == pytest.approx(1 / 3)
    assert s["f1"] == pytest.approx(1 / 3)
    assert s["per_type_f1"] == {"LOC": pytest.approx(2 / 3), "ORG": 0.0, "PER": 0.0}
    # A prediction that opens with I- counts under conlleval rules but not under strict IOB2.
    lenient = entity_scores([["B-PER", "I-PER"]], [["I-PER", "I-PER"]])
    strict = entity_scores([["B-PER", "I-PER"]], [["I-PER", "I-PER"]], strict=True)
    assert lenient["f1"] == 1.0 and strict["f1"] == 0.0
    with pytest.raises(ValueError, match="sentence of 2 gold tags"):
        entity_scores([["O", "O"]], [["O"]])


def test_squad_normalization():
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert normalize_answer("an apple, a pear and the plum") == "apple pear and plum"
    assert normalize_answer("Theory") == "theory"  # articles only as whole words


def test_squad_em_f1_max_over_golds():
    golds = {"q1": ["Denver Broncos", "the Broncos"], "q2": ["Santa Clara, California"]}
    preds = {"q1": "Broncos", "q2": "Santa Clara"}
    s = squad_scores(preds, golds)
    # q1: EM with "the Broncos" (articles dropped) -> 1, F1 1; q2: EM 0, F1 P 1 R 2/3 -> 0.8
    assert s["exact"] == pytest.approx(50.0)
    assert s["f1"] == pytest.approx(100 * (1 + 0.8) / 2)


def test_squad_v2_no_answer_and_missing_prediction():
    golds = {"q1": [], "q2": [], "q3": ["paris"]}
    preds = {"q1": "", "q2": "paris"}  # q3 unanswered: counts as wrong
    s = squad_scores(preds, golds)
    assert s["exact"] == pytest.approx(100 / 3)
    assert s["f1"] == pytest.approx(100 / 3)


def test_squad_answers_that_normalize_to_nothing_follow_each_official_script():
    # "the" and "." normalize to "". evaluate-v1.1.py: f1 counts common tokens, none -> 0; EM
    # compares the normalized strings -> 1. evaluate-v2.0.py: empty vs empty -> F1 1.
    assert squad_f1("the", ".") == 0.0 and squad_exact("the", ".") == 1.0
    assert squad_f1("the", ".", v2=True) == 1.0
    assert squad_f1("the", "Paris", v2=True) == 0.0 and squad_f1("Paris", "the") == 0.0
    v11 = squad_scores({"q1": "the", "q2": "paris"}, {"q1": ["."], "q2": ["Paris"]})
    assert v11 == {"exact": 100.0, "f1": 50.0}  # an all-answerable set: the v1.1 rules
    v20 = squad_scores({"q1": "the", "q2": ""}, {"q1": ["."], "q2": []})
    assert v20 == {"exact": 100.0, "f1": 100.0}  # an unanswerable question: the v2.0 rules


def test_word_tags_from_character_spans():
    words = ["EU", "rejects", "German", "call", "to", "New", "York", "Times"]
    text = " ".join(words)
    spans = [{"label": "ORG", "start": 0, "end": 2},
             {"label": "MISC", "start": text.index("German"), "end": text.index("German") + 6},
             # two adjacent entities: the second starts with B-, not I-
             {"label": "LOC", "start": text.index("New"), "end": text.index("York") + 4},
             {"label": "ORG", "start": text.index("Times"), "end": len(text)}]
    assert word_tags(words, spans) == ["B-ORG", "O", "B-MISC", "O", "O", "B-LOC", "I-LOC", "B-ORG"]
    # a span holding only the end of a word does not tag it: the word's first character decides
    assert word_tags(["U.S.", "troops"], [{"label": "LOC", "start": 2, "end": 4}]) == ["O", "O"]
