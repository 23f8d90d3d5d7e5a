"""Files page: uploads to use as chat context — not offered by the server yet, and said so plainly.

When the server gains file endpoints, `PensieveClient.files_supported()` turns true; the upload,
list and delete calls then go into the client and this page draws them.
"""

from __future__ import annotations

import streamlit as st

from pensieve.ui.client import ServerError
from pensieve.ui.state import get_client
from pensieve.ui.widgets import page_header, show_error


def render() -> None:
    """Draw the files page."""
    page_header("Files", "Documents to use as context in the chat.")
    try:
        supported = get_client().files_supported()
    except ServerError as error:
        show_error(error, "Asking the server about files")
        return
    if supported:
        st.info(
            "This server offers file endpoints, but this version of the UI cannot manage files yet: "
            "update Pensieve to use them here.",
            icon=":material/upgrade:",
        )
        return
    st.info(
        "File upload arrives with a later release of Pensieve. Then you will upload documents here, "
        "see and delete them, and pick some in the chat to answer from.",
        icon=":material/schedule:",
    )
    st.caption("Nothing is stored: this server has no file endpoints yet.")


if __name__ == "__main__":
    render()
