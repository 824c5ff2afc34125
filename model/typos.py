"""Character-level typo attacks (CharBERT's protocol, references.md "Robustness to typos"), used to
evaluate robustness (`berth eval --attack typos`) and to augment training text (`--augment typos`).

Every word of at least `MIN_LENGTH` letters is attacked (with probability `rate`) by one of four
edits chosen at random: drop an internal letter, add a letter, swap two adjacent internal letters,
or replace an internal letter by a neighbouring key on a QWERTY keyboard. The first and last
letters stay in place (as in the Adversarial-Misspellings attacks CharBERT follows), which is why
only words of four letters or more have room for every edit. A "word" is a maximal run of letters:
digits and punctuation are never touched, and no edit adds or removes whitespace, so a CoNLL
token stays one token (its tag stays aligned) and text outside the attacked words keeps its
characters, which lets QA answer offsets be mapped exactly.

Pure Python, no torch: randomness comes from `random.Random` seeded with strings, which is stable
across processes (unlike `hash`), so an attacked data set is the same on every run.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, field, replace

from model.data.examples import Answer, QAExample, TextExample, TokenExample

KINDS = ("drop", "add", "swap", "keyboard")
MIN_LENGTH = 4
DEFAULT_AUGMENT_RATE = 0.3  # `--augment typos` without a rate: 30% of the eligible words per epoch

_WORD = re.compile(r"[^\W\d_]+")  # a run of letters (any script)
_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _neighbours() -> dict[str, str]:
    """Lower-case QWERTY neighbours: the keys left and right in the row, and the two keys touching
    it in the rows above and below (rows are staggered by half a key)."""
    grid = {ch: (r, c) for r, row in enumerate(_ROWS) for c, ch in enumerate(row)}
    near: dict[str, str] = {}
    for ch, (r, c) in grid.items():
        spots = [(r, c - 1), (r, c + 1), (r - 1, c), (r - 1, c + 1), (r + 1, c - 1), (r + 1, c)]
        near[ch] = "".join(_ROWS[i][j] for i, j in spots if 0 <= i < len(_ROWS) and 0 <= j < len(_ROWS[i]))
    return near


KEYBOARD = _neighbours()


@dataclass
class AttackStats:
    """What an attack did: eligible words seen, words changed, and edits per kind."""

    eligible: int = 0
    perturbed: int = 0
    kinds: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {"eligible_words": self.eligible, "perturbed_words": self.perturbed,
                "kinds": {k: self.kinds.get(k, 0) for k in KINDS}}


def _same_case(new: str, like: str) -> str:
    return new.upper() if like.isupper() else new


def perturb_word(word: str, rng: random.Random, kind: str | None = None) -> tuple[str, str]:
    """(the misspelt word, the kind applied); `kind` None draws one of KINDS uniformly.

    Needs len(word) >= MIN_LENGTH. The result always differs from `word`: a swap needs two
    different adjacent internal letters and a keyboard edit a letter with known neighbours; when
    the word has none, the edit falls back to a drop (which always changes the word).
    """
    if len(word) < MIN_LENGTH:
        raise ValueError(f"words under {MIN_LENGTH} letters are not attacked: {word!r}")
    kind = kind or rng.choice(KINDS)
    inner = range(1, len(word) - 1)  # first and last letters stay
    if kind == "swap":
        pairs = [i for i in range(1, len(word) - 2) if word[i] != word[i + 1]]
        if pairs:
            i = rng.choice(pairs)
            return word[:i] + word[i + 1] + word[i] + word[i + 2 :], kind
        kind = "drop"
    if kind == "keyboard":
        spots = [i for i in inner if word[i].lower() in KEYBOARD]
        if spots:
            i = rng.choice(spots)
            return word[:i] + _same_case(rng.choice(KEYBOARD[word[i].lower()]), word[i]) + word[i + 1 :], kind
        kind = "drop"
    if kind == "add":
        i = rng.randint(1, len(word) - 1)  # insert before position i: between the first and last letter
        letter = _same_case(rng.choice("abcdefghijklmnopqrstuvwxyz"), word[i - 1])
        return word[:i] + letter + word[i:], kind
    if kind != "drop":
        raise ValueError(f"unknown typo kind {kind!r}; expected one of {KINDS}")
    i = rng.choice(inner)
    return word[:i] + word[i + 1 :], kind


def attack_text(text: str, rng: random.Random, rate: float = 1.0, stats: AttackStats | None = None,
                keep: set[int] | None = None) -> tuple[str, list[tuple[int, int, int]]]:
    """Misspell each eligible word of `text` with probability `rate`.

    Returns the new text and the edits as (start, end, new length) of each replaced word in the
    original text, in order. Words starting at an index in `keep` are left alone (QA uses it for
    words that straddle an answer boundary).
    """
    pieces, edits, at = [], [], 0
    for match in _WORD.finditer(text):
        word = match.group()
        if len(word) < MIN_LENGTH:
            continue
        if stats is not None:
            stats.eligible += 1
        if (keep and match.start() in keep) or not rng.random() < rate:
            continue
        new, kind = perturb_word(word, rng)
        if stats is not None:
            stats.perturbed += 1
            stats.kinds[kind] += 1
        pieces += [text[at : match.start()], new]
        edits.append((match.start(), match.end(), len(new)))
        at = match.end()
    pieces.append(text[at:])
    return "".join(pieces), edits


def map_offset(offset: int, edits: list[tuple[int, int, int]]) -> int:
    """Where character boundary `offset` of the original text lies in the attacked text.

    Exact for boundaries outside the replaced words (and at their edges)."""
    shift = 0
    for start, end, new_len in edits:
        if end <= offset:
            shift += new_len - (end - start)
        elif start < offset:
            raise ValueError(f"offset {offset} falls inside a replaced word ({start}, {end})")
        else:
            break
    return offset + shift


def _straddling(text: str, boundaries: set[int]) -> set[int]:
    """Starts of the words that have an answer boundary strictly inside them."""
    return {m.start() for m in _WORD.finditer(text)
            if any(m.start() < b < m.end() for b in boundaries)}


def attack_tokens(example: TokenExample, rng: random.Random, rate: float = 1.0,
                  stats: AttackStats | None = None) -> TokenExample:
    """NER: misspell inside each token; one token per word, so the tags stay as they are."""
    tokens = [attack_text(tok, rng, rate, stats)[0] for tok in example.tokens]
    return replace(example, tokens=tokens)


def attack_classify(example: TextExample, rng: random.Random, rate: float = 1.0,
                    stats: AttackStats | None = None) -> TextExample:
    pair = attack_text(example.text_pair, rng, rate, stats)[0] if example.text_pair is not None else None
    return replace(example, text=attack_text(example.text, rng, rate, stats)[0], text_pair=pair)


def attack_qa(example: QAExample, rng: random.Random, rate: float = 1.0,
              stats: AttackStats | None = None) -> QAExample:
    """QA: misspell question and context; each gold answer becomes the same span of the attacked
    context (start recomputed, text re-sliced, so it carries the typos the model sees)."""
    bounds = {b for a in example.answers for b in (a.start, a.start + len(a.text))}
    context, edits = attack_text(example.context, rng, rate, stats, keep=_straddling(example.context, bounds))
    answers = []
    for a in example.answers:
        start, end = map_offset(a.start, edits), map_offset(a.start + len(a.text), edits)
        answers.append(Answer(text=context[start:end], start=start))
    question = attack_text(example.question, rng, rate, stats)[0]
    return replace(example, question=question, context=context, answers=answers)


_BY_TYPE = {TokenExample: attack_tokens, TextExample: attack_classify, QAExample: attack_qa}


def attack_examples(examples: list, seed: int = 0, rate: float = 1.0, epoch: int | None = None,
                    stats: AttackStats | None = None) -> list:
    """Attack every example with its own generator seeded by (seed, epoch, index): the result does
    not depend on the order or on which other examples are attacked, and each epoch of
    augmentation draws fresh noise."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"typo rate must be within [0, 1], got {rate}")
    out = []
    for i, ex in enumerate(examples):
        rng = random.Random(f"typos/{seed}/{epoch}/{i}")
        out.append(_BY_TYPE[type(ex)](ex, rng, rate, stats))
    return out


@dataclass(frozen=True)
class Augment:
    """Typo augmentation of the training set, drawn afresh every epoch.

    rate: probability that a word of MIN_LENGTH+ letters is misspelt. keep_clean: train each epoch
    on the clean examples *and* an attacked copy of each (twice the steps), instead of on the
    attacked examples only; the clean task is then seen as often as without augmentation.
    """

    rate: float = DEFAULT_AUGMENT_RATE
    keep_clean: bool = False


def parse_augment(spec: str | None) -> Augment | None:
    """`typos`, `typos=RATE`, `typos=RATE,keep-clean` (or `typos,keep-clean`); None or "" -> None."""
    if not spec:
        return None
    head, *options = spec.split(",")
    name, _, rate = head.partition("=")
    if name != "typos":
        raise ValueError(f"unknown augmentation {name!r}; expected typos[=RATE][,keep-clean]")
    unknown = [o for o in options if o != "keep-clean"]
    if unknown:
        raise ValueError(f"unknown typos option(s) {unknown}; the only one is keep-clean")
    try:
        value = float(rate) if rate else DEFAULT_AUGMENT_RATE
    except ValueError:
        raise ValueError(f"typos rate must be a number, got {rate!r}") from None
    if not 0.0 < value <= 1.0:
        raise ValueError(f"typos rate must be within (0, 1], got {value}")
    return Augment(rate=value, keep_clean="keep-clean" in options)
