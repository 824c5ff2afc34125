"""HTTP handlers: the only layer that knows HTTP. Each one converts, calls a task, shapes JSON."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel

from service import protocol as p
from service.errors import ERROR_STATUSES, InvalidInput, NotReady, ShuttingDown, error_body
from service.registry import LoadedModel
from service.tasks.base import Served
from service.tasks.classify import ClassifyQuery, classify
from service.tasks.embed import EmbedQuery, embed
from service.tasks.spans import NerQuery, QaQuery, SpanServed, ner, qa

router = APIRouter()


@dataclass(frozen=True)
class DirectRoute:
    """A POST task route whose whole body is one pydantic model (see `DIRECT_ROUTES`)."""

    model: type[BaseModel]
    endpoint: Callable[[Any, Request], Awaitable[Response]]

_ERROR_MODEL = {
    "application/json": {"example": error_body("invalid_request", "inputs must not be empty", "inputs")}
}
ERRORS = {status: {"description": text, "content": _ERROR_MODEL} for status, text in ERROR_STATUSES.items()}


def json_response(body: object, served: Served | SpanServed | None = None, status: int = 200) -> Response:
    """orjson straight from numpy arrays: vectors are most of the bytes we send."""
    headers = {}
    if served is not None:
        headers["x-queue-time-ms"] = f"{served.timing.queue_s * 1000:.2f}"
        headers["x-inference-time-ms"] = f"{served.timing.inference_s * 1000:.2f}"
        if isinstance(served, Served):
            headers["x-tokenize-time-ms"] = f"{served.tokenize_s * 1000:.2f}"
    content = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(content, status_code=status, media_type="application/json", headers=headers)


def _model(request: Request, name: str | None, task: str, count: int, field: str = "inputs") -> LoadedModel:
    state = request.app.state.berth
    if state.shutting_down and not request.scope["state"]["arrived_before_shutdown"]:
        raise ShuttingDown("the service is shutting down")
    try:
        if count > state.settings.max_items:
            raise InvalidInput(f"{count} inputs; at most {state.settings.max_items} per request", param=field)
        model = state.registry.get(name, task)
    except InvalidInput:
        state.metrics.rejected.labels(model=name or "", task=task, reason="invalid").inc()
        raise
    if model.batcher is not None:
        model.batcher.check_room()  # a full queue refuses before tokenizing
    return model


@router.post("/embed", response_model=p.EmbedResponse, responses=ERRORS, tags=["tasks"])
async def embed_route(body: p.EmbedRequest, request: Request) -> Response:
    """Sentence embeddings, one vector per input."""
    texts = body.texts()
    model = _model(request, body.model, "embed", len(texts))
    query = EmbedQuery(
        texts, body.normalize, body.pooling, body.truncate, body.truncation_direction, body.dimensions
    )
    vectors, served = await embed(model, query)
    return json_response({"model": model.name, "embeddings": vectors, "usage": served.usage}, served)


@router.post("/v1/embeddings", response_model=p.OpenAIEmbeddingResponse, responses=ERRORS, tags=["openai"])
async def openai_embeddings_route(body: p.OpenAIEmbeddingRequest, request: Request) -> Response:
    """OpenAI-compatible embeddings (the official client works unchanged, base64 included)."""
    texts = body.texts()
    model = _model(request, body.model, "embed", len(texts), field="input")
    vectors, served = await embed(model, EmbedQuery(texts, dimensions=body.dimensions))
    if body.encoding_format == "base64":
        # Little-endian float32, which is what the openai client decodes.
        le = vectors.astype("<f4", copy=False)
        data = [
            {"object": "embedding", "index": i, "embedding": base64.b64encode(row.tobytes()).decode()}
            for i, row in enumerate(le)
        ]
    else:
        data = [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(vectors)]
    tokens = served.encoded.tokens
    body_out = {
        "object": "list",
        "data": data,
        "model": model.name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return json_response(body_out, served)


@router.post("/classify", response_model=p.ClassifyResponse, responses=ERRORS, tags=["tasks"])
async def classify_route(body: p.ClassifyRequest, request: Request) -> Response:
    """Scores per label for texts or text pairs, best first."""
    texts = body.texts()
    model = _model(request, body.model, "classify", len(texts))
    query = ClassifyQuery(
        texts, body.top_k, body.function, body.threshold, body.truncate, body.truncation_direction
    )
    results, served = await classify(model, query)
    return json_response({"model": model.name, "results": results, "usage": served.usage}, served)


@router.post("/ner", response_model=p.NerResponse, responses=ERRORS, tags=["tasks"])
async def ner_route(body: p.NerRequest, request: Request) -> Response:
    """Named entities with exact character offsets; long texts are windowed and stitched."""
    texts = body.texts()
    model = _model(request, body.model, "ner", len(texts))
    query = NerQuery(texts, body.aggregation, tuple(body.ignore_labels), body.threshold, body.stride)
    served = await ner(model, query)
    return json_response({"model": model.name, "results": served.results, "usage": served.usage}, served)


@router.post("/qa", response_model=p.QaResponse, responses=ERRORS, tags=["tasks"])
async def qa_route(body: p.QaRequest, request: Request) -> Response:
    """Extractive answers with character offsets into the context, best first."""
    pairs = body.pairs()
    model = _model(request, body.model, "qa", len(pairs))
    query = QaQuery(
        pairs, body.top_k, body.max_answer_len, body.doc_stride, body.max_seq_len, body.allow_no_answer
    )
    served = await qa(model, query)
    return json_response({"model": model.name, "results": served.results, "usage": served.usage}, served)


@router.post("/tokenize", response_model=p.TokenizeResponse, responses=ERRORS, tags=["tasks"])
async def tokenize_route(body: p.TokenizeRequest, request: Request) -> Response:
    """Tokens of each input as the model sees them: ids, text, special flag, character offsets."""
    texts = body.texts()
    state = request.app.state.berth
    if len(texts) > state.settings.max_items:
        raise InvalidInput(
            f"{len(texts)} inputs; at most {state.settings.max_items} per request", param="inputs"
        )
    model = state.registry.get_any(body.model)
    encoded = await model.tokenizer.encode_async(texts, body.truncate, body.truncation_direction)
    tokens = [
        [
            {"id": i, "text": t, "special": bool(s), "start": o[0] + shift, "end": o[1] + shift}
            for i, t, s, o, shift in zip(
                e.ids, e.tokens, e.special_tokens_mask, e.offsets,
                # Offsets into the user's text even when the character cap cut its front.
                [0 if q is None else shifts[q] for q in e.sequence_ids], strict=True,
            )
        ]
        for e, shifts in zip(encoded.encodings, encoded.char_shifts, strict=True)
    ]
    usage = {"tokens": encoded.tokens, "truncated": encoded.truncated_count}
    return json_response({"model": model.name, "tokens": tokens, "usage": usage})


# The task each task route serves, for metric labels of requests refused before a model is known.
ROUTE_TASKS = {"/embed": "embed", "/v1/embeddings": "embed", "/classify": "classify", "/ner": "ner",
               "/qa": "qa", "/tokenize": "tokenize"}


# The hot routes, for the edge's direct dispatch (app.py): a well-formed JSON body is validated
# by the model's own (Rust) JSON parser and the function below is called without FastAPI's
# routing, dependency and validation layers, which were a third of the event loop's time per
# request under 16 single-text clients. FastAPI still declares these routes (OpenAPI, /docs) and
# serves every body that does not validate, so errors have one source.
DIRECT_ROUTES: dict[str, DirectRoute] = {
    "/embed": DirectRoute(p.EmbedRequest, embed_route),
    "/v1/embeddings": DirectRoute(p.OpenAIEmbeddingRequest, openai_embeddings_route),
    "/classify": DirectRoute(p.ClassifyRequest, classify_route),
    "/ner": DirectRoute(p.NerRequest, ner_route),
    "/qa": DirectRoute(p.QaRequest, qa_route),
    "/tokenize": DirectRoute(p.TokenizeRequest, tokenize_route),
}


@router.get("/models", tags=["service"], responses={401: ERRORS[401]})
async def models_route(request: Request) -> Response:
    """Every bundle in the models directory: task, labels, limits, precision, provider, state."""
    registry = request.app.state.berth.registry
    defaults = {task: registry.default_name(task) for task in ("embed", "classify", "ner", "qa")}
    return json_response({"models": [m.describe() for m in registry.models.values()], "defaults": defaults})


@router.get("/healthz", tags=["service"])
async def healthz() -> Response:
    """200 while the process is up."""
    return json_response({"status": "ok"})


@router.get("/readyz", tags=["service"], responses={503: ERRORS[503]})
async def readyz(request: Request) -> Response:
    """200 once every model is loaded and warmed; 503 with the reason before, and from shutdown on."""
    state = request.app.state.berth
    if state.shutting_down:
        raise ShuttingDown("the service is shutting down")
    ready, reason = state.registry.readiness()
    if not ready:
        raise NotReady(reason)
    failed = {m.name: m.error for m in state.registry.models.values() if m.state == "failed"}
    return json_response({"status": "ready", "reason": reason, "failed": failed})


@router.get("/metrics", tags=["service"], response_class=PlainTextResponse, responses={401: ERRORS[401]})
async def metrics_route(request: Request) -> Response:
    """Prometheus text format."""
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(request.app.state.berth.metrics.render(), media_type=CONTENT_TYPE_LATEST)
