"""In-process API tests on real fp32 bundles exported from tiny random checkpoints, against torch."""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest

from service.registry import ort_runtime_factory
from service.settings import Settings
from tests.service.conftest import serve_in_process

WORDS = [
    "the",
    "a",
    "movie",
    "film",
    "plot",
    "acting",
    "good",
    "bad",
    "great",
    "awful",
    "john",
    "smith",
    "paris",
    "london",
    "went",
    "visited",
]


def mixed_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 40))) for _ in range(n)]


def settings_for(models_dir, **kw) -> Settings:
    return Settings(models_dir=models_dir, precision="fp32", provider="cpu", **kw)


def torch_reference(checkpoint, texts, pairs=None, task="classify"):
    """Normalized mean-pooled vectors (embed) or logits (classify) from transformers."""
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(checkpoint)
    enc = tok(texts, pairs, padding=True, return_tensors="pt")
    with torch.no_grad():
        if task == "embed":
            states = AutoModel.from_pretrained(checkpoint).eval()(**enc).last_hidden_state
            mask = enc["attention_mask"][..., None].float()
            pooled = (states * mask).sum(1) / mask.sum(1)
            return torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()(**enc).logits.numpy()


async def test_embed_matches_torch_mean_pooling(tiny_bundles, tiny_checkpoints):
    texts = mixed_texts(12, seed=1)
    async with serve_in_process(settings_for(tiny_bundles), ort_runtime_factory) as (_, client):
        r = await client.post("/embed", json={"inputs": texts, "model": "emb"})
        got = np.array(r.json()["embeddings"])
    want = torch_reference(tiny_checkpoints("bert", "base"), texts, task="embed")
    assert np.abs(got - want).max() < 1e-5


@pytest.mark.parametrize(
    ("name", "labels", "problem", "function"),
    [
        ("sent", ("neg", "neu", "pos"), "single_label_classification", "softmax"),
        ("tags", ("a", "b", "c"), "multi_label_classification", "sigmoid"),
    ],
)
async def test_classify_scores_are_function_of_torch_logits(
    tiny_bundles, tiny_checkpoints, name, labels, problem, function
):
    import torch

    checkpoint = tiny_checkpoints("bert", "classify", labels=labels, problem_type=problem)
    texts = mixed_texts(6, seed=2)
    pairs = mixed_texts(6, seed=3)
    async with serve_in_process(settings_for(tiny_bundles), ort_runtime_factory) as (_, client):
        single = (await client.post("/classify", json={"model": name, "inputs": texts})).json()
        paired = (
            await client.post(
                "/classify",
                json={"model": name, "inputs": [[a, b] for a, b in zip(texts, pairs, strict=True)]},
            )
        ).json()
        top1 = (await client.post("/classify", json={"model": name, "inputs": texts, "top_k": 1})).json()
    for body, logits in (
        (single, torch_reference(checkpoint, texts)),
        (paired, torch_reference(checkpoint, texts, pairs)),
    ):
        t = torch.from_numpy(logits)
        want = (t.softmax(-1) if function == "softmax" else t.sigmoid()).numpy()
        for row, expected in zip(body["results"], want, strict=True):
            got = {x["label"]: x["score"] for x in row}
            assert np.abs(np.array([got[lab] for lab in labels]) - expected).max() < 1e-4
            assert [x["score"] for x in row] == sorted(got.values(), reverse=True)
    assert [r[0] for r in top1["results"]] == [r[0] for r in single["results"]]


async def test_batching_invariance_concurrent_mixed_lengths(tiny_bundles):
    """The same text alone and inside concurrent mixed-length batches: fp32 max abs diff ≤ 1e-5."""
    probe = "john visited paris and the film was good"
    others = mixed_texts(48, seed=4)
    settings = settings_for(tiny_bundles, max_wait_ms=20, max_batch_size=16)
    async with serve_in_process(settings, ort_runtime_factory) as (app, client):
        alone = np.array(
            (await client.post("/embed", json={"inputs": probe, "model": "emb"})).json()["embeddings"][0]
        )
        requests = [
            client.post("/embed", json={"inputs": others[i : i + 4] + [probe], "model": "emb"})
            for i in range(0, 48, 4)
        ]
        bodies = [r.json() for r in await asyncio.gather(*requests)]
        batches = app.state.berth.registry.models["emb"].runtime.health()["runs"]
    together = np.array([b["embeddings"][-1] for b in bodies])
    assert np.abs(together - alone).max() <= 1e-5
    assert batches < 12 + 1 + 2  # requests were actually batched together (2 warm-up runs)


async def test_tokenize_matches_bundle_tokenizer(tiny_bundles):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tiny_bundles / "emb" / "tokenizer.json"))
    async with serve_in_process(settings_for(tiny_bundles), ort_runtime_factory) as (_, client):
        body = (await client.post("/tokenize", json={"inputs": "John visited Paris", "model": "emb"})).json()
    assert [t["id"] for t in body["tokens"][0]] == tok.encode("John visited Paris").ids
