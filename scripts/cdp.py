"""A minimal client of Chromium's DevTools protocol over one page's WebSocket.

The screenshot scripts (scripts/screenshot_report.py) and the browser tests of the pages
(tests/test_board.py, tests/test_screen.py, tests/test_report_formats.py) drive Debian's
headless ``chromium`` with it: one call at a time, its answer matched by id.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

# Headless and quiet: no first-run pages, no update or network chatter beside the page's own.
HEADLESS_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
)


class CdpError(Exception):
    """Chromium answered a call with an error, or did not start its DevTools server."""


@contextlib.contextmanager
def headless_chromium(exe: str, profile: Path, width: int, height: int) -> Iterator[str]:
    """Start ``exe`` headless on a blank page; yield that page's DevTools WebSocket URL;
    stop the browser on the way out."""
    proc = subprocess.Popen(
        [
            exe,
            *HEADLESS_FLAGS,
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            f"--window-size={width},{height}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = _devtools_port(proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as r:
            targets = json.load(r)
        yield next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"]
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _devtools_port(proc: subprocess.Popen[str]) -> int:
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("DevTools listening on ws://"):
            return int(line.split("ws://127.0.0.1:")[1].split("/")[0])
    raise CdpError(f"chromium exited ({proc.wait()}) before its DevTools server started")


class Cdp:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws, self.next_id = ws, 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        while True:
            msg = await self.ws.receive_json()
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise CdpError(f"chromium refused {method}: {msg['error']}")
                return msg["result"]

    async def value(self, expression: str) -> Any:
        """The page's value of a JavaScript expression."""
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")
