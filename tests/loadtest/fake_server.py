"""A stand-in berth server for the load-test tests: the routes' shapes and timing headers, no model.

python -m tests.loadtest.fake_server PORT [--fail-every N] [--delay-ms MS] [--api-key KEY]
"""

from __future__ import annotations

import argparse
import asyncio

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


def create_app(fail_every: int = 0, delay_ms: float = 0.0, api_key: str | None = None) -> FastAPI:
    app = FastAPI()
    calls = {"n": 0}

    async def answer(request: Request, key: str, make) -> JSONResponse:
        if api_key and request.headers.get("authorization") != f"Bearer {api_key}":
            return JSONResponse({"error": {"type": "unauthorized", "message": "no key", "param": None}},
                                status_code=401)
        calls["n"] += 1
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        if fail_every and calls["n"] % fail_every == 0:
            return JSONResponse(
                {"error": {"type": "overloaded", "message": "queue full", "param": None}},
                status_code=429,
                headers={"retry-after": "1"},
            )
        body = await request.json()
        inputs = body.get("inputs")
        if body.get("question") is not None:
            inputs = [body]
        items = inputs if isinstance(inputs, list) else [inputs]
        payload = {"model": "fake", key: [make(x) for x in items], "usage": {"tokens": 1, "truncated": 0}}
        return JSONResponse(payload, headers={"x-queue-time-ms": "1.5", "x-inference-time-ms": "3.0"})

    @app.post("/embed")
    async def embed(request: Request):
        return await answer(request, "embeddings", lambda _x: [0.6, 0.8])

    @app.post("/classify")
    async def classify(request: Request):
        return await answer(request, "results", lambda _x: [{"label": "positive", "score": 0.9}])

    @app.post("/ner")
    async def ner(request: Request):
        return await answer(request, "results", lambda _x: [])

    @app.post("/qa")
    async def qa(request: Request):
        return await answer(
            request, "results", lambda _x: [{"answer": "", "score": 0.1, "start": 0, "end": 0}]
        )

    @app.get("/readyz")
    async def ready():
        return {"status": "ready"}

    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--fail-every", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--api-key", help="answer 401 to task requests without this bearer key")
    args = parser.parse_args()
    app = create_app(args.fail_every, args.delay_ms, args.api_key)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
