"""Which stored turns of a session go into the next prompt: a pure function, so it is tested without a model.

The oldest turns go first, a whole turn at a time (a user message with the answers that followed it),
because chat templates such as Gemma's require the conversation to start with a user message and to
alternate; the system prompt, the latest turns and the new message(s) always stay.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pensieve.engine_api import ChatMessage


def _turns(history: Sequence[ChatMessage]) -> list[list[ChatMessage]]:
    """The history cut before each user message (messages before the first user message are one group)."""
    turns: list[list[ChatMessage]] = []
    for message in history:
        if message.role == "user" or not turns:
            turns.append([message])
        else:
            turns[-1].append(message)
    return turns


def fit_history(
    system: str | None,
    history: list[ChatMessage],
    new: list[ChatMessage],
    count_tokens: Callable[[list[ChatMessage]], int],
    budget: int,
) -> tuple[list[ChatMessage], int]:
    """The messages to send (system prompt, the latest turns that fit, the new messages) and how many
    stored messages were left out.

    `count_tokens` measures a whole prompt (the chat template adds tokens per message, so parts are not
    summed); `budget` is what the prompt may use. When even the system prompt and the new messages do not
    fit, they are returned alone and the engine reports `context_length_exceeded`, in OpenAI's words.
    """
    head = [ChatMessage("system", system)] if system else []
    turns = _turns(history)

    def fits(start: int) -> bool:
        kept = [message for turn in turns[start:] for message in turn]
        return count_tokens([*head, *kept, *new]) <= budget

    # Keeping fewer turns never makes a prompt longer, so the first turn to keep is found by bisection:
    # a few token counts instead of one per turn (each count tokenizes the whole prompt).
    low, high = 0, len(turns)  # turns[high:] (nothing when high == len) is the fallback
    while low < high:
        middle = (low + high) // 2
        if fits(middle):
            high = middle
        else:
            low = middle + 1
    kept = [message for turn in turns[low:] for message in turn]
    return [*head, *kept, *new], len(history) - len(kept)
