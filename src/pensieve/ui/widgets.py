"""Small drawing helpers shared by the pages: headers, badge rows, error boxes, the sidebar status, the
note on whether the server keeps conversations and files."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from pensieve.ui.client import PensieveClient, ServerError
from pensieve.ui.format import Badge, duration
from pensieve.ui.state import get_client, ui_settings


def page_header(title: str, subtitle: str) -> None:
    """The page title and one line saying what the page is for."""
    st.title(title, anchor=False)
    st.caption(subtitle)


def badge_row(badges: Sequence[Badge]) -> None:
    """Badges side by side."""
    with st.container(horizontal=True, gap="small"):
        for badge in badges:
            st.badge(badge.label, color=badge.color, icon=badge.icon)


def spec_row(items: Sequence[tuple[str, str]]) -> None:
    """Small label/value pairs side by side (lighter than metrics, for details inside a card)."""
    with st.container(horizontal=True, gap="large"):
        for name, value in items:
            with st.container(width="content", gap=None):
                st.caption(name)
                st.markdown(f"**{value}**")


def show_error(error: ServerError, action: str = "") -> None:
    """A failed call in plain words; `action` says what was being done ("Loading the model")."""
    icon = ":material/cloud_off:" if error.unreachable else ":material/error:"
    prefix = f"{action} failed: " if action else ""
    st.error(prefix + str(error), icon=icon)


def sidebar_status() -> None:
    """The server's address and whether it answers, under the navigation."""
    settings = ui_settings()
    client = get_client()
    with st.sidebar:
        try:
            ready = client.ready()
            system = client.system()
        except ServerError as error:
            st.badge("Server offline", color="red", icon=":material/cloud_off:")
            st.caption(f"{settings.base_url} — {'not answering' if error.unreachable else error}")
            return
        if ready.get("status") == "ready":
            st.badge("Server ready", color="green", icon=":material/check_circle:")
        else:
            st.badge("Server up, no model ready", color="orange", icon=":material/hourglass_top:")
        uptime = duration(system.get("uptime_seconds"))
        st.caption(f"{settings.base_url}  \nPensieve {system.get('version', '?')} · up {uptime}")


def _persist_mode(client: PensieveClient) -> str | None:
    """The server's PENSIEVE_PERSIST (`none` or `sqlite`, from GET /api/system), or None when it cannot be read.

    Read once per browser session.
    """
    if "server_persist_mode" not in st.session_state:
        try:
            mode = client.system().get("persist")
        except (ServerError, AttributeError):
            mode = None
        st.session_state["server_persist_mode"] = None if mode is None else str(mode)
    value: str | None = st.session_state["server_persist_mode"]
    return value


def persistence_note(client: PensieveClient, what: str) -> None:
    """A caption saying plainly whether `what` ("Conversations", "Files") survives a server restart."""
    mode = _persist_mode(client)
    if mode == "sqlite":
        st.caption(f":material/save: {what} are saved on the server's disk (PENSIEVE_PERSIST=sqlite).")
    elif mode is None:
        st.caption(
            f":material/warning: {what} are lost when the server stops unless it runs with "
            "PENSIEVE_PERSIST=sqlite (the default, none, keeps them in memory only)."
        )
    else:
        st.caption(
            f":material/warning: {what} are lost when the server stops: it keeps them in memory only "
            "(PENSIEVE_PERSIST=none). Set PENSIEVE_PERSIST=sqlite to keep them."
        )
