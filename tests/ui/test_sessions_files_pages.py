"""The chat's conversations and the Files page, run by Streamlit's AppTest against the real server and model.

The conversation is the server's: these tests read it back over HTTP (GET /api/sessions/{id}) to check
that what the page shows is what was stored, and that rename and delete reach the server.
"""

from __future__ import annotations

import httpx
import pytest
from streamlit.testing.v1 import AppTest
from ui_support import APP_PATH, APP_TIMEOUT, CLOUD_MODEL, page_texts, run_app

from support.checks import make_client
from support.fake_cloud import FakeCloud
from support.fake_cloud.handler import FAKE_CALL_ID
from support.server import ServerHandle

pytestmark = pytest.mark.integration

FACT_FILE = (
    "Harbour notes\n\nThe harbour of Port Ellery has three piers and a fish market.\n"
    "The lighthouse keeper of Port Ellery is named Orla Quennell.\n"
)
ELF = b"\x7fELF\x02\x01\x01" + bytes(200)


def _stored(server: ServerHandle, session_id: str) -> httpx.Response:
    return httpx.get(f"{server.base_url}/api/sessions/{session_id}", timeout=10)


def test_chat_keeps_conversations_on_the_server_switch_rename_export_delete(ui_environment: ServerHandle) -> None:
    app = run_app()
    assert not app.exception
    assert "PENSIEVE_PERSIST=none" in page_texts(app), "the sidebar says conversations do not survive a restart"

    app.chat_input[0].set_value("What is the capital of France?").run()
    assert not app.exception, app.exception
    first = app.query_params["session"]
    first = first[0] if isinstance(first, list) else first
    assert first.startswith("sess_"), app.query_params
    stored = _stored(ui_environment, first).json()
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant"]
    user, assistant = app.chat_message
    assert user.markdown[0].value == "What is the capital of France?"
    answer = [element.value for element in assistant.markdown]
    assert answer[0] == stored["messages"][1]["content"], "the page shows the stored answer"
    assert any("green-badge" in text and "Local" in text for text in answer), answer
    assert any("why:" in text for text in answer) and any("tok/s" in text for text in answer), answer

    # A second conversation, with the cloud model; the first one stays in the sidebar.
    app.button(key="chat_new").click().run()
    assert len(app.chat_message) == 0 and "session" not in app.query_params
    app.selectbox(key="chat_model").set_value(CLOUD_MODEL).run()
    app.chat_input[0].set_value("Hello cloud").run()
    assert not app.exception, app.exception
    second = app.query_params["session"]
    second = second[0] if isinstance(second, list) else second
    assert second != first
    cloud_answer = [element.value for element in app.chat_message[-1].markdown]
    assert cloud_answer[0].startswith("Echo:"), cloud_answer
    assert any("blue-badge" in text and "Cloud" in text for text in cloud_answer), cloud_answer
    assert len(app.chat_message) == 2, "the new conversation holds only its own turn"
    assert len(app.get("download_button")) == 2, "the open conversation exports as Markdown and JSON"

    # Switch back: the first conversation is drawn from the server again.
    app.button(key=f"chat_session_{first}").click().run()
    assert not app.exception
    assert len(app.chat_message) == 2 and app.chat_message[0].markdown[0].value == "What is the capital of France?"

    app.text_input(key=f"chat_rename_{first}").set_value("Geography")
    app.button(key="chat_rename_save").click().run()
    assert not app.exception
    assert _stored(ui_environment, first).json()["title"] == "Geography"
    assert app.button(key=f"chat_session_{first}").label == "Geography"

    app.button(key="chat_delete").click().run()
    assert not app.exception
    assert _stored(ui_environment, first).status_code == 404
    assert "session" not in app.query_params and len(app.chat_message) == 0
    assert not [button for button in app.button if button.key == f"chat_session_{first}"]

    # Another browser (a fresh AppTest) opening the second conversation's link sees it.
    other = AppTest.from_file(str(APP_PATH), default_timeout=APP_TIMEOUT)
    other.query_params["session"] = second
    other.run()
    assert not other.exception
    assert other.chat_message[0].markdown[0].value == "Hello cloud"


def test_files_page_uploads_lists_previews_and_the_chat_cites_the_file(ui_environment: ServerHandle) -> None:
    app = run_app().switch_page("views/files.py").run()
    assert not app.exception
    assert "PENSIEVE_PERSIST=none" in page_texts(app)
    app.file_uploader[0].set_value(
        [("harbour.txt", FACT_FILE.encode(), "text/plain"), ("tool.pdf", ELF, "application/pdf")]
    ).run()
    assert not app.exception, app.exception
    assert any("Uploaded 1 file: harbour.txt" in str(box.value) for box in app.success), page_texts(app)
    assert any("tool.pdf" in str(box.value) and "cannot be read" in str(box.value) for box in app.error), page_texts(
        app
    )
    listed = [r for r in httpx.get(f"{ui_environment.base_url}/api/files", timeout=10).json()["data"]
              if r["filename"] == "harbour.txt"]  # fmt: skip
    file_id = listed[0]["id"]
    table = app.dataframe[0].value
    row = table[table["name"] == "harbour.txt"].iloc[0]
    assert row["type"] in ("text", "markdown") and row["private"] == "no" and row["size"].endswith(" B"), row

    app.toggle(key=f"files_preview_{file_id}").set_value(True).run()
    assert not app.exception
    assert any("Orla Quennell" in str(text.value) for text in app.text), "the preview shows the extracted text"

    # The chat uses the file for the conversation; the answer lists the passage it was given.
    app.switch_page("views/chat.py").run()
    app.button(key="chat_new").click().run()
    app.multiselect(key="chat_files::new").set_value([file_id]).run()
    app.chat_input[0].set_value("Who is the lighthouse keeper of Port Ellery?").run()
    assert not app.exception, app.exception
    captions = [str(caption.value) for caption in app.chat_message[-1].caption]
    assert any("harbour.txt · lines" in caption and "score" in caption for caption in captions), captions
    session_id = app.query_params["session"]
    session_id = session_id[0] if isinstance(session_id, list) else session_id
    stored = _stored(ui_environment, session_id).json()["messages"][1]
    assert stored["citations"][0]["file_id"] == file_id
    assert app.multiselect(key=f"chat_files::{session_id}").value == [file_id], "the file stays with the chat"

    app.switch_page("views/files.py").run()
    app.button(key=f"files_delete_{file_id}").click().run()
    assert not app.exception
    assert httpx.get(f"{ui_environment.base_url}/api/files/{file_id}", timeout=10).status_code == 404
    assert not [button for button in app.button if button.key == f"files_delete_{file_id}"]


def test_the_chat_shows_an_agents_tool_calls_and_results(ui_environment: ServerHandle, fake_cloud: FakeCloud) -> None:
    """An API client's agent loop in a session (call, result, answer) reads back on the page, turn by turn."""
    sdk = make_client(ui_environment.base_url)
    session_id = httpx.post(f"{ui_environment.base_url}/api/sessions", json={}, timeout=10).json()["id"]
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    question = {"role": "user", "content": "Weather in Paris?"}
    fake_cloud.call_tool("get_weather", '{"city": "Paris"}')
    try:
        sdk.chat.completions.create(
            model=CLOUD_MODEL, messages=[question], tools=[weather], extra_body={"session_id": session_id}
        )
    finally:
        fake_cloud.reset()
    result = {"role": "tool", "tool_call_id": FAKE_CALL_ID, "content": '{"temperature_c": 21}'}
    sdk.chat.completions.create(model=CLOUD_MODEL, messages=[result], extra_body={"session_id": session_id})
    roles = [m["role"] for m in _stored(ui_environment, session_id).json()["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant"]

    app = AppTest.from_file(str(APP_PATH), default_timeout=APP_TIMEOUT)
    app.query_params["session"] = session_id
    app.run()
    assert not app.exception, app.exception
    assert [message.name for message in app.chat_message] == roles
    call, answered = app.chat_message[1], app.chat_message[2]
    assert any("get_weather" in caption.value and FAKE_CALL_ID in caption.value for caption in call.caption)
    assert call.code[0].value == '{\n  "city": "Paris"\n}' and call.code[0].language == "json"
    assert any(FAKE_CALL_ID in caption.value for caption in answered.caption)
    assert answered.code[0].value == '{\n  "temperature_c": 21\n}'
    assert app.chat_message[3].markdown[0].value.startswith("Echo:")
