"""The naive baseline: the endpoint most people write first, to measure berth against.

    python -m loadtest.naive --task embed --model PATH --port 8100

FastAPI + sentence-transformers (embed) or a transformers text-classification pipeline
(classify) on the torch model, unbatched: one request = one encode call, run in FastAPI's
thread pool, default JSON encoding. Same routes and response shapes as berth's /embed and
/classify so the same client drives both. Needs the [train] and [dev] extras (torch).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def create_app(task: str, model_path: str):
    import torch
    from fastapi import Body, FastAPI

    app = FastAPI(title=f"naive {task} baseline")
    torch.set_grad_enabled(False)

    if task == "embed":
        from sentence_transformers import SentenceTransformer

        encoder = SentenceTransformer(model_path, device="cpu")

        @app.post("/embed")
        def embed(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
            inputs = body["inputs"]
            texts = inputs if isinstance(inputs, list) else [inputs]
            vectors = encoder.encode(texts, normalize_embeddings=True, batch_size=32)
            return {"model": "naive", "embeddings": vectors.tolist()}

    elif task == "classify":
        from transformers import pipeline

        classifier = pipeline("text-classification", model=model_path, device="cpu", top_k=None)

        @app.post("/classify")
        def classify(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
            inputs = body["inputs"]
            texts = inputs if isinstance(inputs, list) else [inputs]
            return {"model": "naive", "results": classifier(texts, batch_size=32)}

    else:
        raise ValueError(f"naive baseline: unknown task {task!r} (embed or classify)")

    @app.get("/readyz")
    def ready() -> dict[str, str]:
        return {"status": "ready"}

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.naive", description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=["embed", "classify"], required=True)
    parser.add_argument("--model", required=True, help="sentence-transformers or HF checkpoint folder")
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args(argv)
    import uvicorn

    uvicorn.run(create_app(args.task, args.model), host="127.0.0.1", port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
