"""fit_history: which stored turns go into the next prompt (a word counter stands in for the tokenizer)."""

from __future__ import annotations

from pensieve.engine_api import ChatMessage
from pensieve.sessions.history import fit_history

CALLS: list[int] = []


def words(messages: list[ChatMessage]) -> int:
    """One unit per word plus one per message (templates add tokens per message)."""
    CALLS.append(len(messages))
    return sum(len(m.content.split()) + 1 for m in messages)


def user(text: str) -> ChatMessage:
    return ChatMessage("user", text)


def assistant(text: str) -> ChatMessage:
    return ChatMessage("assistant", text)


HISTORY = [user("one one"), assistant("a a"), user("two two"), assistant("b b"), user("three three"), assistant("c c")]
NEW = [user("four four")]


def test_everything_fits() -> None:
    messages, left_out = fit_history("sys", HISTORY, NEW, words, budget=1000)
    assert messages == [ChatMessage("system", "sys"), *HISTORY, *NEW] and left_out == 0


def test_oldest_whole_turns_go_first() -> None:
    # system 2 + new 3 + each pair 6: room for two pairs in 17.
    messages, left_out = fit_history("sys", HISTORY, NEW, words, budget=17)
    assert messages == [ChatMessage("system", "sys"), *HISTORY[2:], *NEW] and left_out == 2
    messages, left_out = fit_history("sys", HISTORY, NEW, words, budget=16)
    assert messages == [ChatMessage("system", "sys"), *HISTORY[4:], *NEW] and left_out == 4


def test_a_pair_is_never_split_to_save_room() -> None:
    # 10 would fit the last answer alone (2+3+3) but not its question too: the whole pair goes.
    messages, left_out = fit_history("sys", HISTORY, NEW, words, budget=10)
    assert messages == [ChatMessage("system", "sys"), *NEW] and left_out == 6
    assert messages[1].role == "user"


def test_system_and_new_are_kept_even_when_they_do_not_fit() -> None:
    messages, left_out = fit_history("a long system prompt", HISTORY, NEW, words, budget=3)
    assert messages == [ChatMessage("system", "a long system prompt"), *NEW] and left_out == 6


def test_no_system_prompt_and_empty_history() -> None:
    assert fit_history(None, [], NEW, words, budget=1) == (NEW, 0)
    assert fit_history("", HISTORY, NEW, words, budget=9) == ([*HISTORY[4:], *NEW], 4)


def test_uneven_history_keeps_turns_starting_with_a_user_message() -> None:
    # an unanswered question (the answer failed), an answer with a follow-up assistant message, a leading system note
    history = [
        ChatMessage("system", "note"),
        user("q1"),
        user("q2 q2"),
        assistant("x"),
        assistant("y"),
        user("q3"),
    ]
    messages, left_out = fit_history(None, history, NEW, words, budget=3 + 7 + 2)
    assert messages == [*history[2:], *NEW] and left_out == 2
    messages, left_out = fit_history(None, history, NEW, words, budget=1000)
    assert messages == [*history, *NEW] and left_out == 0


def test_several_new_messages_stay_together() -> None:
    new = [ChatMessage("system", "now answer in French"), user("five")]
    messages, left_out = fit_history(None, HISTORY, new, words, budget=5 + 2 + 6)
    assert messages == [*HISTORY[4:], *new] and left_out == 4


def test_few_token_counts_for_a_long_history() -> None:
    history = [m for i in range(500) for m in (user(f"q{i}"), assistant(f"a{i}"))]
    CALLS.clear()
    messages, left_out = fit_history("sys", history, NEW, words, budget=2 + 3 + 4 * 10)
    assert len(messages) == 1 + 20 + 1 and left_out == 980
    assert len(CALLS) <= 12  # bisection: about log2(500) counts, not 500
