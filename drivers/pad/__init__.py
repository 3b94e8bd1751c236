"""HallPad v1 rating pads (docs/pads.md): pure codec, serial link, driver interface."""

from drivers.pad.base import PadDriver, PadHandler
from drivers.pad.codec import Frame, FrameError, FrameParser, crc16_modbus, decode, encode
from drivers.pad.link import HallPadLink

__all__ = [
    "Frame",
    "FrameError",
    "FrameParser",
    "HallPadLink",
    "PadDriver",
    "PadHandler",
    "crc16_modbus",
    "decode",
    "encode",
]
