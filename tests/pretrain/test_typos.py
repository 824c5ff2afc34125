"""The typo attack: each edit kind, the length rule, determinism, and alignment of NER tags and QA
answer offsets under attack (the same functions feed `--augment typos`)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.data.examples import Answer, QAExample, TextExample, TokenExample
from model.typos import (
    KEYBOARD,
    KINDS,
    MIN_LENGTH,
    AttackStats,
    Augment,
    attack_examples,
    attack_qa,
    attack_text,
    attack_tokens,
    map_offset,
    parse_augment,
    perturb_word,
)

WORDS = ["Germany", "playing", "tower", "Merkel", "European", "quick", "brown", "jumps", "London"]


def _internal_edit_keeps_ends(word: str, new: str) -> None:
    assert new[0] == word[0] and new[-1] == word[-1], (word, new)


@pytest.mark.parametrize("word", WORDS)
def test_drop_removes_one_internal_letter(word):
    for seed in range(20):
        new, kind = perturb_word(word, random.Random(seed), "drop")
        assert kind == "drop" and len(new) == len(word) - 1
        _internal_edit_keeps_ends(word, new)
        assert any(word[:i] + word[i + 1 :] == new for i in range(1, len(word) - 1))


@pytest.mark.parametrize("word", WORDS)
def test_add_inserts_one_letter_inside(word):
    for seed in range(20):
        new, kind = perturb_word(word, random.Random(seed), "add")
        assert kind == "add" and len(new) == len(word) + 1 and new.isalpha()
        _internal_edit_keeps_ends(word, new)
        assert any(new[:i] + new[i + 1 :] == word for i in range(1, len(new) - 1))


@pytest.mark.parametrize("word", WORDS)
def test_swap_transposes_two_different_adjacent_internal_letters(word):
    for seed in range(20):
        new, kind = perturb_word(word, random.Random(seed), "swap")
        assert kind == "swap" and new != word and sorted(new) == sorted(word)
        _internal_edit_keeps_ends(word, new)
        diff = [i for i in range(len(word)) if word[i] != new[i]]
        assert len(diff) == 2 and diff[1] == diff[0] + 1
        assert new[diff[0]] == word[diff[1]] and new[diff[1]] == word[diff[0]]


@pytest.mark.parametrize("word", WORDS)
def test_keyboard_replaces_one_internal_letter_by_a_neighbouring_key(word):
    for seed in range(20):
        new, kind = perturb_word(word, random.Random(seed), "keyboard")
        assert kind == "keyboard" and len(new) == len(word)
        _internal_edit_keeps_ends(word, new)
        (i,) = [i for i in range(len(word)) if word[i] != new[i]]
        assert new[i].lower() in KEYBOARD[word[i].lower()]


def test_keyboard_map_is_qwerty_and_symmetric():
    assert set(KEYBOARD["g"]) == set("fhtyvb")
    assert set(KEYBOARD["q"]) == set("wa")
    assert set(KEYBOARD["m"]) == set("njk")
    for key, near in KEYBOARD.items():
        for other in near:
            assert key in KEYBOARD[other], (key, other)


def test_impossible_edits_fall_back_to_a_drop_and_still_change_the_word():
    # "book": its only internal pair "oo" cannot swap into anything new.
    assert perturb_word("book", random.Random(0), "swap") == ("bok", "drop")
    # No internal letter with a QWERTY neighbour.
    new, kind = perturb_word("éééé", random.Random(0), "keyboard")
    assert kind == "drop" and new == "ééé"
    with pytest.raises(ValueError):
        perturb_word("cat", random.Random(0))


def test_every_kind_is_drawn_about_equally():
    stats = AttackStats()
    attack_text(" ".join(["Germany", "fortune", "islands", "measure"] * 500), random.Random(3), stats=stats)
    assert stats.eligible == stats.perturbed == 2000
    for kind in KINDS:
        assert 0.2 < stats.kinds[kind] / 2000 < 0.3, stats.kinds


def test_only_letter_runs_of_four_or_more_are_attacked():
    text = "The cat sat on a mat in 1996, U.S. dog's IBM-led $5.2bn deal."
    out, edits = attack_text(text, random.Random(0))
    # Eligible: "deal" only; "led" is 3 letters, digits and punctuation never count.
    assert [text[s:e] for s, e, _ in edits] == ["deal"]
    assert out[: text.index("deal")] == text[: text.index("deal")]
    for seed in range(30):
        out, edits = attack_text("a an the cat dogs", random.Random(seed))
        assert out.split()[:4] == ["a", "an", "the", "cat"]


def test_rate_controls_the_share_of_attacked_words():
    text = " ".join(WORDS * 200)
    for rate in (0.0, 0.3, 1.0):
        stats = AttackStats()
        attack_text(text, random.Random(1), rate=rate, stats=stats)
        assert stats.eligible == len(WORDS) * 200
        assert abs(stats.perturbed / stats.eligible - rate) < 0.05


def test_same_seed_same_attack_other_seed_other_attack():
    examples = [TextExample(text=" ".join(WORDS), label="x", source=f"f:{i}") for i in range(20)]
    a = attack_examples(examples, seed=7)
    b = attack_examples(examples, seed=7)
    c = attack_examples(examples, seed=8)
    assert a == b and a != c
    # Augmentation epochs draw fresh noise.
    assert attack_examples(examples, seed=7, epoch=1) != attack_examples(examples, seed=7, epoch=2)


def test_examples_attack_independently_of_their_neighbours():
    ex = TextExample(text="Germany playing European football", label="x")
    other = TextExample(text="completely different sentence here", label="y")
    alone = attack_examples([ex, other], seed=3)[0]
    assert attack_examples([ex, ex], seed=3)[0] == alone


def test_ner_keeps_one_token_per_word_and_the_tags():
    ex = TokenExample(tokens=["Angela", "Merkel", "visited", "U.S.", "troops", "in", "Baghdad", "."],
                      tags=["B-PER", "I-PER", "O", "B-LOC", "O", "O", "B-LOC", "O"])
    out = attack_tokens(ex, random.Random(0))
    assert out.tags == ex.tags and len(out.tokens) == len(ex.tokens)
    assert all(tok and not any(c.isspace() for c in tok) for tok in out.tokens)
    assert out.tokens[3] == "U.S." and out.tokens[5] == "in" and out.tokens[7] == "."
    changed = [a != b for a, b in zip(ex.tokens, out.tokens, strict=True)]
    assert changed == [True, True, True, False, True, False, True, False]


def test_classification_pairs_are_both_attacked():
    ex = TextExample(text="wonderful performances", label="positive", text_pair="terrible screenplay")
    out = attack_examples([ex], seed=0)[0]
    assert out.label == "positive" and out.text != ex.text and out.text_pair != ex.text_pair


def _squad_example() -> QAExample:
    context = "The Eiffel Tower was designed by Gustave Eiffel's company and completed in 1889 in Paris."
    answers = [Answer("Gustave Eiffel", context.index("Gustave")), Answer("1889", context.index("1889")),
               Answer("Eiffel Tower", context.index("Eiffel")), Answer("Eiff", context.index("Eiffel"))]
    return QAExample(id="q1", question="Who designed the Eiffel Tower?", context=context, answers=answers)


def test_qa_answers_follow_their_span_into_the_attacked_context():
    ex = _squad_example()
    for seed in range(50):
        out = attack_qa(ex, random.Random(seed))
        assert out.context != ex.context and out.question != ex.question
        for old, new in zip(ex.answers, out.answers, strict=True):
            assert out.context[new.start : new.start + len(new.text)] == new.text
            # The same words, possibly misspelt: what precedes the answer keeps its word count.
            assert len(out.context[: new.start].split()) == len(ex.context[: old.start].split())
        # "Eiff" ends inside "Eiffel": that word is never attacked, so both answers stay exact.
        assert out.answers[3].text == "Eiff" and out.answers[2].text.startswith("Eiffel ")
        assert out.answers[1].text == "1889"


@settings(max_examples=60, deadline=None)
@given(words=st.lists(st.text(alphabet="abcdefgXYZ", min_size=1, max_size=9), min_size=3, max_size=25),
       data=st.data())
def test_qa_alignment_holds_for_any_answer_span(words, data):
    context = " ".join(words)
    start_word = data.draw(st.integers(0, len(words) - 1))
    end_word = data.draw(st.integers(start_word, len(words) - 1))
    start = len(" ".join(words[:start_word])) + (1 if start_word else 0)
    start += data.draw(st.integers(0, len(words[start_word]) - 1))  # may start inside a word
    end = len(" ".join(words[: end_word + 1]))
    answer = Answer(context[start:end], start)
    ex = QAExample(id="x", question="what is it?", context=context, answers=[answer])
    out = attack_qa(ex, random.Random(data.draw(st.integers(0, 10**6))))
    (moved,) = out.answers
    assert out.context[moved.start : moved.start + len(moved.text)] == moved.text
    assert len(moved.text.split()) == len(answer.text.split())


def test_map_offset_refuses_a_boundary_inside_a_replaced_word():
    text = "alpha bravo charlie"
    new, edits = attack_text(text, random.Random(0))
    assert map_offset(0, edits) == 0 and map_offset(len(text), edits) == len(new)
    assert new[map_offset(6, edits) : map_offset(11, edits)] == new.split()[1]
    with pytest.raises(ValueError):
        map_offset(8, edits)


def test_parse_augment():
    assert parse_augment(None) is None and parse_augment("") is None
    assert parse_augment("typos") == Augment(0.3, keep_clean=False)
    assert parse_augment("typos=0.5") == Augment(0.5, keep_clean=False)
    assert parse_augment("typos=1,keep-clean") == Augment(1.0, keep_clean=True)
    assert parse_augment("typos,keep-clean") == Augment(0.3, keep_clean=True)
    for bad in ("noise", "typos=abc", "typos=0", "typos=1.5", "typos=0.5,clean"):
        with pytest.raises(ValueError):
            parse_augment(bad)
    assert MIN_LENGTH == 4
