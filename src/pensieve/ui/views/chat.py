"""Chat page: pick a model (or `auto`), set the generation parameters, talk; every answer says where it ran.

Answers stream from the server and are drawn as Markdown as they arrive. The chat box's send button
turns into a stop button while an answer streams: pressing it stops this script run, the `with` block
around the stream closes the HTTP connection (the server then stops generating within a token), and
the partial answer stays in the conversation marked "stopped". Clicking anything else during an
answer interrupts it the same way, because Streamlit reruns the page on every click.
"""

from __future__ import annotations

import time
from typing import Any

import streamlit as st

from pensieve.ui.chat_support import ModelChoice, answer_badges, answer_record, api_messages, model_choices
from pensieve.ui.client import PensieveClient, ServerError
from pensieve.ui.state import get_client, keep, remember
from pensieve.ui.widgets import badge_row, page_header, show_error

MESSAGES = "chat_messages"
PENDING = "chat_pending_prompt"
SUGGESTIONS = (
    "What is the capital of France?",
    "Write a Python function that reverses a string.",
    "Give me three tips for a good night's sleep.",
)
REDRAW_SECONDS = 0.08
AVATARS = {"user": ":material/person:", "assistant": ":material/neurology:"}


def _choices(client: PensieveClient) -> list[ModelChoice]:
    try:
        return model_choices(client.chat_models())
    except ServerError as error:
        show_error(error, "Listing the models")
        return [ModelChoice("auto", "auto")]


def _defaults(client: PensieveClient) -> dict[str, Any]:
    """The server's default sampling values, fetched once per session."""
    if "chat_server_defaults" not in st.session_state:
        try:
            values = client.settings()["settings"]
        except ServerError:
            values = {}
        st.session_state["chat_server_defaults"] = values
    values = st.session_state["chat_server_defaults"]
    configured_max = int(values.get("PENSIEVE_DEFAULT_MAX_TOKENS") or 0)
    return {
        "temperature": float(values.get("PENSIEVE_DEFAULT_TEMPERATURE", 0.7)),
        "top_p": float(values.get("PENSIEVE_DEFAULT_TOP_P", 0.95)),
        "max_tokens": configured_max or 512,
    }


def _parameters(defaults: dict[str, Any]) -> dict[str, Any]:
    """The generation parameters popover."""
    with st.popover("Parameters", icon=":material/tune:", use_container_width=True):
        remember("chat_temperature", defaults["temperature"])
        st.slider("Temperature", 0.0, 2.0, step=0.05, key="chat_temperature", help="0 = always the likeliest word")
        remember("chat_max_tokens", defaults["max_tokens"])
        st.number_input("Max tokens", 1, 32768, step=64, key="chat_max_tokens", help="Longest answer, in tokens")
        remember("chat_top_p", defaults["top_p"])
        st.slider("Top p", 0.05, 1.0, step=0.05, key="chat_top_p", help="Sample only from the likeliest words")
        remember("chat_system_prompt", "")
        st.text_area("System prompt", key="chat_system_prompt", placeholder="You are a helpful assistant.")
    return {
        "temperature": keep("chat_temperature"),
        "max_tokens": int(keep("chat_max_tokens")),
        "top_p": keep("chat_top_p"),
        "system": keep("chat_system_prompt") or "",
    }


def _toolbar(client: PensieveClient) -> tuple[ModelChoice, list[ModelChoice], dict[str, Any]]:
    choices = _choices(client)
    by_id = {choice.id: choice for choice in choices}
    with st.container(horizontal=True, vertical_alignment="bottom"):
        if remember("chat_model", "auto") not in by_id:
            st.session_state["chat_model"] = choices[0].id
        st.selectbox(
            "Model",
            list(by_id),
            key="chat_model",
            format_func=lambda model_id: by_id[model_id].label,
            width=420,
        )
        model = by_id[keep("chat_model")]
        with st.container(width=180):
            parameters = _parameters(_defaults(client))
        if st.button("New chat", icon=":material/add_comment:", key="chat_new"):
            st.session_state[MESSAGES] = []
            st.rerun()
    return model, choices, parameters


def _draw_answer_footer(record: dict[str, Any]) -> None:
    if record.get("error"):
        st.error(record["error"], icon=":material/error:")
    if record.get("route") or not record.get("error"):
        badge_row(answer_badges(record))
        tokens = record.get("completion_tokens")
        if tokens is not None and record.get("model"):
            st.caption(f"{record['model']} · {record.get('prompt_tokens') or 0} prompt + {tokens} answer tokens")


def _draw_history() -> None:
    for entry in st.session_state[MESSAGES]:
        with st.chat_message(entry["role"], avatar=AVATARS[entry["role"]]):
            st.markdown(entry["content"] or "*(no text)*")
            if entry["role"] == "assistant":
                _draw_answer_footer(entry.get("meta", {}))


def _empty_state() -> None:
    with st.container(border=True):
        st.markdown("#### Ask anything")
        st.markdown(
            "Pensieve answers on this machine and bursts to a cloud model only when a rule says so. "
            "Under every answer you see where it ran, why, how fast and what it cost."
        )
        with st.container(horizontal=True):
            for index, text in enumerate(SUGGESTIONS):
                if st.button(text, key=f"chat_suggestion_{index}", icon=":material/lightbulb:"):
                    st.session_state[PENDING] = text
                    st.rerun()


def _stream_answer(
    client: PensieveClient, model: ModelChoice, choices: list[ModelChoice], parameters: dict[str, Any]
) -> None:
    history = st.session_state[MESSAGES]
    messages = api_messages(parameters["system"], history)
    # The entry is stored before streaming so that a stopped run keeps its partial answer.
    entry: dict[str, Any] = {"role": "assistant", "content": "", "meta": {"stopped": True}}
    history.append(entry)
    with st.chat_message("assistant", avatar=AVATARS["assistant"]):
        body = st.empty()
        body.markdown(":gray[*thinking…*]")
        stream = None
        try:
            with client.stream_chat(
                model.id,
                messages,
                temperature=parameters["temperature"],
                max_tokens=parameters["max_tokens"],
                top_p=parameters["top_p"],
            ) as stream:
                entry["meta"] = {"stopped": True, **answer_record(stream.outcome, choices)}
                shown_at = 0.0
                for piece in stream:
                    entry["content"] += piece
                    # Redraw at most ~12 times a second: a redraw per token makes long answers crawl in the browser.
                    if time.monotonic() - shown_at > REDRAW_SECONDS:
                        body.markdown(entry["content"] + " ▌")
                        shown_at = time.monotonic()
            entry["meta"] = answer_record(stream.outcome, choices)
        except ServerError as error:
            entry["meta"] = {**entry["meta"], "stopped": False, "error": str(error)}
        finally:
            # Stopped (Streamlit ended this run mid-answer): keep the figures measured up to the stop.
            if stream is not None and entry["meta"].get("stopped"):
                entry["meta"] = {**answer_record(stream.outcome, choices), "stopped": True}
        body.markdown(entry["content"] or ("" if entry["meta"].get("error") else "*(no text)*"))
        _draw_answer_footer(entry["meta"])


def render() -> None:
    """Draw the chat page."""
    st.session_state.setdefault(MESSAGES, [])
    page_header("Chat", "Talk to a local model, a cloud model, or let the router decide.")
    client = get_client()
    model, choices, parameters = _toolbar(client)
    # The chat box is pinned to the bottom wherever it is called; read it first to know if this run sends.
    prompt = st.chat_input("Message Pensieve…", submit_mode="stop", key="chat_input")
    prompt = prompt or st.session_state.pop(PENDING, None)
    if not st.session_state[MESSAGES] and not prompt:
        _empty_state()
    _draw_history()
    if isinstance(prompt, str) and prompt.strip():
        st.session_state[MESSAGES].append({"role": "user", "content": prompt})
        with st.chat_message("user", avatar=AVATARS["user"]):
            st.markdown(prompt)
        _stream_answer(client, model, choices, parameters)


if __name__ == "__main__":
    render()
