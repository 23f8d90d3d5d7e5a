"""The UI's plain-Python parts: formatting, the settings form's change detection, the chat records, samples."""

from __future__ import annotations

import pytest

from pensieve.ui.charts import add_sample, throughput_rows
from pensieve.ui.chat_support import (
    answer_badges,
    answer_record,
    api_messages,
    citation_text,
    model_choices,
    pretty_json,
    stored_record,
    tool_call_parts,
    trimmed_note,
)
from pensieve.ui.client import ChatOutcome
from pensieve.ui.config import UISettings
from pensieve.ui.format import duration, failure_text, human_bytes, money, plural, reason_text, route_badge
from pensieve.ui.settings_form import changed_values, label, widget_value

CARDS = [
    {"id": "gemma", "details": {"loaded": True}},
    {"id": "auto", "details": {"route": "auto"}},
    {"id": "fake/big", "details": {"route": "cloud", "price_input_per_million": 2, "price_output_per_million": 8}},
]


def test_formatting() -> None:
    assert human_bytes(253_113_024) == "253.1 MB"
    assert duration(0.25) == "250 ms" and duration(75) == "1 min 15 s"
    assert money(0) == "$0.00" and money(0.00042) == "$0.00042" and money(None) == "no cap"
    assert plural(1, "request") == "1 request" and plural(2, "request") == "2 requests"
    assert reason_text("privacy") == "private data stays on this machine"
    assert route_badge("cloud").color == "blue" and route_badge("local").color == "green"


def test_failure_text_says_which_model_when_what_and_what_to_do() -> None:
    crash = {"id": "gemma", "stage": "serving", "message": "Killed by SIGILL (...); run `pensieve doctor`."}
    text = failure_text({**crash, "at": 1.0, "recovered": False})
    assert text.startswith("**gemma** crashed at ") and "next request for it starts a new worker" in text
    assert text.count("pensieve doctor") == 1, "the hint is not repeated when the message has it"
    recovered = failure_text({**crash, "at": 1.0, "recovered": True, "recovered_at": 2.0})
    assert "a new worker has run it since" in recovered
    load = failure_text({"id": "bad", "stage": "loading", "message": "Model 'bad' cannot be loaded: not GGUF."})
    assert load.startswith("**bad** cannot be loaded") and load.endswith(
        "Run `pensieve doctor` to check the model and the llama.cpp build."
    )


def test_server_url_from_host_and_port() -> None:
    assert UISettings(_env_file=None, host="0.0.0.0", port=9000).base_url == "http://127.0.0.1:9000"  # type: ignore[call-arg]
    url = UISettings(_env_file=None, server_url="http://box:8000/").base_url  # type: ignore[call-arg]
    assert url == "http://box:8000"


def test_settings_form_sends_only_real_changes() -> None:
    types = {"A": "secret", "B": "str", "C": "float", "D": "bool", "E": "str"}
    current = {"A": "sk-…1234", "B": ["x", "y"], "C": 0.6, "D": True, "E": None}
    unchanged = {key: widget_value(types[key], value) for key, value in current.items()}
    assert unchanged["B"] == "x, y" and unchanged["E"] == ""
    assert changed_values(types, current, unchanged) == {}
    edited = {**unchanged, "A": "sk-new-key", "C": 0.5, "B": "x"}
    assert changed_values(types, current, edited) == {"A": "sk-new-key", "C": 0.5, "B": "x"}
    assert label("PENSIEVE_BURST_MAX_LOCAL_WAIT_MS") == "Max local wait (ms)"
    assert label("PENSIEVE_BUDGET_DAILY_USD") == "Daily (USD)"


def test_chat_records_price_cloud_answers() -> None:
    choices = model_choices(CARDS)
    assert [choice.kind for choice in choices] == ["auto", "local", "cloud"]
    cloud = ChatOutcome(route="cloud", reason="explicit", model="fake/big", prompt_tokens=1000, completion_tokens=500)
    assert answer_record(cloud, choices)["cost_usd"] == pytest.approx(0.006)
    stopped = ChatOutcome(route="cloud", model="fake/big")
    assert answer_record(stopped, choices)["cost_usd"] is None
    labels = [badge.label for badge in answer_badges({**answer_record(stopped, choices), "stopped": True})]
    assert "cost unknown" in labels and "stopped" in labels
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]
    assert api_messages("Be brief.", history) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]


def test_throughput_samples() -> None:
    samples: list[dict[str, float]] = []
    stats = {"tokens": {"local_completion_tokens": 0, "cloud_completion_tokens": 0}, "local": []}
    add_sample(samples, stats, now=100.0)
    stats["tokens"] = {"local_completion_tokens": 50, "cloud_completion_tokens": 10}
    add_sample(samples, stats, now=105.0)
    rows = {row["series"]: row["tokens_per_second"] for row in throughput_rows(samples)}
    assert rows["local answers"] == 10.0 and rows["cloud answers"] == 2.0


def test_a_stored_answer_gives_its_badges_the_trimmed_note_and_its_citations() -> None:
    stored = {"route": "cloud", "reason": "explicit", "model": "fake/big", "prompt_tokens": 10,
              "completion_tokens": 40, "latency_ms": 2000.0, "cost_usd": 0.00042, "partial": True}  # fmt: skip
    record = stored_record(stored)
    assert record["latency_s"] == 2.0 and record["tokens_per_second"] == 20.0 and record["stopped"]
    labels = [badge.label for badge in answer_badges(record)]
    assert labels[0] == "Cloud" and "$0.00042" in labels and "stopped" in labels, labels
    assert trimmed_note(0) is None and trimmed_note(None) is None
    assert trimmed_note(1) == "1 earlier message was left out of the prompt (the model's context is full)."
    assert trimmed_note(4) == "4 earlier messages were left out of the prompt (the model's context is full)."
    citation = {"file_id": "file-1", "filename": "harbour.pdf", "location": "page 7", "page": 7, "score": 3.214}
    assert citation_text(citation) == "harbour.pdf · page 7 · score 3.21"
    assert citation_text({"file_id": "file-2", "page": 2}) == "file-2 · page 2"


def test_a_cascaded_answer_shows_how_sure_the_local_model_was() -> None:
    outcome = ChatOutcome(route="local", reason="default", model="gemma", confidence=0.8123)
    labels = [badge.label for badge in answer_badges(answer_record(outcome, []))]
    assert "local model 81% sure" in labels
    plain = ChatOutcome(route="local", reason="default", model="gemma")
    assert not any("sure" in badge.label for badge in answer_badges(answer_record(plain, [])))


def test_the_cascade_line_says_target_sent_share_and_threshold() -> None:
    from pensieve.ui.format import cascade_text

    line = cascade_text({"target_share": 0.3, "realised_share": 0.285, "judged": 200, "threshold_probability": 0.41})
    assert line == "Confidence cascade: target 30% to the cloud · sent 28% of the last 200 · unsure below 41%"
    assert "nothing judged yet" in cascade_text({"target_share": None, "realised_share": None})


def test_an_answer_from_the_trusted_tier_says_so() -> None:
    outcome = ChatOutcome(route="cloud", reason="context", model="cluster/llama", tier="trusted")
    assert answer_badges(answer_record(outcome, []))[0].label == "Trusted cloud"
    assert route_badge("cloud").label == "Cloud"


def test_tool_call_parts_indent_json_arguments_and_keep_the_rest_as_sent() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    assert tool_call_parts(call) == ("get_weather", '{\n  "city": "Paris"\n}', "json")
    broken = {"function": {"name": "f", "arguments": "{city: Paris"}}
    assert tool_call_parts(broken) == ("f", "{city: Paris", "text")
    assert tool_call_parts({}) == ("?", "null", "json")
    assert pretty_json("") == ("", "text") and pretty_json("21 C, sunny") == ("21 C, sunny", "text")
