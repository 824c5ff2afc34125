"""QA decoding over windows: best summed start+end logit, spans inside the context, at most
max_answer_len tokens, and the no-answer rule for SQuAD v2 data."""

from __future__ import annotations

import pytest

from model.data import Answer, QAExample
from model.evaluate import evaluate_qa, predict_answers
from model.heads import load_tokenizer


class PointingModel:
    """Stands in for a QA head: its logits peak on chosen token ids, wherever the window puts them."""

    def __init__(self, vocab: dict[str, int], start_word: str, end_word: str, null: float = -100.0):
        from transformers import BertConfig

        self.config = BertConfig()
        self.start_id, self.end_id, self.null = vocab[start_word], vocab[end_word], null

    def eval(self):
        return self

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        from transformers.modeling_outputs import QuestionAnsweringModelOutput

        start = (input_ids == self.start_id).float() * 10.0
        end = (input_ids == self.end_id).float() * 10.0
        # Question tokens carry the same ids: the decoder must ignore them (they are not context).
        start[:, 0] = end[:, 0] = self.null / 2
        return QuestionAnsweringModelOutput(start_logits=start, end_logits=end)

    __call__ = forward


@pytest.fixture(scope="module")
def tokenizer(tiny_checkpoints):
    return load_tokenizer(tiny_checkpoints("bert", "base"))


def _example(context, answers=()):
    return QAExample(id="q", question="where is paris ?", context=context,
                     answers=[Answer(a, context.index(a)) for a in answers])


def test_span_found_in_a_later_window(tokenizer):
    context = " ".join(["the river"] * 12) + " paris , new york and berlin . " + " ".join(["the bank"] * 12)
    model = PointingModel(tokenizer.get_vocab(), "new", "york")
    pred = predict_answers(model, tokenizer, [_example(context)], max_length=20, doc_stride=6)
    assert pred == {"q": "new york"}


def test_answers_longer_than_max_len_are_refused(tokenizer):
    context = "paris is a city in france and the capital of it"
    model = PointingModel(tokenizer.get_vocab(), "paris", "capital")
    assert predict_answers(model, tokenizer, [_example(context)], max_length=64, doc_stride=16,
                           max_answer_len=30) == {"q": "paris is a city in france and the capital"}
    # With room for only 3 tokens the long span is out; the best allowed one starts at "paris".
    short = predict_answers(model, tokenizer, [_example(context)], max_length=64, doc_stride=16,
                            max_answer_len=3)
    assert short["q"].startswith("paris") and len(short["q"].split()) <= 3


def test_question_tokens_are_never_answers(tokenizer):
    # The start logit peaks on "paris", which only the question holds: a decoder that let the
    # question in would start there; the answer must instead be a context span ending at "berlin".
    context = "london is big and berlin is old"
    model = PointingModel(tokenizer.get_vocab(), "paris", "berlin")
    answer = predict_answers(model, tokenizer, [_example(context)], max_length=64, doc_stride=16)["q"]
    assert answer.endswith("berlin") and answer in context


def test_no_answer_wins_only_on_v2_data(tokenizer):
    context = "london is big"
    loud_null = PointingModel(tokenizer.get_vocab(), "london", "london", null=100.0)
    v2 = [_example(context), QAExample("r", "what is big ?", context, [Answer("london", 0)])]
    scores = evaluate_qa(loud_null, tokenizer, v2, max_length=64, doc_stride=16)
    # Data with an unanswerable question allows the empty answer: q right, r wrong.
    assert scores["no_answer_allowed"] and scores["exact"] == pytest.approx(50.0)
    v1 = [QAExample("r", "what is big ?", context, [Answer("london", 0)])]
    assert evaluate_qa(loud_null, tokenizer, v1, max_length=64, doc_stride=16)["exact"] == 100.0
