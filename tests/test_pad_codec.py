"""drivers/pad/codec.py: HallPad v1 frames, CRC-16/MODBUS and the resynchronising parser."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.windows import simulator
from contract import STAFF_ID_PATTERN
from drivers.pad import codec
from drivers.pad.codec import (
    Ack,
    Display,
    Expired,
    Frame,
    FrameError,
    FrameParser,
    Heartbeat,
    Hello,
    Invite,
    Login,
    Logout,
    Pause,
    Rating,
    Resume,
    Time,
    crc16_modbus,
    decode,
    encode,
)

addrs = st.integers(1, 247)
seqs = st.integers(0, 255)


def _utf8(max_bytes: int) -> st.SearchStrategy[str]:
    return st.text(max_size=max_bytes).filter(lambda t: len(t.encode("utf-8")) <= max_bytes)


messages = st.one_of(
    st.builds(Hello, st.text(st.characters(max_codepoint=0x7F), max_size=64)),
    st.builds(Rating, st.integers(1, 5), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
    st.builds(Expired, st.integers(0, 0xFFFF)),
    st.builds(Login, st.from_regex(STAFF_ID_PATTERN, fullmatch=True)),
    st.just(Logout()),
    st.just(Pause()),
    st.just(Resume()),
    st.builds(Heartbeat, st.integers(0, 255)),
    st.just(Ack()),
    st.builds(Invite, st.integers(0, 0xFFFF), _utf8(62)),
    st.builds(Display, _utf8(64)),
    st.builds(Time, st.integers(0, 2**32 - 1)),
)


def test_crc_check_value_and_contract_byte_order() -> None:
    # CRC-16/MODBUS catalogue check value for "123456789".
    assert crc16_modbus(b"123456789") == 0x4B37
    frame = encode(1, 7, Ack())
    assert frame[:2] == b"\xaa\x55"
    assert frame[2:6] == bytes((1, 0x80, 7, 0))
    assert struct.unpack("<H", frame[-2:])[0] == crc16_modbus(frame[2:-2])


@given(st.binary(max_size=200))
def test_crc_matches_the_simulators_independent_implementation(data: bytes) -> None:
    assert crc16_modbus(data) == simulator.crc16(data)


def test_every_contract_command_has_a_message_type() -> None:
    # docs/pads.md command table, written out independently of the codec's constants.
    contract = {0x01, 0x10, 0x11, 0x20, 0x21, 0x22, 0x23, 0x30, 0x80, 0x90, 0x91, 0x92}
    assert set(codec.MESSAGES) == contract
    assert set(simulator.CMD.values()) == contract


@given(addrs, seqs, messages)
def test_round_trip_every_frame_type(addr: int, seq: int, msg: codec.Message) -> None:
    wire = encode(addr, seq, msg)
    assert len(wire) <= codec.MAX_FRAME
    parser = FrameParser()
    frames = parser.feed(wire)
    assert frames == [Frame(addr, msg.CMD, seq, msg.payload())]
    assert decode(frames[0]) == msg
    # The simulator builds the same bytes from the contract on its own.
    assert simulator.build_frame(addr, msg.CMD, seq, msg.payload()) == wire


@given(addrs, seqs, messages, st.integers(1, 7))
def test_frames_split_across_reads(addr: int, seq: int, msg: codec.Message, chunk: int) -> None:
    wire = encode(addr, seq, msg)
    parser = FrameParser()
    got = []
    for i in range(0, len(wire), chunk):
        got += parser.feed(wire[i : i + chunk])
    assert [decode(f) for f in got] == [msg]
    assert parser.pending == 0


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(st.binary(max_size=40), addrs, seqs, messages),
        max_size=12,
    ),
    st.binary(max_size=40),
)
def test_garbage_between_frames_yields_exactly_the_valid_frames(
    chunks: list[tuple[bytes, int, int, codec.Message]], tail: bytes
) -> None:
    stream = b""
    expected = []
    for garbage, addr, seq, msg in chunks:
        stream += garbage + encode(addr, seq, msg)
        expected.append(Frame(addr, msg.CMD, seq, msg.payload()))
    stream += tail
    parser = FrameParser()
    got = parser.feed(stream) + parser.expire()
    assert got == expected
    assert parser.counts.frames == len(expected)
    assert parser.pending == 0


def test_bad_crc_is_counted_and_the_next_frame_survives() -> None:
    good = encode(3, 9, Rating(4, 0, 0))
    bad = bytearray(encode(3, 8, Rating(5, 0, 0)))
    bad[-1] ^= 0x01
    parser = FrameParser()
    frames = parser.feed(bytes(bad) + good)
    assert [decode(f) for f in frames] == [Rating(4, 0, 0)]
    assert parser.counts.bad_crc == 1


def test_oversize_length_is_counted_and_resynchronised() -> None:
    good = encode(1, 2, Heartbeat(0))
    parser = FrameParser()
    frames = parser.feed(b"\xaa\x55\x01\x10\x00\x41" + b"\x00" * 10 + good)  # len 65 > 64
    assert frames == [Frame(1, codec.HEARTBEAT, 2, b"\x00")]
    assert parser.counts.bad_length == 1
    assert parser.counts.garbage_bytes > 0


def test_truncated_frame_swallowing_a_good_one_is_recovered() -> None:
    good = encode(2, 5, Display("暂停服务"))
    truncated = encode(2, 4, Rating(5, 0, 0))[:7]  # header says 5 payload bytes; 1 arrived
    parser = FrameParser()
    frames = parser.feed(truncated + good)
    # The truncated header swallows the start of the good frame; its CRC fails, the parser
    # rescans inside and finds the good frame.
    assert [decode(f) for f in frames] == [Display("暂停服务")]
    assert parser.counts.bad_crc == 1


def test_truncated_frame_at_idle_is_counted() -> None:
    parser = FrameParser()
    assert parser.feed(encode(1, 1, Rating(3, 0, 0))[:-3]) == []
    assert parser.pending > 0
    assert parser.expire() == []
    assert parser.counts.truncated == 1
    assert parser.pending == 0


def test_trailing_sync_half_is_kept() -> None:
    wire = encode(1, 1, Pause())
    parser = FrameParser()
    assert parser.feed(b"garbage" + wire[:1]) == []
    assert parser.feed(wire[1:]) == [Frame(1, codec.PAUSE, 1, b"")]
    assert parser.counts.garbage_bytes == len(b"garbage")


@pytest.mark.parametrize(
    ("cmd", "payload", "why"),
    [
        (codec.RATING, b"\x05\x00\x00\x00", "expected 5 payload bytes"),
        (codec.RATING, b"\x06\x00\x00\x00\x00", "level 6 outside 1..5"),
        (codec.RATING, b"\x00\x00\x00\x00\x00", "level 0 outside 1..5"),
        (codec.EXPIRED, b"\x01", "expected 2 payload bytes"),
        (codec.HEARTBEAT, b"", "expected 1 payload byte"),
        (codec.TIME, b"\x00\x00", "expected 4 payload bytes"),
        (codec.LOGOUT, b"\x00", "expected an empty payload"),
        (codec.LOGIN, b"", "empty staff id"),
        (codec.LOGIN, b"   ", "empty staff id"),
        (codec.LOGIN, "张三".encode(), "not ASCII"),
        (codec.LOGIN, b"S1\x00", r"staff id 'S1\\x00' is not 1-64 characters"),
        (codec.LOGIN, b"\x00\x00", "staff id .* is not 1-64 characters"),
        (codec.LOGIN, b"S1\r\n", "staff id .* is not 1-64 characters"),
        (codec.LOGIN, b"S 1", "staff id 'S 1' is not"),
        (codec.LOGIN, b"S" * 65, "staff id .* is not 1-64 characters"),
        (codec.LOGIN, b"-S1", "staff id '-S1' is not .* starting with a letter or digit"),
        (codec.DISPLAY, b"\xff\xfe", "not UTF-8"),
        (0x55, b"", "unknown command 0x55"),
    ],
)
def test_bad_payloads_are_rejected_with_a_reason(cmd: int, payload: bytes, why: str) -> None:
    with pytest.raises(FrameError, match=why):
        decode(Frame(1, cmd, 0, payload))


def test_login_drops_the_spaces_of_a_fixed_width_field() -> None:
    assert decode(Frame(1, codec.LOGIN, 0, b"  S-01.a_b  ")) == Login("S-01.a_b")


def test_encode_refuses_what_the_wire_cannot_carry() -> None:
    with pytest.raises(FrameError, match=r"address 0 outside 1\.\.247"):
        encode(0, 0, Ack())
    with pytest.raises(FrameError, match="at most 64"):
        encode(1, 0, Display("字" * 22))  # 66 bytes of UTF-8
    assert codec.fit_text("字" * 22) == "字" * 21
    assert codec.fit_text("ab", 1) == "a"
