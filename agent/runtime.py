"""``hall-agent run``: open the outbox, build the workers this device needs, supervise them.

Which workers run follows from the config: the uplink always; a pad bus per serial port and
the invitation endpoint (``[windows] invite_listen``) when there are ``[[pad]]`` tables; the
camera pipeline when there is an ``[attendance]`` section.
The vision stack is imported only in the last case (docs/architecture.md: a pad-only device
must start without loading cv2 or dlib).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from typing import Any

from agent.config import AgentConfig
from agent.outbox import Outbox
from agent.signing import start_signing
from agent.stopflag import StopFlag
from agent.supervisor import Supervisor, Worker

logger = logging.getLogger(__name__)

WorkerFactories = dict[str, Callable[[], Worker]]


def build_workers(
    cfg: AgentConfig, outbox: Outbox, supervisor_health: Callable[[], dict], screen: Any = None
) -> WorkerFactories:
    factories: WorkerFactories = {}
    if cfg.pad:
        from agent.windows.invite_http import invite_worker_factories
        from agent.windows.state import PadBuses, window_worker_factories

        buses = PadBuses()  # the invitation endpoint reaches the buses' current workers
        factories.update(window_worker_factories(cfg, outbox, buses=buses))
        factories.update(invite_worker_factories(cfg, buses))
    if cfg.attendance is not None:
        from agent.kiosk.attendance_worker import attendance_worker_factories

        factories.update(attendance_worker_factories(cfg, outbox, screen))
    from agent.link.uplink import uplink_worker_factories

    factories.update(uplink_worker_factories(cfg, outbox, supervisor_health))
    return factories


def start_screen(cfg: AgentConfig, outbox: Outbox, health: Callable[[], dict]) -> Any:
    """The kiosk page ([screen] listen) on a kiosk; None on a window device, with
    ``listen = ""``, or when the port is taken (logged; the kiosk punches on without it)."""
    if cfg.attendance is None or not cfg.screen.listen:
        return None
    from agent.kiosk.screen import ScreenHub, ScreenServer, status_source

    hub = ScreenHub(cfg, status_source(outbox, health), health)
    server = ScreenServer(hub, cfg.screen.listen)
    if not server.start():
        return None
    return server


def run_agent(cfg: AgentConfig) -> int:
    cfg.device.data_dir.mkdir(parents=True, exist_ok=True)
    outbox = Outbox.for_config(cfg)
    # Before any worker: the uplink hands out only events signed with the device's key,
    # created here on a device upgraded from an agent that did not sign (docs/device-keys.md).
    start_signing(cfg.device.data_dir, outbox)
    from sync.systemd import Notifier

    supervisor = Supervisor({}, notifier=Notifier())
    # Set from a signal handler: a plain flag and a self-pipe, no lock (agent/stopflag.py).
    supervisor.stop_event = StopFlag()
    screen = start_screen(cfg, outbox, supervisor.health)
    supervisor.factories = build_workers(
        cfg, outbox, supervisor.health, screen.hub if screen else None
    )

    signals: list[int] = []

    def _stop(signum: int, _frame: object) -> None:
        # No logging here: a handler may run while this thread holds the logging lock.
        signals.append(signum)
        supervisor.stop_event.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    logger.info(
        "hall-agent %s/%s starting: %d pads, attendance %s",
        cfg.device.site,
        cfg.device.id,
        len(cfg.pad),
        "on" if cfg.attendance else "off",
    )
    try:
        supervisor.run()
    finally:
        if screen is not None:
            screen.stop()
        outbox.close()
    if signals:
        logger.info("stopped on signal %d", signals[0])
    return 0
