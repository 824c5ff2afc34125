"""The WordPiece vocabulary trainer: BERT's layout, and the same vocabulary for the same corpus."""

from __future__ import annotations

import json
import random

import pytest

from model.pretrain.vocab import SPECIAL_TOKENS, train_wordpiece
from tests.model import toydata

# train_wordpiece returns a transformers tokenizer (imported inside it, as here: a service-only
# install has neither tokenizers' trainer use nor transformers).
pytest.importorskip("transformers")


def _lines() -> list[str]:
    lines = [text for text, _ in toydata.sentiment_lines(400, 0)]
    lines += [" ".join(words) for words, _ in toydata.NER_SENTENCES] * 33
    random.Random(0).shuffle(lines)
    return lines


def test_the_same_corpus_gives_the_same_vocabulary_ids_included():
    # tokenizers' own trainer gave another vocabulary on 3 of 4 such runs (equally frequent merges
    # decided by hash-map order); a from-scratch checkpoint must be reproducible from its corpus.
    lines = _lines()
    first, *others = [train_wordpiece(lines, 120).get_vocab() for _ in range(4)]
    assert len(first) == 120
    assert all(vocab == first for vocab in others)


def test_bert_uncased_layout_with_only_the_real_special_tokens(tmp_path):
    tokenizer = train_wordpiece(_lines(), 120)
    vocab = tokenizer.get_vocab()
    assert [vocab[t] for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert any(t.startswith("##") and len(t) > 3 for t in vocab)  # merged continuation pieces
    tokenizer.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "tokenizer.json").read_text())
    # The continuation pieces fixed up front are ordinary vocabulary, not added tokens that would
    # be matched in raw text before WordPiece runs.
    assert [t["content"] for t in saved["added_tokens"]] == SPECIAL_TOKENS
    assert saved["model"]["type"] == "WordPiece" and saved["model"]["continuing_subword_prefix"] == "##"
    assert list(saved["model"]["vocab"])[:5] == SPECIAL_TOKENS
    assert tokenizer.tokenize("The Movie was")[:3] == ["the", "movie", "was"]  # lower-cased
    assert tokenizer.tokenize("##e")[0] != "##e"  # "#" is punctuation here, as in BERT
    ids = tokenizer("the movie", "was good")["input_ids"]
    assert ids[0] == vocab["[CLS]"] and ids.count(vocab["[SEP]"]) == 2
    assert tokenizer.decode(tokenizer("the movie was awful")["input_ids"], skip_special_tokens=True) == (
        "the movie was awful")
