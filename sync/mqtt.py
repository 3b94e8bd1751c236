"""MQTT client construction and connection keeping, shared by the agent and the collector.

- paho-mqtt 2.x with ``CallbackAPIVersion.VERSION2``; MQTT 5 by default, 3.1.1 as a config
  choice (``mqtt.protocol``); ``mqtts://`` with a CA file and an optional client certificate;
  username and ``password_file`` (the password is read at config load, never logged).
- ``TCP_NODELAY`` on the broker socket through ``on_socket_open``: paho does not set it, and
  with Nagle plus delayed ACKs every request/ack round trip costs ~40 ms
  (docs/architecture.md#nagle).
- :class:`MqttLink` keeps one connection up: exponential backoff from 1 s to 5 s with jitter
  (so a hall of devices coming back after a broker restart does not reconnect in lock-step).
  paho's own reconnect loop has no jitter, so ``reconnect_on_failure`` is off and the link
  reconnects itself; paho's network thread (``loop_start``) runs only while connected.
- Callbacks never block: they run on paho's thread, so users of the link must only hand work
  to a queue from them (docs/architecture.md#mqtt-callbacks).
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from contract.config import MqttSection
from sync.paho_loop import stop_loop
from sync.probe import AUTH_CODES

logger = logging.getLogger(__name__)

BACKOFF_MIN_S = 1.0
# A device must be back within seconds of its broker (issue goal: drained within 5 s of the
# broker being back; docs/reliability.md measured 30 s after a 3-minute outage with a
# 120 s cap). A refused or failed connect costs the broker next to nothing, and the jitter
# still spreads a hall's devices over half the delay.
BACKOFF_MAX_S = 5.0


def _nodelay(_client: paho.Client, _userdata: Any, sock: Any) -> None:
    # docs/architecture.md#nagle: ~40 ms → ~1 ms per publish/ack round trip.
    with contextlib.suppress(OSError, AttributeError):  # not TCP (unix transport): nothing to do
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def make_client(section: MqttSection, client_id: str, *, manual_ack: bool = False) -> paho.Client:
    """A configured but unconnected paho client (TLS, credentials, protocol, TCP_NODELAY)."""
    v5 = section.protocol == "5"
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        # MQTT 3.1.1: a clean session. The outbox, not the broker's session, is the buffer:
        # anything lost with a session is resent after sync.ack_timeout_s (docs/topics.md).
        clean_session=None if v5 else True,
        protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
        reconnect_on_failure=False,
        manual_ack=manual_ack,
    )
    if section.username is not None:
        client.username_pw_set(section.username, section.password)
    if section.tls:
        client.tls_set(
            ca_certs=str(section.ca_file) if section.ca_file else None,
            certfile=str(section.client_cert_file) if section.client_cert_file else None,
            keyfile=str(section.client_key_file) if section.client_key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    client.on_socket_open = _nodelay
    return client


def connect_kwargs(section: MqttSection, receive_maximum: int | None = None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "host": section.host,
        "port": section.port,
        "keepalive": section.keepalive_s,
    }
    if section.protocol == "5":
        kwargs["clean_start"] = True
        if receive_maximum is not None:
            # MQTT 5 §3.1.2.11.3: the broker keeps at most this many QoS 1 messages
            # unacknowledged with us, whatever its own max_inflight_messages says.
            props = Properties(PacketTypes.CONNECT)
            props.ReceiveMaximum = receive_maximum
            kwargs["properties"] = props
    return kwargs


def backoff_delays(
    minimum: float = BACKOFF_MIN_S, maximum: float = BACKOFF_MAX_S, rng: random.Random | None = None
):
    """Yield reconnect delays: doubling from ``minimum`` to ``maximum``, each jittered.

    "Equal jitter": half the nominal delay is fixed, the other half random, so retries spread
    out while a device never hammers the broker faster than ``minimum / 2``.
    """
    rng = rng or random.Random()
    nominal = minimum
    while True:
        yield nominal / 2 + rng.uniform(0, nominal / 2)
        nominal = min(nominal * 2, maximum)


def describe_rc(rc: Any) -> str:
    if isinstance(rc, ReasonCode):
        return f"{rc.getName()} ({rc.value:#04x})"
    if isinstance(rc, MQTTErrorCode):
        return paho.error_string(rc)
    return str(rc)


class MqttLink:
    """One MQTT connection kept up in the background, with jittered exponential backoff.

    ``on_connect(client)`` runs on paho's thread after a successful CONNACK (subscribe there;
    paho's ``subscribe`` does not block); ``on_disconnect(reason)`` after the connection drops.
    ``on_message`` and ``on_publish`` are passed to paho as they are (VERSION2 signatures).
    """

    def __init__(
        self,
        section: MqttSection,
        client_id: str,
        *,
        on_connect: Callable[[paho.Client], None] | None = None,
        on_disconnect: Callable[[str], None] | None = None,
        on_message: Callable[..., None] | None = None,
        on_publish: Callable[..., None] | None = None,
        on_subscribe: Callable[[int, list[Any]], None] | None = None,
        will: tuple[str, bytes, int, bool] | None = None,
        manual_ack: bool = False,
        max_inflight: int = 20,
        max_queued: int = 0,
        receive_maximum: int | None = None,
        name: str = "mqtt",
    ):
        self.section = section
        self.client_id = client_id
        self.name = name
        self.receive_maximum = receive_maximum
        self.client = make_client(section, client_id, manual_ack=manual_ack)
        self.client.max_inflight_messages_set(max_inflight)
        # Bounded: days offline must not grow paho's queue; the outbox is the buffer.
        self.client.max_queued_messages_set(max_queued)
        if will is not None:
            topic, payload, qos, retain = will
            self.client.will_set(topic, payload, qos=qos, retain=retain)
        self._user_connect = on_connect
        self._user_disconnect = on_disconnect
        self._user_subscribe = on_subscribe
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        if on_message is not None:
            self.client.on_message = on_message
        if on_publish is not None:
            self.client.on_publish = on_publish
        self.client.on_subscribe = self._on_subscribe
        self.connected = threading.Event()
        self._down = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        # A refused SUBSCRIBE (ACL) leaves the connection up but the client deaf: kept apart
        # from last_error so that users can report it as a fault.
        self.subscribe_error: str | None = None
        self.connects = 0
        self.last_activity = time.monotonic()
        self.publish_lock = threading.Lock()

    # --- paho callbacks (paho's thread: never block) ------------------------------------

    def _on_connect(
        self,
        client: paho.Client,
        _userdata: Any,
        _flags: Any,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self.last_error = f"broker refused the connection: {describe_rc(reason_code)}"
            if reason_code.value in AUTH_CODES:  # the account, not the network: say where
                self.last_error += (
                    f" for user {self.section.username!r}; `check --only broker` names the fix"
                )
            logger.error("%s: %s", self.name, self.last_error)
            self._down.set()
            return
        self.connects += 1
        self.last_error = None
        self.connected.set()
        logger.info("%s: connected to %s:%s", self.name, self.section.host, self.section.port)
        if self._user_connect is not None:
            self._user_connect(client)

    def _on_subscribe(
        self, _client: paho.Client, _userdata: Any, mid: int, reason_codes: Any, _props: Any
    ) -> None:
        for rc in reason_codes:
            if getattr(rc, "is_failure", False):
                # e.g. 0x87 not authorised: the ACL does not let this client read the topic.
                self.subscribe_error = f"subscription refused: {describe_rc(rc)}"
                logger.error("%s: %s", self.name, self.subscribe_error)
        if self._user_subscribe is not None:
            self._user_subscribe(mid, list(reason_codes))

    def _on_disconnect(
        self,
        _client: paho.Client,
        _userdata: Any,
        _flags: Any,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        was_up = self.connected.is_set()
        self.connected.clear()
        self._down.set()
        if self._stop.is_set():
            return
        why = describe_rc(reason_code)
        if was_up:
            self.last_error = f"disconnected: {why}"
            logger.warning("%s: %s", self.name, self.last_error)
        if self._user_disconnect is not None:
            self._user_disconnect(why)

    # --- the connection keeper ----------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-link", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        delays = backoff_delays()
        while not self._stop.is_set():
            try:
                reached = self._connect_once()
            except Exception:
                # The keeper is the only thing that brings the link back: a bug or a library
                # surprise in one round must cost one backoff, not a device that never
                # reconnects (docs/reliability.md#the-link-keeper).
                logger.exception("%s: connection round failed; retrying", self.name)
                reached = False
            # A connection that reached CONNACK resets the backoff; a refused one does not.
            if reached:
                delays = backoff_delays()
            if not self._stop.is_set():
                self._stop.wait(next(delays))
        with self.publish_lock, contextlib.suppress(Exception):  # best effort on the way out
            self.client.disconnect()
        stop_loop(self.client)

    def _connect_once(self) -> bool:
        """One connection: connect, run paho's network thread until the link drops or the
        link is stopped; True when it reached CONNACK."""
        self.last_activity = time.monotonic()
        self._down.clear()
        try:
            with self.publish_lock:
                self.client.connect(**connect_kwargs(self.section, self.receive_maximum))
        except (OSError, ssl.SSLError, ValueError) as exc:
            where = f"{self.section.host}:{self.section.port}"
            self.last_error = f"cannot connect to {where}: {exc}"
            logger.warning("%s: %s", self.name, self.last_error)
            return False
        before = self.connects
        self.client.loop_start()
        while not self._down.wait(1.0):
            self.last_activity = time.monotonic()
            if self._stop.is_set():
                break
        if not self._stop.is_set():
            stop_loop(self.client)
        return self.connects != before

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._down.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def died(self) -> bool:
        """The keeper thread was started and ended without being stopped."""
        thread = self._thread
        return thread is not None and not thread.is_alive() and not self._stop.is_set()

    def publish(
        self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False
    ) -> paho.MQTTMessageInfo:
        with self.publish_lock:
            return self.client.publish(topic, payload, qos=qos, retain=retain)
