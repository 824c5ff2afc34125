"""The parity harness on tiny random checkpoints: berth's /ner and /qa vs the HF 4.57 pipelines.

Slow because it builds (once) and runs the reference venv; the dev-data runs on the fine-tuned
models are in test_dev_parity.py.
"""

from __future__ import annotations

import pytest

from service.registry import ort_runtime_factory
from service.settings import Settings
from service.tasks.spans import QA_HANDLER
from service.tasks.windows import qa_windows
from tests.parity.harness import Report, classify_qa, compare_ner, emulate_qa, run_reference, serve_all
from tests.service.conftest import serve_in_process

pytestmark = pytest.mark.slow

SENTENCE = "john smith went to paris and visited the acme corp in berlin with maría o'neil"
WORDS = SENTENCE.split(" ")
TEXTS = [" ".join(WORDS[i % 7 : i % 7 + 3 + i % 9]) for i in range(40)] + [
    "Zoë  Ünal\tmet  ﬁnn in São Paulo", "naïve café owners", "x", "[UNK] 😀 smith",
]
CONTEXT = " ".join(["john smith went to paris and visited the acme corp in berlin"] * 6)
QUESTIONS = ["where did john go", "who went to paris", "what did john visit", "which corp"]


def _settings(root) -> Settings:
    return Settings(models_dir=root, precision="fp32", provider="cpu")


@pytest.mark.parametrize("aggregation", ["none", "simple", "first", "average", "max"])
async def test_tiny_ner_matches_pipeline(tiny_bundles, tiny_checkpoints, aggregation):
    ref = run_reference({"task": "ner", "checkpoint": str(tiny_checkpoints("bert", "ner")),
                         "texts": TEXTS, "aggregations": [aggregation]})["results"][aggregation]
    async with serve_in_process(_settings(tiny_bundles), ort_runtime_factory) as (app, client):
        got = await serve_all(client, "/ner", "ents", TEXTS, aggregation=aggregation)
        model = app.state.berth.registry.models["ents"]
    report = Report()
    compare_ner(TEXTS, got, ref, model.tokenizer.plain, aggregation, model.manifest.max_length - 2, report)
    assert sum(len(r) for r in ref) > len(TEXTS)  # the random model does tag things
    # Every difference must be a listed defect; the texts with ﬁ / accents / [UNK] may trip the
    # pipeline's word-piece heuristic, the rest must be identical.
    assert report.classes.get("unexplained", 0) == 0, report.examples
    assert report.classes.get("score beyond tolerance", 0) == 0, report.examples
    assert report.identical >= len(TEXTS) - 4


async def test_tiny_qa_matches_pipeline_up_to_listed_defects(tiny_bundles, tiny_checkpoints):
    params = {"top_k": 3, "max_seq_len": 64, "doc_stride": 16, "max_answer_len": 30}
    pairs = [(q, CONTEXT) for q in QUESTIONS] + [("who", "berlin"), ("what is it", "acme corp")]
    ref = run_reference({"task": "qa", "checkpoint": str(tiny_checkpoints("bert", "qa")),
                         "pairs": pairs, "handle_impossible_answer": False, **params})["results"]
    async with serve_in_process(_settings(tiny_bundles), ort_runtime_factory) as (app, client):
        got = await serve_all(client, "/qa", "reader", pairs, **params)
        model = app.state.berth.registry.models["reader"]
    report = Report()
    for (question, context), g, w in zip(pairs, got, ref, strict=True):
        windows = qa_windows(model.tokenizer.plain, question, context, 64, 16)
        outs = QA_HANDLER.infer(model, [_seq(x) for x in windows])

        def emulate(sum_windows=False, merge_text=False, pre_topk=False, window_words=False,
                    windows=windows, outs=outs, context=context):
            return emulate_qa(context, windows, [o[0] for o in outs], [o[1] for o in outs], 3, 30,
                              sum_windows=sum_windows, merge_text=merge_text, window_words=window_words,
                              pre_topk=2 * 3 + 10 if pre_topk else None)

        # The emulator with every defect off is berth: it checks the emulator, not the service.
        mine = emulate()
        assert [(a["start"], a["end"]) for a in mine] == [(a["start"], a["end"]) for a in g]
        assert all(context[a["start"] : a["end"]] == a["answer"] for a in g)
        cls, gap = classify_qa(g, w, emulate)
        report.add(cls, {"question": question, "got": g, "want": w})
        if cls is None:
            report.max_score_diff = max(report.max_score_diff, gap)
    assert report.classes.get("unexplained", 0) == 0, report.examples.get("unexplained")
    # A random model's flat distributions make the pipeline's defects show (top-12 cut, [CLS]
    # spans filling a one-word context's top 3): each one was reproduced above, none is ours.
    assert report.total == len(pairs) and sum(report.classes.values()) + report.identical == len(pairs)


def _seq(window):
    from service.tasks.base import Seq

    return Seq(window.input_ids, window.token_type_ids)
