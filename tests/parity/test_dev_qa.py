"""/qa on the fine-tuned SQuAD model over the dev article's questions (issue 5, items 2-5).

Parity with the HF 4.57 question-answering pipeline at the service's defaults, EM/F1 through HTTP
vs model/'s offline evaluation (fp32 and int8 bundles), answers equal to the context slices, and
answers found in the last window of a long context. Reads ../shared/data; minutes.
"""

from __future__ import annotations

import pytest

from model.data.squad import read_squad
from model.metrics import squad_exact, squad_scores
from service.registry import ort_runtime_factory
from service.settings import Settings
from service.tasks.base import Seq
from service.tasks.spans import QA_HANDLER
from service.tasks.windows import qa_windows
from tests.conftest import REPO_ROOT
from tests.parity.harness import Report, classify_qa, emulate_qa, run_reference, serve_all
from tests.service.conftest import serve_in_process

pytestmark = pytest.mark.slow
# The service's defaults for the 256-token qa model: doc_stride = min(256 // 2, 128) (spans.qa).
DOC_STRIDE, MAX_ANSWER_LEN = 128, 30


@pytest.fixture(scope="module")
def dev(shared_data):
    return read_squad(shared_data / "squad" / "dev.json")


def _settings(root, precision="fp32") -> Settings:
    return Settings(models_dir=root, precision=precision, provider="cpu", max_items=256)


async def test_qa_dev_parity_with_pipeline(qa_checkpoint, qa_bundles, dev, figures):
    pairs = [(ex.question, ex.context) for ex in dev]
    async with serve_in_process(_settings(qa_bundles), ort_runtime_factory) as (app, client):
        model = app.state.berth.registry.models["qa"]
        max_seq_len = min(384, model.manifest.max_length)  # the service's default window
        got = await serve_all(client, "/qa", "qa", pairs, chunk=128)
        ref = run_reference({"task": "qa", "checkpoint": str(qa_checkpoint), "pairs": pairs, "top_k": 1,
                             "max_seq_len": max_seq_len, "doc_stride": DOC_STRIDE,
                             "max_answer_len": MAX_ANSWER_LEN, "handle_impossible_answer": False},
                            threads=2)["results"]
        report, windowed = Report(), 0
        for (question, context), g, w in zip(pairs, got, ref, strict=True):
            assert all(context[a["start"] : a["end"]] == a["answer"] for a in g)
            windows = qa_windows(model.tokenizer.plain, question, context, max_seq_len, DOC_STRIDE)
            windowed += len(windows) > 1
            outs = QA_HANDLER.infer(model, [Seq(x.input_ids, x.token_type_ids) for x in windows])

            def emulate(sum_windows=False, merge_text=False, pre_topk=False, window_words=False,
                        windows=windows, outs=outs,
                        context=context):
                return emulate_qa(context, windows, [o[0] for o in outs], [o[1] for o in outs], 1,
                                  MAX_ANSWER_LEN, sum_windows=sum_windows, merge_text=merge_text,
                                  window_words=window_words, pre_topk=12 if pre_topk else None)

            # The emulator with every defect off must be berth, or it proves nothing.
            assert [(a["start"], a["end"]) for a in emulate()] == [(a["start"], a["end"]) for a in g]
            cls, gap = classify_qa(g, w, emulate)
            report.add(cls, {"question": question, "got": g, "want": w})
            if cls is None:
                report.max_score_diff = max(report.max_score_diff, gap)
    figures["qa_parity"] = report.summary() | {"max_seq_len": max_seq_len, "doc_stride": DOC_STRIDE,
                                               "multi_window_questions": windowed,
                                               "examples": report.examples}
    assert report.identical_pct_excepting >= 99.0, (report.summary(), report.examples)
    assert report.max_score_diff <= 1e-3


@pytest.mark.parametrize("precision", ["fp32", "int8"])
async def test_qa_em_f1_through_http_equals_offline(qa_checkpoint, qa_bundles, dev, precision, figures):
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from model.evaluate import evaluate_qa

    # The offline evaluation's windows (berth train/eval defaults), so only decoding and runtime differ.
    max_length, doc_stride = 256, 64
    key = "qa_offline"
    if key not in figures:
        model = AutoModelForQuestionAnswering.from_pretrained(qa_checkpoint)
        tokenizer = AutoTokenizer.from_pretrained(qa_checkpoint)
        scores = evaluate_qa(model, tokenizer, dev, max_length=max_length, doc_stride=doc_stride)
        figures[key] = {"exact": scores["exact"], "f1": scores["f1"]}
    if not (qa_bundles / "qa" / f"model.{precision}.onnx").exists() and precision != "fp32":
        pytest.skip(f"the export's {precision} gate refused this checkpoint's {precision} variant")
    async with serve_in_process(_settings(qa_bundles, precision), ort_runtime_factory) as (app, client):
        assert app.state.berth.registry.models["qa"].loaded.precision == precision
        got = await serve_all(client, "/qa", "qa", [(ex.question, ex.context) for ex in dev], chunk=128,
                              max_seq_len=max_length, doc_stride=doc_stride)
    for ex, answers in zip(dev, got, strict=True):
        assert all(ex.context[a["start"] : a["end"]] == a["answer"] for a in answers)
    scores = squad_scores({ex.id: a[0]["answer"] for ex, a in zip(dev, got, strict=True)},
                          {ex.id: [x.text for x in ex.answers] for ex in dev})
    figures[f"qa_http_{precision}"] = scores
    assert abs(scores["exact"] - figures[key]["exact"]) <= 0.5, (scores, figures[key])
    assert abs(scores["f1"] - figures[key]["f1"]) <= 0.5, (scores, figures[key])


async def test_qa_answer_in_last_window_of_long_context(qa_bundles, dev, figures):
    """Unrelated text put before the answer's paragraph, so the answer sits in the last window:
    the answer found in the paragraph alone is found there, at the shifted offsets."""
    # Filler that cannot answer: movie-review sentences (SST dev). Other paragraphs of the same
    # article are strong distractors for this weak model (2.5% of SQuAD): with 6 windows of them
    # only 5 of 38 answers stayed at the end, a quality limit, not a windowing one.
    unrelated = [line.split("|||", 1)[1].strip() for line in
                 (REPO_ROOT / "data" / "sst" / "dev.txt").read_text(encoding="utf-8").splitlines()[:400]]
    async with serve_in_process(_settings(qa_bundles), ort_runtime_factory) as (app, client):
        model = app.state.berth.registry.models["qa"]
        max_seq_len = min(384, model.manifest.max_length)
        alone = await serve_all(client, "/qa", "qa", [(ex.question, ex.context) for ex in dev], chunk=128)
        right = [ex for ex, a in zip(dev, alone, strict=True)
                 if any(squad_exact(a[0]["answer"], g.text) for g in ex.answers)][:40]
        cases = []
        for ex in right:
            golds = [g.text for g in ex.answers]
            filler = " ".join(p for p in unrelated if not any(g in p for g in golds))
            filler = filler[: 3 * max_seq_len * 4]  # ~3 windows of text before the paragraph
            context, shift = filler + " " + ex.context, len(filler) + 1
            windows = qa_windows(model.tokenizer.plain, ex.question, context, max_seq_len, DOC_STRIDE)
            last = windows[-1]
            last_start = int(last.offsets[last.text_positions[0], 0])
            # Only contexts whose gold answer lies wholly in the last window count.
            if len(windows) > 2 and all(shift + g.start >= last_start for g in ex.answers):
                cases.append((ex, context, shift))
        got = await serve_all(client, "/qa", "qa", [(ex.question, c) for ex, c, _ in cases], chunk=64)
    answered = 0
    for (ex, context, shift), answers in zip(cases, got, strict=True):
        a = answers[0]
        assert context[a["start"] : a["end"]] == a["answer"]
        answered += any(a["start"] == shift + g.start and squad_exact(a["answer"], g.text)
                        for g in ex.answers)
    figures["qa_last_window"] = {"questions": len(cases), "answered_in_last_window": answered}
    assert len(cases) >= 10
    # Each window's softmax is its own, so a filler span can still outscore the answer now and then.
    # Measured: 21 of 37 with this weak model (EM 33 on the dev article).
    assert answered >= 0.5 * len(cases), figures["qa_last_window"]
