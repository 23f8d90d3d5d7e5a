"""Fixtures of the integration suite: a real `pensieve serve` process with the real default model.

The models folder is temporary: the real model (a symlink, or a copy) plus three hostile files,
`not-gguf.gguf` (random bytes), `truncated.gguf` (the first 2 MB of the model) and `empty.gguf`.
The launcher and the models folder come from `tests/support`, shared with the UI suite and the benches.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Mapping
from contextlib import AbstractContextManager

import httpx
import openai
import pytest

from support.checks import make_client
from support.models import ModelsFolder, make_models_folder
from support.server import LIVE_SERVERS, ServerFactory, ServerHandle, running_server


@pytest.fixture(scope="session")
def models_folder(tmp_path_factory: pytest.TempPathFactory) -> ModelsFolder:
    """A models folder with the real model and the `not-gguf`, `truncated` and `empty` model files."""
    return make_models_folder(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def server(models_folder: ModelsFolder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """The suite's main server (PENSIEVE_N_CTX=2048, no API key, default body limit)."""
    with running_server("main", models_folder, tmp_path_factory.mktemp("server-main")) as handle:
        yield handle


@pytest.fixture(scope="session")
def server_factory(models_folder: ModelsFolder, tmp_path_factory: pytest.TempPathFactory) -> ServerFactory:
    """Start extra short-lived servers: `with server_factory("name", {"PENSIEVE_X": "1"}) as srv: ...`."""

    def factory(name: str, extra_env: Mapping[str, str]) -> AbstractContextManager[ServerHandle]:
        return running_server(name, models_folder, tmp_path_factory.mktemp(f"server-{name}"), extra_env)

    return factory


@pytest.fixture(scope="session")
def client(server: ServerHandle) -> Iterator[openai.OpenAI]:
    """`openai.OpenAI` on the main server (no retries, 60 s timeout)."""
    sdk = make_client(server.base_url)
    yield sdk
    sdk.close()


@pytest.fixture(scope="session")
def http(server: ServerHandle) -> Iterator[httpx.Client]:
    """A raw httpx client on the main server, for requests the SDK would not send."""
    with httpx.Client(base_url=server.base_url, timeout=60.0) as raw:
        yield raw


@pytest.fixture(scope="session")
def model_id(server: ServerHandle) -> str:
    """The id of the real model the main server serves."""
    return server.model_id


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the tail of every live server's log to a failing test's report."""
    report = yield
    if report.failed:
        for handle in list(LIVE_SERVERS):
            report.sections.append((f"server '{handle.name}' log (tail)", handle.log_tail()))
    return report
