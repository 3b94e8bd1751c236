"""What the docs tell pad vendors and integrators is what the code does."""

from __future__ import annotations

import json
import re
from pathlib import Path

from drivers.pad import codec

REPO = Path(__file__).resolve().parents[1]


def _crc(data: bytes) -> int:
    """CRC-16/MODBUS written from the text of docs/pads.md, not the codec's."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def test_pad_protocol_examples_decode_and_check():
    text = (REPO / "docs" / "pads.md").read_text(encoding="utf-8")
    frames = re.findall(r"\| `(AA 55(?: [0-9A-F]{2})+)` \|", text)
    assert len(frames) >= 10
    assert _crc(b"123456789") == 0x4B37
    for hexes in frames:
        raw = bytes.fromhex(hexes.replace(" ", ""))
        assert raw[5] == len(raw) - 8, hexes
        crc = _crc(raw[2:-2])
        assert raw[-2:] == bytes([crc & 0xFF, crc >> 8]), hexes
        (frame,) = codec.FrameParser().feed(raw)
        message = codec.decode(frame)  # a payload the agent accepts
        assert codec.encode(frame.addr, frame.seq, message) == raw


def test_topic_examples_are_valid_json_and_name_every_event_type():
    from agent.envelope import EVENT_TYPES

    text = (REPO / "docs" / "topics.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```json\n(.*?)```", text, re.S)
    assert blocks
    for block in blocks:
        json.loads(block)
    for event_type in EVENT_TYPES:
        assert f"`{event_type}`" in text, event_type


def test_docs_do_not_send_readers_outside_the_repository():
    """A clone has no ../shared: the README and docs must carry what users need."""
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        assert "../shared" not in text, path.name
        # Relative links inside the repository resolve.
        for target in re.findall(r"\]\(((?!https?:)[^)#]+)", text):
            assert (path.parent / target).exists(), f"{path.name}: broken link {target}"
