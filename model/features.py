"""Examples → model inputs: class / multi-hot / float labels, NER labels on first word pieces,
and QA windows with answer positions mapped through character offsets.

Features are plain dicts of Python lists (input_ids, attention_mask, token_type_ids?, labels...),
padded later per batch by `model.batching.collate`.
"""

from __future__ import annotations

from dataclasses import dataclass

from model.data import QAExample, TextExample, TokenExample

IGNORE = -100  # label index the loss functions skip
_QA_META = ("offset_mapping", "overflow_to_sample_mapping")


def encode_classify(
    tokenizer, examples: list[TextExample], label2id: dict[str, int], problem_type: str, max_length: int
) -> list[dict]:
    """Tokenize texts (or pairs) and attach a label in the form the problem type's loss expects."""
    has_pairs = any(ex.text_pair is not None for ex in examples)
    texts = [ex.text for ex in examples]
    pairs = [ex.text_pair or "" for ex in examples] if has_pairs else None
    enc = tokenizer(
        texts, pairs, truncation="longest_first" if has_pairs else True, max_length=max_length, padding=False,
        # Some tokenizer configs leave token types out; pairs need them (models that take none
        # have them dropped by `heads.input_names`).
        return_token_type_ids=True,
    )
    features = []
    for i, ex in enumerate(examples):
        feature = {key: enc[key][i] for key in enc}
        if problem_type == "multi_label_classification":
            hot = [0.0] * len(label2id)
            for name in ex.label:
                hot[label2id[name]] = 1.0
            feature["labels"] = hot
        elif problem_type == "regression":
            feature["labels"] = float(ex.label)
        else:
            feature["labels"] = label2id[ex.label]
        features.append(feature)
    return features


def encode_ner(
    tokenizer, examples: list[TokenExample], label2id: dict[str, int], max_length: int,
    label_pieces: str = "first",
) -> list[dict]:
    """Label each word's first piece with its tag; the other pieces as `label_pieces` says.

    `first`: the other pieces (and specials) get IGNORE, the classic recipe: the model learns
    nothing about them. `all`: they are trained too, as the continuation of the word's tag (I-X
    after a B-X or I-X word, O after O). Serving decodes raw text the way the Hugging Face
    pipeline does, with the pre-tokenizer's words, which cut "U.S." or "1-0" into several words:
    under `first` their inner pieces carry untrained predictions, which cost the served CoNLL
    model 2.5 points of F1 (docs/ner-qa.md); `all` gives every piece a trained prediction.

    `word_ids` (the word index of each kept token, None for specials) travels with the feature so
    that evaluation can read one prediction per word; words cut by truncation are absent from it.
    """
    if label_pieces not in LABEL_PIECES:
        raise ValueError(f"label_pieces must be one of {LABEL_PIECES}, not {label_pieces!r}")
    enc = tokenizer(
        [ex.tokens for ex in examples], is_split_into_words=True, truncation=True,
        max_length=max_length, padding=False,
    )
    features = []
    for i, ex in enumerate(examples):
        word_ids = enc.word_ids(i)
        labels, previous = [], None
        for word in word_ids:
            if word is None:
                labels.append(IGNORE)
            elif word != previous:
                labels.append(label2id[ex.tags[word]])
            elif label_pieces == "first":
                labels.append(IGNORE)
            else:
                labels.append(label2id[continuation(ex.tags[word], label2id)])
            previous = word
        feature = {key: enc[key][i] for key in enc}
        feature["labels"] = labels
        feature["word_ids"] = [-1 if w is None else w for w in word_ids]
        features.append(feature)
    return features


LABEL_PIECES = ("first", "all")


def continuation(tag: str, label2id: dict[str, int]) -> str:
    """The tag of a word's later pieces: I-X for B-X when the label set has I-X, else the tag itself."""
    if tag.startswith("B-") and f"I-{tag[2:]}" in label2id:
        return f"I-{tag[2:]}"
    return tag


@dataclass
class QAWindow:
    """Where a window came from, for decoding spans back into context characters."""

    example_index: int
    # Per token: (start, end) character offsets into the context, or None outside the context.
    offsets: list[tuple[int, int] | None]


def encode_qa(
    tokenizer, examples: list[QAExample], max_length: int, doc_stride: int
) -> tuple[list[dict], list[QAWindow]]:
    """Split each context into windows of `max_length` tokens overlapping by `doc_stride` tokens.

    Only the context is truncated (`only_second`), the question is kept whole in every window.
    Each window is labelled with the answer's token span when the first gold answer lies wholly
    inside it, and with the CLS position (0) otherwise or when there is no answer.
    """
    if not 0 <= doc_stride < max_length // 2:
        # The overlap must leave room for the window to advance past the question and specials.
        raise ValueError(f"doc_stride ({doc_stride}) must be at least 0 and under half of "
                         f"max_length ({max_length})")
    questions = [ex.question.lstrip() for ex in examples]  # leading spaces only waste window room
    check_question_lengths(tokenizer, examples, questions, max_length, doc_stride)
    # Question first, as BERT was trained on; every berth model pads on the right.
    enc = tokenizer(
        questions,
        [ex.context for ex in examples],
        truncation="only_second",
        max_length=max_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        return_token_type_ids=True,
        padding=False,
    )
    features, windows = [], []
    for w in range(len(enc["input_ids"])):
        ex_index = enc["overflow_to_sample_mapping"][w]
        sequence_ids = enc.sequence_ids(w)
        offsets = [
            tuple(off) if seq == 1 else None
            for off, seq in zip(enc["offset_mapping"][w], sequence_ids, strict=True)
        ]
        feature = {key: enc[key][w] for key in enc if key not in _QA_META}
        start, end = answer_token_span(examples[ex_index], offsets)
        feature["start_positions"], feature["end_positions"] = start, end
        features.append(feature)
        windows.append(QAWindow(example_index=ex_index, offsets=offsets))
    return features, windows


def check_question_lengths(tokenizer, examples: list[QAExample], questions: list[str], max_length: int,
                           doc_stride: int) -> None:
    """Refuse a question that leaves a window no more context tokens than `doc_stride`.

    The question is kept whole in every window, so such a window could never advance (the
    tokenizer panics, a BaseException, rather than raise). Questions are not truncated: a cut
    question is a different question; the ValueError names the example and the lengths.
    """
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    lengths = tokenizer(questions, add_special_tokens=False, return_attention_mask=False,
                        return_token_type_ids=False)["input_ids"]
    for ex, ids in zip(examples, lengths, strict=True):
        room = max_length - len(ids) - specials
        if room <= doc_stride:
            where = ex.source if f"id {ex.id}" in ex.source else " ".join(
                filter(None, (ex.source, f"(id {ex.id})" if ex.source else f"id {ex.id}")))
            raise ValueError(f"{where}: the question has {len(ids)} tokens, which leaves {room} context "
                             f"tokens per window of --max-length {max_length} ({specials} special), "
                             f"not more than --doc-stride {doc_stride}; raise --max-length or lower "
                             f"--doc-stride")


def answer_token_span(example: QAExample, offsets: list[tuple[int, int] | None]) -> tuple[int, int]:
    """Token (start, end) of the first gold answer in a window, or (0, 0) — CLS — if it is not inside."""
    if example.is_impossible:
        return 0, 0
    answer = example.answers[0]
    char_start, char_end = answer.start, answer.start + len(answer.text)
    context_tokens = [i for i, off in enumerate(offsets) if off is not None]
    if not context_tokens:
        return 0, 0
    first, last = context_tokens[0], context_tokens[-1]
    if offsets[first][0] > char_start or offsets[last][1] < char_end:
        return 0, 0
    start = first
    while start <= last and offsets[start][1] <= char_start:
        start += 1
    end = last
    while end >= first and offsets[end][0] >= char_end:
        end -= 1
    return start, end
