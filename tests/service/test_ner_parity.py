"""Parity with transformers' own token-classification pipeline on tiny random checkpoints.

The model is run here with torch on our windows; our entities must equal the pipeline's in label,
score, start and end (its `word` is decoded from pieces by design, ours is the input slice).
Random tiny models spread their predictions over every label, so all grouping paths get used.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from tokenizers import Tokenizer

from service.tasks.ner import decode_entities
from service.tasks.windows import text_windows

TEXTS = [
    "John Smith visited Paris and London with Acme Corp.",
    "Zyx Qwerty lives in New York, the city of Berlin!",
    "acmecorp paris-london 1234 went to the river bank (Germany).",
    "who did it? the capital of France is Paris; Smithsonian works at a film.",
]


@pytest.fixture(scope="module", params=[("bert", 0), ("distilbert", 1)], ids=str)
def reference(request, tiny_checkpoints):
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    arch, seed = request.param
    path = tiny_checkpoints(arch, "ner", seed=seed)
    model = AutoModelForTokenClassification.from_pretrained(path).eval()
    hf_tokenizer = AutoTokenizer.from_pretrained(path)
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]

    def logits_of(window) -> np.ndarray:
        inputs = {"input_ids": window.input_ids, "attention_mask": window.attention_mask}
        if "token_type_ids" in hf_tokenizer.model_input_names:
            inputs["token_type_ids"] = window.token_type_ids
        with torch.no_grad():
            out = model(**{k: torch.tensor(v[None]) for k, v in inputs.items()})
        return out.logits[0].numpy()

    def hf(strategy: str):
        return pipeline(
            "token-classification", model=model, tokenizer=hf_tokenizer, aggregation_strategy=strategy
        )

    return tok, labels, logits_of, hf


@pytest.mark.parametrize("strategy", ["none", "simple", "first", "average", "max"])
def test_entities_match_the_pipeline(reference, strategy):
    tok, labels, logits_of, hf = reference
    pipe = hf(strategy)
    compared = 0
    for text in TEXTS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = pipe(text)
        windows = text_windows(tok, text, 128, 16)
        got = decode_entities(text, windows, [logits_of(w) for w in windows], labels, strategy)
        assert [(e.label, e.start, e.end) for e in got] == [
            (x.get("entity_group", x.get("entity")), x["start"], x["end"]) for x in expected
        ], text
        for ours, theirs in zip(got, expected, strict=True):
            assert ours.score == pytest.approx(float(theirs["score"]), abs=1e-5)
            assert ours.text == text[ours.start : ours.end]
        compared += len(got)
    assert compared > 0  # the random model must predict something other than O
