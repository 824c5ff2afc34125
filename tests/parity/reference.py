"""Reference runner for the parity tests: the Hugging Face 4.57 pipelines' outputs as JSON.

Runs inside `.venv-ref` (tests/parity/make_ref_venv.sh), never in the project's venv: transformers 5
removed the question-answering pipeline. Reads a JSON request on stdin and writes the pipeline's
answers on stdout; it imports nothing from berth, so the two sides share no code.

ner request: {"task": "ner", "checkpoint": dir, "texts": [...], "aggregations": [...]}
  → {"version": ..., "results": {aggregation: [[{label, score, start, end, word}, ...], ...]}}
qa request: {"task": "qa", "checkpoint": dir, "pairs": [[question, context], ...], "top_k": k,
  "max_seq_len": n, "doc_stride": n, "max_answer_len": n, "handle_impossible_answer": bool}
  → {"version": ..., "results": [[{answer, score, start, end}, ...], ...]}
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def load_tokenizer(checkpoint: str):
    """The checkpoint's fast tokenizer as 4.57 loads it.

    Checkpoints saved by transformers 5 may name the class `TokenizersBackend`, unknown to 4.57;
    then the same tokenizer.json is wrapped with the special tokens its tokenizer_config names.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    try:
        return AutoTokenizer.from_pretrained(checkpoint)
    except ValueError:
        config = json.loads((Path(checkpoint) / "tokenizer_config.json").read_text())
        keys = ("cls_token", "sep_token", "pad_token", "unk_token", "mask_token", "bos_token",
                "eos_token", "model_max_length", "padding_side")
        return PreTrainedTokenizerFast(tokenizer_file=str(Path(checkpoint) / "tokenizer.json"),
                                       **{k: config[k] for k in keys if config.get(k) is not None})


def run_ner(request: dict) -> dict:
    from transformers import pipeline
    from transformers.pipelines.token_classification import AggregationStrategy

    pipe = pipeline("token-classification", model=request["checkpoint"],
                    tokenizer=load_tokenizer(request["checkpoint"]), device="cpu")
    results: dict[str, list] = {name: [] for name in request["aggregations"]}
    for text in request["texts"]:
        # One forward per text, post-processed once per strategy: what pipe(text,
        # aggregation_strategy=s) does, without running the model five times.
        pre = pipe.preprocess(text, **pipe._preprocess_params)
        outputs = [pipe.forward(chunk, **pipe._forward_params) for chunk in pre]
        for name in request["aggregations"]:
            entities = pipe.postprocess(outputs, aggregation_strategy=AggregationStrategy(name),
                                        ignore_labels=["O"])
            results[name].append([
                {"label": e.get("entity_group", e.get("entity")), "score": float(e["score"]),
                 "start": e["start"], "end": e["end"], "word": e["word"]}
                for e in entities
            ])
    return {"results": results}


def run_qa(request: dict) -> dict:
    from transformers import pipeline

    pipe = pipeline("question-answering", model=request["checkpoint"],
                    tokenizer=load_tokenizer(request["checkpoint"]), device="cpu")
    results = []
    for question, context in request["pairs"]:
        out = pipe(question=question, context=context, top_k=request["top_k"],
                   max_seq_len=request["max_seq_len"], doc_stride=request["doc_stride"],
                   max_answer_len=request["max_answer_len"],
                   handle_impossible_answer=request["handle_impossible_answer"])
        out = out if isinstance(out, list) else [out]
        results.append([{"answer": a["answer"], "score": float(a["score"]), "start": a["start"],
                         "end": a["end"]} for a in out])
    return {"results": results}


def main() -> None:
    import torch
    import transformers

    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
    request = json.load(sys.stdin)
    out = run_ner(request) if request["task"] == "ner" else run_qa(request)
    out["version"] = transformers.__version__
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
