"""Fixtures of the UI suite: a real Pensieve server (real model, fake cloud on loopback) for the UI to talk to.

The server is started with the shared launcher (`tests/support`). Its models folder holds the real model
and one file that is not GGUF, so the Models page shows both kinds. The cloud is the fake one from
`tests/support/fake_cloud`, so the chat can route to a cloud model and the settings show a masked key.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ui_support import CLOUD_KEY, OUTPUT_DIR, point_ui_at

from support.fake_cloud import FakeCloud
from support.models import ModelsFolder, make_models_folder
from support.server import ServerHandle, running_server


@pytest.fixture(scope="session")
def ui_models(tmp_path_factory: pytest.TempPathFactory) -> ModelsFolder:
    """The real model (linked or copied) and `not-gguf.gguf`."""
    return make_models_folder(tmp_path_factory.mktemp("ui-models"), bad=("not-gguf",))


@pytest.fixture(scope="session")
def fake_cloud() -> Iterator[FakeCloud]:
    """An OpenAI-compatible fake cloud on loopback."""
    with FakeCloud(api_key=CLOUD_KEY, chunk_delay=0.005) as cloud:
        yield cloud


@pytest.fixture(scope="session")
def ui_server(
    ui_models: ModelsFolder, fake_cloud: FakeCloud, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerHandle]:
    """The server every UI test talks to."""
    env = fake_cloud.provider_env(
        PENSIEVE_CLOUD_PRICE_INPUT="1.5",
        PENSIEVE_CLOUD_PRICE_OUTPUT="6",
        PENSIEVE_BUDGET_DAILY_USD="2",
        PENSIEVE_BUDGET_MONTHLY_USD="20",
    )
    with running_server("ui", ui_models, tmp_path_factory.mktemp("server-ui"), env) as handle:
        yield handle


@pytest.fixture
def ui_environment(ui_server: ServerHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ServerHandle:
    """Point the UI (run in this process by AppTest) at the test server, away from the developer's .env."""
    point_ui_at(ui_server.base_url, tmp_path / "ui.env", monkeypatch)
    return ui_server


@pytest.fixture(scope="session")
def output_dir() -> Path:
    """Where the end-to-end test saves its screenshots (test-output/ui, not committed)."""
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    return OUTPUT_DIR
