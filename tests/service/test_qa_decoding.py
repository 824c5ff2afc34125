"""QA windows and span decoding on hand-made logits over real tokenizer encodings.

Windows are checked token for token against a Hugging Face fast tokenizer called as the 4.57
question-answering pipeline calls it (`truncation="only_second", stride=doc_stride,
return_overflowing_tokens=True`). Decoding is checked against a plain-loop oracle written from the
pipeline's description on top of the HF tokenizer's own word mapping (`token_to_word`,
`word_to_chars`), and on hand-made logits for each rule.
"""

from __future__ import annotations

import numpy as np
import pytest

from service.tasks.qa import decode_answers
from service.tasks.windows import qa_windows
from tests.tiny import minilm_tokenizer, tiny_bytelevel_tokenizer, tiny_tokenizer

TOKENIZERS = {"tiny": tiny_tokenizer, "minilm": minilm_tokenizer, "bytelevel": tiny_bytelevel_tokenizer}
QUESTION = "Who visited Paris?"
CONTEXT = (
    "John Smithson visited Paris in 1999. Acme Corp works in London and Berlin; "
    "the capital of France is Paris. Café naïve 😀 北京. "
) * 3


def hf_windows(tok_factory, question, context, max_seq_len, doc_stride):
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(tokenizer_object=tok_factory(), model_max_length=10_000)
    return hf(
        question,
        context,
        truncation="only_second",
        max_length=max_seq_len,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
        return_token_type_ids=True,
    )


def hf_encoding(tok_factory, text):
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(tokenizer_object=tok_factory(), model_max_length=10_000)
    return hf(text, add_special_tokens=False)


@pytest.mark.parametrize("name", TOKENIZERS)
@pytest.mark.parametrize(("max_seq_len", "doc_stride"), [(32, 8), (48, 20), (384, 128)])
def test_windows_match_hf_pair_overflow(name, max_seq_len, doc_stride):
    ref = hf_windows(TOKENIZERS[name], QUESTION, CONTEXT, max_seq_len, doc_stride)
    windows = qa_windows(TOKENIZERS[name](), QUESTION, CONTEXT, max_seq_len, doc_stride)
    assert len(windows) == len(ref["input_ids"])
    for k, w in enumerate(windows):
        assert w.input_ids.tolist() == ref["input_ids"][k]
        assert w.token_type_ids.tolist() == ref["token_type_ids"][k]
        assert w.special_mask.astype(int).tolist() == ref["special_tokens_mask"][k]
        assert [tuple(o) for o in w.offsets.tolist()] == [tuple(o) for o in ref["offset_mapping"][k]]
        assert w.text_mask.tolist() == [s == 1 for s in ref.sequence_ids(k)]
        ctx = w.text_positions
        pieces = [ref.encodings[k].tokens[i] for i in ctx]
        # Every context token covers context characters; only byte-level BPE's bare "Ġ" (a space
        # before a word split off from it) is trimmed to nothing.
        assert all(CONTEXT[a:b] or piece == "Ġ" for (a, b), piece in zip(w.offsets[ctx], pieces, strict=True))


def test_long_question_is_refused_only_when_the_context_must_be_cut():
    tok = tiny_tokenizer()
    question = "who " * 30
    with pytest.raises(ValueError, match="question is 30 tokens"):
        qa_windows(tok, question, CONTEXT, 40, 8)
    (w,) = qa_windows(tok, question, "paris", 40, 8)  # fits: no cut, no complaint
    assert w.text_mask.sum() == 1


# --- decoding ----------------------------------------------------------------------------------


def oracle(windows_hf, context_hf, context, start_logits, end_logits, top_k, max_answer_len, allow_no_answer):
    """Plain loops: per window softmax over context + [CLS]; spans widened to words with the HF
    word mapping of the whole context (`context_hf`: the context encoded alone; the pipeline uses
    the window's, which cuts a word at the window's edge, a listed deviation); equal char spans
    summed within a window, best kept across."""
    best: dict[tuple[int, int], tuple[float, int]] = {}
    null = float("inf")
    order = 0
    for k, enc in enumerate(windows_hf.encodings):
        seq = enc.sequence_ids
        keep = [i for i, s in enumerate(seq) if s == 1 or i == 0]
        sl, el = np.asarray(start_logits[k], float), np.asarray(end_logits[k], float)
        ps = {i: np.exp(sl[i] - sl[keep].max()) for i in keep}
        pe = {i: np.exp(el[i] - el[keep].max()) for i in keep}
        zs, ze = sum(ps.values()), sum(pe.values())
        null = min(null, ps[0] / zs * pe[0] / ze)
        window: dict[tuple[int, int], float] = {}
        for s in keep[1:]:
            for e in keep[1:]:
                if s <= e < s + max_answer_len:
                    a = context_hf.word_to_chars(enc.token_to_word(s))[0]
                    b = context_hf.word_to_chars(enc.token_to_word(e))[1]
                    window[(a, b)] = window.get((a, b), 0.0) + ps[s] / zs * pe[e] / ze
        for span, score in window.items():
            if span not in best or score > best[span][0]:
                best[span] = (score, best.get(span, (0, order))[1])
            order += 1
    ranked = sorted(best.items(), key=lambda kv: -kv[1][0])[:top_k]
    answers = [(context[a:b], score, a, b) for (a, b), (score, _) in ranked]
    if allow_no_answer:
        answers = sorted([*answers, ("", null, 0, 0)], key=lambda x: -x[1])[:top_k]
    return answers


@pytest.mark.parametrize("name", TOKENIZERS)
@pytest.mark.parametrize("seed", range(4))
def test_decoding_matches_the_oracle_on_random_logits(name, seed):
    rng = np.random.default_rng(seed)
    max_seq_len, doc_stride = 40, 12
    windows = qa_windows(TOKENIZERS[name](), QUESTION, CONTEXT, max_seq_len, doc_stride)
    ref = hf_windows(TOKENIZERS[name], QUESTION, CONTEXT, max_seq_len, doc_stride)
    whole = hf_encoding(TOKENIZERS[name], CONTEXT)
    assert len(windows) >= 3
    starts = [rng.normal(scale=3, size=len(w)) for w in windows]
    ends = [rng.normal(scale=3, size=len(w)) for w in windows]
    for top_k, max_answer_len, allow in [(1, 30, False), (5, 4, True), (20, 8, False), (3, 1, True)]:
        got = decode_answers(CONTEXT, windows, starts, ends, top_k, max_answer_len, allow)
        expected = oracle(ref, whole, CONTEXT, starts, ends, top_k, max_answer_len, allow)
        assert [(a.answer, a.start, a.end) for a in got] == [(x[0], x[2], x[3]) for x in expected]
        assert [a.score for a in got] == pytest.approx([x[1] for x in expected], rel=1e-9)


def window_logits(window, start_at=None, end_at=None, base=0.0, peak=10.0):
    """Flat logits with peaks on the given window positions."""
    s = np.full(len(window), base)
    e = np.full(len(window), base)
    for pos, value in (start_at or {}).items():
        s[pos] = value
    for pos, value in (end_at or {}).items():
        e[pos] = value
    return s, e


def positions_of(window, context, word):
    """Window positions of the context tokens inside the first occurrence of `word`."""
    a = context.index(word)
    b = a + len(word)
    return [int(p) for p in window.text_positions if a <= window.offsets[p, 0] and window.offsets[p, 1] <= b]


def test_question_and_special_tokens_are_masked():
    tok = tiny_tokenizer()
    context = "John Smith visited Paris"
    (w,) = qa_windows(tok, "who visited paris?", context, 64, 16)
    question_and_seps = [i for i in range(1, len(w)) if not w.text_mask[i]]
    paris = positions_of(w, context, "Paris")
    s, e = window_logits(
        w,
        {i: 50.0 for i in question_and_seps} | {paris[0]: 5.0},
        {i: 50.0 for i in question_and_seps} | {paris[-1]: 5.0},
    )
    (answer,) = decode_answers(context, [w], [s], [e])
    assert (answer.answer, answer.start, answer.end) == ("Paris", 19, 24)
    # the masked tokens take no probability mass: the score is the softmax over context + [CLS]
    n = int(w.text_mask.sum()) + 1
    p = np.exp(5.0) / (np.exp(5.0) + n - 1)
    assert answer.score == pytest.approx(p * p)


def test_max_answer_len_limits_span_tokens():
    tok = tiny_tokenizer()
    context = "John Smith visited Paris"
    (w,) = qa_windows(tok, "who?", context, 64, 16)
    john, paris = positions_of(w, context, "John")[0], positions_of(w, context, "Paris")[0]
    s, e = window_logits(w, {john: 8.0}, {paris: 8.0})
    assert decode_answers(context, [w], [s], [e], max_answer_len=4)[0].answer == "John Smith visited Paris"
    short = decode_answers(context, [w], [s], [e], max_answer_len=3)[0]
    assert short.answer in {"John", "Paris", "John Smith visited", "Smith visited Paris"}
    assert short.answer != "John Smith visited Paris"


def test_top_k_is_sorted_and_distinct():
    tok = tiny_tokenizer()
    context = "John Smith visited Paris and London"
    (w,) = qa_windows(tok, "who?", context, 64, 16)
    rng = np.random.default_rng(3)
    s, e = rng.normal(size=len(w)), rng.normal(size=len(w))
    answers = decode_answers(context, [w], [s], [e], top_k=10)
    assert len(answers) == 10
    assert [a.score for a in answers] == sorted((a.score for a in answers), reverse=True)
    assert len({(a.start, a.end) for a in answers}) == 10
    assert all(a.answer == context[a.start : a.end] and a.answer for a in answers)
    # fewer spans than top_k: all of them, nothing invented
    (one,) = qa_windows(tok, "who?", "Paris", 64, 16)
    assert [
        a.answer for a in decode_answers("Paris", [one], [np.zeros(len(one))], [np.zeros(len(one))], top_k=5)
    ] == ["Paris"]


def test_no_answer_uses_the_lowest_cls_score_over_windows():
    tok = tiny_tokenizer()
    context = "the river bank of the city " * 4 + "John Smith"
    windows = qa_windows(tok, "who?", context, 16, 4)
    assert len(windows) >= 3
    logits = [window_logits(w, {0: 9.0}, {0: 9.0}) for w in windows]
    # every window is sure there is no answer, the last one a bit less
    logits[-1] = window_logits(windows[-1], {0: 4.0}, {0: 4.0})
    s, e = zip(*logits, strict=True)
    (none,) = decode_answers(context, windows, s, e, allow_no_answer=True)
    n_last = len(windows[-1].text_positions) + 1
    cls = np.exp(4.0) / (np.exp(4.0) + n_last - 1)
    assert (none.answer, none.start, none.end) == ("", 0, 0)
    assert none.score == pytest.approx(cls * cls)
    # not allowed: the best span comes back instead, and the empty answer ranks among the top_k
    assert decode_answers(context, windows, s, e)[0].answer != ""
    ranked = decode_answers(context, windows, s, e, top_k=3, allow_no_answer=True)
    assert ranked[0].answer == "" and len(ranked) == 3


def test_answer_in_the_last_window_and_overlap_counted_once():
    tok = tiny_tokenizer()
    context = "the river bank of the city " * 6 + "John Smith lives in Paris"
    windows = qa_windows(tok, "who?", context, 20, 10)  # 15 context tokens a window, 10 shared
    assert len(windows) >= 5
    logits = []
    for w in windows:
        pos = positions_of(w, context, "John Smith")
        if len(pos) == 2:
            logits.append(window_logits(w, {pos[0]: 9.0}, {pos[1]: 9.0}))
        else:
            logits.append(window_logits(w))
    holding = [k for k, w in enumerate(windows) if len(positions_of(w, context, "John Smith")) == 2]
    assert holding[-1] == len(windows) - 1 and len(holding) >= 2  # in the last window and an overlap
    s, e = zip(*logits, strict=True)
    answers = decode_answers(context, windows, s, e, top_k=3)
    assert answers[0].answer == "John Smith" and answers[0].start == context.index("John")
    assert [a.answer for a in answers].count("John Smith") == 1
    # its score is the best single window's, never the windows' sum
    per_window = [decode_answers(context, [windows[k]], [s[k]], [e[k]])[0].score for k in holding]
    assert answers[0].score == pytest.approx(max(per_window)) and answers[0].score <= 1


def test_spans_widen_to_whole_words_unless_told_not_to():
    tok = tiny_tokenizer()
    context = "John Smithson visited Paris"  # smith ##s ##o ##n
    (w,) = qa_windows(tok, "who?", context, 64, 16)
    pieces = positions_of(w, context, "Smithson")
    s, e = window_logits(w, {pieces[1]: 9.0}, {pieces[2]: 9.0})  # starts at ##s, ends at ##o
    widened = decode_answers(context, [w], [s], [e])[0]
    assert (widened.answer, widened.start, widened.end) == ("Smithson", 5, 13)
    exact = decode_answers(context, [w], [s], [e], align_to_words=False)[0]
    assert (exact.answer, exact.start, exact.end) == ("so", 10, 12)
    # widened, every token span inside the word is the same answer: their scores add up
    assert widened.score > exact.score


def test_a_word_cut_at_a_window_edge_still_widens_to_the_whole_word():
    """A window that ends inside "Smithson" holds only its first pieces; an answer found there
    is the whole word, not the fragment (the pipeline would answer "Smith")."""
    tok = tiny_tokenizer()
    context = "the film was good and the acting was bad John Smithson went home"
    windows = qa_windows(tok, "who?", context, 18, 4)
    a, b = context.index("Smithson"), context.index("Smithson") + len("Smithson")
    cut = [k for k, w in enumerate(windows) if w.offsets[w.text_positions[-1], 1] in range(a + 1, b)]
    assert cut, "some window ends inside Smithson"
    k = cut[0]
    w = windows[k]
    inside = [int(p) for p in w.text_positions if a <= w.offsets[p, 0] < b]
    starts = [np.full(len(x), -10.0) for x in windows]
    ends = [np.full(len(x), -10.0) for x in windows]
    starts[k][inside[0]] = ends[k][inside[-1]] = 10.0
    best = decode_answers(context, windows, starts, ends)[0]
    assert (best.answer, best.start, best.end) == ("Smithson", a, b)
    exact = decode_answers(context, windows, starts, ends, align_to_words=False)[0]
    assert exact.answer != "Smithson" and "Smithson".startswith(exact.answer)  # what the window holds


def test_empty_context_gives_the_empty_answer_and_bad_arguments_are_named():
    tok = tiny_tokenizer()
    (w,) = qa_windows(tok, "who?", "", 64, 16)
    (a,) = decode_answers("", [w], [np.zeros(len(w))], [np.zeros(len(w))])
    assert (a.answer, a.start, a.end) == ("", 0, 0)
    with pytest.raises(ValueError, match="top_k"):
        decode_answers("", [w], [np.zeros(len(w))], [np.zeros(len(w))], top_k=0)
    with pytest.raises(ValueError, match="max_answer_len"):
        decode_answers("", [w], [np.zeros(len(w))], [np.zeros(len(w))], max_answer_len=0)
    with pytest.raises(ValueError, match="cover"):
        decode_answers("", [w], [np.zeros(1)], [np.zeros(1)])
