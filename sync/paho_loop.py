"""Stopping paho's network thread without losing its race.

paho-mqtt 2.x ``Client.loop_stop()`` reads ``client._thread`` twice (``is None``, then
``.join()``) while the network thread clears it in a ``finally`` as it ends, which it does
on its own after a disconnect. Losing that race raises ``AttributeError: 'NoneType' object
has no attribute 'join'`` in the caller (docs/reliability.md#the-link-keeper).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any


def stop_loop(client: Any) -> None:
    """Stop the client's network thread (``loop_start``) and wait for it to end."""
    thread = getattr(client, "_thread", None)  # taken before paho can clear it
    with contextlib.suppress(AttributeError):  # the race above: the thread is ending anyway
        client.loop_stop()
    if isinstance(thread, threading.Thread) and thread is not threading.current_thread():
        thread.join()
