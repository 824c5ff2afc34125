"""The load scenarios: which route, what body, how many texts, what a correct answer looks like.

One definition shared by the locust users and the benchmark client, so a figure from
`berth bench` and one from `make loadtest` describe the same traffic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loadtest.texts import Cycler, TextPools


@dataclass(frozen=True)
class Scenario:
    """A kind of request: route, texts per request, body builder and response check."""

    name: str
    path: str
    texts_per_request: int
    build: Callable[[Cycler, Cycler, Cycler, int], dict[str, Any]]
    # Name of the list in the response that must hold one entry per input text.
    result_key: str
    weight: int = 1  # share in mixed traffic (locust without tags, the soak)

    def body(self, cursors: Cursors) -> dict[str, Any]:
        return self.build(cursors.short, cursors.documents, cursors.qa, self.texts_per_request)

    def check(self, payload: Any) -> str | None:
        """None when the response has one result per input, else what is wrong."""
        if not isinstance(payload, dict) or not isinstance(payload.get(self.result_key), list):
            return f"response has no list {self.result_key!r}"
        got = len(payload[self.result_key])
        if got != self.texts_per_request:
            return f"{self.result_key}: {got} results for {self.texts_per_request} inputs"
        return None


@dataclass
class Cursors:
    """One worker's position in each text pool."""

    short: Cycler
    documents: Cycler
    qa: Cycler

    @classmethod
    def for_worker(cls, pools: TextPools, worker: int) -> Cursors:
        # Spread workers over the pools so concurrent requests carry different texts.
        return cls(
            Cycler(pools.short, worker * 97),
            Cycler(pools.documents, worker * 13),
            Cycler(pools.qa_pairs, worker * 31),
        )


def _texts(short: Cycler, _d: Cycler, _q: Cycler, n: int) -> dict[str, Any]:
    return {"inputs": short.take(n)}


def _document(_s: Cycler, documents: Cycler, _q: Cycler, n: int) -> dict[str, Any]:
    return {"inputs": documents.take(n)}


def _qa(_s: Cycler, _d: Cycler, qa: Cycler, n: int) -> dict[str, Any]:
    return {"inputs": [{"question": q, "context": c} for q, c in qa.take(n)]}


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("embed_interactive", "/embed", 1, _texts, "embeddings", weight=4),
        Scenario("embed_bulk", "/embed", 32, _texts, "embeddings", weight=1),
        Scenario("classify", "/classify", 1, _texts, "results", weight=3),
        Scenario("classify_bulk", "/classify", 32, _texts, "results", weight=1),
        Scenario("ner_documents", "/ner", 1, _document, "results", weight=1),
        Scenario("qa", "/qa", 1, _qa, "results", weight=1),
    )
}


def get_scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}") from None
