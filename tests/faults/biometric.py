"""Detectors for biometric data where none may be (docs/topics.md: face data stays on the kiosk,
encodings are never published, no frame or face image is written or sent).

- face encodings: 128 numbers in a row, as text (a JSON or repr list of floats), as raw
  float64/float32 (any byte alignment), or base64 of either;
- images: JPEG (``FF D8 FF``) and PNG (``89 50 4E 47 0D 0A 1A 0A``) magic, raw or base64.

face_recognition's encodings are 128 float64 values of magnitude below 1 (dlib's ResNet
descriptor); a run of 128 such values is what the binary detector looks for.
"""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path

import numpy as np

DIMS = 128
IMAGE_MAGIC = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG"}
# base64 of the magic at the start of an encoded blob: "/9j/" is FF D8 FF, "iVBORw0KGgo" PNG.
B64_IMAGE = re.compile(rb"(/9j/[A-Za-z0-9+/]{16}|iVBORw0KGgo)")
# A decimal fraction as text; 128 of them close together (JSON, a Python or numpy repr such as
# "np.float64(-0.09)", CSV) are an encoding written out.
DECIMAL = re.compile(rb"-?\d*\.\d+(?:[eE][-+]?\d+)?")
MAX_GAP = 24  # characters between two numbers of one list
B64_RUN = re.compile(rb"[A-Za-z0-9+/]{600,}={0,2}")


def _float_runs(blob: bytes, dtype: str, size: int) -> bool:
    """True if ``blob`` holds DIMS consecutive ``dtype`` values that look like an encoding."""
    if len(blob) < DIMS * size:
        return False
    for offset in range(size):
        n = (len(blob) - offset) // size
        if n < DIMS:
            continue
        values = np.frombuffer(blob, dtype=dtype, count=n, offset=offset)
        with np.errstate(invalid="ignore", over="ignore"):
            mags = np.abs(values.astype(np.float64))
        plausible = (np.isfinite(mags) & (mags > 1e-5) & (mags < 1.0)).astype(np.int32)
        # A window of DIMS values all plausible: the sum over the window reaches DIMS.
        if np.convolve(plausible, np.ones(DIMS, np.int32), "valid").max() >= DIMS:
            return True
    return False


def _text_encoding(blob: bytes) -> int | None:
    """Byte offset of DIMS decimal fractions of magnitude < 1 in a row, or None."""
    run, start, last_end = 0, 0, -1
    for m in DECIMAL.finditer(blob):
        try:
            small = abs(float(m.group(0))) < 1.0
        except ValueError:
            small = False
        if small and run and m.start() - last_end <= MAX_GAP:
            run += 1
        elif small:
            run, start = 1, m.start()
        else:
            run = 0
        last_end = m.end()
        if run >= DIMS:
            return start
    return None


def _binary_encoding(blob: bytes) -> bool:
    return _float_runs(blob, "<f8", 8) or _float_runs(blob, "<f4", 4)


def findings(blob: bytes, where: str) -> list[str]:
    """What in ``blob`` looks like a face encoding or an image; empty if nothing."""
    out = []
    for magic, kind in IMAGE_MAGIC.items():
        if magic in blob:
            out.append(f"{where}: {kind} magic at byte {blob.index(magic)}")
    m = B64_IMAGE.search(blob)
    if m:
        out.append(f"{where}: base64 image at byte {m.start()}")
    at = _text_encoding(blob)
    if at is not None:
        out.append(f"{where}: a list of {DIMS} numbers at byte {at}")
    for m in B64_RUN.finditer(blob):
        try:
            decoded = base64.b64decode(m.group(0) + b"=" * (-len(m.group(0)) % 4))
        except (binascii.Error, ValueError):
            continue
        if _binary_encoding(decoded):
            out.append(f"{where}: base64 float array at byte {m.start()}")
    if _binary_encoding(blob):
        out.append(f"{where}: {DIMS} raw floats in a row")
    return out


def scan_tree(root: Path, skip: set[Path]) -> tuple[list[str], int]:
    """Scan every file under ``root`` except ``skip``; returns (findings, files scanned)."""
    out, n = [], 0
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.resolve() in skip:
            continue
        n += 1
        out += findings(path.read_bytes(), str(path))
    return out, n
