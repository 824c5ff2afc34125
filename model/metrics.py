"""Task metrics: classification (accuracy, micro/macro F1, multi-label at a threshold, Pearson),
entity-level NER P/R/F1 (conlleval rules and strict IOB2), SQuAD EM/F1 (official normalization).
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence


def _f1(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


# ---------------------------------------------------------------- classification


def classification_scores(
    gold: Sequence[str], pred: Sequence[str], labels: Sequence[str]
) -> dict[str, float]:
    """Single-label: accuracy, and micro / macro F1 over `labels` (macro averages every label)."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold labels but {len(pred)} predictions")
    return {
        "accuracy": sum(g == p for g, p in zip(gold, pred, strict=True)) / len(gold) if gold else 0.0,
        **_set_f1([{g} for g in gold], [{p} for p in pred], labels),
    }


def multilabel_scores(
    gold: Sequence[set[str]], pred: Sequence[set[str]], labels: Sequence[str]
) -> dict[str, float]:
    """Multi-label: micro / macro F1 over label decisions, and exact-set accuracy (subset accuracy)."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold label sets but {len(pred)} predictions")
    return {
        "subset_accuracy": sum(set(g) == set(p) for g, p in zip(gold, pred, strict=True)) / len(gold)
        if gold else 0.0,
        **_set_f1(gold, pred, labels),
    }


def _set_f1(gold: Sequence[set[str]], pred: Sequence[set[str]], labels: Sequence[str]) -> dict[str, float]:
    tp, fp, fn = Counter(), Counter(), Counter()
    for g, p in zip(gold, pred, strict=True):
        for label in p:
            (tp if label in g else fp)[label] += 1
        for label in g:
            if label not in p:
                fn[label] += 1
    micro = _f1(sum(tp.values()), sum(fp.values()), sum(fn.values()))[2]
    per_label = [_f1(tp[x], fp[x], fn[x])[2] for x in labels]
    return {"micro_f1": micro, "macro_f1": sum(per_label) / len(per_label) if per_label else 0.0}


def regression_scores(gold: Sequence[float], pred: Sequence[float]) -> dict[str, float]:
    """Mean squared error and Pearson correlation (0 when either side is constant)."""
    n = len(gold)
    mse = sum((g - p) ** 2 for g, p in zip(gold, pred, strict=True)) / n
    mg, mp = sum(gold) / n, sum(pred) / n
    cov = sum((g - mg) * (p - mp) for g, p in zip(gold, pred, strict=True))
    var = math.sqrt(sum((g - mg) ** 2 for g in gold) * sum((p - mp) ** 2 for p in pred))
    return {"mse": mse, "pearson": cov / var if var else 0.0}


# ---------------------------------------------------------------- NER


def entities(tags: Sequence[str], strict: bool = False) -> set[tuple[str, int, int]]:
    """Entity spans (type, start, end exclusive) in a tag sequence.

    Default (conlleval / seqeval default mode): an entity starts at B-X, or at I-X that follows
    O or another type (tolerates IOB1-style starts), and ends before the next tag that is not I-X.
    strict (seqeval strict IOB2): only B-X starts an entity; a stray I-X is no entity at all.
    """
    spans = set()
    kind, start = None, 0
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, typ = tag.partition("-")
        continues = prefix == "I" and typ == kind
        if kind is not None and not continues:
            spans.add((kind, start, i))
            kind = None
        if prefix == "B" or (prefix == "I" and not continues and not strict):
            kind, start = typ, i
    return spans


def word_tags(words: Sequence[str], spans: Sequence[dict]) -> list[str]:
    """IOB2 tags of a space-joined sentence's words from entity character spans (as `/ner`
    answers them: dicts with `start`, `end`, `label`), to score a server's entities with
    `entity_scores` against word-level gold tags.

    A word takes the label of the entity holding its first character, as model/'s evaluation
    reads a word's tag at its first piece.
    """
    tags, at, previous = ["O"] * len(words), 0, None
    for i, word in enumerate(words):
        holder = next((k for k, e in enumerate(spans) if e["start"] <= at < e["end"]), None)
        if holder is not None:
            tags[i] = ("I-" if holder == previous else "B-") + spans[holder]["label"]
        previous = holder
        at += len(word) + 1
    return tags


def entity_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], strict: bool = False) -> dict:
    """Micro precision / recall / F1 over exact (type, start, end) matches, plus F1 per type."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sentences but {len(pred)} predicted")
    tp, n_gold, n_pred = Counter(), Counter(), Counter()
    for g, p in zip(gold, pred, strict=True):
        if len(g) != len(p):
            raise ValueError(f"sentence of {len(g)} gold tags but {len(p)} predicted")
        gs, ps = entities(g, strict), entities(p, strict)
        for kind, *_ in gs:
            n_gold[kind] += 1
        for kind, *_ in ps:
            n_pred[kind] += 1
        for kind, *_ in gs & ps:
            tp[kind] += 1
    precision, recall, f1 = _f1(sum(tp.values()), sum(n_pred.values()) - sum(tp.values()),
                                sum(n_gold.values()) - sum(tp.values()))
    per_type = {
        kind: _f1(tp[kind], n_pred[kind] - tp[kind], n_gold[kind] - tp[kind])[2]
        for kind in sorted(set(n_gold) | set(n_pred))
    }
    return {"precision": precision, "recall": recall, "f1": f1, "per_type_f1": per_type}


# ---------------------------------------------------------------- SQuAD


def normalize_answer(text: str) -> str:
    """The official SQuAD normalization: lowercase, drop punctuation, drop a/an/the, squeeze spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def squad_exact(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def squad_f1(prediction: str, gold: str, *, v2: bool = False) -> float:
    """Token F1 after normalization, as the official scripts compute it. They differ on an
    answer that normalizes to nothing ("the", "."): v1.1 scores it 0 against anything, empty
    gold included (no common token); v2.0 scores empty against empty as 1 (its no-answer case)."""
    pred_tokens, gold_tokens = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if v2 and (not pred_tokens or not gold_tokens):
        return float(pred_tokens == gold_tokens)
    common = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if not common:
        return 0.0
    precision, recall = common / len(pred_tokens), common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: dict[str, str], golds: dict[str, list[str]]) -> dict[str, float]:
    """EM and F1 ×100, max over each question's gold answers; an empty gold list means no answer.

    A set with an unanswerable question is scored by the v2.0 rules (empty answer = abstain),
    any other by v1.1's, so each figure is what that version's official script prints. A
    question without a prediction counts as answered wrongly (as the official script does).
    """
    v2 = any(not answers for answers in golds.values())
    em = f1 = 0.0
    for qid, answers in golds.items():
        answers = answers or [""]
        pred = predictions.get(qid)
        if pred is None:
            continue
        em += max(squad_exact(pred, a) for a in answers)
        f1 += max(squad_f1(pred, a, v2=v2) for a in answers)
    n = len(golds) or 1
    return {"exact": 100 * em / n, "f1": 100 * f1 / n}
