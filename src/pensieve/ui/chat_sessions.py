"""The chat's conversations: the sidebar list (new, switch, rename, delete, export) and the files kept for one.

The server stores every conversation; the page only remembers which one is open, in the URL
(`?session=sess_...`), so a reload or the same link in another browser opens it again.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from pensieve.ui.client import PensieveClient, ServerError
from pensieve.ui.format import human_bytes
from pensieve.ui.state import keep, remember
from pensieve.ui.widgets import persistence_note, show_error

PARAM = "session"
NEW = "new"  # the files picked before the first message, when the conversation does not exist yet


def selected_session() -> str | None:
    """The open conversation's id, from the URL."""
    value = st.query_params.get(PARAM)
    return value or None


def open_session(session_id: str | None) -> None:
    """Open `session_id` (None: a new, empty chat) by writing it into the URL."""
    if session_id:
        st.query_params[PARAM] = session_id
    elif PARAM in st.query_params:
        del st.query_params[PARAM]


def _actions(client: PensieveClient, session: dict[str, Any]) -> None:
    """Rename, delete and export the open conversation."""
    session_id = session["id"]
    with st.container(horizontal=True, gap="small"):
        with st.popover("Rename", icon=":material/edit:"):
            title = st.text_input("Title", value=session.get("title") or "", key=f"chat_rename_{session_id}")
            if st.button("Save", key="chat_rename_save") and title.strip():
                try:
                    client.update_session(session_id, title=title.strip())
                except ServerError as error:
                    show_error(error, "Renaming the conversation")
                else:
                    st.rerun()
        with st.popover("Delete", icon=":material/delete:"):
            st.caption("The conversation and its messages are deleted on the server.")
            if st.button("Delete for good", key="chat_delete", type="primary"):
                try:
                    client.delete_session(session_id)
                except ServerError as error:
                    show_error(error, "Deleting the conversation")
                else:
                    open_session(None)
                    st.rerun()
    with st.container(horizontal=True, gap="small"):
        for format, label, mime in (("md", "Markdown", "text/markdown"), ("json", "JSON", "application/json")):
            try:
                name, data = client.export_session(session_id, format)
            except ServerError as error:
                show_error(error, "Exporting the conversation")
                continue
            st.download_button(
                label, data, file_name=name, mime=mime, key=f"chat_export_{format}", icon=":material/download:"
            )


def sessions_sidebar(client: PensieveClient) -> str | None:
    """Draw the conversations in the sidebar; returns the open one's id (None: a new chat)."""
    selected = selected_session()
    with st.sidebar:
        st.markdown("**Conversations**")
        if st.button("New chat", icon=":material/add_comment:", key="chat_new", use_container_width=True):
            open_session(None)
            st.rerun()
        try:
            sessions = client.sessions()
        except ServerError as error:
            show_error(error, "Listing the conversations")
            return selected
        for session in sessions:  # most recently active first, as the server lists them
            is_open = session["id"] == selected
            count = session.get("message_count", 0)
            if st.button(
                session.get("title") or "Untitled",
                key=f"chat_session_{session['id']}",
                type="primary" if is_open else "tertiary",
                icon=":material/lock:" if session.get("private") else ":material/chat:",
                help=f"{count} messages" + (" · private: stays on this machine" if session.get("private") else ""),
                use_container_width=True,
            ):
                open_session(session["id"])
                st.rerun()
            if is_open:
                _actions(client, session)
        if not sessions:
            st.caption("No conversations yet: your first message starts one.")
        persistence_note(client, "Conversations")
    return selected


def session_files(client: PensieveClient, session_id: str | None) -> list[str]:
    """The uploaded files used for every message of this conversation (a picker in a popover); their ids.

    The choice is the session's `file_ids` on the server (PATCHed when it changes), so it survives a
    reload and shows in another browser; before the first message it waits in the page's state.
    """
    key = f"chat_files::{session_id or NEW}"
    with st.popover("Files", icon=":material/attach_file:", use_container_width=True):
        try:
            files = client.files()
            stored = list(client.session(session_id).get("file_ids") or []) if session_id else None
        except ServerError as error:
            show_error(error, "Listing the files")
            return []
        by_id = {record["id"]: record for record in files}
        # A file deleted since it was picked is dropped: the server would refuse the whole request for it.
        kept: list[str] = remember(key, stored if stored is not None else [])
        st.session_state[key] = [file_id for file_id in kept if file_id in by_id]
        st.multiselect(
            "Use these files for every message of this chat",
            list(by_id),
            key=key,
            format_func=lambda file_id: f"{by_id[file_id]['filename']} · {human_bytes(by_id[file_id].get('bytes'))}",
            placeholder="Upload files on the Files page or with the chat box's clip",
        )
    picked: list[str] = keep(key) or []
    if session_id and stored is not None and picked != stored:
        try:
            client.update_session(session_id, file_ids=picked)
        except ServerError as error:
            show_error(error, "Attaching the files to the conversation")
    return picked


def carry_new_files(client: PensieveClient, session_id: str) -> None:
    """The files picked before the first message now belong to the conversation that message created."""
    picked = st.session_state.get(f"kept::chat_files::{NEW}") or []
    if picked:
        try:
            client.update_session(session_id, file_ids=list(picked))
        except ServerError as error:
            show_error(error, "Attaching the files to the conversation")
    st.session_state[f"kept::chat_files::{session_id}"] = list(picked)
    st.session_state[f"kept::chat_files::{NEW}"] = []
    st.session_state.pop(f"chat_files::{NEW}", None)
