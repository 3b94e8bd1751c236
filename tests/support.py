"""A private Mosquitto for tests and ``bench/sync.py`` (never used by the agent itself).

Tests that restart the broker, or need an ACL or ``set_tcp_nodelay``, start their own
``mosquitto -c FILE`` on a free loopback port with settings equivalent to the shipped
``config/mosquitto.conf`` and stop it at the end.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from scripts.local_broker import HALL_BROKER, shipped_config
from scripts.loopback import free_port, port_answers


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def make_test_ca(workdir: str | os.PathLike[str]) -> dict[str, Path]:
    """A throw-away CA, a server certificate for 127.0.0.1/localhost and a client one."""
    d = Path(workdir)
    d.mkdir(parents=True, exist_ok=True)

    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    ssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=hall-test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    )
    for name, ext in (
        ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ("client", "extendedKeyUsage=clientAuth"),
    ):
        ssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
        )
        (d / f"{name}.ext").write_text(ext + "\n")
        ssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            f"{name}.crt",
            "-extfile",
            f"{name}.ext",
        )
    for key in d.glob("*.key"):
        key.chmod(0o600)
    return {
        "ca": d / "ca.pem",
        "server_cert": d / "server.crt",
        "server_key": d / "server.key",
        "client_cert": d / "client.crt",
        "client_key": d / "client.key",
    }


class Mosquitto:
    """One mosquitto process on 127.0.0.1:port, configured like config/mosquitto.conf."""

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        port: int | None = None,
        *,
        persistence: bool = False,
        acl_file: str | os.PathLike[str] | None = None,
        password_file: str | os.PathLike[str] | None = None,
        tls: dict[str, str] | None = None,
        extra: str = "",
    ):
        if shutil.which("mosquitto") is None:
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.persistence = persistence
        self.acl_file = acl_file
        self.password_file = password_file
        self.tls = tls  # e.g. {"cafile": …, "certfile": …, "keyfile": …, "require_certificate": …}
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = self.workdir / f"mosquitto-{self.port}.conf"
        self.log = self.workdir / f"mosquitto-{self.port}.log"

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    def _config(self) -> str:
        lines = [
            f"listener {self.port} 127.0.0.1",
            *(f"{key} {value}" for key, value in (self.tls or {}).items()),
            # docs/architecture.md#nagle: without it every request/ack round trip waits ~40 ms.
            "set_tcp_nodelay true",
            "max_queued_messages 1000",
            # A 5000-event batch is well under 4 MiB; the header adds a few bytes.
            "max_packet_size 4194400",
            "message_size_limit 4194304",
            "max_queued_bytes 67108864",
            # mosquitto started as root switches to user "mosquitto", which could not read
            # the test's files: stay who we are.
            f"user {getpass.getuser()}",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if self.password_file:
            lines += ["allow_anonymous false", f"password_file {self.password_file}"]
        else:
            lines.append("allow_anonymous true")
        if self.acl_file:
            lines.append(f"acl_file {self.acl_file}")
        return "\n".join(lines) + "\n" + self.extra

    def start(self, timeout: float = 10.0) -> Mosquitto:
        self.conf.write_text(self._config())
        log = open(self.log, "ab")  # noqa: SIM115 - handed to the child process
        self.proc = subprocess.Popen(
            ["mosquitto", "-c", str(self.conf)], stdout=log, stderr=log, start_new_session=True
        )
        log.close()
        if not port_answers(self.port, timeout, interval=0.02):
            self.stop()
            raise RuntimeError(f"mosquitto did not listen on {self.port}: {self.log.read_text()}")
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class HallBroker(Mosquitto):
    """A mosquitto started with the shipped config/mosquitto.conf (shipped_config) and
    provisioned with the shipped scripts/hall-broker.sh, as docs/broker.md tells a technician.
    ``add_device``/``add_collector`` create accounts; ``url`` is the plain loopback listener,
    ``tls_url`` the TLS one (when ``tls`` is given)."""

    ADMIN = "hall-admin"
    ADMIN_PASSWORD = "admin-pw"

    def __init__(self, workdir: str | os.PathLike[str], *, tls: dict[str, str] | None = None):
        super().__init__(workdir)
        self.hall_tls = tls
        self.tls_port = free_port() if tls else None

    @property
    def tls_url(self) -> str:
        return f"mqtts://127.0.0.1:{self.tls_port}"

    def _config(self) -> str:
        return shipped_config(self.workdir, self.port, tls_port=self.tls_port, tls=self.hall_tls)

    def _secret(self, name: str, password: str) -> Path:
        path = self.workdir / f"{name}.pass"
        path.write_text(password + "\n")
        path.chmod(0o600)
        return path

    def script(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "MOSQUITTO_CTRL_OPTS": f"-h 127.0.0.1 -p {self.port} -u {self.ADMIN} "
            f"-P {self.ADMIN_PASSWORD}",
        }
        result = subprocess.run(
            ["bash", str(HALL_BROKER), *args], env=env, capture_output=True, text=True, timeout=60
        )
        if result.returncode != 0:
            raise RuntimeError(f"hall-broker.sh {' '.join(args)}: {result.stderr.strip()}")
        return result

    def start(self, timeout: float = 10.0) -> HallBroker:
        dynsec = self.workdir / "dynamic-security.json"
        if not dynsec.exists():
            self.script(
                "init", str(dynsec), self.ADMIN, str(self._secret("admin", self.ADMIN_PASSWORD))
            )
            super().start(timeout)
            self.script("setup")
        else:
            super().start(timeout)
        return self

    def add_device(self, site: str, device: str, password: str) -> None:
        self.script("add-device", site, device, str(self._secret(device, password)))

    def add_collector(self, name: str, password: str) -> None:
        self.script("add-collector", name, str(self._secret(name, password)))


def mosquitto_pub(
    port: int, topic: str, payload: bytes | str, *, retain: bool = False
) -> subprocess.CompletedProcess[bytes]:
    """Publish one message (QoS 1) with the ``mosquitto_pub`` client: a peer that shares none
    of the project's code, for contract tests."""
    data = payload.encode("utf-8") if isinstance(payload, str) else payload
    cmd = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-t", topic, "-s"]
    return subprocess.run(
        [*cmd, *(["-r"] if retain else [])],
        input=data,
        check=True,
        timeout=10,
        capture_output=True,
    )


def mosquitto_sub_args(
    port: int, topic: str, *, count: int, timeout: float, extra: tuple[str, ...] = ()
) -> list[str]:
    """Arguments for a ``mosquitto_sub`` peer (QoS 1) that exits after ``count`` messages or
    ``timeout`` seconds; run it with subprocess as the test needs."""
    return [
        "mosquitto_sub",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-q",
        "1",
        "-t",
        topic,
        "-C",
        str(count),
        "-W",
        str(int(timeout)),
        *extra,
    ]


def make_password_file(path: str | os.PathLike[str], users: dict[str, str]) -> Path:
    """A mosquitto password file (hashed with mosquitto_passwd)."""
    p = Path(path)
    p.write_text("")
    for user, password in users.items():
        subprocess.run(["mosquitto_passwd", "-b", str(p), user, password], check=True)
    os.chmod(p, 0o600)
    return p


def agent_config(
    data_dir: str | os.PathLike[str],
    mqtt_url: str,
    *,
    device: str = "pad-a03",
    site: str = "jiedong",
    prefix: str = "hall",
    sync: dict | None = None,
    mqtt: dict | None = None,
    password: str | None = None,
):
    """An AgentConfig for tests and the bench (validated like a TOML file)."""
    from agent.config import AgentConfig

    cfg = AgentConfig.model_validate(
        {
            "device": {"id": device, "site": site, "data_dir": str(data_dir)},
            "mqtt": {"url": mqtt_url, "prefix": prefix, **(mqtt or {})},
            "sync": {"min_free_mb": 0, **(sync or {})},
        }
    )
    cfg.mqtt._password = password  # what load_agent_config reads from mqtt.password_file
    return cfg


def central_config(
    store_url: str,
    mqtt_url: str,
    *,
    prefix: str = "hall",
    mqtt: dict | None = None,
    password: str | None = None,
    **store: str,
):
    from central.config import CentralConfig

    cfg = CentralConfig.model_validate(
        {
            "mqtt": {"url": mqtt_url, "prefix": prefix, **(mqtt or {})},
            "store": {"url": store_url, **store},
        }
    )
    cfg.mqtt._password = password
    return cfg


PG_URL = os.environ.get("HALL_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def pg_available(url: str = PG_URL) -> bool:
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3):
            return True
    except Exception:
        return False


@contextlib.contextmanager
def pg_schema(url: str = PG_URL) -> Iterator[str]:
    """A unique PostgreSQL schema name, dropped (with everything in it) on exit.

    The database is shared with other test suites: each run works in its own schema
    (``[store] pg_schema``) and leaves nothing behind.
    """
    import uuid

    import psycopg

    name = f"hall_test_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
