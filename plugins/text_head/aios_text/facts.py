"""An invented fact set, to measure whether generation uses memory rather than what it learned.

Entities (rivers, seas, towns, valleys, people, castles, mountains, guilds, goods) get made-up
names, so no fact can be known from any training text; relations between them are written as
sentences in several templates ("The river Quell flows into the Marn Sea.", "The Marn Sea is
where the river Quell ends."), with questions and cloze prompts whose answer is the fact's
object. `make_facts` is deterministic by seed and splits the facts into a training part and a
held-out part that only the memory holds at test time.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_ONSETS = ("b", "br", "c", "d", "dr", "f", "g", "gr", "h", "k", "l", "m", "n", "p", "qu", "r",
           "s", "st", "t", "th", "v", "w", "z")
_VOWELS = ("a", "e", "i", "o", "u", "ae", "ea", "io", "ou")
_CODAS = ("", "", "l", "n", "r", "s", "th", "sk", "nd", "rn", "x", "m")


@dataclass(frozen=True)
class Relation:
    """One kind of fact: the kinds of its two entities, sentence templates, questions, a cloze."""

    name: str
    subject: str  # entity kind
    object: str
    templates: tuple[str, ...]
    questions: tuple[str, ...]
    cloze: str  # a prompt the object completes


# {s} and {o} are the entity phrases ("the river Quell", "the Marn Sea").
RELATIONS = (
    Relation("flows_into", "river", "sea",
             ("{S} flows into {o}.", "{O} is where {s} ends.", "{S} empties into {o}.",
              "The waters of {s} reach {o}."),
             ("Where does {s} flow?", "Into which sea does {s} flow?"), "{S} flows into"),
    Relation("lies_in", "town", "valley",
             ("{S} lies in {o}.", "{O} is home to {s}.", "{S} is a town in {o}.",
              "In {o} lies {s}."),
             ("Where does {s} lie?", "In which valley is {s}?"), "{S} lies in"),
    Relation("born_in", "person", "town",
             ("{S} was born in {o}.", "{O} is the birthplace of {s}.",
              "{S} came into the world in {o}.", "The birth of {s} took place in {o}."),
             ("Where was {s} born?", "What is the birthplace of {s}?"), "{S} was born in"),
    Relation("stands_on", "castle", "mountain",
             ("{S} stands on {o}.", "{O} is crowned by {s}.", "{S} was built on {o}.",
              "On {o} stands {s}."),
             ("Where does {s} stand?", "On which mountain was {s} built?"), "{S} stands on"),
    Relation("founded", "person", "guild",
             ("{S} founded {o}.", "{O} was founded by {s}.", "{S} is the founder of {o}.",
              "It was {s} who founded {o}."),
             ("What did {s} found?", "Which guild was founded by {s}?"), "{S} founded"),
    Relation("trades", "town", "good",
             ("{S} is famous for its {o}.", "The {o} of {s} is sold far away.",
              "{S} trades in {o}.", "Merchants come to {s} for its {o}."),
             ("What is {s} famous for?", "What does {s} trade in?"), "{S} is famous for its"),
)

_PHRASES = {  # how an entity of each kind is written; {n} is its name
    "river": "the river {n}", "sea": "the {n} Sea", "town": "{n}", "valley": "the {n} valley",
    "person": "{n} {m}", "castle": "{n} castle", "mountain": "Mount {n}",
    "guild": "the Guild of {n}", "good": "{n} salt",
}


@dataclass(frozen=True)
class Fact:
    """One invented fact, rendered: `sentences` (one per template), `questions` and a `cloze`
    prompt, each answered by `answer` (the object's phrase)."""

    relation: str
    subject: str
    answer: str
    sentences: tuple[str, ...]
    questions: tuple[str, ...]
    cloze: str

    @property
    def statement(self) -> str:
        """The first template: the fact's canonical sentence."""
        return self.sentences[0]

    @property
    def prompts(self) -> tuple[tuple[str, str], ...]:
        """(prompt, continuation) pairs whose continuation holds the answer: each question
        answered by the canonical sentence, and the cloze completed by the answer."""
        answered = tuple((q, " " + self.statement) for q in self.questions)
        return (*answered, (self.cloze, f" {self.answer}."))


@dataclass(frozen=True)
class FactSet:
    """Facts to train on, and facts held out from training (they exist only in memory)."""

    train: tuple[Fact, ...]
    held_out: tuple[Fact, ...]


class _Names:
    """Unique invented names: syllables drawn from the seeded generator, never repeated."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def __call__(self) -> str:
        for _ in range(1000):
            name = "".join(self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS)
                           + self.rng.choice(_CODAS) for _ in range(self.rng.choice((1, 2))))
            if len(name) >= 4 and name not in self.used:
                self.used.add(name)
                return name.capitalize()
        raise RuntimeError("ran out of invented names; ask for fewer facts")


def _phrase(kind: str, names: _Names) -> str:
    return _PHRASES[kind].format(n=names(), m=names())


def _render(template: str, subject: str, obj: str) -> str:
    def cap(text: str) -> str:
        return text[0].upper() + text[1:]

    return template.format(s=subject, o=obj, S=cap(subject), O=cap(obj))


def make_facts(n: int = 200, held_out: float = 0.25, seed: int = 0,
               objects_per_kind: int | None = None) -> FactSet:
    """`n` facts over all relations in turn; a `held_out` fraction (by seed) is set aside.

    Every subject is unique (a question names exactly one fact); objects are shared by several
    facts (`objects_per_kind` of each kind, default n // 8), as real facts share them.
    """
    if n < 2:
        raise ValueError(f"make at least 2 facts (one to train on, one held out), not {n}")
    if not 0 < held_out < 1:
        raise ValueError(f"held_out is the fraction of facts set aside, in (0, 1), not {held_out}")
    rng = random.Random(seed)
    names = _Names(rng)
    pool_size = objects_per_kind or max(2, n // 8)
    kinds = dict.fromkeys(r.object for r in RELATIONS)  # in a fixed order: no set (hash seed)
    pools = {kind: [_phrase(kind, names) for _ in range(pool_size)] for kind in kinds}
    facts = []
    for i in range(n):
        relation = RELATIONS[i % len(RELATIONS)]
        subject, obj = _phrase(relation.subject, names), rng.choice(pools[relation.object])
        facts.append(Fact(
            relation.name, subject, obj,
            tuple(_render(t, subject, obj) for t in relation.templates),
            tuple(_render(q, subject, obj) for q in relation.questions),
            _render(relation.cloze, subject, obj)))
    order = list(range(n))
    rng.shuffle(order)
    cut = max(1, min(n - 1, round(n * held_out)))
    held = set(order[:cut])
    return FactSet(tuple(f for i, f in enumerate(facts) if i not in held),
                   tuple(f for i, f in enumerate(facts) if i in held))


def write_fact_documents(facts: Sequence[Fact], directory: Path, *, per_paragraph: int = 4,
                         paragraphs_per_file: int = 5,
                         forms: Sequence[int] | None = None) -> list[str]:
    """The facts as Markdown files of paragraphs, ready for `aios memory add`; one rendering
    of each fact, its sentence forms (template indexes, default all) in turn, so every form
    is stored. Returns the sentence stored for each fact: a retrieved passage is relevant when
    it contains it."""
    directory.mkdir(parents=True, exist_ok=True)
    chosen = list(range(len(facts[0].sentences))) if forms is None and facts else list(forms or [])
    if facts and (not chosen or not all(0 <= f < len(facts[0].sentences) for f in chosen)):
        raise ValueError(f"sentence forms are template indexes in [0, {len(facts[0].sentences)})"
                         f", got {forms}")
    stored = [f.sentences[chosen[i % len(chosen)]] for i, f in enumerate(facts)]
    per_file = per_paragraph * paragraphs_per_file
    for n, start in enumerate(range(0, len(stored), per_file)):
        part = stored[start:start + per_file]
        paragraphs = [" ".join(part[i:i + per_paragraph]) for i in range(0, len(part),
                                                                         per_paragraph)]
        (directory / f"facts-{n:03d}.md").write_text("\n\n".join(paragraphs) + "\n")
    return stored
