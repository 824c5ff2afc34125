"""Hand-written hostile inputs on every task route: a correct 200 or a 4xx naming the field, never 5xx."""

from __future__ import annotations

import json

import pytest
from tokenizers import AddedToken

from service.settings import Settings
from tests.reliability.conftest import error_of
from tests.service.conftest import serve_in_process, write_fake_bundle
from tests.tiny import tiny_tokenizer

MB = 1_000_000
RTL = "\u05e9\u05dc\u05d5\u05dd \u0639\u0627\u0644\u0645 \u202eevil\u202c"  # Hebrew, Arabic, RLO override
COMBINING = "e\u0301" * 50 + " Z\u0351\u0352\u0353\u0354a\u0300\u0301\u0302lgo"
CONTROL = "a\x00b\x01c\x1b[31mred\x7f\u200b\ufeff end"

# (name, text): each must be answered 200 by every route, as text.
ODD_TEXTS = [
    ("nul-control", CONTROL),
    ("rtl", RTL),
    ("combining", COMBINING),
    ("only-whitespace", " \t\n\u3000\u00a0 "),
    ("only-specials", "[CLS] [SEP] [MASK] [PAD] [UNK]"),
    ("emoji-surrogate-range", "\U0001f600\U0010ffff"),
    ("megabyte", "word " * (MB // 5)),
]


def body_for(route: str, text: str) -> dict:
    if route == "/qa":
        # The fake bundles hold 32 tokens; the default doc_stride (128) needs longer windows.
        return {"question": "who?", "context": text, "doc_stride": 8}
    if route == "/v1/embeddings":
        return {"input": [text, "plain"]}
    return {"inputs": [text, "plain"]}


ROUTES = ["/embed", "/v1/embeddings", "/classify", "/tokenize", "/ner", "/qa"]


@pytest.fixture
async def client(all_tasks_dir):
    # Default limits (4 MiB body, 50,000 characters per input) so the megabyte text is in bounds.
    async with serve_in_process(Settings(models_dir=all_tasks_dir, access_log=False)) as (_, c):
        yield c


@pytest.mark.parametrize("route", ROUTES)
async def test_odd_texts_are_served_as_text(client, route):
    for name, text in ODD_TEXTS:
        r = await client.post(route, json=body_for(route, text))
        if name == "megabyte" and route in ("/ner", "/qa"):
            # /ner and /qa never cut text (they window it), so past the character cap they refuse.
            assert r.status_code == 422 and error_of(r)["param"] in ("inputs.0", "context.0"), r.text
            continue
        assert r.status_code == 200, (name, r.text[:500])
        body = r.json()
        if route == "/tokenize":
            tokens = body["tokens"][0]
            # Offsets point into the text as sent (character offsets, RTL and combining included).
            assert all(0 <= t["start"] <= t["end"] <= len(text) for t in tokens), name
        if route == "/ner":
            assert all(text[e["start"] : e["end"]] == e["text"] for e in body["results"][0]), name
        if name == "megabyte" and route in ("/embed", "/classify", "/tokenize"):
            assert body["usage"]["truncated"] == 1  # cut at the character cap, then at max_length


async def test_megabyte_text_with_truncate_false_names_the_field(client):
    r = await client.post("/embed", json={"inputs": ["ok", "x" * MB], "truncate": False})
    assert r.status_code == 422 and error_of(r)["param"] == "inputs.1"
    # Over the hard cap the schema refuses it before any tokenization.
    r = await client.post("/embed", json={"inputs": "x" * (MB + 1)})
    assert r.status_code == 422 and error_of(r)["param"] == "inputs"


@pytest.mark.parametrize("route", ["/embed", "/classify", "/tokenize", "/ner"])
async def test_ten_thousand_items_is_422_on_inputs(client, route):
    r = await client.post(route, json={"inputs": ["a"] * 10_000})
    assert r.status_code == 422 and error_of(r)["param"] == "inputs"
    r = await client.post("/qa", json={"inputs": [{"question": "q", "context": "c"}] * 10_000})
    assert r.status_code == 422 and error_of(r)["param"] == "inputs"
    r = await client.post("/v1/embeddings", json={"input": ["a"] * 10_000})
    assert r.status_code == 422 and error_of(r)["param"] == "input"


@pytest.mark.parametrize("depth", [100, 10_000, 200_000])
async def test_deeply_nested_json_is_4xx(client, depth):
    for route in ROUTES:
        raw = '{"inputs": ' + "[" * depth + '"x"' + "]" * depth + "}"
        r = await client.post(route, content=raw.encode(), headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500, (route, depth, r.text[:300])
        error_of(r)


async def test_invalid_utf8_is_400_malformed(client):
    for raw in (b'{"inputs": "\xff\xfe bad"}', b'{"inputs": "\xc3\x28"}', b"\xed\xa0\x80"):
        for route in ROUTES:
            r = await client.post(route, content=raw, headers={"content-type": "application/json"})
            assert r.status_code in (400, 422), (route, raw, r.text)
            error_of(r)


async def test_lone_surrogate_escape_is_422_naming_the_field(client):
    # Valid JSON, but "\ud800" decodes to no Unicode text: the tokenizer cannot take it.
    cases = [
        ("/embed", b'{"inputs": ["ok", "a\\ud800b"]}', "inputs"),
        ("/v1/embeddings", b'{"input": "\\udfff"}', "input"),
        ("/classify", b'{"inputs": {"text": "a", "text_pair": "\\ud800"}}', "inputs"),
        ("/tokenize", b'{"inputs": "x\\ud834"}', "inputs"),
        ("/ner", b'{"inputs": "x\\ud834"}', "inputs"),
        ("/qa", b'{"question": "\\ud800", "context": "c"}', "question"),
        ("/qa", b'{"inputs": [{"question": "q", "context": "\\ud800"}]}', "inputs"),
    ]
    for route, raw, param in cases:
        r = await client.post(route, content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 422, (route, r.text)
        assert error_of(r)["param"].split(".")[0] == param
    # A proper pair encoded as two escapes is one character and fine.
    r = await client.post(
        "/embed", content=b'{"inputs": "\\ud83d\\ude00"}', headers={"content-type": "application/json"}
    )
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("route", "body", "param"),
    [
        ("/embed", {"inputs": 42}, "inputs"),
        ("/embed", {"inputs": [1, 2]}, "inputs"),
        ("/embed", {"inputs": ["ok", None]}, "inputs"),
        ("/embed", {"inputs": "x", "model": 7}, "model"),
        ("/embed", {"inputs": "x", "normalize": "maybe"}, "normalize"),
        ("/v1/embeddings", {"input": 3.5}, "input"),
        ("/v1/embeddings", {"input": [[1, 2, 3]]}, "input"),  # token-id arrays are not supported
        ("/classify", {"inputs": {"text": 1, "text_pair": "b"}}, "inputs"),
        ("/classify", {"inputs": "x", "top_k": "all"}, "top_k"),
        ("/tokenize", {"inputs": True}, "inputs"),
        ("/ner", {"inputs": 0}, "inputs"),
        ("/ner", {"inputs": "x", "threshold": "high"}, "threshold"),
        ("/qa", {"question": 1, "context": "c"}, "question"),
        ("/qa", {"inputs": [{"question": "q", "context": 2}]}, "inputs"),
        # Not a type error but the same family: a size that would make the decoder allocate GBs.
        ("/qa", {"question": "q", "context": "c", "max_answer_len": 10**9}, "max_answer_len"),
    ],
)
async def test_numbers_where_strings_are_expected(client, route, body, param):
    r = await client.post(route, json=body)
    assert r.status_code == 422, r.text
    assert error_of(r)["param"].split(".")[0] == param


async def test_non_object_bodies(client):
    for raw in (b"[]", b'"text"', b"null", b"1e999999", b"", b"{}", b'{"inputs": NaN}'):
        r = await client.post("/embed", content=raw, headers={"content-type": "application/json"})
        assert r.status_code in (400, 422), (raw, r.text)
        error_of(r)


async def test_typed_special_tokens_are_text_not_special_ids(tmp_path):
    """A tokenizer that registers [CLS]/[SEP]/[MASK] as added special tokens, like real BERT ones.

    Typed as text they must not become the special ids (a caller could otherwise inject
    separators and masks into what the model sees): /tokenize shows them split as text and
    marks nothing special but the real [CLS] ... [SEP] the tokenizer adds.
    """
    path = write_fake_bundle(tmp_path, "emb", "embed")
    tok = tiny_tokenizer()
    tok.add_special_tokens([AddedToken(t, special=True) for t in ("[CLS]", "[SEP]", "[MASK]")])
    assert tok.encode("[MASK]", add_special_tokens=False).ids == [tok.token_to_id("[MASK]")]  # the hazard
    tok.save(str(path / "tokenizer.json"))
    async with serve_in_process(Settings(models_dir=tmp_path)) as (app, client):
        r = await client.post("/tokenize", json={"inputs": "[CLS] [SEP] [MASK]"})
        tokens = r.json()["tokens"][0]
        specials = {tok.token_to_id(t) for t in ("[CLS]", "[SEP]", "[MASK]")}
        assert [t["special"] for t in tokens] == [True] + [False] * (len(tokens) - 2) + [True]
        assert not specials & {t["id"] for t in tokens[1:-1]}, tokens
        # And the model input holds exactly those ids: what /tokenize shows is what runs.
        runtime = app.state.berth.registry.models["emb"].runtime
        seen: list = []
        original = runtime.run
        runtime.run = lambda inputs, outputs=None: (
            seen.append(inputs["input_ids"]) or original(inputs, outputs)
        )
        assert (await client.post("/embed", json={"inputs": "[CLS] [SEP] [MASK]"})).status_code == 200
        assert list(seen[0][0]) == [t["id"] for t in tokens]


def test_payload_sizes_are_what_they_claim():
    # Guards the fixtures above: the megabyte text is a megabyte, the nesting as deep as named.
    assert len(dict(ODD_TEXTS)["megabyte"]) == MB
    assert json.dumps(body_for("/embed", "x"))
