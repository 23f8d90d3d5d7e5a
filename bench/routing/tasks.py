"""A public, checkable task set for routing: several kinds, several difficulty levels, answers known.

Each item is a few-shot text-completion prompt whose answer is one word or number, so a reply is right or
wrong without judgement (its first word, without punctuation, case-insensitive). The set is balanced so a
small local model (gemma3 270M) gets about half right: every kind runs from items it nearly always gets
right to items it mostly gets wrong, which gives a confidence signal something to separate. Kinds:
arithmetic, capitals, counting sequences, antonyms, plurals, and the day or month after another. The set
is generated from a fixed seed: the same items on every machine.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

# Word tables by level: what a small model nearly always knows, sometimes knows, mostly does not.
CAPITALS = (
    {"France": "Paris", "Italy": "Rome", "Japan": "Tokyo", "Spain": "Madrid", "Germany": "Berlin",
     "England": "London", "Russia": "Moscow", "Greece": "Athens", "Egypt": "Cairo", "China": "Beijing"},
    {"Canada": "Ottawa", "Australia": "Canberra", "Turkey": "Ankara", "Kenya": "Nairobi", "Vietnam": "Hanoi",
     "Nigeria": "Abuja", "Morocco": "Rabat", "Pakistan": "Islamabad", "Hungary": "Budapest", "Chile": "Santiago"},
    {"Belize": "Belmopan", "Tanzania": "Dodoma", "Burundi": "Gitega", "Bolivia": "Sucre", "Benin": "Porto-Novo",
     "Myanmar": "Naypyidaw", "Palau": "Ngerulmud", "Micronesia": "Palikir", "Laos": "Vientiane",
     "Eswatini": "Mbabane", "Malawi": "Lilongwe", "Eritrea": "Asmara"},
)  # fmt: skip
ANTONYMS = (
    {"hot": "cold", "big": "small", "up": "down", "yes": "no", "day": "night", "black": "white", "in": "out",
     "open": "closed", "fast": "slow", "happy": "sad", "rich": "poor", "wet": "dry"},
    {"optimist": "pessimist", "convex": "concave", "benevolent": "malevolent", "scarce": "abundant",
     "introvert": "extrovert", "predecessor": "successor", "inferior": "superior", "majority": "minority",
     "nocturnal": "diurnal", "exhale": "inhale", "implicit": "explicit", "synonym": "antonym"},
    {"ancient": "modern", "arrive": "depart", "permanent": "temporary", "generous": "stingy",
     "expand": "contract", "guilty": "innocent", "ascend": "descend", "artificial": "natural",
     "frequent": "rare", "minor": "major", "vertical": "horizontal", "visible": "invisible"},
)  # fmt: skip
PLURALS = (
    {"cat": "cats", "dog": "dogs", "book": "books", "car": "cars", "tree": "trees", "bird": "birds",
     "house": "houses", "apple": "apples", "chair": "chairs", "girl": "girls", "box": "boxes", "city": "cities"},
    {"mouse": "mice", "tooth": "teeth", "goose": "geese", "ox": "oxen", "wife": "wives", "wolf": "wolves",
     "analysis": "analyses", "thesis": "theses", "crisis": "crises", "nucleus": "nuclei", "radius": "radii",
     "stimulus": "stimuli"},
    {"genus": "genera", "vertebra": "vertebrae", "larva": "larvae", "alumnus": "alumni", "bacterium": "bacteria",
     "criterion": "criteria", "phenomenon": "phenomena", "datum": "data", "corpus": "corpora", "locus": "loci",
     "hypothesis": "hypotheses", "axis": "axes"},
)  # fmt: skip
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")  # fmt: skip


@dataclass(frozen=True)
class Item:
    """One task: its kind and level, the prompt, and the expected answer."""

    kind: str
    level: int
    prompt: str
    answer: str

    def is_right(self, reply: str) -> bool:
        """The reply's first word, without punctuation, equals the answer (case-insensitive)."""
        return first_word(reply) == self.answer.lower()


def first_word(reply: str) -> str:
    """A reply normalised for matching: its first word, without surrounding punctuation, lower case."""
    words = reply.strip().split()
    return words[0].strip(".,;:!?\"'").lower() if words else ""


def _shots(template: str, examples: list[tuple[str, str]], question: str) -> str:
    """A few-shot prompt of plain sentences ("The plural of cat is cats."), ending where the answer goes."""
    lines = [f"{template.format(q)} {a}." for q, a in examples]
    return "\n".join([*lines, template.format(question)])


def _arithmetic(rng: random.Random, level: int) -> Item:
    if level == 1:
        a, b = rng.randint(1, 8), 1
    elif level == 2:
        a, b = rng.randint(4, 9), rng.randint(5, 9)
    else:
        a, b = rng.randint(12, 49), rng.randint(12, 49)
    prompt = f"1 + 1 = 2\n3 + 2 = 5\n2 + 4 = 6\n4 + 3 = 7\n{a} + {b} ="
    return Item("arithmetic", level, prompt, str(a + b))


def _sequence(rng: random.Random, level: int) -> Item:
    start = rng.randint(1, 20)
    if level == 3 and rng.random() < 0.5:
        terms = [start * 2**i for i in range(4)]
        following = start * 16
    else:
        step = 1 if level == 1 else rng.choice((2, 3)) if level == 2 else rng.choice((6, 7, 8))
        terms = [start + step * i for i in range(5)]
        following = start + step * 5
    return Item("sequence", level, ", ".join(map(str, terms)) + ",", str(following))


def _from_table(kind: str, tables: tuple[dict[str, str], ...], template: str, shots: list[tuple[str, str]]) -> Maker:
    """A maker drawing the question word from the level's table (each word once before any comes back)."""
    decks: dict[int, list[str]] = {}

    def make(rng: random.Random, level: int) -> Item:
        deck = decks.setdefault(level, [])
        if not deck:
            deck.extend(rng.sample(sorted(tables[level - 1]), len(tables[level - 1])))
        word = deck.pop()
        return Item(kind, level, _shots(template, shots, word), tables[level - 1][word])

    return make


def _after(rng: random.Random, level: int) -> Item:
    if level < 3:
        names = DAYS if level == 1 else MONTHS
        index = rng.randrange(len(names))
        listed = ", ".join(names[(index + k) % len(names)] for k in range(3)) + ","
        return Item("after", level, listed, names[(index + 3) % len(names)])
    index = rng.randrange(7)
    prompt = _shots("The day after {} is", [("Saturday", "Sunday"), ("Tuesday", "Wednesday")], DAYS[index])
    return Item("after", level, prompt, DAYS[(index + 1) % 7])


Maker = Callable[[random.Random, int], Item]


def makers() -> dict[str, Maker]:
    """A fresh maker per kind (the table kinds keep a deck per level, so a task set starts from new decks)."""
    return {
        "arithmetic": _arithmetic,
        "sequence": _sequence,
        "capital": _from_table(
            "capital", CAPITALS, "The capital of {} is", [("Brazil", "Brasilia"), ("Thailand", "Bangkok")]
        ),
        "antonym": _from_table("antonym", ANTONYMS, "The opposite of {} is", [("good", "bad"), ("tall", "short")]),
        "plural": _from_table("plural", PLURALS, "The plural of {} is", [("pen", "pens"), ("leaf", "leaves")]),
        "after": _after,
    }


def task_set(per_kind_and_level: int = 12, seed: int = 16) -> list[Item]:
    """The items: `per_kind_and_level` of each kind at each of 3 levels (216 by default), in a fixed order."""
    rng = random.Random(seed)
    return [maker(rng, level) for maker in makers().values() for level in (1, 2, 3) for _ in range(per_kind_and_level)]
