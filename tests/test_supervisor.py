"""The supervisor restarts dead and stalled workers, rests after too many, and tries again."""

from __future__ import annotations

import threading
import time

from agent.supervisor import Supervisor


class FlakyWorker:
    """A worker whose thread exits at once for the first `failures` instances (shared count)."""

    stall_after_s = 60.0

    def __init__(self, name: str, plan: dict[str, int]):
        self.name = name
        self.plan = plan
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last = time.monotonic()

    def start(self) -> None:
        self.plan["starts"] += 1
        dies = self.plan["starts"] <= self.plan["failures"]
        self._thread = threading.Thread(target=(lambda: None) if dies else self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self._last = time.monotonic()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)

    def alive(self) -> bool:
        return bool(self._thread and self._thread.is_alive())

    def last_activity(self) -> float:
        return self._last

    def health(self) -> dict:
        return {"state": "ok"}


def wait_for(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return False


def test_worker_that_keeps_dying_rests_then_is_tried_again_and_recovers():
    plan = {"starts": 0, "failures": 4}
    sup = Supervisor(
        {"pads": lambda: FlakyWorker("pads", plan)},
        max_restarts=2,
        restart_window_s=60,
        tick_s=0.02,
        cooldown_s=0.3,
    )
    runner = threading.Thread(target=sup.run, daemon=True)
    runner.start()
    try:
        assert wait_for(lambda: "pads" in sup.gave_up)
        assert sup.health()["pads"]["state"] == "fault"
        assert "next try in" in sup.health()["pads"]["detail"]
        # After the rest it is tried again (the hardware came back): it must end up running.
        assert wait_for(lambda: plan["starts"] >= 5 and sup.workers["pads"].alive())
        assert "pads" not in sup.gave_up
        assert sup.health()["pads"] == {"state": "ok"}
    finally:
        sup.stop_event.set()
        runner.join(5)


def test_stalled_worker_is_restarted():
    plan = {"starts": 0, "failures": 0}

    class Stuck(FlakyWorker):
        stall_after_s = 0.1

        def _run(self) -> None:  # alive, but never reports activity (a hung read)
            self._stop.wait()

    sup = Supervisor({"camera": lambda: Stuck("camera", plan)}, tick_s=0.02)
    runner = threading.Thread(target=sup.run, daemon=True)
    runner.start()
    try:
        assert wait_for(lambda: plan["starts"] >= 2)
    finally:
        sup.stop_event.set()
        runner.join(5)


def test_a_planned_respawn_does_not_count_against_max_restarts():
    # The recognition process exits 75 on purpose (camera readers stuck
    # in the driver); counting those exits made the supervisor rest up to 30 minutes.
    plan = {"starts": 0, "failures": 6}

    class Respawning(FlakyWorker):
        planned_exit = False

        def start(self) -> None:
            super().start()
            # The instances that end at once say they ended on purpose.
            self.planned_exit = self.plan["starts"] <= self.plan["failures"]

    sup = Supervisor(
        {"attendance": lambda: Respawning("attendance", plan)},
        max_restarts=2,
        restart_window_s=60,
        tick_s=0.02,
        cooldown_s=60,
    )
    runner = threading.Thread(target=sup.run, daemon=True)
    runner.start()
    try:
        assert wait_for(lambda: plan["starts"] >= 7 and sup.workers["attendance"].alive())
        assert "attendance" not in sup.gave_up
        assert not sup._restarts["attendance"]  # none of the six counted
    finally:
        sup.stop_event.set()
        runner.join(5)
