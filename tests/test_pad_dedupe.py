"""The exactly-once rule of agent/windows/state.py as a property: any pad behaviour within the
protocol (stop-and-wait, resends of the unacked frame, heartbeats, seq wraps, HELLO after a
reboot, a reboot whose HELLO was lost) and any number of agent restarts record each rating
exactly once.

The bus handler runs against a real SQLite outbox; its neighbour, the serial driver, is a
recording fake (the link itself is exercised over ptys in test_pad_link.py)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from agent.config import PadSection, WindowsSection
from agent.outbox import Outbox
from agent.roster import RosterWatch
from agent.windows.state import PadBus, StateFile
from drivers.pad.codec import Ack, Heartbeat, Hello, Message, Rating


class RecordingDriver:
    port = "/dev/ttyFAKE"

    def __init__(self) -> None:
        self.sent: list[tuple[int, Message, int | None]] = []

    def send(self, addr: int, msg: Message, seq: int | None = None) -> None:
        self.sent.append((addr, msg, seq))

    def stats(self) -> dict[str, Any]:
        return {}

    def last_activity(self) -> float:
        return 0.0


actions = st.lists(
    st.one_of(
        st.tuples(st.just("rate"), st.integers(1, 200)),
        st.tuples(st.just("heartbeat"), st.integers(1, 200)),
        st.tuples(st.just("resend"), st.integers(1, 3)),
        st.tuples(st.just("hello"), st.just(1)),
        st.tuples(st.just("reboot_unheard"), st.just(1)),
        st.tuples(st.just("restart"), st.just(1)),
        st.tuples(st.just("restart_and_resend"), st.just(1)),
    ),
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(actions)
# The cases the design names, always run besides the random ones:
@example([("rate", 3), ("hello", 1), ("rate", 3)])  # HELLO resets the seq window
@example([("rate", 300), ("resend", 1)])  # the seq wraps
@example([("rate", 1), ("heartbeat", 255), ("rate", 1)])  # wrap through heartbeats
@example([("rate", 2), ("restart_and_resend", 1), ("rate", 2)])  # crash after commit
@example([("rate", 2), ("reboot_unheard", 1), ("rate", 2)])  # HELLO lost: seqs reused at once
def test_every_rating_recorded_once_whatever_the_pad_and_agent_do(
    plan: list[tuple[str, int]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        outbox = Outbox(
            data / "outbox.db", device="p", site="s", min_free_bytes=0, clock=lambda: "synced"
        )
        pad_cfg = PadSection(port=RecordingDriver.port, address=7, window="A07")

        def new_bus() -> tuple[PadBus, RecordingDriver]:
            driver = RecordingDriver()
            bus = PadBus(
                driver.port,
                [pad_cfg],
                driver,  # type: ignore[arg-type]
                outbox,
                WindowsSection(),
                StateFile(data / "windows-state.json"),
                RosterWatch(data),
            )
            return bus, driver

        bus, driver = new_bus()
        seq = 0
        last: tuple[int, Message] | None = None
        levels: list[int] = []

        def send(msg: Message, frame_seq: int) -> None:
            nonlocal last
            before = len(driver.sent)
            bus.on_message(7, frame_seq, msg)
            acks = [s for a, m, s in driver.sent[before:] if isinstance(m, Ack)]
            assert acks == [frame_seq], f"{msg} seq {frame_seq} acked {acks}"
            last = (frame_seq, msg)

        for action, count in plan:
            for _ in range(count):
                if action == "rate":
                    level = 1 + len(levels) % 5
                    levels.append(level)
                    # Every citizen's rating differs from the others (the reasons carry a
                    # counter): only a resend is byte-identical, as on a real pad.
                    send(Rating(level, len(levels), 0), seq)
                    seq = (seq + 1) & 0xFF
                elif action == "heartbeat":
                    send(Heartbeat(0), seq)
                    seq = (seq + 1) & 0xFF
                elif action == "resend" and last is not None:
                    send(last[1], last[0])
                elif action == "hello":
                    send(Hello("FW"), 0)
                    seq = 1
                elif action == "reboot_unheard":
                    seq = 0  # the pad rebooted and its HELLO never arrived
                    last = None  # a rebooted pad has no unacked frame to resend
                elif action.startswith("restart"):
                    bus.close()
                    bus, driver = new_bus()  # the agent process died: memory gone
                    if action == "restart_and_resend" and last is not None:
                        send(last[1], last[0])  # committed before the crash, never acked
        bus.close()
        recorded = [
            e["data"]["level"]
            for e in (json.loads(p.body) for p in outbox.pending(100_000))
            if e["type"] == "rating.submitted"
        ]
        outbox.close()
        assert recorded == levels


def test_a_new_frame_reusing_a_seq_is_recorded_and_a_resend_is_not(tmp_path: Path) -> None:
    # The pad rebooted and its HELLO copies were lost while the agent reopened the port: its
    # seq restarts within seconds. Same seq, different content: a new rating, not a resend.
    outbox = Outbox(tmp_path / "outbox.db", device="p", site="s", min_free_bytes=0)
    driver = RecordingDriver()
    bus = PadBus(
        driver.port,
        [PadSection(port=driver.port, address=1, window="A01")],
        driver,  # type: ignore[arg-type]
        outbox,
        WindowsSection(),
        StateFile(tmp_path / "windows-state.json"),
        RosterWatch(tmp_path),
    )
    bus.on_message(1, 0, Hello("FW1"))
    bus.on_message(1, 1, Rating(5, 0, 0))  # citizen A
    bus.on_message(1, 1, Rating(5, 0, 0))  # its resend (lost ack): byte-identical
    bus.on_message(1, 1, Rating(1, 0b1, 0))  # citizen B after the unheard reboot
    bus.on_message(1, 1, Rating(1, 0b1, 0))  # and its resend
    recorded = [
        json.loads(p.body)["data"]["level"]
        for p in outbox.pending(100)
        if p.type == "rating.submitted"
    ]
    acks = [seq for _, msg, seq in driver.sent if isinstance(msg, Ack)]
    assert recorded == [5, 1]
    assert acks == [0, 1, 1, 1, 1]
    assert bus.pads[1].counts == {"recorded": 2, "duplicates": 2}
    outbox.close()


def test_a_resend_across_a_forward_clock_step_is_still_a_resend(
    tmp_path: Path, monkeypatch
) -> None:
    # A device whose clock was two days slow gets it corrected by NTP between a rating and
    # the pad's resend of it (its ack was lost on the line): the wall clock jumps, the
    # pad's 500 ms resend does not. The copy must be acked, not recorded again.
    import time as time_module

    real_time = time_module.time
    step = {"s": -2 * 86400.0}
    monkeypatch.setattr(time_module, "time", lambda: real_time() + step["s"])
    outbox = Outbox(tmp_path / "outbox.db", device="p", site="s", min_free_bytes=0)
    driver = RecordingDriver()
    bus = PadBus(
        driver.port,
        [PadSection(port=driver.port, address=1, window="A01")],
        driver,  # type: ignore[arg-type]
        outbox,
        WindowsSection(),
        StateFile(tmp_path / "windows-state.json"),
        RosterWatch(tmp_path),
    )
    bus.on_message(1, 0, Hello("FW1"))
    bus.on_message(1, 1, Rating(4, 0, 0))
    step["s"] = 0.0  # NTP: two days forward
    bus.on_message(1, 1, Rating(4, 0, 0))  # the resend, half a second later
    recorded = [p for p in outbox.pending(100) if p.type == "rating.submitted"]
    acks = [seq for _, msg, seq in driver.sent if isinstance(msg, Ack)]
    assert len(recorded) == 1
    assert acks == [0, 1, 1]
    outbox.close()
