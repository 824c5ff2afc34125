"""SQuAD JSON, v1.1 and v2.0 (`is_impossible` or an empty answer list means no answer)."""

from __future__ import annotations

import json
from pathlib import Path

from model.data.examples import Answer, DataFormatError, QAExample


def read_squad(path: Path) -> list[QAExample]:
    text = Path(path).read_text(encoding="utf-8")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFormatError(path, exc.lineno, f"invalid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise DataFormatError(path, None, 'expected the SQuAD layout {"data": [{"paragraphs": [...]}]}')
    examples = []
    for a, article in enumerate(doc["data"]):
        for p, para in enumerate(article.get("paragraphs", [])):
            where = f"data[{a}].paragraphs[{p}]"
            context = para.get("context")
            if not isinstance(context, str) or not context:
                raise DataFormatError(path, None, f"{where}: missing or empty 'context'")
            for q, qa in enumerate(para.get("qas", [])):
                examples.append(_question(path, f"{where}.qas[{q}]", context, qa))
    return examples


def _question(path: Path, where: str, context: str, qa: dict) -> QAExample:
    qid, question = qa.get("id"), qa.get("question")
    if not isinstance(question, str) or not question.strip():
        raise DataFormatError(path, None, f"{where}: missing or empty 'question'")
    where = f"{where} (id {qid})"
    answers = []
    if not qa.get("is_impossible", False):
        for ans in qa.get("answers", []):
            try:
                start, answer = int(ans["answer_start"]), str(ans["text"])
            except (KeyError, TypeError, ValueError):
                message = f"{where}: an answer needs 'text' and 'answer_start'"
                raise DataFormatError(path, None, message) from None
            # A gold span that does not match its context would train the model on noise.
            if context[start : start + len(answer)] != answer:
                raise DataFormatError(
                    path, None, f"{where}: answer {answer!r} not found at character {start} of the context"
                )
            answers.append(Answer(text=answer, start=start))
    return QAExample(id=str(qid), question=question, context=context, answers=answers, source=where)
