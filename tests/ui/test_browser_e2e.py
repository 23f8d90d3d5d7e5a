"""End to end in a real browser: headless Debian Chromium, driven by Playwright, on the real UI and server.

Opens the UI (`pensieve ui`), sends a chat message, waits for the streamed answer and its route badge,
opens Monitoring and finds the request counted; then uploads a file on the Files page, asks the chat about a
fact only in it, reloads the page and finds the conversation (and the cited file) still there.
Screenshots of every page go to `test-output/ui/`.
Playwright never downloads a browser here: it launches `/usr/bin/chromium` (CI installs it).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from support.server import ServerHandle, free_port

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1440, "height": 1600}
UI_START_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def ui_url(ui_server: ServerHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`pensieve ui` on a free port, pointed at the test server; stopped after the module."""
    work_dir = tmp_path_factory.mktemp("ui-process")
    (work_dir / ".env").write_text("", encoding="utf-8")
    port = free_port()
    env = {key: value for key, value in ui_server.env.items() if not key.startswith("PENSIEVE_")}
    command = [sys.executable, "-m", "pensieve", "ui", "--port", str(port), "--server-url", ui_server.base_url]
    log_path = work_dir / "ui.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=work_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + UI_START_TIMEOUT
        while True:
            assert process.poll() is None, f"the UI exited: {log_path.read_text(errors='replace')}"
            try:
                if httpx.get(f"{url}/_stcore/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"the UI did not start: {log_path.read_text(errors='replace')}"
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def page() -> Iterator[Page]:
    """A page of headless Debian Chromium."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/run does it)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
        finally:
            browser.close()


def _requests_counted(server: ServerHandle) -> int:
    stats = httpx.get(f"{server.base_url}/api/burst/stats", params={"recent": 0}, timeout=10).json()
    return int(sum(stats["requests"]["by_route"].values()))


def _open(page: Page, name: str) -> None:
    page.get_by_role("link", name=name, exact=True).click()
    expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible(timeout=30_000)


def _short_answers(page: Page) -> None:
    """Max tokens 48 in the Parameters popover: the small local model rambles otherwise."""
    page.get_by_role("button", name="Parameters").click()
    max_tokens = page.get_by_test_id("stNumberInputField").and_(page.get_by_label("Max tokens", exact=True))
    max_tokens.fill("48")
    # Enter through the keyboard, on the focused field: a Streamlit rerun can replace the element between the
    # fill and the key (seen once in CI: "element was detached from the DOM"), and a locator press then waited
    # 30 s for a field that was no longer there.
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")


def test_chat_in_the_browser_then_see_it_on_monitoring(
    page: Page, ui_url: str, ui_server: ServerHandle, output_dir: Path
) -> None:
    before = _requests_counted(ui_server)
    page.goto(ui_url)
    chat_box = page.get_by_test_id("stChatInputTextArea")
    expect(chat_box).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Server ready")).to_be_visible(timeout=30_000)

    _short_answers(page)

    chat_box.fill("What is the capital of France?")
    chat_box.press("Enter")
    answer = page.get_by_test_id("stChatMessage").nth(1)
    expect(answer.get_by_text("why:", exact=False)).to_be_visible(timeout=90_000)
    expect(answer.get_by_text(re.compile(r"\bLocal$"))).to_be_visible()
    expect(answer.get_by_text(re.compile(r"tok/s"))).to_be_visible()
    assert answer.inner_text().strip(), "the streamed answer is empty"
    page.screenshot(path=str(output_dir / "chat.png"))

    _open(page, "Monitoring")
    counted = page.get_by_text(re.compile(r"\d+ requests? · \d+ % answered locally"))
    expect(counted).to_be_visible(timeout=30_000)
    total = int(counted.inner_text().split()[0])
    assert total >= before + 1, f"monitoring shows {total} requests, {before} were counted before the chat"
    # Let one automatic refresh add a second sample, so the throughput chart has a line.
    expect(page.get_by_text(re.compile(r"\(([3-9]|\d\d+) so far\)"))).to_be_visible(timeout=20_000)
    page.screenshot(path=str(output_dir / "monitoring.png"))

    for name in ("Models", "Settings", "Files"):
        _open(page, name)
        page.wait_for_timeout(1500)  # charts and fonts settle
        page.screenshot(path=str(output_dir / f"{name.lower()}.png"))


FACT_FILE = (
    "Harbour notes\n\nThe harbour of Port Ellery has three piers and a fish market.\n"
    "The lighthouse keeper of Port Ellery is named Orla Quennell.\n"
)
QUESTION = "Who is the lighthouse keeper of Port Ellery?"


def test_upload_a_file_ask_about_it_reload_and_the_conversation_is_still_there(
    page: Page, ui_url: str, output_dir: Path
) -> None:
    page.goto(ui_url)
    expect(page.get_by_text("Server ready")).to_be_visible(timeout=30_000)
    _open(page, "Files")
    uploader = page.get_by_test_id("stFileUploader").locator("input[type=file]")
    uploader.set_input_files({"name": "port-ellery.txt", "mimeType": "text/plain", "buffer": FACT_FILE.encode()})
    expect(page.get_by_text("Uploaded 1 file: port-ellery.txt")).to_be_visible(timeout=60_000)
    expect(page.get_by_text("PENSIEVE_PERSIST=none", exact=False).first).to_be_visible()
    page.get_by_test_id("stExpander").filter(has_text="port-ellery.txt").first.click()
    page.get_by_text("Show the extracted text").first.click()
    expect(page.get_by_text("Orla Quennell", exact=False).first).to_be_visible(timeout=30_000)
    page.screenshot(path=str(output_dir / "files-uploaded.png"))

    _open(page, "Chat")
    page.get_by_role("button", name="New chat").click()
    _short_answers(page)
    page.get_by_test_id("stPopoverButton").filter(has_text="Files").click()
    page.get_by_test_id("stMultiSelect").click()
    page.get_by_role("option", name=re.compile(r"^port-ellery\.txt")).first.click()
    page.keyboard.press("Escape")
    chat_box = page.get_by_test_id("stChatInputTextArea")
    chat_box.fill(QUESTION)
    chat_box.press("Enter")
    answer = page.get_by_test_id("stChatMessage").nth(1)
    expect(answer.get_by_text("why:", exact=False)).to_be_visible(timeout=120_000)
    expect(answer.get_by_text(re.compile(r"port-ellery\.txt · lines \d+-\d+ · score"))).to_be_visible()
    expect(page).to_have_url(re.compile(r"[?&]session=sess_"), timeout=30_000)
    answer_text = answer.get_by_test_id("stMarkdownContainer").first.inner_text().strip()
    assert answer_text, "the streamed answer is empty"
    page.screenshot(path=str(output_dir / "chat-with-file.png"))

    page.reload()
    question = page.get_by_test_id("stChatMessage").nth(0)
    expect(question.get_by_text(QUESTION)).to_be_visible(timeout=60_000)
    restored = page.get_by_test_id("stChatMessage").nth(1)
    expect(restored.get_by_text(re.compile(r"port-ellery\.txt · lines"))).to_be_visible(timeout=30_000)
    assert restored.get_by_test_id("stMarkdownContainer").first.inner_text().strip() == answer_text
    expect(page.get_by_role("button", name=re.compile(r"^Who is the lighthouse keeper"))).to_be_visible()
    page.screenshot(path=str(output_dir / "chat-after-reload.png"))
