"""Readers for every format, and clear errors (file:line) for malformed records and unseen labels."""

from __future__ import annotations

import json

import pytest

from model.data import DataFormatError, guess_format, label_order, read_examples
from model.labels import check_known_labels, labels_of_examples


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_sst_views(tmp_path):
    path = _write(tmp_path, "sst.txt", "0 ||| awful\n1 ||| meh bad\n2 ||| fine\n3 ||| nice\n4 ||| superb\n\n")
    sst2 = read_examples(path, "sst2", "classify")
    assert [(e.text, e.label) for e in sst2] == [
        ("awful", "negative"), ("meh bad", "negative"), ("nice", "positive"), ("superb", "positive")]
    assert sst2[2].source == f"{path}:4"
    sst5 = read_examples(path, "sst5", "classify")
    assert [e.label for e in sst5] == ["very negative", "negative", "neutral", "positive", "very positive"]


def test_sst5_label_ids_follow_the_scale_other_formats_sort(tmp_path):
    # Alphabetical order gave SST-5 ids negative=0 ... very positive=4, off the sentiment scale.
    path = _write(tmp_path, "sst.txt", "3 ||| nice\n0 ||| awful\n4 ||| superb\n2 ||| fine\n1 ||| meh\n")
    sst5 = read_examples(path, "sst5", "classify")
    assert labels_of_examples("classify", sst5, label_order("sst5")) == [
        "very negative", "negative", "neutral", "positive", "very positive"]
    assert labels_of_examples("classify", sst5[:2], label_order("sst5")) == ["very negative", "positive"]
    jsonl = _write(tmp_path, "d.jsonl", '{"text": "a", "label": "zeta"}\n{"text": "b", "label": "alpha"}\n')
    examples = read_examples(jsonl, "jsonl", "classify")
    assert label_order("jsonl") is None
    assert labels_of_examples("classify", examples, label_order("jsonl")) == ["alpha", "zeta"]


@pytest.mark.parametrize("line, message", [
    ("5 ||| text", "label must be 0..4"),
    ("3 text without separator", "expected `LABEL ||| text`"),
    ("3 |||  ", "expected `LABEL ||| text`"),
])
def test_sst_errors_name_file_and_line(tmp_path, line, message):
    path = _write(tmp_path, "sst.txt", f"1 ||| fine\n{line}\n")
    with pytest.raises(DataFormatError, match=message) as err:
        read_examples(path, "sst2", "classify")
    assert str(err.value).startswith(f"{path}:2:")


def test_conll_and_wikiann(tmp_path):
    conll = _write(tmp_path, "c.txt", "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n"
                                      "Peter B-PER\nBlackburn I-PER\n")
    ex = read_examples(conll, "conll", "ner")
    assert [(e.tokens, e.tags) for e in ex] == [(["EU", "rejects"], ["B-ORG", "O"]),
                                               (["Peter", "Blackburn"], ["B-PER", "I-PER"])]
    assert ex[1].source == f"{conll}:6"
    wiki = _write(tmp_path, "w.txt", "en:Sioux\tB-ORG\nen:Falls\tI-ORG\nen::\tO\n\nen:R.H.\tB-PER\n")
    ex = read_examples(wiki, "wikiann", "ner")
    assert ex[0].tokens == ["Sioux", "Falls", ":"] and ex[1].tokens == ["R.H."]
    # Only WikiANN words carry the language prefix: CoNLL words are taken as they are.
    urls = _write(tmp_path, "u.txt", "ftp://ftp.example.org O\nde:Berlin B-LOC\n")
    assert read_examples(urls, "conll", "ner")[0].tokens == ["ftp://ftp.example.org", "de:Berlin"]


def test_conll_errors(tmp_path):
    path = _write(tmp_path, "c.txt", "EU B-ORG\nrejects\n")
    with pytest.raises(DataFormatError, match=r"c.txt:2: expected `word TAG`"):
        read_examples(path, "conll", "ner")
    path = _write(tmp_path, "c.txt", "EU B-ORG\n\nrejects X-ORG\n")
    with pytest.raises(DataFormatError, match=r"c.txt:3: tag 'X-ORG' is not IOB2"):
        read_examples(path, "conll", "ner")


def test_multilabel(tmp_path):
    path = _write(tmp_path, "m.txt", "good food __label__food __label__praise\n__label__x only text here\n")
    ex = read_examples(path, "multilabel", "classify")
    assert (ex[0].text, ex[0].label) == ("good food", ["food", "praise"])
    assert (ex[1].text, ex[1].label) == ("only text here", ["x"])
    bad = _write(tmp_path, "m.txt", "a __label__x\nno labels at all\n")
    with pytest.raises(DataFormatError, match=r"m.txt:2: no `__label__NAME` label"):
        read_examples(bad, "multilabel", "classify")


def test_jsonl_classify_and_ner(tmp_path):
    rows = [{"text": "a", "label": "pos"}, {"text": "b", "text_pair": "c", "label": 3},
            {"text": "d", "labels": ["x", "y", "x"]}, {"text": "e", "label": 0.5}]
    path = _write(tmp_path, "d.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    ex = read_examples(path, "jsonl", "classify")
    assert [e.label for e in ex] == ["pos", "3", ["x", "y"], 0.5]
    assert ex[1].text_pair == "c"
    ner = _write(tmp_path, "n.jsonl", json.dumps({"tokens": ["Paris"], "tags": ["B-LOC"]}) + "\n")
    assert read_examples(ner, "jsonl", "ner")[0].tags == ["B-LOC"]


@pytest.mark.parametrize("record, task, message", [
    ('{"text": "a"', "classify", "invalid JSON"),
    ('{"text": "a"}', "classify", 'exactly one of "label" or "labels"'),
    ('{"text": "", "label": "x"}', "classify", '"text" must be a non-empty string'),
    ('{"text": "a", "label": true}', "classify", '"label" must be'),
    ('{"text": "a", "label": NaN}', "classify", '"label" must be a finite number'),
    ('{"text": "a", "label": -Infinity}', "classify", '"label" must be a finite number'),
    ('{"tokens": ["a", "b"], "tags": ["O"]}', "ner", "2 tokens but 1 tags"),
    ('{"tokens": ["a"], "tags": ["LOC"]}', "ner", "not IOB2"),
])
def test_jsonl_errors(tmp_path, record, task, message):
    good = '{"text": "ok", "label": "x"}' if task == "classify" else '{"tokens": ["a"], "tags": ["O"]}'
    path = _write(tmp_path, "d.jsonl", f"{good}\n\n{record}\n")
    with pytest.raises(DataFormatError, match=message) as err:
        read_examples(path, "jsonl", task)
    assert str(err.value).startswith(f"{path}:3:")


def _squad(paragraphs, version="1.1"):
    return json.dumps({"version": version, "data": [{"title": "t", "paragraphs": paragraphs}]}, indent=1)


def test_squad_v1_and_v2(tmp_path):
    context = "Paris is the capital of France."
    v1 = _write(tmp_path, "v1.json", _squad([{"context": context, "qas": [
        {"id": "a", "question": "What is the capital?", "answers": [
            {"text": "Paris", "answer_start": 0}, {"text": "Paris", "answer_start": 0}]}]}]))
    (ex,) = read_examples(v1, "squad", "qa")
    assert (ex.id, ex.context, ex.is_impossible) == ("a", context, False)
    assert [a.start for a in ex.answers] == [0, 0]
    v2 = _write(tmp_path, "v2.json", _squad([{"context": context, "qas": [
        {"id": "b", "question": "Who?", "answers": [], "is_impossible": True,
         "plausible_answers": [{"text": "France", "answer_start": 24}]},
        {"id": "c", "question": "Where?", "answers": []}]}], version="v2.0"))
    assert [e.is_impossible for e in read_examples(v2, "squad", "qa")] == [True, True]


def test_squad_errors(tmp_path):
    broken = _write(tmp_path, "s.json", '{"data": [\n{"paragraphs": [}\n]}')
    with pytest.raises(DataFormatError, match=r"s.json:2: invalid JSON"):
        read_examples(broken, "squad", "qa")
    wrong = _write(tmp_path, "s.json", _squad([{"context": "abc def", "qas": [
        {"id": "z", "question": "q?", "answers": [{"text": "xyz", "answer_start": 0}]}]}]))
    with pytest.raises(DataFormatError, match=r"id z\): answer 'xyz' not found at character 0"):
        read_examples(wrong, "squad", "qa")


def test_unseen_dev_labels_are_reported(tmp_path):
    train = read_examples(_write(tmp_path, "t.txt", "a B-PER\n\nb B-LOC\n"), "conll", "ner")
    dev_path = _write(tmp_path, "d.txt", "a B-PER\n\nb B-MISC\nc I-MISC\n")
    dev = read_examples(dev_path, "conll", "ner")
    labels = labels_of_examples("ner", train)
    assert labels == ["O", "B-LOC", "B-PER"]
    with pytest.raises(DataFormatError) as err:
        check_known_labels("ner", dev, labels)
    message = str(err.value)
    assert "2 label(s) in the dev data never seen in training" in message
    assert f"'B-MISC' (first at {dev_path}:3)" in message and "'I-MISC'" in message


def test_unseen_dev_labels_stop_training(tmp_path, tiny_checkpoints):
    from model.train import TrainConfig, train

    tr = _write(tmp_path, "t.txt", "1 ||| bad\n")
    dev = _write(tmp_path, "d.txt", "4 ||| good\n")
    cfg = TrainConfig(task="classify", base=str(tiny_checkpoints("bert", "base")), train=str(tr),
                      dev=str(dev), out=str(tmp_path / "out"), format="sst2")
    with pytest.raises(DataFormatError, match="'positive' \\(first at .*d.txt:1\\)"):
        train(cfg)
    assert not (tmp_path / "out").exists()


def test_guess_format_and_task_mismatch(tmp_path):
    assert guess_format("classify", "data/sst/train.txt") == "sst2"
    assert guess_format("ner", "x/wikiann-en/dev.txt") == "wikiann"
    assert guess_format("qa", "dev.json") == "squad"
    assert guess_format("ner", "mine.jsonl") == "jsonl"
    path = _write(tmp_path, "x.txt", "1 ||| a\n")
    with pytest.raises(ValueError, match="holds classify data, not ner"):
        read_examples(path, "sst2", "ner")
