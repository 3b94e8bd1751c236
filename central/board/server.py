"""Serves the hall board: the page, its data as JSON, and changes pushed as Server-Sent Events.

aiohttp (docs/board.md, "Why aiohttp"): one maintained asyncio package that is both the
server and, for the tests, the HTTP and WebSocket client; no ASGI server to pair with it, no
C build. SSE rather than WebSocket: the board only listens, and the browser's EventSource
reconnects by itself after a collector restart.

The server reads the store on its own connection (in one worker thread: the stores are
synchronous) once a second and pushes the board to every open page only when it changed;
the browser never polls. The read is also the board's clock: a device that stops being heard
(no new status for ``[board] stale_after_s``) or the hall's closing time changes the board
without any new message, and the next read pushes it. It runs on its own thread and event
loop beside the collector, and a board that cannot start (port taken) is logged and leaves
the collector running.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from central.board import state
from central.config import CentralConfig
from contract.schedule import Schedule
from contract.site_thread import SiteThread

logger = logging.getLogger(__name__)

REFRESH_S = 1.0  # the store is read this often; pages get a push only on a change
KEEPALIVE_S = 15.0  # an SSE comment so proxies and the browser keep the stream open


Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _page() -> bytes:
    return resources.files("central.board").joinpath("page.html").read_bytes()


class Board:
    """The board's state and its subscribers; lives on the server's event loop."""

    def __init__(self, cfg: CentralConfig, store: Any, clock: Clock | None = None):
        self.cfg = cfg
        self.store = store
        self.clock = clock or _utc_now
        self.tz = ZoneInfo(cfg.central.timezone)
        # The hall's hours (设备离线 in them, 未开放 after): the version the kiosks have.
        self.schedule = Schedule(cfg.schedule)
        self.current: str = ""
        self.subscribers: set[asyncio.Queue[str]] = set()
        self.errors = 0
        self._db = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="board-store")

    def _current_schedule(self) -> Schedule:
        from central.schedule_publish import as_published

        latest = self.store.latest_schedule()
        if latest is not None and latest.version != self.schedule.version:
            self.schedule = Schedule.published(as_published(latest))
        return self.schedule

    def technician(self) -> dict[str, Any]:
        """What a technician checks at the board (``/tech``), never shown to the hall."""
        from central.schedule_publish import calendar_warning

        schedule = self._current_schedule()
        today = self.clock().astimezone(self.tz).date()
        notices = [w for w in (calendar_warning(self.cfg.schedule, today),) if w]
        return {
            "schedule_version": schedule.version,
            "notices": notices,
            "store_errors": self.errors,
        }

    def _read(self) -> str:
        self._current_schedule()
        board = state.load(
            self.store,
            self.tz,
            self.cfg.board.site,
            now=self.clock(),
            schedule=self.schedule,
            stale_after_s=self.cfg.board.stale_after_s,
        )
        board["title"] = self.cfg.board.title
        board["rotate_s"] = self.cfg.board.rotate_s
        # The screen's own clock may be UTC (a kiosk PC): the page shows the hall's time.
        board["timezone"] = self.cfg.central.timezone
        return json.dumps(board, ensure_ascii=False, separators=(",", ":"))

    async def refresh(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            text = await loop.run_in_executor(self._db, self._read)
        except Exception as exc:  # a store restarting: keep the last board, try again
            self.errors += 1
            if self.errors == 1 or self.errors % 60 == 0:
                logger.warning("board: cannot read the store: %s", exc)
            return
        if self.errors:
            logger.info("board: store readable again")
            self.errors = 0
        if text != self.current:
            self.current = text
            for queue in list(self.subscribers):
                queue.put_nowait(text)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.refresh()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), REFRESH_S)

    def close(self) -> None:
        self._db.shutdown(wait=True)


BOARD = web.AppKey("board", Board)


async def _index(_request: web.Request) -> web.Response:
    return web.Response(
        body=_page(),
        content_type="text/html",
        charset="utf-8",
        headers={"Cache-Control": "no-store"},
    )


async def _json(request: web.Request) -> web.Response:
    board: Board = request.app[BOARD]
    if not board.current:
        await board.refresh()
    return web.Response(text=board.current or "{}", content_type="application/json")


async def _events(request: web.Request) -> web.StreamResponse:
    board: Board = request.app[BOARD]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    queue: asyncio.Queue[str] = asyncio.Queue()
    board.subscribers.add(queue)
    try:
        if not board.current:
            await board.refresh()
        if board.current:
            await response.write(f"data: {board.current}\n\n".encode())
        while True:
            try:
                text = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if not text:  # the server is stopping
                break
            await response.write(f"data: {text}\n\n".encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        board.subscribers.discard(queue)
    return response


async def _tech(request: web.Request) -> web.Response:
    """The technician view: the schedule version and what needs doing, plain HTML."""
    import html

    board: Board = request.app[BOARD]
    loop = asyncio.get_running_loop()
    info = await loop.run_in_executor(board._db, board.technician)
    version = info["schedule_version"]
    items = "".join(f"<li>{html.escape(n)}</li>" for n in info["notices"]) or "<li>无</li>"
    body = (
        '<!doctype html><html lang="zh-CN"><meta charset="utf-8"><title>技术人员视图</title>'
        "<h1>技术人员视图</h1>"
        f"<p>作息时间版本 (schedule version): {version if version is not None else '未发布'}</p>"
        f"<h2>提醒 (notices)</h2><ul>{items}</ul></html>"
    )
    return web.Response(text=body, content_type="text/html", headers={"Cache-Control": "no-store"})


async def _tech_json(request: web.Request) -> web.Response:
    board: Board = request.app[BOARD]
    info = await asyncio.get_running_loop().run_in_executor(board._db, board.technician)
    return web.json_response(info)


def make_app(board: Board) -> web.Application:
    app = web.Application()
    app[BOARD] = board
    app.router.add_get("/", _index)
    app.router.add_get("/board.json", _json)
    app.router.add_get("/events", _events)
    app.router.add_get("/tech", _tech)
    app.router.add_get("/tech.json", _tech_json)
    return app


class BoardServer(SiteThread):
    """The board on its own thread and event loop; ``start`` returns once it listens.

    A board that cannot start is logged and the collector's job goes on without it."""

    def __init__(self, cfg: CentralConfig, store: Any = None, clock: Clock | None = None):
        super().__init__("board", cfg.board.listen, "set [board] listen, or '' for no board")
        self.cfg = cfg
        self._store = store
        self._clock = clock  # tests set the hall's time; the board reads it once a second

    async def _serve(self, stop: asyncio.Event) -> None:
        from central.store import open_store

        own = self._store is None
        store = self._store or await asyncio.get_running_loop().run_in_executor(
            None,
            open_store,
            self.cfg.store.url,
            self.cfg.store.pg_schema,
            self.cfg.store.password,
            True,
            self.cfg.central.timezone,
        )
        board = Board(self.cfg, store, self._clock)
        try:
            async with self._site(make_app(board)) as host:
                try:
                    logger.info("board: http://%s:%d/", host, self.port)
                    self._listening()
                    await board.run(stop)
                finally:
                    # Open event streams never end by themselves: end them before the runner
                    # waits.
                    for queue in list(board.subscribers):
                        queue.put_nowait("")
        finally:
            board.close()
            if own:
                store.close()
