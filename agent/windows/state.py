"""Window state behind the rating pads: staff log-in/out, pause (暂停服务), invitations, ratings.

One :class:`PadBus` per serial port (an RS-485 bus with several addresses or one USB pad),
run by a :class:`PadBusWorker` under the supervisor. The bus handler runs inside the driver's
I/O thread and does only light work there: an outbox commit, a small JSON state file, a dict
lookup for the staff name. Recognition and network I/O live in other workers, so the ack
latency does not depend on them (docs/pads.md "Threads and latency": p99 < 50 ms with a
kiosk pipeline running).

Exactly once per (pad, seq) (docs/pads.md), also across a crash of the agent:

- Every recorded frame carries the outbox dedupe key
  ``pad:<port>:<addr>:q<seq//64>:<seq>:<content>`` (content: a hash of cmd and payload),
  stored in the same transaction as the event. A resent copy is byte-identical, finds the
  key, gets ``duplicate=True`` and is acked again; nothing is recorded twice. A different
  frame that reuses the seq (a pad rebooted and its HELLO was lost) is recorded. The ack
  is written only after ``append`` returned (the commit is fsynced); if ``append`` raises,
  nothing is acked and the pad resends.
- seq wraps at 256. Keys are grouped in four quarters of 64 seqs; when a pad's frames enter
  quarter q, the keys of quarters q+1 and q+2 (from the previous lap) are forgotten, so a new
  frame that reuses a seq is never mistaken for an old one, while the last 64+ seqs stay
  protected (a pad resends only its one unacked frame).
- ``HELLO`` (pad rebooted, its seq restarts) forgets all of the pad's keys.
- A pad resends for at most 10 x 500 ms; a key older than :data:`DUPLICATE_HORIZON_S` cannot
  belong to a resend any more, so it is treated as stale and forgotten before the append.
  This covers a pad that rebooted unheard and sends the same content at an old seq.
- A RATING that answers an open invitation carries the invitation's case (办件编号, 事项编码)
  and closes it in the same step that records it (``on_commit``). A resend of it finds the
  invitation gone and builds its body without the case, but it is a duplicate: the outbox
  keeps the first copy, which has it, and records nothing.
- Invitation expiry uses its own key ``inv:<port>:<addr>:<invite_id>`` for both the pad's
  EXPIRED frame and the agent's own timeout, so one invitation expires at most once. The
  key lives as long as its invitation: issuing an invite id again forgets it first.

Window state (who is logged in, paused, open invitations) lives in
``<data_dir>/windows-state.json`` (atomic replace); state changes are idempotent, so they are
applied again for duplicate frames and a crash between commit and state save heals itself
when the pad resends.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from agent.config import AgentConfig, PadSection, WindowsSection
from agent.durable import write_durably
from agent.envelope import CLOCK_FLOOR_UNIX
from agent.outbox import Outbox, OutboxError
from agent.roster import RosterWatch
from agent.supervisor import Worker
from contract import (
    LEVEL_LABELS,
    PAUSED_TEXT,
    CaseNo,
    EventType,
    FaultData,
    ItemCode,
    RatingData,
    RatingExpiredData,
    WindowData,
    event_data,
)
from drivers.pad.base import LogLimiter, PadDriver
from drivers.pad.codec import (
    Ack,
    Display,
    Expired,
    Heartbeat,
    Hello,
    Invite,
    Login,
    Logout,
    Message,
    Pause,
    Rating,
    Resume,
    Time,
    fit_text,
)

logger = logging.getLogger(__name__)

# docs/pads.md: resend every 500 ms, up to 10 times -> a copy arrives within ~5 s of the
# original. Six times that covers slow USB adapters and an agent restart in between.
DUPLICATE_HORIZON_S = 30.0
OFFLINE_AFTER_HEARTBEATS = 3  # docs/pads.md "Faults": silent > 3 heartbeats = offline
QUARTER = 64


def frame_key_base(port: str, addr: int) -> str:
    return f"pad:{port}:{addr:03d}:"


def frame_key(port: str, addr: int, seq: int, msg: Message) -> str:
    # Fixed width, so a key is never the prefix of another one (forget_dedupe is by prefix:
    # the pad's base on HELLO, ``<base>q<n>:`` for a quarter). The content hash tells a
    # resend (byte-identical, docs/pads.md) from a new frame that reuses the seq.
    content = hashlib.blake2s(bytes((msg.CMD,)) + msg.payload(), digest_size=8).hexdigest()
    return f"{frame_key_base(port, addr)}q{seq // QUARTER}:{seq:03d}:{content}"


def invite_key(port: str, addr: int, invite_id: int) -> str:
    return f"inv:{port}:{addr:03d}:{invite_id:05d}"


# --- persisted window state ----------------------------------------------------------------


@dataclass
class Invitation:
    """An INVITE sent to a pad and not answered yet (docs/pads.md, "Invitations")."""

    deadline: float  # wall clock (unix seconds): it must survive an agent restart
    staff_id: str | None  # logged in when the citizen was invited
    # The case the citizen is asked about, from the window's case-handling system; the
    # rating that answers the invitation carries them (rating.submitted).
    case_no: str | None = None
    item_code: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "deadline": self.deadline,
            "staff_id": self.staff_id,
            "case_no": self.case_no,
            "item_code": self.item_code,
        }

    @classmethod
    def from_json(cls, raw: Any) -> Invitation:
        """Raises KeyError/TypeError/ValueError when unusable. A case that no longer passes
        the contract (an edited file) is dropped rather than the invitation: the rating that
        answers it must be recordable, and it still expires in time."""
        inv = cls(float(raw["deadline"]), raw.get("staff_id"))
        case = case_problem(raw.get("case_no"), raw.get("item_code"))
        if case:
            logger.warning("window state: invitation case unreadable (%s), dropped", case)
        else:
            inv.case_no, inv.item_code = raw.get("case_no"), raw.get("item_code")
        return inv


_CASE_CHECK = TypeAdapter(tuple[CaseNo | None, ItemCode | None], config={"strict": True})


def case_problem(case_no: object, item_code: object) -> str | None:
    """None when both are null or fit the contract (contract.ids), else what is wrong."""
    try:
        _CASE_CHECK.validate_python((case_no, item_code))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        which = ("case_no", "item_code")[int(first["loc"][0])]
        msg = str(first["msg"]).removeprefix("Value error, ")
        return f"{which}: {msg.replace('Input should be', 'expected')}, got {first['input']!r:.80}"
    return None


@dataclass
class WindowState:
    """The persisted part of one window: who is logged in, paused, open invitations."""

    staff_id: str | None = None
    paused: bool = False
    invites: dict[int, Invitation] = field(default_factory=dict)
    # Invite ids run 1..65535 (0 means "none" on the wire); a random start keeps two agents
    # that lost their state from handing out the same ids in step.
    next_invite: int = field(default_factory=lambda: random.randint(1, 0xFFFF))

    def to_json(self) -> dict[str, Any]:
        return {
            "staff_id": self.staff_id,
            "paused": self.paused,
            "invites": {str(k): v.to_json() for k, v in self.invites.items()},
            "next_invite": self.next_invite,
        }

    @classmethod
    def from_json(cls, raw: Any) -> WindowState:
        """Tolerant of a file from an older version: what is missing takes its default."""
        st = cls()
        if not isinstance(raw, dict):
            return st
        staff = raw.get("staff_id")
        st.staff_id = staff if isinstance(staff, str) and staff else None
        st.paused = bool(raw.get("paused", False))
        invites = raw.get("invites") or {}
        for key, inv in invites.items() if isinstance(invites, dict) else ():
            try:
                st.invites[int(key)] = Invitation.from_json(inv)
            except (KeyError, TypeError, ValueError):
                logger.warning("window state: invitation %r unreadable, dropped", key)
        nxt = raw.get("next_invite")
        if isinstance(nxt, int) and 1 <= nxt <= 0xFFFF:
            st.next_invite = nxt
        return st


@dataclass(frozen=True)
class Transition:
    """What a pad command does to its window: the event it records and the state after."""

    event: EventType
    staff_after: Callable[[WindowState, Message], str | None]
    paused_after: Callable[[WindowState, Message], bool]


# The window state machine (docs/pads.md, "Window states"). A log-in clears a pause (staff
# are back at the counter); a log-out leaves the pause as it was, and with nobody logged in
# the pad shows 暂停服务 anyway (regulation art. 19: an unattended window shows it).
TRANSITIONS: dict[type[Message], Transition] = {
    Login: Transition(EventType.LOGIN, lambda st, m: m.staff_id, lambda st, m: False),
    Logout: Transition(EventType.LOGOUT, lambda st, m: None, lambda st, m: st.paused),
    Pause: Transition(EventType.PAUSED, lambda st, m: st.staff_id, lambda st, m: True),
    Resume: Transition(EventType.RESUMED, lambda st, m: st.staff_id, lambda st, m: False),
}


class StateFile:
    """``windows-state.json``: one :class:`WindowState` per window. Thread-safe."""

    def __init__(self, path: Path):
        self.path = path
        # One lock for the file and every window in it: buses on different ports mutate
        # their windows while another bus serialises the whole file.
        self.lock = threading.RLock()
        self.windows: dict[str, WindowState] = {}
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            for name, window in dict(raw.get("windows", {})).items():
                self.windows[name] = WindowState.from_json(window)
        except FileNotFoundError:
            pass
        except (OSError, ValueError, AttributeError, TypeError) as exc:
            logger.error("window state %s unreadable (%s); starting empty", path, exc)

    def window(self, name: str) -> WindowState:
        with self.lock:
            return self.windows.setdefault(name, WindowState())

    def save(self) -> None:
        """Durably (agent/durable.py): the ack to a pad's LOGIN relies on this save."""
        with self.lock:
            doc = {"v": 1, "windows": {k: w.to_json() for k, w in self.windows.items()}}
            text = json.dumps(doc, ensure_ascii=False, indent=1)
            try:
                write_durably(self.path, text.encode("utf-8"))
            except OSError as exc:
                # The events are in the outbox already; only the restart state is behind.
                # The next state change writes it again.
                logger.error("window state %s not saved: %s", self.path, exc)


# --- one bus ---------------------------------------------------------------------------------


@dataclass
class PadState:
    cfg: PadSection
    state: WindowState  # the persisted part (StateFile.window)
    last_seen: float = 0.0  # monotonic
    online: bool = True
    fault_reported: bool = False  # a device.fault is open for this pad
    quarter: int | None = None  # dedupe housekeeping: quarter of the last frame
    firmware: str | None = None
    counts: dict[str, int] = field(default_factory=lambda: {"recorded": 0, "duplicates": 0})


class PadBus:
    """The :class:`drivers.pad.base.PadHandler` of one port: frames in, events and replies out."""

    def __init__(
        self,
        port: str,
        pads: list[PadSection],
        driver: PadDriver,
        outbox: Outbox,
        settings: WindowsSection,
        state_file: StateFile,
        roster: RosterWatch,
    ):
        self.port = port
        self.driver = driver
        self.outbox = outbox
        self.settings = settings
        self.state_file = state_file
        self.roster = roster
        self.pads = {p.address: PadState(p, state_file.window(p.window)) for p in pads}
        self.by_window = {p.window: p.address for p in pads}
        self._lock = state_file.lock
        self.link_up = False
        self._next_time = 0.0
        self._next_invite_retry = 0.0
        self.append_failures = 0
        self.foreign_frames = 0
        # When this process last recorded or acked each frame key, on the monotonic clock:
        # the dedupe table's age is wall-clock time, which NTP may step by days between a
        # frame and its resend 500 ms later (clock_gettime(2): CLOCK_MONOTONIC does not jump).
        self._seen: OrderedDict[str, float] = OrderedDict()  # key -> monotonic time seen
        self._status_log = LogLimiter()  # a pad repeating a bad status must not flood the log

    # --- PadHandler ------------------------------------------------------------------------

    def on_link(self, up: bool, detail: str) -> None:
        self.link_up = up
        now = time.monotonic()
        if up:
            self._next_time = 0.0  # TIME right away (docs/pads.md pads keep a clock)
        for addr, pad in self.pads.items():
            if up:
                pad.last_seen = now  # give the pad 3 heartbeats to speak up
                self._set_online(addr, pad, True, detail)
            else:
                self._set_online(addr, pad, False, f"window {pad.cfg.window}: {detail}")
        if up:
            # Displays last: a write that fails raises to the link (a link fault) and must
            # not leave the pads after it half updated.
            for addr in self.pads:
                self._show(addr)

    def on_message(self, addr: int, seq: int, msg: Message) -> None:
        pad = self.pads.get(addr)
        if pad is None:
            self.foreign_frames += 1
            logger.debug("frame from unconfigured address %d on %s ignored", addr, self.port)
            return
        pad.last_seen = time.monotonic()
        if not pad.online:
            self._set_online(addr, pad, True, f"window {pad.cfg.window}: talking")
        if isinstance(msg, Hello):
            # docs/pads.md: HELLO resets the pad's seq window; the pad rebooted and lost its
            # clock and its display, so both are sent again.
            self.outbox.forget_dedupe(frame_key_base(self.port, addr))
            pad.quarter = None
            pad.firmware = msg.firmware
            logger.info("pad %d (%s) HELLO firmware %r", addr, pad.cfg.window, msg.firmware)
            self.driver.send(addr, Ack(), seq)
            self._send_time(addr)
            self._show(addr)
            return
        self._advance_window(pad, addr, seq)
        if isinstance(msg, Heartbeat):
            log, left_out = self._status_log.allow(addr) if msg.status else (False, 0)
            if log:
                logger.warning(
                    "pad %d (%s) reports status %d%s",
                    addr,
                    pad.cfg.window,
                    msg.status,
                    f" ({left_out} more such heartbeats not logged)" if left_out else "",
                )
            self.driver.send(addr, Ack(), seq)
            return
        self._handle_record(pad, addr, seq, msg)

    def _advance_window(self, pad: PadState, addr: int, seq: int) -> None:
        """Every frame (heartbeats too) moves the pad's seq window: entering a new quarter
        (or the first frame since start/HELLO) forgets the two quarters ahead, which hold
        keys from the previous lap of the seq counter."""
        quarter = seq // QUARTER
        if pad.quarter == quarter:
            return
        base = frame_key_base(self.port, addr)
        for ahead in (1, 2):
            self.outbox.forget_dedupe(f"{base}q{(quarter + ahead) % 4}:")
        pad.quarter = quarter

    def on_tick(self, now: float) -> None:
        if self.link_up:
            if now >= self._next_time:
                sent = [self._send_time(addr) for addr in self.pads]
                # A clock that is not plausible yet is retried every minute.
                self._next_time = now + (self.settings.time_sync_s if all(sent) else 60.0)
            limit = OFFLINE_AFTER_HEARTBEATS * self.settings.heartbeat_s
            for addr, pad in self.pads.items():
                if pad.online and now - pad.last_seen > limit:
                    silent = now - pad.last_seen
                    logger.warning("pad %d (%s) silent for %.0f s", addr, pad.cfg.window, silent)
                    self._set_online(
                        addr,
                        pad,
                        False,
                        f"window {pad.cfg.window}: offline, no frame for "
                        f"{silent:.0f} s (heartbeat {self.settings.heartbeat_s:g} s)",
                    )
        if now >= self._next_invite_retry:
            self._expire_invites(now)

    def _set_online(self, addr: int, pad: PadState, online: bool, detail: str) -> None:
        """The one place a pad goes on- or offline: a change opens or closes its fault, once
        (device.fault / device.recovered, component ``pad:<addr>``)."""
        pad.online = online
        if online == (not pad.fault_reported):
            return  # no open fault to close, or one is open already
        pad.fault_reported = not online
        event = EventType.RECOVERED if online else EventType.FAULT
        self._record(event, event_data(event, FaultData(component=f"pad:{addr}", detail=detail)))

    # --- frames that become events ---------------------------------------------------------

    def _handle_record(self, pad: PadState, addr: int, seq: int, msg: Message) -> None:
        window = pad.cfg.window
        st = pad.state
        if isinstance(msg, Expired):
            with self._lock:
                inv = st.invites.pop(msg.invite_id, None)
            staff = inv.staff_id if inv else st.staff_id
            body = RatingExpiredData(
                window=window, pad=addr, staff_id=staff, invite_id=msg.invite_id or None
            )
            # invite_id 0 means "none": such a frame has nothing to share a key with.
            key = invite_key(self.port, addr, msg.invite_id) if msg.invite_id else None
            event = EventType.RATING_EXPIRED
            ok = self._record_frame(pad, addr, seq, msg, event, event_data(event, body), key)
            if ok is None and inv is not None:
                with self._lock:
                    st.invites[msg.invite_id] = inv  # not recorded: keep it open
            elif inv is not None:
                self.state_file.save()
            return
        if isinstance(msg, Rating):
            self._handle_rating(pad, addr, seq, msg)
            return
        transition = TRANSITIONS.get(type(msg))
        if transition is None:
            logger.debug("pad %d: %r not handled", addr, msg)
            return
        with self._lock:
            staff_after = transition.staff_after(st, msg)
            paused_after = transition.paused_after(st, msg)
            # The event names who logged in, or who was at the window when it happened.
            staff = staff_after or st.staff_id

        def apply() -> None:
            # Saved before the ack (a crash after the ack would otherwise lose a login the
            # pad will not resend). Applied for duplicates too: idempotent, and it heals a
            # crash between the outbox commit and the state save (the pad resends).
            with self._lock:
                changed = (st.staff_id, st.paused) != (staff_after, paused_after)
                st.staff_id, st.paused = staff_after, paused_after
            if changed:
                self.state_file.save()

        event = transition.event
        data = event_data(event, WindowData(window=window, pad=addr, staff_id=staff))
        if self._record_frame(pad, addr, seq, msg, event, data, on_commit=apply) is None:
            return
        self._show(addr)

    def _handle_rating(self, pad: PadState, addr: int, seq: int, msg: Rating) -> None:
        st = pad.state
        with self._lock:
            # An unknown id (expired, answered already, or from before a lost state file)
            # has no case to carry: the rating is recorded all the same, with nulls.
            answered = st.invites.get(msg.invite_id) if msg.invite_id else None
        labels = self.settings.reason_labels
        reasons = []
        if msg.level <= 2:  # reasons are asked for 差评 only (levels 1-2)
            for bit in range(16):
                if msg.reasons >> bit & 1:
                    reasons.append(labels[bit] if bit < len(labels) else f"原因{bit}")
        body = RatingData(
            window=pad.cfg.window,
            pad=addr,
            staff_id=st.staff_id,
            level=msg.level,
            label=LEVEL_LABELS[msg.level],
            reasons=reasons,
            invite_id=msg.invite_id or None,
            case_no=answered.case_no if answered else None,
            item_code=answered.item_code if answered else None,
        )

        def close_invite() -> None:
            with self._lock:
                closed = st.invites.pop(msg.invite_id, None)
            if closed is not None:
                self.state_file.save()

        event = EventType.RATING
        data = event_data(event, body)
        self._record_frame(pad, addr, seq, msg, event, data, on_commit=close_invite)

    def _record_frame(
        self,
        pad: PadState,
        addr: int,
        seq: int,
        msg: Message,
        event_type: str,
        data: dict[str, Any],
        key: str | None = None,
        on_commit: Callable[[], None] | None = None,
    ) -> bool | None:
        """Commit, apply ``on_commit`` (window state), then ack.

        Returns the duplicate flag, or None when nothing was recorded (and nothing acked)."""
        try:
            if key is None:
                key = frame_key(self.port, addr, seq, msg)
                if not self._seen_recently(key):
                    self._forget_if_stale(key)
            appended = self.outbox.append(event_type, data, dedupe_key=key)
        except OutboxError as exc:
            # Not recorded: no ack, so the pad resends; never acked unless stored (docs/pads.md).
            self.append_failures += 1
            logger.error("pad %d seq %d %s not recorded: %s", addr, seq, event_type, exc)
            return None
        pad.counts["duplicates" if appended.duplicate else "recorded"] += 1
        self._remember(key)
        if on_commit is not None:
            on_commit()
        self.driver.send(addr, Ack(), seq)  # only after the commit (docs/pads.md)
        if appended.duplicate:
            logger.debug("pad %d seq %d: duplicate of %s, acked again", addr, seq, key)
        return appended.duplicate

    def _seen_recently(self, key: str) -> bool:
        seen = self._seen.get(key)
        return seen is not None and time.monotonic() - seen <= DUPLICATE_HORIZON_S

    def _remember(self, key: str) -> None:
        now = time.monotonic()
        # Moved to the end, so the dict stays in the order keys were last seen and the
        # expired ones are always at its front: each frame drops what expired since the last
        # one, never rescans the whole horizon (a pad sending back to back fills it with
        # tens of thousands of keys).
        self._seen[key] = now
        self._seen.move_to_end(key)
        while self._seen:
            oldest, seen = next(iter(self._seen.items()))
            if now - seen <= DUPLICATE_HORIZON_S:
                break
            del self._seen[oldest]

    def _forget_if_stale(self, key: str) -> None:
        age = self.outbox.dedupe_age(key)
        if age is not None and age > DUPLICATE_HORIZON_S:
            logger.info("dedupe key %s is %.0f s old: stale, forgotten", key, age)
            self.outbox.forget_dedupe(key)

    def _record(self, event_type: str, data: dict[str, Any], key: str | None = None) -> bool:
        try:
            self.outbox.append(event_type, data, dedupe_key=key)
            return True
        except OutboxError as exc:
            self.append_failures += 1
            logger.error("%s %s not recorded: %s", event_type, data, exc)
            return False

    # --- invitations ----------------------------------------------------------------------

    def invite(self, window: str, case_no: str | None = None, item_code: str | None = None) -> int:
        """Ask the citizen at ``window`` to rate (INVITE); returns the invite id. Thread-safe.

        ``case_no`` (办件编号) and ``item_code`` (事项编码) name the case the rating is
        about; the ``rating.submitted`` that answers the invitation carries them. Not
        answered within ``windows.invite_timeout_s`` -> ``rating.expired``.
        """
        return self.send_invite(window, case_no, item_code)[0]

    def send_invite(
        self, window: str, case_no: str | None = None, item_code: str | None = None
    ) -> tuple[int, Invitation]:
        """:meth:`invite`, also returning the invitation (its deadline, for the caller).

        Raises KeyError for a window without a pad on this bus, ValueError for a case that
        does not fit the contract: checked here, because a rating whose body cannot be built
        could never be recorded, and the pad would give up on it."""
        addr = self.by_window.get(window)
        if addr is None:
            raise KeyError(f"window {window!r} has no pad on {self.port}")
        problem = case_problem(case_no, item_code)
        if problem:
            raise ValueError(problem)
        st = self.pads[addr].state
        with self._lock:
            invite_id = st.next_invite or 1
            st.next_invite = invite_id % 0xFFFF + 1  # 1..65535, 0 means "none"
        # The id is in use again (after a lap of 65535, or a lost state file restarting the
        # counter): the key of its previous use must not swallow this invitation's expiry.
        self.outbox.forget_dedupe(invite_key(self.port, addr, invite_id))
        with self._lock:
            inv = Invitation(
                deadline=time.time() + self.settings.invite_timeout_s,
                staff_id=st.staff_id,
                case_no=case_no,
                item_code=item_code,
            )
            st.invites[invite_id] = inv
        # Saved before the INVITE goes out: a rating that answers it after an agent restart
        # still finds its case.
        self.state_file.save()
        name = fit_text(self.roster.name(st.staff_id), 62)
        self.driver.send(addr, Invite(invite_id, name))
        return invite_id, inv

    def _expire_invites(self, now: float) -> None:
        wall = time.time()
        for addr, pad in self.pads.items():
            st = pad.state
            with self._lock:
                due = [(k, v) for k, v in st.invites.items() if v.deadline <= wall]
            for invite_id, inv in due:
                body = RatingExpiredData(
                    window=pad.cfg.window, pad=addr, staff_id=inv.staff_id, invite_id=invite_id
                )
                key = invite_key(self.port, addr, invite_id)
                event = EventType.RATING_EXPIRED
                if not self._record(event, event_data(event, body), key):
                    self._next_invite_retry = now + 1.0
                    return
                with self._lock:
                    st.invites.pop(invite_id, None)
                self.state_file.save()
                logger.info("invite %s at %s expired", invite_id, pad.cfg.window)

    # --- display and clock ------------------------------------------------------------------

    def _send_time(self, addr: int) -> bool:
        now = int(time.time())
        if now < CLOCK_FLOOR_UNIX:
            # The device lost its RTC (docs/architecture.md#clocks): a pad's own clock is
            # better than 1970. TIME goes out once the clock is plausible again.
            logger.warning("clock not plausible (%d); TIME to pad %d withheld", now, addr)
            return False
        self.driver.send(addr, Time(now))
        return True

    def display_text(self, addr: int) -> str:
        st = self.pads[addr].state
        if st.paused or not st.staff_id:
            return PAUSED_TEXT
        return fit_text(self.roster.name(st.staff_id))

    def _show(self, addr: int) -> None:
        self.driver.send(addr, Display(self.display_text(addr)))

    def health(self) -> dict[str, Any]:
        pads = {
            str(addr): {
                "window": p.cfg.window,
                "online": p.online,
                "staff_id": p.state.staff_id,
                "paused": p.state.paused,
                **p.counts,
            }
            for addr, p in self.pads.items()
        }
        ok = self.link_up and all(p.online for p in self.pads.values())
        return {
            "state": "ok" if ok else "fault",
            "port": self.port,
            "pads": pads,
            "link": self.driver.stats(),
            "append_failures": self.append_failures,
        }

    def close(self) -> None:
        """Nothing to release: the bus holds no resources of its own (kept for the worker)."""


# --- worker ----------------------------------------------------------------------------------


class PadBusWorker:
    """A :class:`agent.supervisor.Worker` running one port's driver and bus handler."""

    stall_after_s = 30.0

    def __init__(self, bus: PadBus, driver: PadDriver):
        self.name = f"pads:{bus.port}"
        self.bus = bus
        self.driver = driver
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.driver.serve(self.bus, self._stop)
        finally:
            self.bus.close()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def last_activity(self) -> float:
        return self.driver.last_activity()

    def health(self) -> dict[str, Any]:
        return self.bus.health()


class PadBuses:
    """The running pad bus worker of each window, for callers outside the buses' threads
    (the invitation endpoint, agent/windows/invite_http.py). Thread-safe.

    The supervisor replaces a worker that died with a new one, and the new one has a new
    :class:`PadBus`: the factories register each worker they make, so a caller always
    reaches the current one, never a bus whose thread has ended."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._workers: dict[str, PadBusWorker] = {}

    def register(self, worker: PadBusWorker) -> None:
        with self._lock:
            for window in worker.bus.by_window:
                self._workers[window] = worker

    def get(self, window: str) -> PadBusWorker | None:
        with self._lock:
            return self._workers.get(window)

    def windows(self) -> dict[str, PadBusWorker]:
        with self._lock:
            return dict(sorted(self._workers.items()))


def group_by_port(pads: list[PadSection]) -> dict[str, list[PadSection]]:
    groups: dict[str, list[PadSection]] = {}
    for pad in pads:
        groups.setdefault(pad.port, []).append(pad)
    return groups


def default_driver(port: str, baud: int) -> PadDriver:
    from drivers.pad.link import HallPadLink

    return HallPadLink(port, baud)


def window_worker_factories(
    cfg: AgentConfig,
    outbox: Outbox,
    *,
    driver_factory: Callable[[str, int], PadDriver] = default_driver,
    buses: PadBuses | None = None,
) -> dict[str, Callable[[], Worker]]:
    """One worker per serial port from the ``[[pad]]`` tables (used by agent/runtime.py).

    Each worker made is registered in ``buses`` when given (the invitation endpoint)."""
    data_dir = Path(cfg.device.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    state_file = StateFile(data_dir / "windows-state.json")
    roster = RosterWatch(data_dir)
    factories: dict[str, Callable[[], Worker]] = {}
    for port, pads in group_by_port(cfg.pad).items():

        def make(port: str = port, pads: list[PadSection] = pads) -> Worker:
            driver = driver_factory(port, pads[0].baud)
            bus = PadBus(port, pads, driver, outbox, cfg.windows, state_file, roster)
            worker = PadBusWorker(bus, driver)
            if buses is not None:
                buses.register(worker)
            return worker

        factories[f"pads:{port}"] = make
    return factories
