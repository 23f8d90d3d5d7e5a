"""The chat page's Stop button: the stopped answer is drawn at once without the cursor and with its badges.

Stop makes Streamlit raise StopException at the page's next `st` call and refuse every later one of the
run. The test does what pressing Stop does (a stop request on the running script) while a real answer
streams, then looks at what the page shows when the run has ended.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from streamlit.runtime.scriptrunner import get_script_run_ctx
from ui_support import run_app

from pensieve.ui import client as ui_client
from pensieve.ui.views.chat import REDRAW_SECONDS
from support.server import ServerHandle


def test_a_stopped_answer_loses_its_cursor_and_gets_its_badges(
    ui_environment: ServerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_iter = ui_client.ChatStream.__iter__

    def pressed_stop_after_two_pieces(self: ui_client.ChatStream) -> Iterator[str]:
        for count, piece in enumerate(real_iter(self)):
            yield piece
            if count == 1:
                ctx = get_script_run_ctx()
                assert ctx is not None
                ctx.script_requests.request_stop()  # what the Stop button sends
                time.sleep(REDRAW_SECONDS * 2)  # the page's next redraw is the next `st` call

    monkeypatch.setattr(ui_client.ChatStream, "__iter__", pressed_stop_after_two_pieces)
    app = run_app()
    app.chat_input[0].set_value("Count from one to twenty in words.").run()
    assert not app.exception, app.exception
    answer = [str(element.value) for element in app.chat_message[-1].markdown]
    assert answer and "▌" not in answer[0] and answer[0].strip(), answer
    assert any("stopped" in text for text in answer), answer
    assert any("Local" in text for text in answer), "the route badge is there too"
