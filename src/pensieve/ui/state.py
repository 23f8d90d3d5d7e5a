"""State of the UI: the shared server client, the settings, widget values that survive page changes.

Streamlit forgets a widget's value when a page without that widget runs; `remember` keeps a copy
under a key of its own so the chat parameters and the model choice are still there on return.
"""

from __future__ import annotations

from typing import Any, TypeVar

import streamlit as st

from pensieve.ui.client import PensieveClient
from pensieve.ui.config import UISettings, load_ui_settings

T = TypeVar("T")


def ui_settings() -> UISettings:
    """The UI's settings, read again on every run (cheap), so an edited `.env` is picked up."""
    return load_ui_settings()


@st.cache_resource(show_spinner=False)
def _shared_client(base_url: str, api_key: str | None, admin_key: str | None) -> PensieveClient:
    return PensieveClient(base_url, api_key, admin_key)


def get_client() -> PensieveClient:
    """The client of the configured server, shared by every session of this UI process."""
    settings = ui_settings()
    return _shared_client(settings.base_url, settings.api_key_value, settings.admin_key_value)


def remember(widget_key: str, default: T) -> T:
    """Seed a widget's state from its remembered value (or `default`) before the widget is drawn.

    Call `keep(widget_key)` after drawing it to remember the new value.
    """
    stored_key = f"kept::{widget_key}"
    if widget_key not in st.session_state:
        st.session_state[widget_key] = st.session_state.get(stored_key, default)
    value: T = st.session_state[widget_key]
    return value


def keep(widget_key: str) -> Any:
    """Remember a widget's current value across page changes; returns it."""
    value = st.session_state.get(widget_key)
    st.session_state[f"kept::{widget_key}"] = value
    return value
