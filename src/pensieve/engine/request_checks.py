"""Checks of a tokenized request against the model: token ids in the vocabulary, the completion's budget.

Pure functions of numbers, used by LocalEngine (server process) before anything reaches the worker.
"""

from __future__ import annotations

from collections.abc import Sequence

from pensieve.errors import ContextLengthExceededError, InvalidRequestError


def checked_token_ids(tokens: Sequence[int], n_vocab: int, param: str = "prompt") -> list[int]:
    """`tokens` as a list; InvalidRequestError when one is outside the vocabulary."""
    bad = [token for token in tokens if not 0 <= token < n_vocab]
    if bad:
        raise InvalidRequestError(
            f"Token id {bad[0]} is outside the model's vocabulary (0..{n_vocab - 1}).", param=param
        )
    return list(tokens)


def completion_budget(
    *, n_ctx: int, prompt_tokens: int, requested: int | None, default: int, chat: bool, check_context: bool
) -> int:
    """Tokens the completion may have: `requested`, else `default` (0: the rest of the window).

    With `check_context`, a prompt that leaves no room (or less than `requested`) is a 400. max_tokens 0
    (scoring a prompt) generates nothing, so such a prompt may fill the whole window.
    """
    room = n_ctx - prompt_tokens
    full = room < 0 if requested == 0 else room <= 0
    if check_context and (full or (requested is not None and requested > room)):
        raise ContextLengthExceededError.for_request(
            n_ctx=n_ctx, prompt_tokens=prompt_tokens, requested=requested, chat=chat
        )
    if requested is not None:
        return requested
    return max(1, min(default, room) if default > 0 else room)
