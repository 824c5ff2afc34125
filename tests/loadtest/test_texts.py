"""Scenario texts come from the repository's data/, with realistic lengths, deterministically."""

from __future__ import annotations

import random
import statistics

import pytest

from loadtest.scenarios import SCENARIOS, Cursors, get_scenario
from loadtest.texts import DataFileError, TextPools, detokenize, paragraphs, read_conll_sentences, read_sst


@pytest.fixture(scope="module")
def pools() -> TextPools:
    return TextPools.load()


def test_detokenize_undoes_ptb_spacing():
    tokens = ["It", "'s", "a", "-LRB-", "very", "-RRB-", "good", "film", ",", "is", "n't", "it", "?"]
    assert detokenize(tokens) == "It's a (very) good film, isn't it?"


def test_short_texts_are_mixed_length_sentences(pools):
    lengths = [len(t.split()) for t in pools.short]
    assert len(pools.short) > 500
    assert min(lengths) >= 6 and max(lengths) <= 64
    assert statistics.pstdev(lengths) > 5  # mixed lengths, not one repeated shape
    assert len(set(pools.short)) > 0.95 * len(pools.short)


def test_documents_are_paragraphs_longer_than_sentences(pools):
    doc_words = statistics.mean(len(d.split()) for d in pools.documents)
    short_words = statistics.mean(len(t.split()) for t in pools.short)
    assert doc_words > 2 * short_words


def test_sampling_is_seeded(pools):
    again = TextPools.load()
    assert again.short[:50] == pools.short[:50] and again.qa_pairs[:5] == pools.qa_pairs[:5]
    assert TextPools.load(seed=1).short[:50] != pools.short[:50]


def test_paragraphs_cover_every_sentence_once():
    sentences = [f"Sentence number {i} here ." for i in range(40)]
    paras = paragraphs(sentences, random.Random(3))
    assert " ".join(paras) == " ".join(sentences)
    assert all(3 <= p.count("Sentence") <= 8 for p in paras[:-1])


def test_bad_data_files_name_file_and_line(tmp_path):
    sst = tmp_path / "dev.txt"
    sst.write_text("3 ||| fine sentence .\nno separator here\n", encoding="utf-8")
    with pytest.raises(DataFileError, match=r"dev\.txt:2: expected 'LABEL \|\|\| text'"):
        read_sst(sst)
    conll = tmp_path / "c.txt"
    conll.write_text("EU B-ORG\nrejects\n", encoding="utf-8")
    with pytest.raises(DataFileError, match=r"c\.txt:2: expected 'word TAG'"):
        read_conll_sentences(conll)
    with pytest.raises(DataFileError, match="missing"):
        TextPools.load(tmp_path)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_bodies_match_their_text_count(pools, name):
    scenario = get_scenario(name)
    body = scenario.body(Cursors.for_worker(pools, 0))
    assert len(body["inputs"]) == scenario.texts_per_request
    if name == "qa":
        assert set(body["inputs"][0]) == {"question", "context"}
    fake = {scenario.result_key: [[]] * scenario.texts_per_request}
    assert scenario.check(fake) is None
    assert "results for" in scenario.check({scenario.result_key: []})
    assert "no list" in scenario.check({"error": {}})


def test_workers_send_different_texts(pools):
    a = get_scenario("embed_interactive").body(Cursors.for_worker(pools, 0))
    b = get_scenario("embed_interactive").body(Cursors.for_worker(pools, 1))
    assert a != b


def test_unknown_scenario_is_named():
    with pytest.raises(ValueError, match="unknown scenario 'embed_fast'"):
        get_scenario("embed_fast")
