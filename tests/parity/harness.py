"""Parity harness: the same inputs through the HF 4.57 pipelines (in .venv-ref) and through berth.

Comparison rules (docs/ner-qa.md, "Parity"): an entity / answer is identical when its label (NER),
start and end are equal and its score is within `SCORE_TOL`; NER's `word` is never compared (the
pipeline decodes it from word pieces, a listed defect). Each differing input is put in a class:
a listed pipeline defect, or "unexplained" (a bug until shown otherwise).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from tests.conftest import REPO_ROOT

SCORE_TOL = 1e-3
REF_VENV = Path(os.environ.get("BERTH_REF_VENV", REPO_ROOT / ".venv-ref"))
REF_PYTHON = REF_VENV / "bin" / "python"


def ensure_ref_venv() -> Path:
    """The reference interpreter, building .venv-ref first if it is missing (a minute or two)."""
    if not REF_PYTHON.exists():
        subprocess.run(["bash", str(REPO_ROOT / "tests/parity/make_ref_venv.sh")], check=True,
                       env={**os.environ, "BERTH_REF_VENV": str(REF_VENV)})
    return REF_PYTHON


def run_reference(request: dict, threads: int = 1) -> dict:
    """The pipelines' outputs for `request` (see tests/parity/reference.py)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("PYTHONPATH", None)  # nothing of the project's venv may leak into the reference
    proc = subprocess.run([str(ensure_ref_venv()), str(REPO_ROOT / "tests/parity/reference.py"),
                           str(threads)], input=json.dumps(request), capture_output=True,
                          text=True, env=env, cwd="/")
    if proc.returncode != 0:
        raise RuntimeError(f"reference runner failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout)
    assert out["version"].startswith("4.57"), out["version"]
    return out


async def serve_all(client: httpx.AsyncClient, route: str, model: str, items: list, chunk: int = 64,
                    **params) -> list[list[dict]]:
    """Every item through `route`, `chunk` per request; one result list per item."""
    results: list[list[dict]] = []
    for k in range(0, len(items), chunk):
        part = items[k : k + chunk]
        if route == "/ner":
            body = {"model": model, "inputs": part, **params}
        else:
            body = {"model": model, "inputs": [{"question": q, "context": c} for q, c in part], **params}
        r = await client.post(route, json=body)
        assert r.status_code == 200, r.text
        results.extend(r.json()["results"])
    return results


@dataclass
class Report:
    """What a parity run found: counts per class, the largest score gap among identical items."""

    total: int = 0
    identical: int = 0
    max_score_diff: float = 0.0
    classes: Counter = field(default_factory=Counter)
    examples: dict[str, list] = field(default_factory=dict)

    @property
    def identical_pct(self) -> float:
        return 100.0 * self.identical / max(self.total, 1)

    @property
    def excepted(self) -> int:
        """Items that differ by a listed pipeline defect (reproduced or detected, see classify_*)."""
        return sum(n for cls, n in self.classes.items() if cls.startswith(("pipeline", "4.57")))

    @property
    def identical_pct_excepting(self) -> float:
        """The acceptance figure: identical share of the items no listed defect touches."""
        return 100.0 * self.identical / max(self.total - self.excepted, 1)

    def add(self, cls: str | None, example: object = None) -> None:
        self.total += 1
        if cls is None:
            self.identical += 1
            return
        self.classes[cls] += 1
        self.examples.setdefault(cls, [])
        if len(self.examples[cls]) < 3:
            self.examples[cls].append(example)

    def summary(self) -> dict:
        return {"total": self.total, "identical": self.identical,
                "identical_pct": round(self.identical_pct, 2),
                "identical_pct_excepting_defects": round(self.identical_pct_excepting, 2),
                "max_score_diff": self.max_score_diff, "differences": dict(self.classes)}


def _same(got: list[dict], want: list[dict], keys: tuple[str, ...]) -> tuple[bool, float]:
    """(spans and labels equal, largest score gap among them)."""
    if [tuple(g[k] for k in keys) for g in got] != [tuple(w[k] for k in keys) for w in want]:
        return False, 0.0
    gaps = [abs(g["score"] - w["score"]) for g, w in zip(got, want, strict=True)]
    return True, max(gaps, default=0.0)


# --- NER ---------------------------------------------------------------------------------------

NER_KEYS = ("label", "start", "end")


def word_heuristic_breaks(tokenizer, text: str) -> bool:
    """Whether the 4.57 pipeline's word-piece test disagrees with the tokenizer's words on `text`.

    The pipeline calls a piece a subword when `len(piece) != len(text[start:end])` (tokenizers with
    a `##`-style prefix) and fuses it into the previous word; [UNK] pieces and normalization that
    changes length (accents, ligatures) make that test wrong. Only the word strategies
    (first/average/max) use it.
    """
    enc = tokenizer.encode(text, add_special_tokens=False)
    previous = None
    for piece, (s, e), word in zip(enc.tokens, enc.offsets, enc.word_ids, strict=True):
        guessed = len(piece) != e - s
        actual = previous is not None and word == previous
        if guessed != actual:
            return True
        previous = word
    return False


def compare_ner(texts: list[str], got: list[list[dict]], want: list[list[dict]], tokenizer,
                aggregation: str, max_tokens: int, report: Report) -> None:
    """Entities per text: identical, or a listed pipeline defect, or unexplained."""
    for text, g, w in zip(texts, got, want, strict=True):
        for e in g:  # item 5: every returned text is the input's slice
            assert text[e["start"] : e["end"]] == e["text"], (text, e)
        same, gap = _same(g, w, NER_KEYS)
        if same and gap <= SCORE_TOL:
            report.max_score_diff = max(report.max_score_diff, gap)
            report.add(None)
        elif same:
            report.add("score beyond tolerance", {"text": text, "got": g, "want": w})
        elif any(tok in text for tok in ("[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]", "<s>", "</s>")):
            # The pipeline's tokenizer turns a typed "[SEP]" into the special token and then drops
            # it as special; berth's tokenizes it as text.
            report.add("pipeline reads special-token names in the text", {"text": text})
        elif len(tokenizer.encode(text, add_special_tokens=False).ids) > max_tokens:
            report.add("pipeline cuts long texts (no stride)", {"text": text})
        elif aggregation in ("first", "average", "max") and word_heuristic_breaks(tokenizer, text):
            report.add("pipeline word-piece heuristic", {"text": text, "got": g, "want": w})
        else:
            report.add("unexplained", {"text": text, "got": g, "want": w})


# --- QA ----------------------------------------------------------------------------------------

QA_KEYS = ("start", "end")


def _word_bounds(window, whole: dict[int, tuple[int, int]] | None) -> tuple[np.ndarray, np.ndarray]:
    """Per window position: chars of the whole word. `whole` maps a word id to its extent over
    the whole context (berth); None: as far as the window holds it, as the pipeline's
    `word_to_chars(token_to_word(i))` gives them."""
    starts, ends = window.offsets[:, 0].copy(), window.offsets[:, 1].copy()
    ctx = window.text_positions
    for word in np.unique(window.word_ids[ctx]):
        if word < 0:
            continue
        at = ctx[window.word_ids[ctx] == word]
        if whole is None:
            starts[at], ends[at] = window.offsets[at, 0].min(), window.offsets[at, 1].max()
        else:
            starts[at], ends[at] = whole[int(word)]
    return starts, ends


def _context_words(windows: list) -> dict[int, tuple[int, int]]:
    """Word id -> (first char, last char) over every window of the context."""
    extent: dict[int, tuple[int, int]] = {}
    for window in windows:
        for i in window.text_positions:
            word = int(window.word_ids[i])
            if word >= 0:
                a, b = (int(x) for x in window.offsets[i])
                lo, hi = extent.get(word, (a, b))
                extent[word] = (min(lo, a), max(hi, b))
    return extent


def emulate_qa(context: str, windows: list, start_logits: list, end_logits: list, top_k: int,
               max_answer_len: int, *, sum_windows: bool, merge_text: bool,
               pre_topk: int | None, window_words: bool = False) -> list[dict]:
    """An independent loop decoder with the pipeline's defects switchable one by one.

    sum_windows: a span seen by several windows adds their scores (berth: keeps the best).
    merge_text: answers are keyed by lower-cased text (berth: by char span). pre_topk: only the
    top token spans of each window are scored (4.57: 2·top_k + 10; berth: all). window_words: a
    span widens only to the part of a word its window holds (berth: the whole word, over all the
    windows). All off = berth.
    """
    whole = None if window_words else _context_words(windows)
    totals: dict[object, dict] = {}
    for window, sl, el in zip(windows, start_logits, end_logits, strict=True):
        n = len(window)
        keep = window.text_mask.copy()
        keep[0] = bool(window.special_mask[0])
        ps = np.where(keep, np.asarray(sl[:n], dtype=np.float64), -1e4)
        pe = np.where(keep, np.asarray(el[:n], dtype=np.float64), -1e4)
        ps, pe = np.exp(ps - ps.max()), np.exp(pe - pe.max())
        ps, pe = ps / ps.sum(), pe / pe.sum()
        ps[0] = pe[0] = 0.0
        outer = np.outer(ps, pe)
        band = np.triu(np.ones((n, n), dtype=bool)) & ~np.triu(np.ones((n, n), dtype=bool), max_answer_len)
        ok = band & window.text_mask[:, None] & window.text_mask[None, :]
        flat = np.flatnonzero(ok)
        flat = flat[np.argsort(-outer.ravel()[flat], kind="stable")]
        wstart, wend = _word_bounds(window, whole)
        if pre_topk is not None:
            # The pipeline picks the top spans over the whole band, then drops those outside the
            # context, where [CLS] counts as inside: its zeroed spans fill a short context's top_k
            # as answers of score 0 starting at char 0.
            inside = keep & ~(window.special_mask & (np.arange(n) > 0))
            ok = band & inside[:, None] & inside[None, :]
            top = np.flatnonzero(band.ravel())
            top = top[np.argsort(-outer.ravel()[top], kind="stable")][:pre_topk]
            flat = top[ok.ravel()[top]]
            wstart, wend = wstart.copy(), wend.copy()
            wstart[0] = wend[0] = 0
        here: dict[object, dict] = {}
        for f in flat:
            s, e = divmod(int(f), n)
            cs, ce = int(wstart[s]), int(wend[e])
            text = context[cs:ce]
            key = text.lower() if merge_text else (cs, ce)
            target = totals if sum_windows else here
            if key in target:
                target[key]["score"] += float(outer[s, e])
            else:
                target[key] = {"answer": text, "score": float(outer[s, e]), "start": cs, "end": ce}
        for key, answer in here.items():  # best window wins
            if key not in totals or answer["score"] > totals[key]["score"]:
                totals[key] = answer
    ranked = sorted(totals.values(), key=lambda a: -a["score"])
    return ranked[:top_k]


def classify_qa(got: list[dict], want: list[dict], emulate) -> tuple[str | None, float]:
    """(None if identical else the first defect that explains the pipeline's answer, score gap).

    `emulate(**flags)` decodes the same windows with the pipeline's defects switched on one after
    the other; a difference counts as a defect only when switching it on reproduces the pipeline.
    """
    same, gap = _same(got, want, QA_KEYS)
    if same and gap <= SCORE_TOL:
        return None, gap
    steps = [
        ("4.57 cuts a word at a window's edge", {"window_words": True}),
        ("4.57 adds a span's scores over overlapping windows", {"window_words": True, "sum_windows": True}),
        ("4.57 merges answers by lower-cased text",
         {"window_words": True, "sum_windows": True, "merge_text": True}),
        ("4.57 scores only the top 2k+10 spans per window",
         {"window_words": True, "sum_windows": True, "merge_text": True, "pre_topk": True}),
    ]
    for name, flags in steps:
        e = emulate(**flags)
        ok, egap = _same(e, want, QA_KEYS)
        if ok and egap <= SCORE_TOL:
            return name, gap
    return "unexplained", gap
