"""Request and response schemas of the HTTP API; hard size limits here mean 422 before any work."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Absolute caps; the configured limits (settings.max_items, max_chars) are checked on top.
HARD_MAX_ITEMS = 4096
HARD_MAX_CHARS = 1_000_000
HARD_MAX_ANSWER_TOKENS = 1024

NonEmptyText = Field(min_length=1, max_length=HARD_MAX_CHARS)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, description="bundle name; default: the configured model of the task")


class _TextsRequest(_Request):
    inputs: str | list[str] = Field(description="a text or a list of texts")
    truncate: bool = Field(True, description="cut inputs longer than the model's max_length; false → 422")
    truncation_direction: Literal["right", "left"] = "right"

    @field_validator("inputs")
    @classmethod
    def _check_inputs(cls, value: str | list[str]) -> str | list[str]:
        check_texts([value] if isinstance(value, str) else value, listed=not isinstance(value, str))
        return value

    def texts(self) -> list[str]:
        return [self.inputs] if isinstance(self.inputs, str) else list(self.inputs)


class ItemError(ValueError):
    """A validation failure of one item of a list field; the error's `param` gets its index
    (service.app turns pydantic's location for the field into "inputs.<index>")."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


def check_texts(texts: list, listed: bool = True) -> None:
    """Non-empty, within the hard caps, encodable. `listed`: the texts came as a list, so an
    error names the item's index; a single text's error names the field alone."""
    try:
        _check_items(texts)
    except ItemError as exc:
        if not listed:
            raise ValueError(str(exc)) from None
        raise


def _check_items(texts: list) -> None:
    if not texts:
        raise ValueError("inputs must not be empty")
    if len(texts) > HARD_MAX_ITEMS:
        raise ValueError(f"at most {HARD_MAX_ITEMS} inputs per request")
    for i, t in enumerate(texts):
        for part in t if isinstance(t, tuple) else (t,):
            if not part:
                raise ItemError(i, f"input {i} is an empty string")
            if len(part) > HARD_MAX_CHARS:
                raise ItemError(i, f"input {i} is longer than {HARD_MAX_CHARS} characters")
            try:
                check_encodable(part, f"input {i}")
            except ValueError as exc:
                raise ItemError(i, str(exc)) from None


def check_encodable(text: str, what: str) -> str:
    """Refuse text that is not Unicode: JSON's "\\ud800" escape decodes to a lone surrogate."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"{what} holds an unpaired surrogate at character {exc.start}") from None
    return text


class EmbedRequest(_TextsRequest):
    normalize: bool | None = Field(None, description="L2-normalize the vectors; default: the bundle's")
    pooling: Literal["mean", "cls", "max"] | None = Field(None, description="default: the bundle's pooling")
    dimensions: int | None = Field(
        None, gt=0, description="keep the first N dimensions, then normalize (when normalizing)"
    )


class Usage(BaseModel):
    tokens: int
    truncated: int


class EmbedResponse(BaseModel):
    model: str
    embeddings: list[list[float]]
    usage: Usage


class OpenAIEmbeddingRequest(BaseModel):
    """The OpenAI embeddings request; unknown fields (e.g. `user`) are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    input: str | list[str]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, gt=0)

    @field_validator("input")
    @classmethod
    def _check_inputs(cls, value: str | list[str]) -> str | list[str]:
        check_texts([value] if isinstance(value, str) else value, listed=not isinstance(value, str))
        return value

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class OpenAIEmbedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class OpenAIUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class OpenAIEmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIEmbedding]
    model: str
    usage: OpenAIUsage


class Pair(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str
    text_pair: str


ClassifyInput = str | list[str] | Pair


class ClassifyRequest(_Request):
    inputs: str | Pair | list[str | list[str] | Pair] = Field(
        description='a text, a list of texts, or pairs as ["text", "text_pair"] or {"text", "text_pair"}'
    )
    top_k: int | None = Field(None, ge=1, description="labels per input; null: all")
    function: Literal["auto", "softmax", "sigmoid", "none"] = "auto"
    threshold: float | None = Field(None, description="keep labels scoring at least this (multi-label)")
    truncate: bool = True
    truncation_direction: Literal["right", "left"] = "right"

    @field_validator("inputs")
    @classmethod
    def _check_inputs(cls, value: str | Pair | list[str | list[str] | Pair]) -> object:
        check_texts(_pairs(value), listed=isinstance(value, list))
        return value

    def texts(self) -> list[str | tuple[str, str]]:
        return _pairs(self.inputs)


def _pairs(inputs: str | Pair | list[str | list[str] | Pair]) -> list[str | tuple[str, str]]:
    """Texts and (text, text_pair) tuples from any accepted classify input shape."""
    raw = inputs if isinstance(inputs, list) else [inputs]
    out: list[str | tuple[str, str]] = []
    for i, item in enumerate(raw):
        if isinstance(item, Pair):
            out.append((item.text, item.text_pair))
        elif isinstance(item, list):
            if len(item) != 2:
                raise ValueError(f"input {i}: a pair is [text, text_pair], got {len(item)} strings")
            out.append((item[0], item[1]))
        else:
            out.append(item)
    return out


class LabelScore(BaseModel):
    label: str
    score: float


class ClassifyResponse(BaseModel):
    model: str
    results: list[list[LabelScore]]
    usage: Usage


class TokenizeRequest(_TextsRequest):
    pass


class Token(BaseModel):
    id: int
    text: str
    special: bool
    start: int
    end: int


class TokenizeResponse(BaseModel):
    model: str
    tokens: list[list[Token]]
    usage: Usage


class NerRequest(_TextsRequest):
    aggregation: Literal["none", "simple", "first", "average", "max"] = "first"
    ignore_labels: list[str] = Field(default_factory=lambda: ["O"])
    threshold: float = Field(0.0, ge=0.0, le=1.0)
    stride: int | None = Field(None, ge=0, description="tokens shared by consecutive windows of a long text")
    truncate: Literal[True] = Field(True, description="long texts are windowed, never cut")
    truncation_direction: Literal["right"] = Field("right", description="nothing is cut: only the default")


class Entity(BaseModel):
    label: str
    score: float
    text: str = Field(description="exactly input[start:end]")
    start: int
    end: int


class NerResponse(BaseModel):
    model: str
    results: list[list[Entity]]
    usage: Usage


class QaPair(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=HARD_MAX_CHARS)
    context: str = Field(min_length=1, max_length=HARD_MAX_CHARS)

    @field_validator("question", "context")
    @classmethod
    def _unicode(cls, value: str) -> str:
        return check_encodable(value, "the text")


class QaRequest(_Request):
    question: str | None = Field(None, min_length=1, max_length=HARD_MAX_CHARS)
    context: str | None = Field(None, min_length=1, max_length=HARD_MAX_CHARS)
    inputs: list[QaPair] | None = Field(None, min_length=1, max_length=HARD_MAX_ITEMS)
    top_k: int = Field(1, ge=1)
    # Capped: the decoder scores context tokens × max_answer_len candidate spans per window.
    max_answer_len: int = Field(30, ge=1, le=HARD_MAX_ANSWER_TOKENS, description="tokens")
    doc_stride: int | None = Field(
        None, ge=0, description="context tokens shared by consecutive windows; default min(window // 2, 128)"
    )
    max_seq_len: int = Field(384, gt=2, description="tokens per window (capped at the model's max_length)")
    allow_no_answer: bool = False

    @field_validator("question", "context")
    @classmethod
    def _unicode(cls, value: str | None) -> str | None:
        return value if value is None else check_encodable(value, "the text")

    @model_validator(mode="after")
    def _one_form(self) -> QaRequest:
        single = self.question is not None or self.context is not None
        if single == (self.inputs is not None) or (
            single and (self.question is None or self.context is None)
        ):
            raise ValueError("give either question and context, or inputs: [{question, context}]")
        return self

    def pairs(self) -> list[tuple[str, str]]:
        if self.inputs is not None:
            return [(p.question, p.context) for p in self.inputs]
        return [(self.question or "", self.context or "")]


class Answer(BaseModel):
    answer: str = Field(description="exactly context[start:end]; empty with start = end = 0 for no answer")
    score: float
    start: int
    end: int


class QaResponse(BaseModel):
    model: str
    results: list[list[Answer]]
    usage: Usage
