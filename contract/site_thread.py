"""An aiohttp site on its own thread and event loop: the kiosk screen and the hall board.

Both programs serve a page beside their real work (agent/kiosk/screen.py on a kiosk,
central/board/server.py beside the collector) in the same way: a daemon thread runs an event
loop, ``start`` returns once the site listens (or could not), ``stop`` ends it from any
thread, and a site that cannot start (port taken) is logged with a hint and leaves the
program running. :class:`SiteThread` is that part once; a subclass writes ``_serve``.

Why here in ``contract``: it is the only package that both ``agent/kiosk/screen.py`` and
``central/`` may import (tests/test_imports.py): ``central`` never imports ``agent``, and
``agent`` reaches ``sync`` only from its entry points and agent/link/, which the screen is
not. It stays a leaf (it imports nothing of the project), and aiohttp is a dependency of every
install; nothing in ``contract`` imports this module, so a program that serves no page never
loads aiohttp through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator

from aiohttp import web


def split_listen(listen: str) -> tuple[str, int]:
    """("host", port) of ``host:port``; an IPv6 host may be bracketed (``[::1]:8080``)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


class SiteThread:
    """A site on its own thread and event loop; ``start`` returns once it listens.

    ``name`` names the thread and starts each log line; ``hint`` ends the warning of a site
    that cannot start (what the operator may change). Messages are logged under the
    subclass's module, as they were before this class existed.
    """

    def __init__(self, name: str, listen: str, hint: str):
        self.name = name
        self.listen = listen
        self.hint = hint
        self.error: str | None = None
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._log = logging.getLogger(type(self).__module__)

    def start(self, timeout: float = 10.0) -> bool:
        self._thread = threading.Thread(target=self._main, name=self.name, daemon=True)
        self._thread.start()
        self._started.wait(timeout)
        return self.port is not None

    def stop(self, timeout: float = 5.0) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except Exception as exc:
            # The program's own work goes on without its page: a warning, not an error.
            self.error = str(exc)
            self._log.warning(
                "%s: not serving on %s: %s (%s)", self.name, self.listen, exc, self.hint
            )
        finally:
            self._ended()
            self._started.set()  # ``start`` must not wait out its timeout for a failure

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        await self._serve(self._stop)

    async def _serve(self, stop: asyncio.Event) -> None:
        """Build the app, serve it inside :meth:`_site`, return once ``stop`` is set."""
        raise NotImplementedError

    def _ended(self) -> None:
        """Called on the thread once serving ended, whether it started or not."""

    @contextlib.asynccontextmanager
    async def _site(self, app: web.Application) -> AsyncIterator[str]:
        """Serve ``app`` on ``listen``; yields the host, with :attr:`port` set (port 0 picks
        one). The runner is cleaned up on the way out: a subclass ends its open streams
        before that, inside the block, or the cleanup waits for them."""
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            host, port = split_listen(self.listen)
            await web.TCPSite(runner, host, port).start()
            self.port = runner.addresses[0][1]
            yield host
        finally:
            await runner.cleanup()

    def _listening(self) -> None:
        """Let ``start`` return: the site listens and the subclass has said so."""
        self._started.set()
