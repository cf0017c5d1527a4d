"""The playground in a real headless browser (Debian's `chromium`), driven over the DevTools
protocol: load the page, type a prompt, press Generate, watch the masked text fill in, and
keep a screenshot (`AIOS_SCREENSHOT=path.png` keeps it somewhere you choose)."""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.serve.conftest import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (scripts/dev setup installs it)")
websockets = pytest.importorskip("websockets.sync.client",
                                 reason="websockets (the DevTools connection) is not installed")


class Page:
    """Just enough of the DevTools protocol: send a command, wait for its answer."""

    def __init__(self, socket) -> None:
        self.socket = socket
        self.ids = itertools.count(1)

    def send(self, method: str, **params):
        number = next(self.ids)
        self.socket.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("id") == number:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")


@pytest.fixture
def browser(tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--remote-debugging-port={port}", f"--user-data-dir={tmp_path / 'profile'}",
         "--window-size=1100,820", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                targets = httpx.get(f"http://127.0.0.1:{port}/json", timeout=5).json()
                page = next(t for t in targets if t["type"] == "page")
                break
            except (httpx.TransportError, StopIteration, ValueError):
                if time.monotonic() > deadline:
                    raise RuntimeError("chromium did not open its DevTools port") from None
                time.sleep(0.2)
        with websockets.connect(page["webSocketDebuggerUrl"], max_size=50_000_000,
                                open_timeout=30) as socket:
            yield Page(socket)
    finally:
        process.terminate()
        process.wait(30)


def test_the_playground_streams_text_with_masks_filling_in(server, browser, tmp_path):
    browser.send("Page.enable")
    browser.send("Page.navigate", url=f"{server}/")
    deadline = time.monotonic() + 60
    while browser.evaluate("document.readyState") != "complete" or not browser.evaluate(
            "document.getElementById('model').options.length"):
        assert time.monotonic() < deadline, "the page did not load its model list"
        time.sleep(0.1)
    browser.evaluate("""(() => {
        document.getElementById('prompt').value = 'The king said unto them';
        document.getElementById('steps').value = 32;
        document.getElementById('tokens').value = 48;
        document.getElementById('go').click();
    })()""")
    seen_masks, statuses, forming = 0, set(), None
    deadline = time.monotonic() + 120
    while True:
        status = browser.evaluate("document.getElementById('status').textContent")
        statuses.add(status)
        masks = browser.evaluate("document.querySelectorAll('#text .mask').length")
        seen_masks = max(seen_masks, masks)
        if forming is None and masks and status.startswith("step ") and int(
                status.split()[1]) >= 10:  # the text half formed: keep that picture too
            forming = browser.send("Page.captureScreenshot", format="png")["data"]
        if status.startswith("done") or "error" in browser.evaluate(
                "document.getElementById('status').className"):
            break
        assert time.monotonic() < deadline, f"no end of the stream; last status {status!r}"
        time.sleep(0.03)
    assert status.startswith("done: "), status
    text = browser.evaluate("document.getElementById('text').textContent")
    # the playground sends no seed, so the tiny model may end its text early (end of text
    # after one word happened): ask only that something was written after the prompt
    assert text.startswith("The king said unto them") and len(text) > len("The king said unto them")
    assert "\u2591" not in text  # every position unmasked at the end
    assert seen_masks > 0, "masked positions were never drawn while the text streamed"
    assert sum(s.startswith("step ") for s in statuses) > 1  # it arrived in several steps
    shot = base64.b64decode(browser.send("Page.captureScreenshot", format="png")["data"])
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    path = Path(os.environ.get("AIOS_SCREENSHOT", tmp_path / "playground.png"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(shot)
    if forming is not None:
        path.with_name(path.stem + "-forming.png").write_bytes(base64.b64decode(forming))
    print(f"screenshot: {path}")
