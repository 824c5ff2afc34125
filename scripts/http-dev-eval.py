"""Dev metrics of the default models measured through a running server's HTTP API.

    .venv/bin/python scripts/http-dev-eval.py --url http://127.0.0.1:8000 [--tasks sentiment,ner,qa]
        [--model sentiment=albert-sst2]     # score another bundle on a task's dev set

Sends every dev example of the project's data/ folder (binary SST-2 sentences to /classify,
CoNLL-2003 sentences to /ner, the SQuAD dev article to /qa) in requests of --chunk items and
scores the answers with model/'s metrics, the ones `berth train` reports offline. Prints one JSON
object per task. This is the "through the running service" check of docs/models.md: it sees
what a client sees (the precision the server chose, its tokenization, windowing and decoding).
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.request
from pathlib import Path

from model.data.conll import read_conll
from model.data.squad import read_squad
from model.data.sst import read_sst
from model.metrics import classification_scores, entity_scores, squad_scores, word_tags

DATA = Path(__file__).resolve().parents[1] / "data"


def post(url: str, route: str, body: dict) -> dict:
    request = urllib.request.Request(
        url + route, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read())


def chunks(items: list, size: int):
    for at in range(0, len(items), size):
        yield items[at:at + size]


def eval_sentiment(url: str, model: str, chunk: int) -> dict:
    examples = read_sst(DATA / "sst" / "dev.txt", "sst2")
    predicted = []
    for part in chunks(examples, chunk):
        body = post(url, "/classify", {"model": model, "inputs": [ex.text for ex in part], "top_k": 1})
        predicted += [labels[0]["label"] for labels in body["results"]]
    gold = [ex.label for ex in examples]
    scores = classification_scores(gold, predicted, sorted(set(gold)))
    return {"route": "/classify", "examples": len(examples), "accuracy": scores["accuracy"]}


def eval_ner(url: str, model: str, chunk: int) -> dict:
    examples = read_conll(DATA / "conll2003" / "dev.txt")
    predicted = []
    for part in chunks(examples, chunk):
        body = post(url, "/ner", {"model": model, "inputs": [" ".join(ex.tokens) for ex in part]})
        predicted += [word_tags(ex.tokens, ents) for ex, ents in zip(part, body["results"], strict=True)]
    scores = entity_scores([ex.tags for ex in examples], predicted)
    return {"route": "/ner", "examples": len(examples), "f1": scores["f1"],
            "precision": scores["precision"], "recall": scores["recall"]}


def eval_qa(url: str, model: str, chunk: int) -> dict:
    examples = read_squad(DATA / "squad" / "dev.json")
    predictions = {}
    for part in chunks(examples, chunk):
        inputs = [{"question": ex.question, "context": ex.context} for ex in part]
        body = post(url, "/qa", {"model": model, "inputs": inputs})
        for ex, answers in zip(part, body["results"], strict=True):
            predictions[ex.id] = answers[0]["answer"]
    golds = {ex.id: [a.text for a in ex.answers] for ex in examples}
    scores = squad_scores(predictions, golds)
    return {"route": "/qa", "examples": len(examples), "f1": scores["f1"], "exact": scores["exact"]}


TASKS = {"sentiment": eval_sentiment, "ner": eval_ner, "qa": eval_qa}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--tasks", default="sentiment,ner,qa", help="comma-separated: " + ",".join(TASKS))
    parser.add_argument("--chunk", type=int, default=32, help="items per request")
    parser.add_argument("--model", action="append", default=[], metavar="TASK=NAME",
                        help="serve TASK with the bundle NAME (default: the bundle named like the task)")
    args = parser.parse_args()
    names = dict(item.split("=", 1) for item in args.model)
    models = {m["name"]: m for m in json.loads(urllib.request.urlopen(args.url + "/models").read())["models"]}
    for task in args.tasks.split(","):
        if task not in TASKS:
            parser.error(f"unknown task {task!r}: choose from {', '.join(TASKS)}")
        name = names.get(task, task)
        if name not in models:
            raise SystemExit(
                f"the server at {args.url} has no model named {name!r} (it has {', '.join(models)})"
            )
        started = time.perf_counter()
        result = TASKS[task](args.url, name, args.chunk)
        result.update(model=name, served_precision=models[name].get("precision"),
                      seconds=round(time.perf_counter() - started, 1))
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
