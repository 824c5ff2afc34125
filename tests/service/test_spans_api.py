"""/ner and /qa served from real tiny bundles: windows through the batcher equal torch per window."""

from __future__ import annotations

import numpy as np
import pytest

from service.registry import ort_runtime_factory
from service.settings import Settings
from service.tasks.ner import decode_entities
from service.tasks.qa import decode_answers
from service.tasks.windows import qa_windows, text_windows
from tests.service.conftest import serve_in_process
from tests.tiny import NER_LABELS

LONG = " ".join(["john smith went to paris and visited the acme corp in berlin"] * 12)  # ~130 tokens


def torch_window_logits(checkpoint, windows, outputs):
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoModelForTokenClassification

    auto = AutoModelForTokenClassification if outputs == ("logits",) else AutoModelForQuestionAnswering
    model = auto.from_pretrained(checkpoint).eval()
    result = []
    with torch.no_grad():
        for w in windows:
            out = model(
                input_ids=torch.from_numpy(np.asarray(w.input_ids, dtype=np.int64))[None],
                attention_mask=torch.from_numpy(np.asarray(w.attention_mask, dtype=np.int64))[None],
                token_type_ids=torch.from_numpy(np.asarray(w.token_type_ids, dtype=np.int64))[None],
            )
            result.append([getattr(out, name)[0].numpy() for name in outputs])
    return result


def settings_for(root, **kw) -> Settings:
    return Settings(models_dir=root, precision="fp32", provider="cpu", **kw)


async def test_ner_long_text_windows_match_torch(tiny_bundles, tiny_checkpoints):
    async with serve_in_process(settings_for(tiny_bundles), ort_runtime_factory) as (app, client):
        tok = app.state.berth.registry.models["ents"].tokenizer.plain
        body = {
            "model": "ents",
            "inputs": [LONG, "john went to paris"],
            "aggregation": "none",
            "ignore_labels": [],
            "stride": 16,
        }
        r = await client.post("/ner", json=body)
        assert r.status_code == 200, r.text
        got = r.json()
    windows = text_windows(tok, LONG, 128, 16)
    assert len(windows) >= 2  # the text really was windowed
    logits = [x[0] for x in torch_window_logits(tiny_checkpoints("bert", "ner"), windows, ("logits",))]
    want = decode_entities(LONG, windows, logits, NER_LABELS, "none", (), 0.0)
    assert [(e["label"], e["start"], e["end"]) for e in got["results"][0]] == [
        (e.label, e.start, e.end) for e in want
    ]
    assert np.abs(np.array([e["score"] for e in got["results"][0]]) - [e.score for e in want]).max() < 1e-4
    for text, entities in zip(body["inputs"], got["results"], strict=True):
        assert all(text[e["start"] : e["end"]] == e["text"] for e in entities)
    assert got["usage"]["truncated"] == 0 and got["usage"]["tokens"] >= sum(len(w) for w in windows)


async def test_qa_answers_match_torch_decoding(tiny_bundles, tiny_checkpoints):
    question, context = "where did john go", LONG
    async with serve_in_process(settings_for(tiny_bundles), ort_runtime_factory) as (app, client):
        tok = app.state.berth.registry.models["reader"].tokenizer.plain
        single = await client.post(
            "/qa",
            json={
                "model": "reader",
                "question": question,
                "context": context,
                "top_k": 3,
                "doc_stride": 32,
                "max_seq_len": 64,
            },
        )
        listed = await client.post(
            "/qa",
            json={
                "model": "reader",
                "inputs": [{"question": question, "context": context}],
                "top_k": 3,
                "doc_stride": 32,
                "max_seq_len": 64,
            },
        )
        assert single.status_code == 200, single.text
        assert (await client.post("/qa", json={"model": "reader", "question": question})).status_code == 422
        too_big_stride = await client.post(
            "/qa",
            json={
                "model": "reader",
                "question": question,
                "context": context,
                "doc_stride": 60,
                "max_seq_len": 64,
            },
        )
        assert too_big_stride.status_code == 422 and too_big_stride.json()["error"]["param"] == "doc_stride"
    assert single.json()["results"] == listed.json()["results"]
    windows = qa_windows(tok, question, context, 64, 32)
    outs = torch_window_logits(tiny_checkpoints("bert", "qa"), windows, ("start_logits", "end_logits"))
    want = decode_answers(context, windows, [o[0] for o in outs], [o[1] for o in outs], 3, 30, False)
    got = single.json()["results"][0]
    assert [(a["start"], a["end"]) for a in got] == [(a.start, a.end) for a in want]
    assert all(context[a["start"] : a["end"]] == a["answer"] for a in got)
    assert np.abs(np.array([a["score"] for a in got]) - [a.score for a in want]).max() < 1e-4


async def test_qa_defaults_window_a_long_context_on_a_128_token_model(tiny_bundles, tiny_checkpoints):
    """No options: the window is the model's 128 tokens and the overlap follows it (64, as HF's
    min(max_seq_len // 2, 128)); a fixed 128-token overlap would leave no room and refuse."""
    question, context = "where did john go", LONG + " " + LONG
    async with serve_in_process(settings_for(tiny_bundles), ort_runtime_factory) as (app, client):
        reader = app.state.berth.registry.models["reader"]
        assert reader.manifest.max_length == 128
        r = await client.post("/qa", json={"model": "reader", "question": question, "context": context})
    assert r.status_code == 200, r.text
    windows = qa_windows(reader.tokenizer.plain, question, context, 128, 64)
    assert len(windows) >= 3
    outs = torch_window_logits(tiny_checkpoints("bert", "qa"), windows, ("start_logits", "end_logits"))
    want = decode_answers(context, windows, [o[0] for o in outs], [o[1] for o in outs], 1, 30, False)
    assert [(a["start"], a["end"]) for a in r.json()["results"][0]] == [(a.start, a.end) for a in want]


@pytest.mark.parametrize("route", ["/ner", "/qa"])
async def test_wrong_task_and_char_cap(tiny_bundles, route):
    async with serve_in_process(settings_for(tiny_bundles, max_chars=50), ort_runtime_factory) as (_, client):
        body = {"inputs": "x" * 51} if route == "/ner" else {"question": "q", "context": "x" * 51}
        r = await client.post(route, json=body)
        assert r.status_code == 422 and "characters" in r.json()["error"]["message"]
        body = (
            {"inputs": "x", "model": "emb"}
            if route == "/ner"
            else {"question": "q", "context": "c", "model": "emb"}
        )
        assert (await client.post(route, json=body)).status_code == 422
        if route == "/ner":  # long texts are windowed: a cut it cannot make is refused, not ignored
            for option in ({"truncate": False}, {"truncation_direction": "left"}):
                r = await client.post(route, json={"inputs": "john", **option})
                assert r.status_code == 422 and r.json()["error"]["param"] == next(iter(option)), r.text
