"""The pretraining corpus builder on a small data directory of the shared layout: which splits
feed it, `--include-dev`, `--repeat`, and an MLM dev file that never has a copy in train."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.pretrain.corpus import main, parse_repeat, write_corpus


def _data_dir(root: Path) -> Path:
    (root / "sst").mkdir(parents=True)
    (root / "sst" / "train.txt").write_text(
        "".join(f"{i % 5} ||| sst train sentence number {i}\n" for i in range(40)))
    (root / "sst" / "dev.txt").write_text("3 ||| an sst dev sentence\n")
    for name, sep, prefix in (("conll2003", " ", ""), ("wikiann-en", "\t", "en:")):
        (root / name).mkdir()
        for split, n in (("train", 30), ("dev", 5)):
            sentences = [[f"{prefix}{name}", f"{prefix}{split}", f"{prefix}w{i}"] for i in range(n)]
            (root / name / f"{split}.txt").write_text(
                "\n".join("".join(f"{w}{sep}O\n" for w in s) for s in sentences))
    (root / "squad").mkdir()
    for split, n in (("train", 4), ("dev", 2)):
        context = f"squad {split} context about Paris ."
        qas = [{"id": f"{split}{i}", "question": f"squad {split} question {i}?",
                "answers": [{"text": "Paris", "answer_start": context.index("Paris")}]} for i in range(n)]
        doc = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": context, "qas": qas}]}]}
        (root / "squad" / f"{split}.json").write_text(json.dumps(doc))
    return root


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return _data_dir(tmp_path / "data")


def _lines(out: Path) -> tuple[list[str], list[str]]:
    return tuple((out / f"{name}.txt").read_text().splitlines() for name in ("train", "dev"))


def test_default_corpus_is_the_training_splits_only(data_dir, tmp_path):
    stats = write_corpus(data_dir, tmp_path / "out", dev_fraction=0.1)
    train, dev = _lines(tmp_path / "out")
    text = train + dev
    assert len(text) == 40 + 30 + 30 + 1 + 4  # squad: one context and four questions
    assert not any(" dev " in f" {line} " for line in text)
    assert (stats["train_lines"], stats["dev_lines"]) == (len(train), len(dev))
    assert all(not s["dev_split_included"] and s["repeat"] == 1 for s in stats["sources"].values())


def test_include_dev_adds_the_named_dev_splits_only(data_dir, tmp_path):
    write_corpus(data_dir, tmp_path / "out", dev_fraction=0.0,
                 include_dev=frozenset({"conll2003", "squad"}))
    train, _ = _lines(tmp_path / "out")
    assert sum(line.startswith("conll2003 dev") for line in train) == 5
    assert sum(line.startswith("squad dev") for line in train) == 1 + 2
    assert not any(line.startswith(("wikiann-en dev", "an sst dev")) for line in train)


def test_repeat_weights_a_source_and_keeps_its_copies_out_of_the_mlm_dev_file(data_dir, tmp_path):
    stats = write_corpus(data_dir, tmp_path / "out", dev_fraction=0.2, repeat={"sst": 3})
    train, dev = _lines(tmp_path / "out")
    sst_dev = [line for line in dev if line.startswith("sst")]
    sst_train = [line for line in train if line.startswith("sst")]
    assert sst_dev, "the seeded split should hold some SST lines out with 20% of 105"
    assert len(sst_train) == 3 * (40 - len(sst_dev))
    assert all(sst_train.count(line) == 3 for line in sst_train)
    assert not set(dev) & set(train)
    assert stats["train_lines"] == len(train) and stats["sources"]["sst"]["repeat"] == 3
    # Without --repeat the output is what it always was: the same seed gives the same split.
    write_corpus(data_dir, tmp_path / "plain", dev_fraction=0.2)
    assert _lines(tmp_path / "plain")[1] == dev


@pytest.mark.parametrize("spec, message", [
    ("sst", "not SOURCE=COUNT"), ("imdb=2", "not SOURCE=COUNT"), ("sst=0", "not SOURCE=COUNT"),
    ("sst=1.5", "not SOURCE=COUNT"),
])
def test_bad_repeat_specs_are_refused_by_name(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_repeat(spec)


def test_cli_names_an_unknown_dev_source(data_dir, tmp_path, capsys):
    assert main(["--data-dir", str(data_dir), "--out", str(tmp_path / "o"), "--include-dev", "sst,imdb"]) == 2
    assert "unknown source(s) imdb" in capsys.readouterr().err
    assert parse_repeat("sst=3, squad=2") == {"sst": 3, "squad": 2}
