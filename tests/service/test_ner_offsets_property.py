"""Property: every entity text and answer is exactly the input's slice at its offsets.

Random texts mix ASCII words the tiny vocabulary knows, accents (composed and combining), emoji,
CJK, zero-width and odd whitespace; random logits; small windows so stitching is exercised.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from service.tasks.ner import decode_entities
from service.tasks.qa import decode_answers
from service.tasks.windows import qa_windows, text_windows
from tests.tiny import NER_LABELS, minilm_tokenizer, tiny_tokenizer

PIECES = [
    "john",
    "Smith",
    "Paris",
    "new york",
    "acme",
    "Café",
    "naïve",
    "e\u0301",
    "Ångström",
    "😀",
    "👩‍👩‍👧",
    "北京",
    "東京タワー",
    "ﬁne",
    "İstanbul",
    "ß",
    "x\u200by",
    "\u00a0",
    "\t",
    "\u2003",
    "\n\n",
    "  ",
    ",",
    "(",
    ")",
    "-",
    "1234",
    "\u0301",
    "a\u0308\u0301",
    "\r\n",
    "\u3000",
]

TOKENIZERS = {"tiny": tiny_tokenizer(), "minilm": minilm_tokenizer()}

texts = st.lists(
    st.one_of(st.sampled_from(PIECES), st.text(min_size=1, max_size=4)), min_size=1, max_size=25
).map(" ".join)


@settings(max_examples=60, deadline=None)
@given(
    text=texts,
    seed=st.integers(0, 2**16),
    tokenizer=st.sampled_from(sorted(TOKENIZERS)),
    aggregation=st.sampled_from(["none", "simple", "first", "average", "max"]),
)
def test_entity_text_is_the_input_slice(text, seed, tokenizer, aggregation):
    rng = np.random.default_rng(seed)
    windows = text_windows(TOKENIZERS[tokenizer], text, 12, 3)
    logits = [rng.normal(scale=2, size=(len(w), len(NER_LABELS))) for w in windows]
    for e in decode_entities(text, windows, logits, NER_LABELS, aggregation, ignore_labels=[]):
        assert e.text == text[e.start : e.end]
        assert 0 <= e.start <= e.end <= len(text)


@settings(max_examples=40, deadline=None)
@given(
    context=texts, question=texts, seed=st.integers(0, 2**16), tokenizer=st.sampled_from(sorted(TOKENIZERS))
)
def test_answer_is_the_context_slice(context, question, seed, tokenizer):
    rng = np.random.default_rng(seed)
    question = question[:20]  # at most 20 tokens: windows keep room for context beyond the stride
    windows = qa_windows(TOKENIZERS[tokenizer], question, context, 64, 8)
    starts = [rng.normal(scale=2, size=len(w)) for w in windows]
    ends = [rng.normal(scale=2, size=len(w)) for w in windows]
    for a in decode_answers(context, windows, starts, ends, top_k=5, max_answer_len=6, allow_no_answer=True):
        assert a.answer == context[a.start : a.end]
        assert 0 <= a.start <= a.end <= len(context)
        assert a.answer or (a.start, a.end) == (0, 0) or a.start == a.end
