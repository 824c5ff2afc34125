"""Evaluate a task model on examples: run it over length-sorted batches and score the output.

Each `evaluate_*` returns a dict of metrics with the task's headline metric under "main"
(`MAIN_METRIC` names it), which the training loop uses to keep the best checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterator

from model.batching import collate, length_bucketed_batches
from model.data import QAExample, TextExample, TokenExample
from model.features import encode_classify, encode_ner, encode_qa
from model.heads import input_names, labels_of
from model.metrics import (
    classification_scores,
    entity_scores,
    multilabel_scores,
    regression_scores,
    squad_scores,
)

MAIN_METRIC = {
    "single_label_classification": "accuracy",
    "multi_label_classification": "micro_f1",
    "regression": "pearson",
    "ner": "f1",
    "qa": "f1",
}


def run_batches(model, features: list[dict], pad_id: int, batch_size: int, token_labels: bool = False
                ) -> Iterator[tuple[list[int], dict]]:
    """(feature indices, outputs as numpy) per length-sorted batch, without gradients."""
    import torch

    model.eval()
    lengths = [len(f["input_ids"]) for f in features]
    names = input_names(model)
    with torch.inference_mode():
        for idx in length_bucketed_batches(lengths, batch_size, rng=None):
            batch = collate([features[i] for i in idx], pad_id, token_labels)
            inputs = {k: v for k, v in batch.items() if k in names}
            out = model(**inputs)
            yield idx, {k: v.float().numpy() for k, v in out.items() if k != "loss"}


def evaluate_classify(model, tokenizer, examples: list[TextExample], max_length: int = 256,
                      batch_size: int = 64, threshold: float = 0.5) -> dict:
    import numpy as np

    labels = labels_of(model)
    problem_type = model.config.problem_type or "single_label_classification"
    label2id = {name: i for i, name in enumerate(labels)}
    features = encode_classify(tokenizer, examples, label2id, problem_type, max_length)
    logits = np.zeros((len(features), len(labels)), dtype=np.float32)
    for idx, out in run_batches(model, features, tokenizer.pad_token_id, batch_size):
        logits[idx] = out["logits"]
    if problem_type == "regression":
        scores = regression_scores([float(ex.label) for ex in examples], logits[:, 0].tolist())
    elif problem_type == "multi_label_classification":
        # sigmoid(x) >= t  <=>  x >= logit(t)
        cut = float(np.log(threshold / (1 - threshold)))
        pred = [{labels[j] for j in np.flatnonzero(row >= cut)} for row in logits]
        scores = multilabel_scores([set(ex.label) for ex in examples], pred, labels)
        scores["threshold"] = threshold
    else:
        pred = [labels[j] for j in logits.argmax(axis=1)]
        scores = classification_scores([ex.label for ex in examples], pred, labels)
    return {"main": scores[MAIN_METRIC[problem_type]], "metric": MAIN_METRIC[problem_type], **scores,
            "examples": len(examples)}


def predict_tags(model, tokenizer, examples: list[TokenExample], max_length: int = 256,
                 batch_size: int = 64) -> list[list[str]]:
    """One tag per word, read at its first word piece; words cut by truncation get "O"."""
    labels = labels_of(model)
    features = encode_ner(tokenizer, examples, {t: 0 for ex in examples for t in ex.tags}, max_length)
    predicted = [["O"] * len(ex.tokens) for ex in examples]
    for idx, out in run_batches(model, features, tokenizer.pad_token_id, batch_size, token_labels=True):
        best = out["logits"].argmax(axis=-1)
        for row, i in enumerate(idx):
            previous = -1
            for pos, word in enumerate(features[i]["word_ids"]):
                if word >= 0 and word != previous:
                    predicted[i][word] = labels[best[row, pos]]
                previous = word
    return predicted


def evaluate_ner(model, tokenizer, examples: list[TokenExample], max_length: int = 256,
                 batch_size: int = 64) -> dict:
    pred = predict_tags(model, tokenizer, examples, max_length, batch_size)
    gold = [ex.tags for ex in examples]
    scores = entity_scores(gold, pred)
    strict = entity_scores(gold, pred, strict=True)
    return {"main": scores["f1"], "metric": "f1", **scores, "strict_iob2_f1": strict["f1"],
            "examples": len(examples)}


def predict_answers(model, tokenizer, examples: list[QAExample], max_length: int = 256,
                    doc_stride: int = 64, batch_size: int = 32, max_answer_len: int = 30,
                    n_best: int = 20, allow_no_answer: bool = False) -> dict[str, str]:
    """The official SQuAD decoding: best span by start + end logit over all windows, answers of
    at most `max_answer_len` tokens inside the context; with `allow_no_answer`, the empty answer
    wins when the best window's CLS score (start[0] + end[0]) beats every span."""
    import numpy as np

    features, windows = encode_qa(tokenizer, examples, max_length, doc_stride)
    best: dict[int, tuple[float, str]] = {}
    null: dict[int, float] = {}
    for idx, out in run_batches(model, features, tokenizer.pad_token_id, batch_size):
        for row, i in enumerate(idx):
            window, ex_i = windows[i], windows[i].example_index
            n = len(features[i]["input_ids"])
            start, end = out["start_logits"][row, :n], out["end_logits"][row, :n]
            null[ex_i] = min(null.get(ex_i, np.inf), float(start[0] + end[0]))
            offsets = window.offsets
            for s in np.argsort(start)[::-1][:n_best]:
                if offsets[s] is None:
                    continue
                for e in np.argsort(end)[::-1][:n_best]:
                    if offsets[e] is None or e < s or e - s + 1 > max_answer_len:
                        continue
                    score = float(start[s] + end[e])
                    if score > best.get(ex_i, (-np.inf, ""))[0]:
                        context = examples[ex_i].context
                        best[ex_i] = (score, context[offsets[s][0] : offsets[e][1]])
    answers = {}
    for i, ex in enumerate(examples):
        score, text = best.get(i, (-np.inf, ""))
        answers[ex.id] = "" if allow_no_answer and null.get(i, -np.inf) > score else text
    return answers


def evaluate_qa(model, tokenizer, examples: list[QAExample], max_length: int = 256, doc_stride: int = 64,
                batch_size: int = 32) -> dict:
    allow_no_answer = any(ex.is_impossible for ex in examples)
    pred = predict_answers(model, tokenizer, examples, max_length, doc_stride, batch_size,
                           allow_no_answer=allow_no_answer)
    scores = squad_scores(pred, {ex.id: [a.text for a in ex.answers] for ex in examples})
    return {"main": scores["f1"], "metric": "f1", **scores, "examples": len(examples),
            "no_answer_allowed": allow_no_answer}


def evaluate(task: str, model, tokenizer, examples: list, **options) -> dict:
    """Dispatch to the task's evaluation; options are max_length, batch_size, doc_stride, threshold."""
    if task == "classify":
        options.pop("doc_stride", None)
        return evaluate_classify(model, tokenizer, examples, **options)
    if task == "ner":
        options.pop("doc_stride", None)
        options.pop("threshold", None)
        return evaluate_ner(model, tokenizer, examples, **options)
    options.pop("threshold", None)
    return evaluate_qa(model, tokenizer, examples, **options)
