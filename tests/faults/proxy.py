"""A TCP proxy the fault tests control: the agents' only way to the broker.

It sits between a device and Mosquitto and can, at any moment:

- ``pass_()``: forward bytes as they come;
- ``delay(s)``: forward every chunk ``s`` seconds late, in order (a slow WAN link: the
  added latency is per direction, so a publish → ack round trip grows by about 2·s);
- ``hold()``: keep the connections open but forward nothing and answer no new ones
  (a partition: routers stop forwarding, no RST or FIN reaches either side, the TCP
  connection looks alive until keepalive gives up). What was sent meanwhile is delivered
  when the partition heals, as TCP's retransmission would, unless the sender gave up on the
  connection first (then it is discarded, as the kernel would after its RST);
- ``drop()``: close every connection at once (RST) and refuse new ones (a link that went
  down hard); ``pass_()`` ends it.

asyncio in a background thread; the control methods are thread-safe. Counters tell a test
how many connections were made and how many bytes crossed in each direction.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class ProxyCounters:
    connections: int = 0
    refused: int = 0
    up_bytes: int = 0  # device -> broker
    down_bytes: int = 0  # broker -> device
    held_bytes: int = 0  # sent during a partition


class FaultProxy:
    def __init__(self, target_port: int, *, target_host: str = "127.0.0.1", port: int = 0):
        self.target = (target_host, target_port)
        self.counters = ProxyCounters()
        self._mode = "pass"
        self._delay_s = 0.0
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._ready = threading.Event()
        self._server: asyncio.AbstractServer | None = None
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self.port: int = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)

    # --- control (any thread) ------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        self._ready.wait(5)
        return self

    def pass_(self) -> None:
        self._mode, self._delay_s = "pass", 0.0

    def delay(self, seconds: float) -> None:
        self._delay_s = seconds
        self._mode = "delay"

    def hold(self) -> None:
        self._mode = "hold"

    def drop(self) -> None:
        self._mode = "drop"
        self._call(self._close_all)

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._shutdown)
        self._thread.join(5)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the loop ------------------------------------------------------------------------

    def _call(self, fn: Callable[[], None]) -> None:
        done = threading.Event()

        def run() -> None:
            try:
                fn()
            finally:
                done.set()

        self._loop.call_soon_threadsafe(run)
        done.wait(5)

    def _close_all(self) -> None:
        for w in list(self._writers):
            transport = w.transport
            with contextlib.suppress(Exception):
                # SO_LINGER 0: the peer sees RST, like a link that vanished mid-stream.
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                    )
            transport.abort()
        self._writers.clear()

    def _shutdown(self) -> None:
        self._close_all()
        if self._server is not None:
            self._server.close()
        self._loop.call_soon(self._loop.stop)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._sock.listen(64)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._client, sock=self._sock)
        )
        self._ready.set()
        self._loop.run_forever()
        # Let every connection's coroutines finish before the loop goes away.
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        with contextlib.suppress(Exception):
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        with contextlib.suppress(Exception):
            self._loop.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._mode == "hold":
            # A partition: the SYN got an answer from nobody in particular; nothing flows.
            while self._mode == "hold":
                await asyncio.sleep(0.1)
            self.counters.refused += 1
            writer.transport.abort()
            return
        if self._mode == "drop":
            self.counters.refused += 1
            writer.transport.abort()
            return
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            self.counters.refused += 1
            writer.transport.abort()
            return
        self.counters.connections += 1
        self._writers.update((writer, up_w))
        a = asyncio.ensure_future(self._pump(reader, up_w, "up"))
        b = asyncio.ensure_future(self._pump(up_r, writer, "down"))
        await asyncio.wait((a, b), return_when=asyncio.FIRST_COMPLETED)
        for task in (a, b):
            task.cancel()
        for w in (writer, up_w):
            self._writers.discard(w)
            with contextlib.suppress(Exception):
                w.close()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: str
    ) -> None:
        # One queue per direction keeps order when delaying: a chunk is written no earlier
        # than its arrival time plus the delay in force when it arrived.
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def sender() -> None:
            while True:
                due, data = await queue.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                while self._mode == "hold":
                    await asyncio.sleep(0.05)
                writer.write(data)
                await writer.drain()

        task = asyncio.ensure_future(sender())
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if self._mode == "hold":
                    self.counters.held_bytes += len(data)
                if direction == "up":
                    self.counters.up_bytes += len(data)
                else:
                    self.counters.down_bytes += len(data)
                queue.put_nowait((time.monotonic() + self._delay_s, data))
            # The peer closed: deliver what is queued, then close; during a partition its
            # FIN never arrives, so what is queued is discarded with the connection.
            while not queue.empty() and self._mode != "hold":
                await asyncio.sleep(0.01)
        finally:
            task.cancel()
            with contextlib.suppress(Exception):
                writer.close()
