"""The Models page's Download box: a pull from the fake hub through the server's job, shown to the end; then delete.

Its own server: HF_ENDPOINT is read from the server's environment, which is fixed at launch.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ui_support import page_texts, point_ui_at, run_app

from support.fake_hub import FakeHub, tiny_gguf
from support.models import make_models_folder
from support.server import ServerHandle, running_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hub_ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerHandle, FakeHub]]:
    hub = FakeHub().start()
    hub.add("org/tiny-GGUF", "tiny-Q4_K_M.gguf", tiny_gguf(6 * 1024 * 1024))
    hub.add("org/tiny-GGUF", "tiny-Q8_0.gguf", tiny_gguf(1024 * 1024))
    models = make_models_folder(tmp_path_factory.mktemp("ui-hub-models"), bad=())
    env = {"HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_TELEMETRY": "1"}
    with running_server("ui-hub", models, tmp_path_factory.mktemp("server-ui-hub"), env) as handle:
        yield handle, hub
    hub.stop()


def test_download_box_pulls_with_progress_and_the_model_can_be_deleted(
    hub_ui_server: tuple[ServerHandle, FakeHub], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, _hub = hub_ui_server
    point_ui_at(server.base_url, tmp_path / "ui.env", monkeypatch)
    app = run_app().switch_page("views/models.py").run()
    assert not app.exception
    app.text_input[0].input("org/tiny-GGUF")
    app.text_input[1].input("q8_0")
    next(button for button in app.button if button.label == "Download").click().run()
    assert not app.exception and not app.error, [error.value for error in app.error]
    assert "tiny-Q8_0 is ready" in page_texts(app), page_texts(app)

    app = run_app().switch_page("views/models.py").run()
    assert any(metric.label == "Installed" and metric.value == "2" for metric in app.metric)
    app.button(key="delete_tiny-Q8_0").click().run()
    assert not app.exception and not app.error
    assert any(metric.label == "Installed" and metric.value == "1" for metric in app.metric)

    app.text_input[0].input("org/tiny-GGUF")
    app.text_input[1].input("Q5_K_M")
    next(button for button in app.button if button.label == "Download").click().run()
    errors = " ".join(str(error.value) for error in app.error)
    assert "no GGUF file for quantization Q5_K_M" in errors, errors
