"""Greedy decoding under logit biases with numpy (`GreedyArgmax`): the same token as applying every bias
to the row and taking its first maximum, whether or not the fast path (biases not applied) is taken, and
the row left as it was. Pure numpy: the sampler chain it stands in for runs in the live tests."""

from __future__ import annotations

import numpy as np
import pytest

from pensieve.engine.llamacpp.sampling import NEG_INF, GreedyArgmax

VOCAB = 4096


def reference(logits: np.ndarray, tokens: list[int], biases: list[float]) -> int:
    """The argmax of the row with every (token, bias) pair added, duplicates summed."""
    biased = logits.astype(np.float64)
    for token, bias in zip(tokens, biases, strict=True):
        biased[token] += bias
    return int(biased.argmax())


@pytest.mark.parametrize("seed", range(40))
def test_picks_the_biased_argmax_and_leaves_the_row_unchanged(seed: int) -> None:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=VOCAB).astype(np.float32)
    top = int(logits.argmax())
    # Bans (sometimes the unbiased winner among them), negative and, in half the cases, positive biases,
    # with a token listed twice.
    banned = [*rng.choice(VOCAB, 300, replace=False).tolist(), *([top] if seed % 3 == 0 else [])]
    tokens = [*banned, 7, 7, 11]
    biases = [NEG_INF] * len(banned) + [-0.5, -0.25, 3.0 if seed % 2 else -1.0]
    before = logits.copy()
    picked = GreedyArgmax(np.array(tokens, dtype=np.int32), np.array(biases, dtype=np.float32)).pick(logits)
    assert picked == reference(before, tokens, biases)
    assert np.array_equal(logits, before)


def test_a_tie_goes_to_the_first_token_as_without_biases() -> None:
    logits = np.zeros(VOCAB, dtype=np.float32)
    logits[[5, 9]] = 2.0
    lowered = GreedyArgmax(np.array([100], dtype=np.int32), np.array([-1.0], dtype=np.float32))
    assert lowered.pick(logits) == 5
    banned_first = GreedyArgmax(np.array([5], dtype=np.int32), np.array([NEG_INF], dtype=np.float32))
    assert banned_first.pick(logits) == 9


def test_no_biases_is_the_plain_argmax() -> None:
    logits = np.arange(VOCAB, dtype=np.float32)[::-1].copy()
    assert GreedyArgmax(np.array([], dtype=np.int32), np.array([], dtype=np.float32)).pick(logits) == 0
