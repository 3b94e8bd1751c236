"""The fault proxy does what the scenarios rely on: forwards, holds, delivers late, resets."""

from __future__ import annotations

import socket
import socketserver
import threading
import time

import pytest

from tests.faults.proxy import FaultProxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(data)


@pytest.fixture
def echo():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _roundtrip(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = sock.recv(4096)
        if not chunk:
            break
        got += chunk
    return got


def _dead(sock: socket.socket) -> bool:
    """The connection was reset or closed under us."""
    try:
        sock.sendall(b"x")
        return sock.recv(1) == b""
    except OSError:
        return True


def test_pass_hold_release_delay_and_drop(echo):
    with FaultProxy(echo) as proxy:
        a = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        assert _roundtrip(a, b"hello") == b"hello"

        proxy.hold()  # a partition: nothing crosses, the connection stays open
        a.sendall(b"held")
        a.settimeout(0.5)
        with pytest.raises(TimeoutError):
            a.recv(4096)
        proxy.pass_()  # healed: what was sent is delivered late, in order
        a.settimeout(5)
        assert _roundtrip(a, b"+more") == b"held+more"

        proxy.delay(0.2)
        t0 = time.monotonic()
        assert _roundtrip(a, b"slow") == b"slow"
        assert time.monotonic() - t0 >= 0.4  # both directions delayed
        proxy.pass_()

        proxy.drop()  # the link went down hard: reset, and new connections fail
        a.settimeout(5)
        assert _dead(a)
        b = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        b.settimeout(5)
        assert b.recv(1) == b""  # accepted by the kernel, then closed at once
        proxy.pass_()
        c = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        assert _roundtrip(c, b"again") == b"again"
        for s in (a, b, c):
            s.close()
    assert proxy.counters.connections >= 2 and proxy.counters.refused >= 1
