"""A transparent complexity score for a prompt: four features in 0..1 combined by configurable weights.

The burst policy sends a prompt to the cloud when its score reaches a threshold, and the score's breakdown
goes into the decision record, so every feature is a plain count of visible cues that a user can check:

- length: prompt tokens / `length_saturation_tokens` (tokens estimated as characters / 4 when unknown);
- code: lines inside ``` fences, code syntax (`;` or `{` line endings, `=>`, `==`, `!=`, `&&`, `||`, `::`,
  indented lines) and programming words (def, class, return, function, SQL, Python, compiler ...);
- math: LaTeX commands, `$...$`, operators between numbers (`3 + 4`, `12/5`), powers (`x^2`), and words such
  as integral, derivative, theorem, matrix, probability, "solve for";
- reasoning: cue words and phrases ("step by step", "explain why", "compare", "analyse", "trade-offs",
  "pros and cons", "plan", "design", "prove"), numbered parts, each question mark after the first, and
  "first ... then ... finally"; with French, Spanish and German equivalents of the main cues.

The code, math and reasoning features are `min(1, cues / max(floor, rate × text size))`: a short prompt
reaches 1 with a handful of cues, while a long one needs them at a steady density, so a long document that
mentions "plan" or "matrix" a few times does not look hard. Adding a cue never lowers a feature.

The whole routing decision has a 1 ms budget, so the text is lower-cased and encoded once, then scanned with
bytes.translate/split/count and a few regular expressions that start with a literal (which `re` finds quickly).
At most 6,000 characters (about 1,500 tokens: the first 4,000 and the last 2,000) are scanned, so the cost is
bounded whatever the prompt's size; the length feature still counts every token.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType

FEATURES = ("length", "code", "math", "reasoning")

# Cues for a full feature in a short prompt, and the density of cues for a full feature in a long one.
_CODE_FULL, _CODE_PER_TOKEN = 8.0, 1 / 25
_MATH_FULL, _MATH_PER_TOKEN = 4.0, 1 / 150
_REASONING_FULL, _REASONING_PER_TOKEN = 4.0, 1 / 200
_CHARS_PER_TOKEN = 4.0
# A long prompt is scanned at its start and its end, where instructions usually are; since the features are
# densities, the sample stands for the whole, and the cost stays bounded (6,000 characters).
_SCAN_HEAD_CHARS, _SCAN_TAIL_CHARS = 4000, 2000

# Whole words, lower-cased, with ASCII punctuation removed ("trade-offs" -> "trade offs").
_CUE_WORDS: Mapping[str, str] = MappingProxyType(
    {
        "code": """python javascript typescript java kotlin swift rust golang sql regex bash html css json yaml api
        code coding compile compiler debug debugging refactor traceback stacktrace exception bug algorithm
        def class import return function const var elif lambda self printf println void struct fn func async
        await include""",
        "math": """integral integrals integrate integration derivative derivatives differentiate differentiation
        theorem lemma proof prove matrix matrices eigenvalue eigenvalues eigenvector determinant probability
        equation equations polynomial logarithm calculus variance factorial modulo vector vectors algebra
        geometry trigonometry statistics statistical
        intégrale dérivée théorème matrice probabilité équation derivada teorema matriz probabilidad ecuación
        ableitung wahrscheinlichkeit gleichung""",
        "reasoning": """compare compares compared comparing comparison comparisons contrast analyze analyse analyzes
        analyses analyzing analysing analysis tradeoff tradeoffs disadvantages plan planning design designing
        prove justify evaluate derive critique implications
        comparer comparez analyser analysez inconvénients concevoir démontrer
        comparar compara analizar analiza desventajas diseñar demostrar
        vergleiche vergleichen vergleich analysiere analysieren nachteile entwerfen beweise beweisen""",
    }
)
# Phrases: (a word of the phrase, the phrase, feature). A phrase is only searched for when that word occurs.
_PHRASES = (
    ("step", "step by step", "reasoning"),
    ("explain", "explain why", "reasoning"),
    ("explain", "explain how", "reasoning"),
    ("cons", "pros and cons", "reasoning"),
    ("trade", "trade off", "reasoning"),
    ("walk", "walk me through", "reasoning"),
    ("detail", "in detail", "reasoning"),
    ("break", "break down", "reasoning"),
    ("étape", "étape par étape", "reasoning"),
    ("pourquoi", "explique pourquoi", "reasoning"),
    ("pourquoi", "expliquez pourquoi", "reasoning"),
    ("paso", "paso a paso", "reasoning"),
    ("explica", "explica por qué", "reasoning"),
    ("schritt", "schritt für schritt", "reasoning"),
    ("warum", "erkläre warum", "reasoning"),
    ("solve", "solve for", "math"),
    ("standard", "standard deviation", "math"),
)
# "first ... then ... finally" in this order marks a multi-step request; it counts as two cues.
_SEQUENCES = (
    ("first", "then", "finally"),
    ("abord", "ensuite", "enfin"),
    ("primero", "luego", "finalmente"),
    ("zuerst", "dann", "schließlich"),
)
_SEQUENCE_CUES = 2
# Syntax is counted in the "skeleton": the text reduced to these characters (`x = f(a, b);` + newline reads
# ` = ( ); + newline`), a fifth of the text's size or less, so counting several markers in it costs little.
# Spaces stay so that `a = b, c = d` does not read as `==`.
_SKELETON_CHARS = b" ;{}=<>!&|:^?`\t\n"
# Line endings `;` and `{`, operators, and tab-indented lines.
_SKELETON_CODE = (b";\n", b"{\n", b"=>", b"==", b"!=", b"&&", b"||", b"::", b"\n\t")
_SKELETON_POWER = b"^"
_SPACE_INDENT = b"\n    "


def _encode_words(spec: Mapping[str, str]) -> dict[bytes, tuple[str, ...]]:
    """Each cue word with the features it counts for ("prove" is both maths and reasoning)."""
    table: dict[bytes, tuple[str, ...]] = {}
    for feature, words in spec.items():
        for word in words.split():
            table[word.encode()] = (*table.get(word.encode(), ()), feature)
    return table


_WORD_FEATURE: Mapping[bytes, tuple[str, ...]] = MappingProxyType(_encode_words(_CUE_WORDS))
_PHRASE_TABLE = tuple((trigger.encode(), phrase.encode(), feature) for trigger, phrase, feature in _PHRASES)
_SEQUENCE_TABLE = tuple((a.encode(), b.encode(), c.encode()) for a, b, c in _SEQUENCES)
_WATCHED = (
    frozenset(_WORD_FEATURE)
    | {trigger for trigger, _, _ in _PHRASE_TABLE}
    | {word for sequence in _SEQUENCE_TABLE for word in sequence}
    | {b"select"}
)
# Punctuation becomes spaces and digits become 0; newlines stay for _NUMBERED, arithmetic operators for _ARITHMETIC.
_PUNCTUATION = b"\t\r.,;:!?()[]{}\"'`\\|&%$#@~-"
_CLEAN = bytes.maketrans(_PUNCTUATION + b"0123456789", b" " * len(_PUNCTUATION) + b"0" * 10)
_NOT_SKELETON = bytes(byte for byte in range(256) if byte not in _SKELETON_CHARS)
_LATEX = re.compile(
    rb"\\(?:frac|d?int|iint|oint|sum|prod|sqrt|lim|partial|nabla|infty|cdot|times|leq?|geq?|neq|approx"
    rb"|alpha|beta|gamma|delta|theta|lambda|sigma|mu|pi|begin\{(?:equation|align|[pbv]?matrix|cases)\})"
)
# `$x^2$` or `$$`, but not the prices in "$5 and $10".
_DOLLAR_MATH = re.compile(rb"\$(?:\$|(?=\S)[^$\n]{1,200}?(?<=\S)\$(?!\d))")
# An operator between two numbers, in the cleaned text where every digit is 0: "3 + 4", "12/5", "1 < 2".
_ARITHMETIC = re.compile(rb"0 ?[+*/=<>] ?0")
# SQL ("select a, b from t"), looked for only when the word "select" occurs; commas are spaces in the cleaned text.
_SQL = re.compile(rb"select [a-z0-9_.* ]{1,200}? from [a-z_]")
# Numbered parts ("1. ", "2) " at the start of a line) in the cleaned text.
_NUMBERED = b"\n0  "


@dataclass(frozen=True)
class ComplexityWeights:
    """How much each feature counts; the score divides by their sum, so only their ratios matter.

    Defaults: code and maths weigh most because that is where a small local model fails most visibly
    (wrong syntax, wrong arithmetic); multi-step reasoning comes next; length weighs least because a long
    but plain prompt is fine locally as long as it fits (the separate context criterion handles overflow).
    """

    length: float = 0.15
    code: float = 0.30
    math: float = 0.30
    reasoning: float = 0.25

    def __post_init__(self) -> None:
        for name in FEATURES:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"complexity weight '{name}' must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"complexity weight '{name}' must be a finite number >= 0, got {value!r}")
        if self.total() <= 0:
            raise ValueError("complexity weights must not all be 0")

    @classmethod
    def from_mapping(cls, values: Mapping[str, float]) -> ComplexityWeights:
        """Weights from a mapping such as `{"code": 0.5}`; keys left out keep their default.

        Raises ValueError naming the key for an unknown key or a negative, infinite or non-numeric value.
        """
        known = {field.name for field in fields(cls)}
        for key in values:
            if key not in known:
                raise ValueError(f"unknown complexity weight '{key}' (expected one of: {', '.join(FEATURES)})")
        return cls(**dict(values))

    def as_dict(self) -> dict[str, float]:
        """The weights by feature name, in the order of FEATURES."""
        return {name: float(getattr(self, name)) for name in FEATURES}

    def total(self) -> float:
        """The sum of the weights (the score's denominator)."""
        return float(self.length + self.code + self.math + self.reasoning)


@dataclass(frozen=True)
class ComplexityScore:
    """A prompt's complexity: `score` = sum(weight × feature) / sum(weights), every feature in 0..1."""

    score: float
    features: Mapping[str, float]
    weights: Mapping[str, float]

    def explain(self) -> str:
        """One readable line, e.g. `0.42 = length 0.10×0.15 + code 0.80×0.30 + math 0.00×0.30 + ...`."""
        terms = " + ".join(f"{name} {self.features[name]:.2f}×{self.weights[name]:.2f}" for name in FEATURES)
        total = sum(self.weights.values())
        if math.isclose(total, 1.0):
            return f"{self.score:.2f} = {terms}"
        # Weights that do not sum to 1 are normalised: show the divisor so the line still adds up.
        return f"{self.score:.2f} = ({terms}) / {total:.2f}"


def score_complexity(
    text: str,
    weights: ComplexityWeights,
    *,
    prompt_tokens: int | None = None,
    length_saturation_tokens: int = 2000,
) -> ComplexityScore:
    """Score a prompt's complexity in 0..1 from its length and its code, maths and reasoning cues.

    `prompt_tokens` is the real token count when the caller has it; otherwise it is estimated as
    len(text) / 4. The length feature reaches 1 at `length_saturation_tokens`. Of a prompt longer than
    6,000 characters, only the first 4,000 and the last 2,000 are scanned for cues.
    """
    if length_saturation_tokens <= 0:
        raise ValueError("length_saturation_tokens must be > 0")
    tokens = len(text) / _CHARS_PER_TOKEN if prompt_tokens is None else float(max(prompt_tokens, 0))
    if len(text) > _SCAN_HEAD_CHARS + _SCAN_TAIL_CHARS:
        text = text[:_SCAN_HEAD_CHARS] + "\n" + text[-_SCAN_TAIL_CHARS:]
    # A leading newline lets the line-start cues match on the first line too.
    raw = ("\n" + text.lower()).encode("utf-8", "ignore")
    skeleton = raw.translate(None, _NOT_SKELETON)
    code, math_cues, reasoning = _cue_counts(raw, skeleton)
    scanned_tokens = len(text) / _CHARS_PER_TOKEN
    features = {
        "length": min(1.0, tokens / length_saturation_tokens),
        "code": _saturate(code, _CODE_FULL, _CODE_PER_TOKEN * scanned_tokens),
        "math": _saturate(math_cues, _MATH_FULL, _MATH_PER_TOKEN * scanned_tokens),
        "reasoning": _saturate(reasoning, _REASONING_FULL, _REASONING_PER_TOKEN * scanned_tokens),
    }
    weight_map = weights.as_dict()
    score = sum(weight_map[name] * features[name] for name in FEATURES) / weights.total()
    return ComplexityScore(
        score=min(1.0, score), features=MappingProxyType(features), weights=MappingProxyType(weight_map)
    )


def _saturate(cues: float, full: float, size_scaled: float) -> float:
    """cues / max(full, size_scaled), capped at 1: a fixed count for short texts, a density for long ones."""
    return min(1.0, cues / max(full, size_scaled))


def _cue_counts(raw: bytes, skeleton: bytes) -> tuple[float, float, float]:
    """(code, math, reasoning) cue counts in the lower-cased, UTF-8 encoded text and its skeleton."""
    counts = {"code": 0.0, "math": 0.0, "reasoning": 0.0}
    clean = raw.translate(_CLEAN)
    found = Counter(filter(_WATCHED.__contains__, clean.split()))
    for word, count in found.items():
        for feature in _WORD_FEATURE.get(word, ()):
            counts[feature] += count
    for trigger, phrase, feature in _PHRASE_TABLE:
        if trigger in found:
            counts[feature] += clean.count(phrase)
    for first, then, last in _SEQUENCE_TABLE:
        if first in found and then in found and last in found:
            then_at = clean.find(then, clean.find(first))
            if then_at != -1 and clean.find(last, then_at) != -1:
                counts["reasoning"] += _SEQUENCE_CUES
    if b"select" in found:
        counts["code"] += len(_SQL.findall(clean))
    counts["code"] += sum(skeleton.count(marker) for marker in _SKELETON_CODE)
    counts["code"] += raw.count(_SPACE_INDENT) + _fenced_lines(skeleton)
    counts["math"] += len(_LATEX.findall(raw)) + len(_DOLLAR_MATH.findall(raw)) + len(_ARITHMETIC.findall(clean))
    counts["math"] += skeleton.count(_SKELETON_POWER)
    counts["reasoning"] += clean.count(_NUMBERED) + max(0, skeleton.count(b"?") - 1)
    return counts["code"], counts["math"], counts["reasoning"]


def _fenced_lines(skeleton: bytes) -> int:
    """Lines inside ``` fences (the skeleton keeps backticks and newlines); an unclosed fence runs to the end."""
    lines = 0
    start = skeleton.find(b"```")
    while start != -1:
        end = skeleton.find(b"```", start + 3)
        if end == -1:
            return lines + skeleton.count(b"\n", start)
        lines += skeleton.count(b"\n", start, end)
        start = skeleton.find(b"```", end + 3)
    return lines
