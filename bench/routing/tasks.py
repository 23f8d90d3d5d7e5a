"""A public, checkable task set for routing: several kinds, several difficulty levels, answers known.

Each item is a few-shot text-completion prompt whose answer is one short token sequence, so a reply is
right or wrong without judgement. Kinds: arithmetic (one-digit sums to two-digit products), capitals
(well-known to obscure), number sequences (steps of one to doubling), and the letter after a letter.
The set is generated from fixed seeds: the same items on every machine.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

CAPITALS = {
    "France": "Paris", "Italy": "Rome", "Japan": "Tokyo", "Spain": "Madrid", "Germany": "Berlin",
    "Egypt": "Cairo", "Russia": "Moscow", "Greece": "Athens", "Canada": "Ottawa", "Kenya": "Nairobi",
    "Peru": "Lima", "Chile": "Santiago", "Norway": "Oslo", "Poland": "Warsaw", "Austria": "Vienna",
    "Portugal": "Lisbon", "Ireland": "Dublin", "Sweden": "Stockholm", "Finland": "Helsinki", "Cuba": "Havana",
    "Australia": "Canberra", "Turkey": "Ankara", "Nigeria": "Abuja", "Pakistan": "Islamabad",
    "Vietnam": "Hanoi", "Morocco": "Rabat", "Bolivia": "Sucre", "Kazakhstan": "Astana", "Mongolia": "Ulaanbaatar",
    "Bhutan": "Thimphu", "Laos": "Vientiane", "Malawi": "Lilongwe", "Eritrea": "Asmara", "Burundi": "Gitega",
    "Suriname": "Paramaribo", "Tajikistan": "Dushanbe", "Kyrgyzstan": "Bishkek", "Belize": "Belmopan",
    "Benin": "Porto-Novo", "Palau": "Ngerulmud",
}  # fmt: skip


@dataclass(frozen=True)
class Item:
    """One task: its kind and level, the prompt, and the expected answer."""

    kind: str
    level: int
    prompt: str
    answer: str

    def is_right(self, reply: str) -> bool:
        """The reply's first word, without punctuation, equals the answer (case-insensitive)."""
        words = reply.strip().split()
        first = words[0].strip(".,;:!?\"'") if words else ""
        return first.lower() == self.answer.lower()


def _few_shot(examples: list[tuple[str, str]], question: str) -> str:
    return "".join(f"Q: {q}\nA: {a}\n\n" for q, a in examples) + f"Q: {question}\nA:"


def _arithmetic(rng: random.Random, level: int) -> Item:
    if level == 1:
        a, b, op = rng.randint(1, 9), rng.randint(1, 9), "+"
    elif level == 2:
        a, b, op = rng.randint(10, 99), rng.randint(10, 99), "+"
    else:
        a, b, op = rng.randint(11, 39), rng.randint(3, 19), "*"
    value = a + b if op == "+" else a * b
    prompt = _few_shot([("2 + 3 =", "5"), ("14 + 21 =", "35"), ("6 * 7 =", "42")], f"{a} {op} {b} =")
    return Item("arithmetic", level, prompt, str(value))


def _capital(rng: random.Random, level: int) -> Item:
    countries = list(CAPITALS)
    third = len(countries) // 3
    pool = countries[(level - 1) * third : level * third if level < 3 else len(countries)]
    country = rng.choice(pool)
    prompt = _few_shot(
        [("What is the capital of Brazil?", "Brasilia"), ("What is the capital of Thailand?", "Bangkok")],
        f"What is the capital of {country}?",
    )
    return Item("capital", level, prompt, CAPITALS[country].split()[0])


def _sequence(rng: random.Random, level: int) -> Item:
    start = rng.randint(1, 9)
    if level == 1:
        terms = [start + i for i in range(4)]
        following = start + 4
    elif level == 2:
        step = rng.randint(2, 9)
        terms = [start + step * i for i in range(4)]
        following = start + step * 4
    else:
        terms = [start * 2**i for i in range(4)]
        following = start * 16
    prompt = _few_shot([("1, 2, 3, 4,", "5"), ("3, 6, 9, 12,", "15")], ", ".join(map(str, terms)) + ",")
    return Item("sequence", level, prompt, str(following))


def _next_letter(rng: random.Random, level: int) -> Item:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXY"
    index = rng.randint(0, 7) + (level - 1) * 8
    letter = letters[min(index, len(letters) - 1)]
    prompt = _few_shot([("Which letter comes after C?", "D"), ("Which letter comes after L?", "M")],
                       f"Which letter comes after {letter}?")  # fmt: skip
    return Item("next_letter", level, prompt, chr(ord(letter) + 1))


MAKERS = {"arithmetic": _arithmetic, "capital": _capital, "sequence": _sequence, "next_letter": _next_letter}


def task_set(per_kind_and_level: int = 20, seed: int = 16) -> list[Item]:
    """The items: `per_kind_and_level` of each kind at each of 3 levels (240 by default), in a fixed order."""
    rng = random.Random(seed)
    return [maker(rng, level) for maker in MAKERS.values() for level in (1, 2, 3) for _ in range(per_kind_and_level)]
