"""Label sets from training data, and the check that dev data holds no label training never saw."""

from __future__ import annotations

from model.data import DataFormatError, TextExample, TokenExample

IOB_ORDER = {"O": 0, "B": 1, "I": 2}


def labels_of_examples(task: str, examples: list, order: tuple[str, ...] | None = None) -> list[str]:
    """Label names: classes (classify) or IOB2 tags (ner), O first then by type. Classes come in
    `order` when the format has one (SST-5's very negative ... very positive, so ids follow the
    scale) and sorted by name otherwise."""
    seen = {x for ex in examples for x in _labels(task, ex)}
    if task == "classify" and order is not None and seen <= set(order):
        return [label for label in order if label in seen]
    if task == "ner":
        seen.add("O")
        return sorted(seen, key=lambda t: (t != "O", t[2:], IOB_ORDER.get(t[:1], 3)))
    return sorted(seen)


def check_known_labels(task: str, examples: list, known: list[str], what: str = "dev") -> None:
    """Raise DataFormatError listing labels in `examples` that are not in `known`, with where each
    first occurs, since a model cannot predict a label it was never trained on."""
    known_set = set(known)
    first_seen: dict[str, str] = {}
    for ex in examples:
        for label in _labels(task, ex):
            if label not in known_set and label not in first_seen:
                first_seen[label] = ex.source
    if first_seen:
        listing = "; ".join(f"{label!r} (first at {src})" for label, src in sorted(first_seen.items()))
        source = next(iter(first_seen.values())).rsplit(":", 1)[0]
        raise DataFormatError(
            source, None,
            f"{len(first_seen)} label(s) in the {what} data never seen in training: {listing}",
        )


def _labels(task: str, ex) -> list[str]:
    if task == "ner":
        assert isinstance(ex, TokenExample)
        return ex.tags
    assert isinstance(ex, TextExample)
    if isinstance(ex.label, list):
        return ex.label
    if isinstance(ex.label, float):
        return []  # regression targets are not labels
    return [ex.label]
