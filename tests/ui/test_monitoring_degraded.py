"""The monitoring page shows a degraded spend ledger (a data folder that cannot hold it) as a warning.

A real server whose PENSIEVE_DATA_DIR lies under a regular file (every path under it fails with
ENOTDIR, which even root cannot get past) keeps its ledger in memory; /ready lists that under
`warnings` and the page, run by Streamlit's AppTest in this process, shows it while still "Ready".
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from ui_support import APP_PATH, point_ui_at

from support.models import ModelsFolder
from support.server import ServerHandle, running_server

pytestmark = pytest.mark.integration


@pytest.fixture
def degraded_server(ui_models: ModelsFolder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerHandle]:
    """A server with an unusable data folder, and the UI of this process pointed at it."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a regular file where the data folder should be")
    env = {"PENSIEVE_DATA_DIR": str(blocker / "data")}
    with running_server("ui-degraded", ui_models, tmp_path / "server", env) as handle:
        point_ui_at(handle.base_url, tmp_path / "ui.env", monkeypatch)
        yield handle


def test_monitoring_warns_that_the_ledger_is_in_memory(degraded_server: ServerHandle) -> None:
    app = AppTest.from_file(str(APP_PATH), default_timeout=90.0).run()
    app = app.switch_page("views/monitoring.py").run()
    assert not app.exception
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics["Server v0.1.0"] == "Ready", metrics
    warnings = [str(element.value) for element in app.warning]
    assert any("spend ledger is kept in memory" in text for text in warnings), warnings
