"""Session export: the Markdown a person reads, the JSON a program reads, and a safe file name."""

from __future__ import annotations

import json

from pensieve.sessions.export import filename, render
from pensieve.sessions.records import Session, StoredMessage

SESSION = Session(
    id="sess_abc",
    owner="key:1",
    title='Trip to "Paris"/Lyon\r\nplans',
    model="gemma-3-270m-q4_k_m",
    system_prompt="Be brief.",
    created_at=1_700_000_000.0,
    updated_at=1_700_000_100.0,
    private=True,
    private_kinds=("email",),
    trimmed=0,
    message_count=3,
)
MESSAGES = [
    StoredMessage("msg_1", "sess_abc", 0, "user", "Plan my trip.", 1_700_000_000.0),
    StoredMessage(
        "msg_2",
        "sess_abc",
        1,
        "assistant",
        "Day 1: the Louvre.",
        1_700_000_050.0,
        route="local",
        reason="privacy",
        model="gemma-3-270m-q4_k_m",
        prompt_tokens=20,
        completion_tokens=7,
        latency_ms=1500.0,
        cost_usd=0.0,
        finish_reason="stop",
    ),
    StoredMessage("msg_3", "sess_abc", 2, "assistant", "Day 2:", 1_700_000_060.0, route="local", partial=True),
]


def test_markdown_has_the_title_date_model_and_every_turn() -> None:
    text = render(SESSION, MESSAGES, "md")
    assert text.startswith('# Trip to "Paris"/Lyon plans\n')
    assert "2023-11-14 22:13 UTC" in text and "gemma-3-270m-q4_k_m" in text
    assert "Be brief." in text and "Private: yes (email)" in text
    assert text.index("### User") < text.index("Plan my trip.") < text.index("### Assistant")
    assert "local · gemma-3-270m-q4_k_m · 20 prompt + 7 completion tokens · $0.0000 · 1.5 s · reason: privacy" in text
    assert text.count("partial answer") == 1 and text.index("Day 2:") < text.index("partial answer")


def test_json_is_the_record_and_its_messages() -> None:
    body = json.loads(render(SESSION, MESSAGES, "json"))
    assert body["id"] == "sess_abc" and body["object"] == "session" and "owner" not in body
    assert body["private_kinds"] == ["email"]
    assert [m["id"] for m in body["messages"]] == ["msg_1", "msg_2", "msg_3"]
    assert body["messages"][1]["completion_tokens"] == 7 and body["messages"][2]["partial"] is True


def test_file_names_are_safe() -> None:
    assert filename(SESSION, "md") == "pensieve-trip-to-paris-lyon-plans-20231114.md"
    untitled = Session(**{**SESSION.__dict__, "title": '../../"; rm -rf'})
    assert filename(untitled, "json") == "pensieve-rm-rf-20231114.json"
    nothing = Session(**{**SESSION.__dict__, "title": None})
    assert filename(nothing, "md") == "pensieve-session-20231114.md"
