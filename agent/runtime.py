"""``hall-agent run``: open the outbox, build the workers this device needs, supervise them.

Which workers run follows from the config: the uplink always; a pad bus per serial port when
there are ``[[pad]]`` tables; the camera pipeline when there is an ``[attendance]`` section.
The vision stack is imported only in the last case (DESIGN.md: a pad-only device must start
without loading cv2 or dlib).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable

from agent.config import AgentConfig
from agent.outbox import Outbox
from agent.stopflag import StopFlag
from agent.supervisor import Supervisor, Worker

logger = logging.getLogger(__name__)

WorkerFactories = dict[str, Callable[[], Worker]]


def build_workers(
    cfg: AgentConfig, outbox: Outbox, supervisor_health: Callable[[], dict]
) -> WorkerFactories:
    factories: WorkerFactories = {}
    if cfg.pad:
        from agent.windows import window_worker_factories

        factories.update(window_worker_factories(cfg, outbox))
    if cfg.attendance is not None:
        from agent.attendance import attendance_worker_factories

        factories.update(attendance_worker_factories(cfg, outbox))
    from sync.uplink import uplink_worker_factories

    factories.update(uplink_worker_factories(cfg, outbox, supervisor_health))
    return factories


def run_agent(cfg: AgentConfig) -> int:
    cfg.device.data_dir.mkdir(parents=True, exist_ok=True)
    outbox = Outbox.for_config(cfg)
    supervisor = Supervisor({})
    # Set from a signal handler: a plain flag and a self-pipe, no lock (agent/stopflag.py).
    supervisor.stop_event = StopFlag()
    supervisor.factories = build_workers(cfg, outbox, supervisor.health)

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
        outbox.close()
    if signals:
        logger.info("stopped on signal %d", signals[0])
    return 0
