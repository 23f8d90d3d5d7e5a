"""The complexity score: each feature's cues, the weighting, its explanation, and the weights' validation."""

from __future__ import annotations

import pytest

from pensieve.burst.complexity import FEATURES, ComplexityScore, ComplexityWeights, score_complexity

WEIGHTS = ComplexityWeights()

TRIVIAL = [
    "What is the capital of France?",
    "Hi! How are you today?",
    "Translate 'good morning' into Spanish.",
    "Who wrote Pride and Prejudice?",
]

LONG_CODE_AND_MATHS = r"""I need help with a numerical project. Please go step by step.

1. Derive the gradient of $L(w) = \frac{1}{n} \sum_i (y_i - w^T x_i)^2$ and prove that L is convex.
2. Solve for w in closed form and explain why the matrix X^T X must be invertible.
3. Implement gradient descent in Python and compare it with the closed form on 1000 samples.
4. Analyse the trade-offs (pros and cons for large n) and the probability that the error stays below 0.5.

```python
import numpy as np

def fit(X, y, lr=0.01, steps=1000):
    w = np.zeros(X.shape[1])
    for _ in range(steps):
        grad = 2 / len(y) * X.T @ (X @ w - y)
        w -= lr * grad
    return w
```

What learning rate guarantees convergence? How does the condition number affect it?
First write the maths, then the code, finally a short comparison table.
"""

PYTHON_BUG = """Find the bug in this function:

```python
def total(items):
    result = 0
    for item in items:
        result =+ item.price
    return result
```
"""


def score(text: str, **kwargs: int) -> ComplexityScore:
    return score_complexity(text, WEIGHTS, **kwargs)


@pytest.mark.parametrize("text", TRIVIAL)
def test_trivial_questions_score_low(text: str) -> None:
    assert score(text).score < 0.15


def test_a_long_multi_part_coding_and_maths_request_scores_high() -> None:
    result = score(LONG_CODE_AND_MATHS)
    assert result.score > 0.6
    assert result.features["code"] > 0.8
    assert result.features["math"] > 0.8
    assert result.features["reasoning"] > 0.8


def test_every_feature_is_in_0_1_and_the_score_is_their_weighted_mean() -> None:
    weights = ComplexityWeights(length=1.0, code=2.0, math=0.5, reasoning=0.0)
    result = score_complexity(LONG_CODE_AND_MATHS, weights)
    assert set(result.features) == set(FEATURES)
    assert all(0.0 <= value <= 1.0 for value in result.features.values())
    expected = sum(weights.as_dict()[name] * result.features[name] for name in FEATURES) / 3.5
    assert result.score == pytest.approx(expected)


def test_length_uses_the_given_token_count_and_saturates() -> None:
    assert score("short", prompt_tokens=500).features["length"] == pytest.approx(0.25)
    assert score("short", prompt_tokens=50_000).features["length"] == 1.0
    assert score("short", prompt_tokens=500, length_saturation_tokens=1000).features["length"] == 0.5


def test_length_is_estimated_as_four_characters_per_token() -> None:
    assert score("a" * 4000).features["length"] == pytest.approx(0.5)


def test_a_non_positive_length_saturation_is_refused() -> None:
    with pytest.raises(ValueError, match="length_saturation_tokens"):
        score("text", length_saturation_tokens=0)


def test_code_counts_fenced_blocks_syntax_and_programming_words() -> None:
    assert score(PYTHON_BUG).features["code"] == 1.0
    c_code = 'int main() {\n    printf("hi");\n    return 0;\n}\n'
    assert score(c_code).features["code"] > 0.8
    assert score("SELECT name, email FROM users WHERE id = 3").features["code"] > 0
    assert score("Write a Python function that reverses a list.").features["code"] > 0
    assert score("The weather was lovely; we walked along the river.").features["code"] == 0


def test_prose_punctuation_does_not_read_as_code_operators() -> None:
    # Separate `=`, `:` and `|` must not pair up into `==`, `::` or `||`.
    assert score("Time: 10:30, place: the office. Let a = b, c = d. Tea | coffee | juice.").features["code"] == 0


def test_math_counts_latex_dollars_arithmetic_and_words() -> None:
    assert score(r"Simplify \frac{a}{b} + \sqrt{2}").features["math"] > 0
    assert score("Compute $x^2 + y^2$ for x = 3").features["math"] > 0
    assert score("What is 12 * 7 + 3?").features["math"] > 0
    assert score("Find the derivative and the integral of sin x.").features["math"] == 0.5
    assert score("Solve for x: 3x + 5 = 20").features["math"] > 0


def test_prices_are_not_maths() -> None:
    assert score("The book costs $5 and the pen $10.").features["math"] == 0


@pytest.mark.parametrize(
    "text",
    [
        "Explain why the sky is blue, step by step.",
        "Compare Rust and Go: what are the pros and cons?",
        "Analyse the trade-offs of this design.",
        "Expliquez pourquoi le ciel est bleu, étape par étape.",
        "Explica por qué el cielo es azul, paso a paso.",
        "Erkläre warum der Himmel blau ist, Schritt für Schritt.",
    ],
)
def test_reasoning_cues_in_several_languages(text: str) -> None:
    assert score(text).features["reasoning"] >= 0.5


def test_reasoning_counts_numbered_parts_questions_and_sequences() -> None:
    assert score("1. Read the file.\n2. Count the words.\n3. Print them.").features["reasoning"] == 0.75
    assert score("Why? How? Where? When? Who?").features["reasoning"] == 1.0
    assert score("First read it, then count it, finally print it.").features["reasoning"] == 0.5
    assert score("Then read it, first count it, finally print it.").features["reasoning"] == 0


def test_a_single_question_is_not_a_reasoning_cue() -> None:
    assert score("Where is the station?").features["reasoning"] == 0


def test_adding_cues_never_lowers_a_feature() -> None:
    base = "Please look at this.\n"
    extras = ["Compare the two options.\n", "def f(x):\n    return x;\n", "Compute 3 + 4 and the integral.\n"]
    text = base
    previous = score(text).features
    for extra in extras:
        text += extra
        current = score(text).features
        assert all(current[name] >= previous[name] for name in FEATURES)
        previous = current


def test_cue_density_matters_in_long_prompts() -> None:
    # The same cues weigh less at the end of a long document than on their own.
    question = "What is the plan? Is the design final?"
    document = "The committee met on Tuesday and reviewed the budget for the coming year. " * 80
    assert score(question).features["reasoning"] == 0.75
    assert score(document + question).features["reasoning"] < 0.5


def test_very_long_prompts_are_scored() -> None:
    result = score("Explain why. " + "word " * 100_000 + "Compare them step by step.")
    assert result.features["length"] == 1.0
    assert 0 < result.features["reasoning"] <= 1.0


def test_explain_shows_every_term_and_adds_up() -> None:
    result = score(PYTHON_BUG)
    line = result.explain()
    assert line.startswith(f"{result.score:.2f} = ")
    for name in FEATURES:
        assert f"{name} {result.features[name]:.2f}×{WEIGHTS.as_dict()[name]:.2f}" in line
    assert "\n" not in line


def test_explain_shows_the_divisor_when_weights_do_not_sum_to_one() -> None:
    result = score_complexity(PYTHON_BUG, ComplexityWeights(length=1, code=1, math=1, reasoning=1))
    assert result.explain().endswith(") / 4.00")


def test_default_weights_sum_to_one() -> None:
    assert WEIGHTS.total() == pytest.approx(1.0)


def test_weights_from_a_mapping_override_only_the_given_keys() -> None:
    weights = ComplexityWeights.from_mapping({"code": 0.5, "length": 0})
    assert weights.code == 0.5
    assert weights.length == 0
    assert weights.math == WEIGHTS.math


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"cost": 0.5}, "cost"),
        ({"math": -0.1}, "math"),
        ({"reasoning": float("inf")}, "reasoning"),
        ({"code": "high"}, "code"),
        ({"length": True}, "length"),
    ],
)
def test_invalid_weights_are_refused_naming_the_key(values: dict[str, object], key: str) -> None:
    with pytest.raises(ValueError, match=f"'{key}'"):
        ComplexityWeights.from_mapping(values)  # type: ignore[arg-type]


def test_all_zero_weights_are_refused() -> None:
    with pytest.raises(ValueError, match="all be 0"):
        ComplexityWeights.from_mapping(dict.fromkeys(FEATURES, 0.0))


def test_a_zero_weight_removes_its_feature() -> None:
    result = score_complexity("x" * 8000, ComplexityWeights(length=0, code=1, math=1, reasoning=1))
    assert result.features["length"] == 1.0
    assert result.score == 0.0
