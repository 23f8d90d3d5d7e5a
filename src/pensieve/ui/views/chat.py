"""Chat page: conversations kept by the server, a model (or `auto`), files as context; every answer says where it ran.

The server stores each conversation (a session): the page shows the open one's stored messages, each
answer with the badges of its stored record (route, reason, model, tokens, latency, cost, "stopped"),
the passages of files it cited, and a note when older messages no longer fit the model's context. The
open conversation's id is in the URL, so a reload or another browser shows it again. A new message is
sent alone with `session_id`: the server puts the history in front and stores the turn.

Answers stream and are drawn as Markdown as they arrive. The chat box's send button turns into a stop
button while an answer streams: pressing it stops this script run, the `with` block around the stream
closes the HTTP connection, the server stops generating and stores the partial answer (shown
"stopped": drawn at once, without the cursor, with its badges; see `_draw_stopped`). Clicking anything
else during an answer interrupts it the same way, because Streamlit reruns the page on every click.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import streamlit as st
from streamlit.delta_generator import DeltaGenerator
from streamlit.runtime.scriptrunner import StopException, add_script_run_ctx, get_script_run_ctx

from pensieve.ui.chat_sessions import (
    carry_new_files,
    open_session,
    selected_session,
    session_files,
    sessions_sidebar,
)
from pensieve.ui.chat_support import (
    ModelChoice,
    answer_badges,
    citation_text,
    model_choices,
    pretty_json,
    stopped_record,
    stored_record,
    tool_call_parts,
    trimmed_note,
)
from pensieve.ui.client import ChatOutcome, PensieveClient, ServerError
from pensieve.ui.state import get_client, keep, remember
from pensieve.ui.widgets import badge_row, page_header, show_error

PENDING = "chat_pending_prompt"
SUGGESTIONS = (
    "What is the capital of France?",
    "Write a Python function that reverses a string.",
    "Give me three tips for a good night's sleep.",
)
REDRAW_SECONDS = 0.08
AVATARS = {"user": ":material/person:", "assistant": ":material/neurology:", "tool": ":material/build:"}


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


def _toolbar(
    client: PensieveClient, session_id: str | None
) -> tuple[ModelChoice, list[ModelChoice], dict[str, Any], list[str]]:
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
        with st.container(width=180):
            file_ids = session_files(client, session_id)
    return model, choices, parameters, file_ids


def _draw_answer_footer(record: dict[str, Any]) -> None:
    if record.get("error"):
        st.error(record["error"], icon=":material/error:")
    if record.get("route") or not record.get("error"):
        badge_row(answer_badges(record))
        tokens = record.get("completion_tokens")
        if tokens is not None and record.get("model"):
            st.caption(f"{record['model']} · {record.get('prompt_tokens') or 0} prompt + {tokens} answer tokens")


def _draw_stored_answer(message: dict[str, Any]) -> None:
    """An answer's footer from its stored record: badges, the trimmed note, the cited passages."""
    _draw_answer_footer(stored_record(message))
    note = trimmed_note(message.get("trimmed"))
    if note:
        st.caption(f":material/content_cut: {note}")
    for citation in message.get("citations") or []:
        st.caption(f":material/description: {citation_text(citation)}")


def _load_conversation(client: PensieveClient, session_id: str | None) -> list[dict[str, Any]]:
    """The open conversation's stored messages (none for a new chat, or when it is gone)."""
    if not session_id:
        return []
    try:
        return list(client.session(session_id).get("messages") or [])
    except ServerError as error:
        if error.code == "session_not_found" or error.status == 404:
            st.warning(
                "This conversation is not on the server any more: it was deleted, or the server restarted "
                "without keeping conversations (PENSIEVE_PERSIST=none). Start a new chat.",
                icon=":material/history_toggle_off:",
            )
            open_session(None)
        else:
            show_error(error, "Loading the conversation")
        return []


def _draw_history(messages: list[dict[str, Any]]) -> None:
    """The stored turns; an agent's (an API client's) tool calls and the results it sent back included."""
    for message in messages:
        role = message["role"]
        if role not in AVATARS:  # the system prompt is a setting, not a turn
            continue
        with st.chat_message(role, avatar=AVATARS[role]):
            if role == "tool":
                st.caption(f":material/output: Result of {message.get('tool_call_id') or 'a tool call'}")
                result, language = pretty_json(message["content"])
                st.code(result or "(empty)", language=language, wrap_lines=True)
                continue
            calls = message.get("tool_calls") or []
            if message["content"] or not calls:
                st.markdown(message["content"] or "*(no text)*")
            for call in calls:
                name, arguments, language = tool_call_parts(call)
                st.caption(f":material/build: Called `{name}` ({call.get('id') or 'no id'})")
                st.code(arguments or "{}", language=language, wrap_lines=True)
            if role == "assistant":
                _draw_stored_answer(message)


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


def _upload_attachments(client: PensieveClient, attached: list[Any]) -> list[str] | None:
    """Upload the files attached to this message; their ids (None when the upload failed, said so)."""
    if not attached:
        return []
    try:
        records = client.upload_files([(item.name, item.getvalue()) for item in attached])
    except ServerError as error:
        show_error(error, "Uploading the attached files")
        return None
    return [record["id"] for record in records]


def _draw_stopped(body: DeltaGenerator, footer: DeltaGenerator, text: str, outcome: ChatOutcome) -> None:
    """Draw an answer stopped mid-way as it now stands: its text without the cursor, and its badges.

    Once Stop is pressed, Streamlit turns every further `st` call of this run's script thread into a
    StopException, and no new run starts before the next click: the answer would keep its cursor and
    have no badges until then. Streamlit checks stop requests in the script thread only, so the final
    state is drawn from a helper thread attached to this run, before the run ends.
    """

    def draw() -> None:
        body.markdown(text or "*(no text)*")
        with footer.container():
            _draw_answer_footer(stopped_record(outcome))

    helper = threading.Thread(target=draw, name="chat-stopped-answer")
    add_script_run_ctx(helper, get_script_run_ctx())
    helper.start()
    helper.join(timeout=5.0)


def _stream_answer(
    client: PensieveClient,
    session_id: str,
    prompt: str,
    model: ModelChoice,
    parameters: dict[str, Any],
    file_ids: list[str],
) -> bool:
    """Stream the answer to the last message; True when it ended (the server stored it), False on an error."""
    system = parameters["system"].strip()
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": prompt})
    with st.chat_message("assistant", avatar=AVATARS["assistant"]):
        body = st.empty()
        footer = st.empty()  # filled only if Stop is pressed; a finished answer is redrawn from the server
        body.markdown(":gray[*thinking…*]")
        text = ""
        try:
            with client.stream_chat(
                model.id,
                messages,
                session_id=session_id,
                file_ids=file_ids,
                temperature=parameters["temperature"],
                max_tokens=parameters["max_tokens"],
                top_p=parameters["top_p"],
            ) as stream:
                shown_at = 0.0
                try:
                    for piece in stream:
                        text += piece
                        # Redraw at most ~12 times a second: a redraw per token makes long answers crawl.
                        if time.monotonic() - shown_at > REDRAW_SECONDS:
                            body.markdown(text + " ▌")
                            shown_at = time.monotonic()
                except StopException:
                    _draw_stopped(body, footer, text, stream.outcome)
                    raise
        except ServerError as error:
            # A failed run stores nothing on the server: the question is shown once, with the reason.
            body.markdown(text)
            st.error(str(error), icon=":material/error:")
            return False
    return True


def _send(
    client: PensieveClient,
    session_id: str | None,
    prompt: str,
    attached: list[Any],
    model: ModelChoice,
    parameters: dict[str, Any],
    file_ids: list[str],
) -> None:
    with st.chat_message("user", avatar=AVATARS["user"]):
        st.markdown(prompt)
        if attached:
            st.caption(":material/attach_file: " + ", ".join(item.name for item in attached))
    message_files = _upload_attachments(client, attached)
    if message_files is None:
        return
    if session_id is None:
        try:
            session_id = str(client.create_session()["id"])  # titled by the server from this first message
        except ServerError as error:
            show_error(error, "Starting the conversation")
            return
        carry_new_files(client, session_id)
        open_session(session_id)
    if _stream_answer(client, session_id, prompt, model, parameters, list(dict.fromkeys(file_ids + message_files))):
        st.rerun()  # draw the turn from the server's stored record, with its badges and citations


def render() -> None:
    """Draw the chat page."""
    page_header("Chat", "Talk to a local model, a cloud model, or let the router decide.")
    client = get_client()
    session_id = sessions_sidebar(client)
    model, _, parameters, file_ids = _toolbar(client, session_id)
    # The chat box is pinned to the bottom wherever it is called; read it first to know if this run sends.
    # Its clip attaches files to this message only; the Files popover attaches them to the conversation.
    submitted = st.chat_input("Message Pensieve…", submit_mode="stop", key="chat_input", accept_file="multiple")
    prompt: Any = submitted.text if submitted is not None and not isinstance(submitted, str) else submitted
    attached = list(submitted.files) if submitted is not None and not isinstance(submitted, str) else []
    prompt = prompt or st.session_state.pop(PENDING, None)
    messages = _load_conversation(client, session_id)
    session_id = selected_session()  # None when the conversation was not found: the message starts a new one
    if not messages and not prompt:
        _empty_state()
    _draw_history(messages)
    if isinstance(prompt, str) and prompt.strip():
        _send(client, session_id, prompt, attached, model, parameters, file_ids)


if __name__ == "__main__":
    render()
