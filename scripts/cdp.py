"""A minimal client of Chromium's DevTools protocol over one page's WebSocket.

The screenshot scripts (scripts/screenshot_report.py) and the browser tests of the pages
(tests/test_board.py, tests/test_screen.py, tests/test_report_formats.py) drive Debian's
headless ``chromium`` with it: one call at a time, its answer matched by id.
"""

from __future__ import annotations

from typing import Any

import aiohttp


class CdpError(Exception):
    """Chromium answered a call with an error."""


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
