"""agent/checks.py probe_pads: one open per port, busy ports, by-id advice; never acks."""

from __future__ import annotations

import select
from pathlib import Path

from agent.checks import probe_pads
from agent.outbox import Outbox
from tests.padkit import Agent, PtyPort, pad_config


def test_probe_free_busy_and_missing_ports(tmp_path: Path, write_config, outbox: Outbox) -> None:
    bus = PtyPort(tmp_path, "bus")
    try:
        cfg = pad_config(
            write_config,
            tmp_path / "data",
            [(str(bus.link), 1, "A01"), (str(bus.link), 2, "A02"), ("/dev/ttyUSB97", 3, "A03")],
        )
        results = probe_pads(cfg)
        assert [(r.name, r.ok, r.warn) for r in results] == [
            ("pad[1] A01@1", True, False),
            ("pad[2] A02@2", True, False),
            ("pad[3] A03@3", False, False),
        ]
        assert results[0].detail == f"{bus.link} opens at 9600 baud"
        assert results[2].detail.startswith("/dev/ttyUSB97:")
        # Nothing was written to the pads: a probe must never ack a frame.
        assert select.select([bus.master], [], [], 0.2)[0] == []
        agent = Agent(
            pad_config(write_config, tmp_path / "d2", [(str(bus.link), 1, "A01")]), outbox
        )
        try:
            agent.wait_up()
            (busy,) = probe_pads(
                pad_config(write_config, tmp_path / "d3", [(str(bus.link), 1, "A01")])
            )
            assert busy.ok and busy.warn
            assert "in use by another process" in busy.detail
        finally:
            agent.stop()
    finally:
        bus.unplug()


def test_second_agent_on_the_same_port_is_refused(
    tmp_path: Path, write_config, outbox: Outbox
) -> None:
    port = PtyPort(tmp_path)
    first = Agent(pad_config(write_config, tmp_path / "a", [(str(port.link), 1, "A01")]), outbox)
    second_box = Outbox(tmp_path / "b.db", device="pad-02", site="jiedong", min_free_bytes=0)
    second = Agent(
        pad_config(write_config, tmp_path / "b", [(str(port.link), 1, "A01")]), second_box
    )
    try:
        first.wait_up()
        from tests.padkit import events, wait_until

        wait_until(lambda: events(second_box, "device.fault"))
        assert "cannot open" in events(second_box, "device.fault")[0]["data"]["detail"]
        assert not second.bus.link_up
    finally:
        first.stop()
        second.stop()
        second_box.close()
        port.unplug()
