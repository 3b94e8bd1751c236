"""The hall's broker on loopback for the demo hall (docs/demo.md) and the tests.

config/mosquitto.conf as shipped, rewritten for a private ``mosquitto -c FILE`` run as the
current user in a work directory; accounts are made with the shipped scripts/hall-broker.sh,
as docs/broker.md tells a technician. Needs nothing but the standard library.
"""

from __future__ import annotations

import getpass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHIPPED_CONF = REPO / "config" / "mosquitto.conf"
HALL_BROKER = REPO / "scripts" / "hall-broker.sh"
_TLS_KEYS = ("certfile", "keyfile", "cafile", "tls_version")


def shipped_config(
    workdir: Path, port: int, *, tls_port: int | None = None, tls: dict[str, str] | None = None
) -> str:
    """config/mosquitto.conf as shipped, adapted to a private broker (the demo's, a test's):
    loopback ports, the plugin's file and persistence in ``workdir``, log to stderr, run as
    the current user. Every other line (the plugin, use_username_as_clientid, limits) is the
    shipped one."""
    out: list[str] = []
    plugin_found = False
    in_tls_block = False
    for line in SHIPPED_CONF.read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "listener":
            in_tls_block = line.startswith("listener 8883")
        if in_tls_block and tls is None:
            continue  # the whole TLS listener block, its own settings included
        if line.startswith("listener 8883"):
            out.append(f"listener {tls_port} 127.0.0.1")
        elif key in _TLS_KEYS:
            out.append(f"{key} {tls.get(key, value) if tls else value}")
        elif line.startswith("# require_certificate"):
            if tls is not None and tls.get("require_certificate") == "true":
                out.append("require_certificate true")
        elif line.startswith("listener 1883"):
            out.append(f"listener {port} 127.0.0.1")
        elif key == "plugin":
            path = Path(value)
            if not path.exists():  # another distribution's layout
                found = sorted(Path("/usr/lib").rglob("mosquitto_dynamic_security.so"))
                path = found[0] if found else path
            plugin_found = path.exists()
            out.append(f"plugin {path}")
        elif key == "plugin_opt_config_file":
            out.append(f"plugin_opt_config_file {workdir / 'dynamic-security.json'}")
        elif key == "persistence_location":
            out.append(f"persistence_location {workdir}/")
        elif key == "log_dest":
            out.append("log_dest stderr")
        else:
            out.append(line)
    if not plugin_found:
        raise RuntimeError("mosquitto_dynamic_security.so not found (package mosquitto 2.0+)")
    out.append(f"user {getpass.getuser()}")
    return "\n".join(out) + "\n"
