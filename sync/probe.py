"""Broker probes for ``check``: one connection attempt, its failure classified with a hint.

Shared by ``hall-agent check`` and ``hall-central check`` (docs/check.md). A technician needs
to know *which* of these went wrong, because each has a different fix:

- ``dns``: the host name does not resolve;
- ``no route``: the network cannot reach the host (cable, VLAN, gateway);
- ``refused``: the host answers but nothing listens on that port (Mosquitto down, wrong port);
- ``timeout``: no answer at all (a firewall dropping packets) or no CONNACK;
- ``TLS failed``: certificate verification (wrong ``ca_file``, name mismatch, expired) or
  the handshake itself (TLS against a plain listener, or the other way round);
- ``auth failed``: the broker refused the user name or password (CONNACK 0x86/0x87,
  MQTT 3.1.1 codes 4/5); the hint names the commands that fix the account in the broker's
  dynamic-security plugin (scripts/hall-broker.sh, docs/broker.md "A refused password");
- ``refused by broker``: any other CONNACK failure.
"""

from __future__ import annotations

import errno
import socket
import ssl
import threading
from dataclasses import dataclass
from typing import Any

from contract.config import MqttSection
from sync.paho_loop import stop_loop

# CONNACK reason codes meaning "who you are is not accepted" (MQTT 5 §3.2.2.2): bad user name
# or password, not authorised, bad auth method. paho's VERSION2 callbacks hand MQTT 3.1.1
# return codes over as these reason codes too (4 as 0x86, 5 as 0x87; 3.1.1 §3.2.2.3).
AUTH_CODES = {0x86, 0x87, 0x8C}


@dataclass(frozen=True)
class BrokerProbe:
    ok: bool
    kind: str  # "connected", "dns", "no route", "refused", "timeout", "TLS failed", ...
    detail: str  # one line, already with its hint

    def line(self) -> str:
        return self.detail if self.ok else f"{self.kind}: {self.detail}"


def _tcp_failure(exc: OSError, host: str, port: int, timeout: float) -> BrokerProbe:
    if isinstance(exc, socket.gaierror):
        return BrokerProbe(
            False,
            "no route / DNS",
            f"cannot resolve {host!r} ({exc.strerror}); check mqtt.url and the DNS server",
        )
    if isinstance(exc, TimeoutError | socket.timeout) or exc.errno == errno.ETIMEDOUT:
        return BrokerProbe(
            False,
            "timeout",
            f"no answer from {host}:{port} within {timeout:.0f} s; a firewall dropping "
            "packets, or the wrong host",
        )
    if exc.errno == errno.ECONNREFUSED:
        return BrokerProbe(
            False,
            "refused",
            f"nothing listens on {host}:{port}; is Mosquitto running, and is this its "
            "listener port (1883 plain, 8883 TLS)?",
        )
    if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL):
        return BrokerProbe(
            False,
            "no route / DNS",
            f"no route to {host}:{port} ({exc.strerror}); check the network cable, "
            "address and gateway",
        )
    return BrokerProbe(False, "cannot connect", f"{host}:{port}: {exc.strerror or exc}")


def _tls_failure(exc: ssl.SSLError, section: MqttSection) -> BrokerProbe:
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = exc.verify_message or getattr(exc, "reason", None) or str(exc)
        return BrokerProbe(
            False,
            "TLS failed",
            f"certificate verify failed: {why}; mqtt.ca_file "
            f"({section.ca_file or 'system CAs'}) must hold the CA that signed the broker's "
            f"certificate, and the certificate must name {section.host!r}",
        )
    why = getattr(exc, "reason", None) or exc.strerror or str(exc)
    return BrokerProbe(
        False,
        "TLS failed",
        f"handshake failed: {why}; is {section.host}:{section.port} a TLS listener "
        "(mqtts:// needs one, mqtt:// must not)?",
    )


def refused_login_hint(section: MqttSection, add_account: str) -> str:
    """What to do when the broker refuses this login.

    The hall's broker keeps its accounts in Mosquitto's dynamic-security plugin, written by
    scripts/hall-broker.sh (docs/broker.md), not in a password file. ``add_account`` is the
    script's command that creates this account, without its PASSWORD_FILE argument
    (``add-device SITE DEVICE`` or ``add-collector NAME``).
    """
    if not section.username:
        return (
            "mqtt.username is not set, and the hall's broker has no anonymous access: set "
            "mqtt.username and mqtt.password_file to this program's own account (docs/broker.md)"
        )
    user = section.username
    if section.password_file is None and section.password is None:
        where = "mqtt.password_file is not set; set it to a file holding the account's password"
    elif section.password_file is None:
        where = f"the password given must be the password of the broker's account {user!r}"
    else:
        where = (
            f"the password in mqtt.password_file ({section.password_file}) must be the "
            f"password of the broker's account {user!r}"
        )
    return (
        f"{where}. On the broker's host, with a copy of that file as FILE (docs/broker.md, "
        f'"A refused password"): `scripts/hall-broker.sh set-password {user} FILE` if the '
        f"account exists, `scripts/hall-broker.sh {add_account} FILE` if it does not"
    )


def probe_broker(
    section: MqttSection, client_id: str, timeout: float = 5.0, add_account: str | None = None
) -> BrokerProbe:
    """Connect once and wait for the CONNACK; never raises.

    ``add_account``: the scripts/hall-broker.sh command that creates this login's account
    (see :func:`refused_login_hint`); a refused login names it.
    """
    from sync.mqtt import connect_kwargs, describe_rc, make_client

    host, port = section.host, section.port
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        return _tcp_failure(exc, host, port, timeout)
    result: dict[str, Any] = {}
    done = threading.Event()
    client = make_client(section, client_id)

    def on_connect(_c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        result["rc"] = rc
        done.set()

    def on_disconnect(_c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        result.setdefault("rc", rc)
        done.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    # paho blocks in connect() (TCP, then the TLS handshake) for up to its connect_timeout.
    client.connect_timeout = timeout
    try:
        client.connect(**connect_kwargs(section))
    except ssl.SSLError as exc:
        return _tls_failure(exc, section)
    except OSError as exc:
        if section.tls and exc.errno in (errno.ECONNRESET, errno.EPIPE, None):
            # TCP was fine a moment ago: a plain listener hangs up on a ClientHello.
            return _tls_failure(ssl.SSLError(exc.errno, exc.strerror or str(exc)), section)
        return _tcp_failure(exc, host, port, timeout)
    client.loop_start()
    try:
        if not done.wait(timeout):
            return BrokerProbe(
                False,
                "timeout",
                f"{host}:{port} accepted TCP but sent no CONNACK within {timeout:.0f} s; "
                "is it an MQTT listener (and mqtts:// vs mqtt:// right)?",
            )
        rc = result["rc"]
        v5 = section.protocol == "5"
        if getattr(rc, "is_failure", False):
            if rc.value in AUTH_CODES:
                return BrokerProbe(
                    False,
                    "auth failed",
                    f"the broker refused user {section.username!r}: {describe_rc(rc)}; "
                    + refused_login_hint(
                        section, add_account or f"add-device SITE {section.username or 'DEVICE'}"
                    ),
                )
            return BrokerProbe(False, "refused by broker", describe_rc(rc))
        proto = "MQTT 5" if v5 else "MQTT 3.1.1"
        tls = ", TLS verified" if section.tls else ""
        return BrokerProbe(True, "connected", f"{host}:{port}: {proto} connected{tls}")
    finally:
        client.disconnect()
        stop_loop(client)


def probe_acl(
    section: MqttSection,
    client_id: str,
    subscribe: list[str],
    publish: list[str],
    timeout: float = 5.0,
    retained_wait: float = 1.0,
) -> list[tuple[str, bool, bool, str]]:
    """Subscribe to each filter and publish (QoS 1, empty, not retained) to each topic once.

    Returns ``(what, ok, warn, detail)`` per filter and topic.

    - A refused publish shows in the MQTT 5 PUBACK (Mosquitto answers 0x87 not authorised);
      MQTT 3.1.1 cannot say it, so such a probe is only a warning.
    - Mosquitto grants every SUBSCRIBE and applies the read ACL to each message it would
      deliver (docs/check.md): a granted subscription proves nothing. Read access is proven
      only by a message arriving, e.g. a device's retained status; a filter that receives
      nothing within ``retained_wait`` is a warning, not a pass.
    """
    from sync.mqtt import connect_kwargs, describe_rc, make_client

    v5 = section.protocol == "5"
    client = make_client(section, client_id)
    connected = threading.Event()
    subacks: dict[int, list[Any]] = {}
    pubacks: dict[int, Any] = {}
    received: dict[str, int] = {}
    changed = threading.Condition()
    who = section.username or "this user"

    def on_connect(_c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if not getattr(rc, "is_failure", False):
            connected.set()

    def on_subscribe(_c: Any, _u: Any, mid: int, rcs: Any, _p: Any) -> None:
        with changed:
            subacks[mid] = list(rcs)
            changed.notify_all()

    def on_publish(_c: Any, _u: Any, mid: int, rc: Any, _p: Any) -> None:
        with changed:
            pubacks[mid] = rc
            changed.notify_all()

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        import paho.mqtt.client as paho

        for topic in subscribe:
            plain = topic.split("/", 2)[2] if topic.startswith("$share/") else topic
            if paho.topic_matches_sub(plain, msg.topic):
                with changed:
                    received[topic] = received.get(topic, 0) + 1

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_publish = on_publish
    client.on_message = on_message
    out: list[tuple[str, bool, bool, str]] = []
    try:
        client.connect(**connect_kwargs(section))
    except (OSError, ssl.SSLError) as exc:
        return [("acl", False, False, f"cannot connect: {exc}")]
    client.loop_start()
    try:
        if not connected.wait(timeout):
            return [("acl", False, False, "not connected (see the broker probe)")]
        sub_mids = {topic: client.subscribe(topic, qos=1)[1] for topic in subscribe}
        pub_mids = {topic: client.publish(topic, b"", qos=1, retain=False).mid for topic in publish}
        wanted = set(sub_mids.values()) | set(pub_mids.values())
        with changed:
            changed.wait_for(lambda: wanted <= set(subacks) | set(pubacks), timeout)
        # Retained messages follow the SUBACK: give them a moment.
        threading.Event().wait(retained_wait)
        for topic, mid in sub_mids.items():
            what = f"subscribe {topic}"
            rcs = subacks.get(mid)
            if rcs is None:
                out.append((what, False, False, f"no SUBACK within {timeout:.0f} s"))
            elif any(getattr(rc, "is_failure", False) for rc in rcs):
                detail = f"refused ({describe_rc(rcs[0])}); the ACL must let {who} read it"
                out.append((what, False, False, detail))
            elif received.get(topic):
                out.append((what, True, False, f"read: {received[topic]} messages arrived"))
            else:
                out.append(
                    (
                        what,
                        True,
                        True,
                        "granted, but Mosquitto checks read access per message and none "
                        f"arrived; make sure the ACL lets {who} read it (`hall-agent ping` "
                        "from a device proves the whole path)",
                    )
                )
        for topic, mid in pub_mids.items():
            what = f"publish {topic}"
            rc = pubacks.get(mid)
            if rc is None:
                out.append((what, False, False, f"no PUBACK within {timeout:.0f} s"))
            elif getattr(rc, "is_failure", False):
                detail = f"refused ({describe_rc(rc)}); the ACL must let {who} write it"
                out.append((what, False, False, detail))
            elif not v5:
                out.append((what, True, True, "unknown: MQTT 3.1.1 cannot report a refusal"))
            else:
                out.append((what, True, False, "allowed"))
        return out
    finally:
        client.disconnect()
        stop_loop(client)
