"""Files page: upload documents to use as chat context, see what the server read from them, delete them.

Drag and drop (or browse) several files at once; each is uploaded in its own request, so a refused
file (wrong type, too large) is reported by name while the others are kept, and the progress bar moves
per file. The list shows each file's type, size, pages, privacy verdict and date; a file's expander
previews the text the server extracted (what the chat's passages come from) and deletes it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import streamlit as st

from pensieve.ui.client import PensieveClient, ServerError
from pensieve.ui.format import human_bytes, plural
from pensieve.ui.state import get_client
from pensieve.ui.widgets import page_header, persistence_note, show_error

PREVIEW_CHARS = 4000
UPLOADER_ROUND = "files_uploader_round"  # bumped after an upload, which gives an empty uploader
REPORT = "files_upload_report"  # what the last upload did, shown once after the page redraws


def _private_text(record: dict[str, Any]) -> str:
    if not record.get("private"):
        return "no"
    kinds = ", ".join(record.get("private_kinds") or [])
    return f"yes ({kinds})" if kinds else "yes"


def _pages(record: dict[str, Any]) -> str:
    pages, total = record.get("pages"), record.get("total_pages")
    if not pages:
        return "—"
    return f"{pages} of {total}" if total and total != pages else str(pages)


def _date(record: dict[str, Any]) -> str:
    created = record.get("created_at")
    return datetime.fromtimestamp(created).strftime("%Y-%m-%d %H:%M") if created else "—"


def _refusal(name: str, error: ServerError) -> str:
    """A refused upload in plain words, naming the file."""
    if error.status == 415:
        return f"**{name}** was not uploaded: this kind of file cannot be read ({error})."
    if error.status == 413:
        return f"**{name}** was not uploaded: it is too large, or the server's file storage is full ({error})."
    return f"**{name}** was not uploaded: {error}"


def _upload(client: PensieveClient, files: list[Any]) -> None:
    """Upload the dropped files one by one with a progress bar; remember what happened for the next run."""
    done: list[str] = []
    refused: list[str] = []
    progress = st.progress(0.0, text="Uploading…")
    for index, item in enumerate(files):
        progress.progress(index / len(files), text=f"Uploading {item.name} ({index + 1} of {len(files)})…")
        try:
            [record] = client.upload_files([(item.name, item.getvalue())])
        except ServerError as error:
            if error.unreachable:
                refused.append(f"**{item.name}** was not uploaded: {error}")
                break
            refused.append(_refusal(item.name, error))
        else:
            done.append(record["filename"])
    progress.progress(1.0, text="Done")
    st.session_state[REPORT] = (done, refused)
    st.session_state[UPLOADER_ROUND] = st.session_state.get(UPLOADER_ROUND, 0) + 1
    st.rerun()


def _show_report() -> None:
    done, refused = st.session_state.pop(REPORT, ([], []))
    if done:
        st.success(f"Uploaded {plural(len(done), 'file')}: {', '.join(done)}.", icon=":material/check_circle:")
    for message in refused:
        st.error(message, icon=":material/block:")


def _table(files: list[dict[str, Any]]) -> None:
    rows = [
        {
            "name": record["filename"],
            "type": record.get("kind") or "—",
            "size": human_bytes(record.get("bytes")),
            "pages": _pages(record),
            "private": _private_text(record),
            "uploaded": _date(record),
        }
        for record in files
    ]
    st.dataframe(rows, hide_index=True, use_container_width=True)


def _file_card(client: PensieveClient, record: dict[str, Any]) -> None:
    """One file: its notes, a preview of the extracted text, and delete."""
    file_id = record["id"]
    label = f"{record['filename']} · {record.get('kind') or '?'} · {human_bytes(record.get('bytes'))}"
    # A key keeps the card open when the page redraws (opening the preview reruns the page).
    with st.expander(label, key=f"files_card_{file_id}"):
        st.caption(f"{file_id} · {record.get('chars', 0):,} characters of text · private: {_private_text(record)}")
        for note in record.get("notes") or []:
            st.caption(f":material/info: {note}")
        if st.toggle("Show the extracted text", key=f"files_preview_{file_id}"):
            try:
                text = client.file_text(file_id)
            except ServerError as error:
                show_error(error, "Reading the file's text")
            else:
                shown = text[:PREVIEW_CHARS]
                more = len(text) - len(shown)
                st.text(shown + (f"\n\n… and {more:,} more characters" if more > 0 else ""))
        if st.button("Delete", key=f"files_delete_{file_id}", icon=":material/delete:"):
            try:
                client.delete_file(file_id)
            except ServerError as error:
                show_error(error, "Deleting the file")
            else:
                st.rerun()


def render() -> None:
    """Draw the files page."""
    page_header("Files", "Documents to use as context in the chat: upload, check what was read, delete.")
    client = get_client()
    round_number = st.session_state.get(UPLOADER_ROUND, 0)
    dropped = st.file_uploader(
        "Drop files here (PDF, DOCX, text, Markdown, CSV, JSON, HTML, code), several at once",
        accept_multiple_files=True,
        key=f"files_uploader_{round_number}",
    )
    if dropped:
        _upload(client, list(dropped))
    _show_report()
    persistence_note(client, "Uploaded files")
    try:
        files = client.files()
    except ServerError as error:
        show_error(error, "Listing the files")
        return
    if not files:
        st.info("No files yet. In the chat, pick them under *Files* to answer from them.", icon=":material/folder:")
        return
    st.markdown(f"**{plural(len(files), 'file')}**, newest first. Use them in the chat under *Files*.")
    _table(files)
    for record in files:
        _file_card(client, record)


if __name__ == "__main__":
    render()
