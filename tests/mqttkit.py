"""A plain paho client for broker tests whose every answer is awaited, never slept for.

``Peer.connect`` returns the CONNACK reason, ``subscribe`` the SUBACK reason codes,
``publish`` the PUBACK reason (MQTT 5; 3.1.1 has none to give), and ``disconnects`` records
every disconnect with its reason, so an access refusal is asserted on the broker's own answer.
"""

from __future__ import annotations

import threading
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from sync.paho_loop import stop_loop


class Peer:
    def __init__(
        self,
        port: int,
        username: str,
        password: str,
        *,
        client_id: str = "",
        protocol: str = "5",
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
    ):
        self.v5 = protocol == "5"
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if self.v5 else MQTTProtocolVersion.MQTTv311,
        )
        self.client.username_pw_set(username, password)
        if tls_ca:
            self.client.tls_set(ca_certs=tls_ca, certfile=tls_cert, keyfile=tls_key)
        self.port = port
        self.messages: list[Any] = []
        self.disconnects: list[Any] = []
        self._connack: Any = None
        self._connected = threading.Event()
        self._subacks: dict[int, list[Any]] = {}
        self._pubacks: dict[int, Any] = {}
        self._cond = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.on_message = lambda _c, _u, msg: self.messages.append(msg)

    def _on_connect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        self._connack = rc
        self._connected.set()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        self.disconnects.append(rc)
        self._connected.set()

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, rcs: Any, _p: Any) -> None:
        with self._cond:
            self._subacks[mid] = list(rcs)
            self._cond.notify_all()

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: Any, _p: Any) -> None:
        with self._cond:
            self._pubacks[mid] = rc
            self._cond.notify_all()

    def connect(self, timeout: float = 10.0) -> Any:
        """Connect and return the CONNACK reason code (or the disconnect's)."""
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        if not self._connected.wait(timeout):
            raise TimeoutError("no CONNACK")
        return self._connack if self._connack is not None else self.disconnects[-1]

    def subscribe(self, topic: str, timeout: float = 10.0) -> list[Any]:
        """Subscribe (QoS 1) and return the SUBACK's reason codes."""
        _rc, mid = self.client.subscribe(topic, qos=1)
        with self._cond:
            if not self._cond.wait_for(lambda: mid in self._subacks, timeout):
                raise TimeoutError(f"no SUBACK for {topic}")
            return self._subacks[mid]

    def publish(self, topic: str, payload: bytes | str, timeout: float = 10.0) -> Any:
        """Publish (QoS 1) and return the PUBACK's reason code."""
        info = self.client.publish(topic, payload, qos=1)
        with self._cond:
            if not self._cond.wait_for(lambda: info.mid in self._pubacks, timeout):
                raise TimeoutError(f"no PUBACK for {topic}")
            return self._pubacks[info.mid]

    def close(self) -> None:
        self.client.disconnect()
        stop_loop(self.client)

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def refused(codes: list[Any] | Any) -> bool:
    """True when every reason code is a failure (0x80 and above)."""
    codes = codes if isinstance(codes, list) else [codes]
    return all(getattr(rc, "is_failure", False) for rc in codes)
