"""Every tiny architecture x task exports, passes the fp32 gate, and matches transformers directly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from export.bundle import export_bundle
from export.checkpoint import ExportError
from service.manifest import TASK_OUTPUTS, load_manifest
from tests.tiny import ARCHITECTURES, NER_LABELS

TASKS = ("embed", "classify", "ner", "qa")
TEXTS = ["the movie was great", "a bad plot", "john smith lives in paris and works for acme corp"]


def _checkpoint_task(task: str) -> str:
    return "base" if task == "embed" else task


def _hf_reference(checkpoint, task: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What transformers itself computes (default attention, no berth wrapper)."""
    import torch
    import transformers

    auto = {"embed": transformers.AutoModel,
            "classify": transformers.AutoModelForSequenceClassification,
            "ner": transformers.AutoModelForTokenClassification,
            "qa": transformers.AutoModelForQuestionAnswering}[task]
    model = auto.from_pretrained(str(checkpoint)).eval()
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v) for k, v in feeds.items()})
    if task == "embed":
        tokens = out.last_hidden_state.numpy()
        mask = feeds["attention_mask"][..., None].astype(np.float32)
        pooled = (tokens * mask).sum(1) / mask.sum(1)
        pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
        return {"token_embeddings": tokens, "sentence_embedding": pooled}
    if task == "qa":
        return {"start_logits": out.start_logits.numpy(), "end_logits": out.end_logits.numpy()}
    return {"logits": out.logits.numpy()}


def _feeds(bundle, manifest) -> dict[str, np.ndarray]:
    """Right-padded batch from the bundle's own tokenizer, as the service builds it."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    encodings = tok.encode_batch(TEXTS)
    width = max(len(e.ids) for e in encodings)
    pad = int(manifest.source["pad_token_id"])
    feeds = {name: np.full((len(TEXTS), width), pad if name == "input_ids" else 0, dtype=np.int64)
             for name in manifest.inputs}
    for row, enc in enumerate(encodings):
        feeds["input_ids"][row, : len(enc.ids)] = enc.ids
        feeds["attention_mask"][row, : len(enc.ids)] = 1
    return feeds


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("task", TASKS)
def test_tiny_exports_and_matches_transformers(arch, task, tiny_checkpoints, tmp_path):
    import onnxruntime as ort

    checkpoint = tiny_checkpoints(arch, _checkpoint_task(task))
    bundle = export_bundle(checkpoint, task, "m", tmp_path, precisions=("fp32",), quick_bench=False)

    manifest = load_manifest(bundle)  # the service's own validation
    assert bundle == tmp_path / "m"
    assert manifest.task == task and manifest.architecture == arch
    assert manifest.outputs == list(TASK_OUTPUTS[task])
    assert ("token_type_ids" in manifest.inputs) == (arch in ("bert", "albert"))
    assert set(manifest.variants) == {"fp32", "fp32-fused"}
    for variant in manifest.variants.values():
        assert variant.parity["max_abs_diff"] <= 1e-4
    if task == "ner":
        assert manifest.labels == NER_LABELS
    if task == "classify":
        assert manifest.labels == ["negative", "positive"] and manifest.problem_type == "single_label"
    tokenizer = json.loads((bundle / "tokenizer.json").read_text())
    assert tokenizer["padding"] is None and tokenizer["truncation"] is None

    feeds = _feeds(bundle, manifest)
    assert not feeds["attention_mask"].all()  # the check must cover padding
    expected = _hf_reference(checkpoint, task, feeds)
    for key in ("fp32", "fp32-fused"):
        path = bundle / manifest.variants[key].file
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = dict(zip(manifest.outputs, sess.run(manifest.outputs, feeds), strict=True))
        for name, value in expected.items():
            mask = feeds["attention_mask"].astype(bool)
            if got[name].ndim >= 2 and got[name].shape[:2] == mask.shape:
                # Padded positions are not part of the contract; compare attended tokens only.
                got[name], value = got[name][mask], value[mask]
            np.testing.assert_allclose(got[name], value, atol=1e-4, err_msg=f"{key} {name}")


def test_bert_fused_operator_counts(tiny_checkpoints, tmp_path):
    bundle = export_bundle(tiny_checkpoints("bert", "base"), "embed", "m", tmp_path, precisions=("fp32",),
                           quick_bench=False)
    manifest = load_manifest(bundle)
    layers = manifest.num_layers
    ops = manifest.variants["fp32-fused"].fused_ops
    assert ops["Attention"] == layers
    assert ops["EmbedLayerNormalization"] == 1
    assert ops["SkipLayerNormalization"] >= 2 * layers
    assert ops["BiasGelu"] + ops["FastGelu"] + ops["Gelu"] == layers
    assert manifest.variants["fp32"].fused_ops == {}


def test_partial_fusion_is_recorded_for_roberta(tiny_checkpoints, tmp_path):
    bundle = export_bundle(tiny_checkpoints("roberta", "classify"), "classify", "m", tmp_path,
                           precisions=("fp32",), quick_bench=False)
    fused = load_manifest(bundle).variants["fp32-fused"]
    assert fused.fused_ops["Attention"] == 2
    assert fused.fused_ops["EmbedLayerNormalization"] == 0
    assert any("EmbedLayerNormalization" in u for u in fused.details["unfused"])


def test_sdpa_graph_fails_the_bert_fusion_check(tiny_checkpoints, tmp_path):
    """The regression the op-count check exists for: an SDPA export has no fusable attention."""
    import transformers

    from export.checkpoint import read_checkpoint
    from export.fusion import fuse
    from export.onnx_export import EmbedModel, export_onnx

    info = read_checkpoint(tiny_checkpoints("bert", "base"), "embed")
    model = transformers.AutoModel.from_pretrained(str(info.path), attn_implementation="sdpa").eval()
    export_onnx(EmbedModel(model, True, "mean", True), info, tmp_path / "sdpa.onnx")
    with pytest.raises(ExportError, match="Attention 0, expected 2"):
        fuse(info, tmp_path / "sdpa.onnx", tmp_path / "sdpa.fused.onnx")
