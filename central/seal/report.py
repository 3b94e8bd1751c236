"""The seal's lines in the monthly reports (docs/tamper.md "Monthly seal"): the month's latest
checkpoint, its size and root in hex, and the same as a QR code (HTML: an SVG; table: text
blocks) when ``segno`` is installed (the ``central`` extra). Without a checkpoint the report
says so."""

from __future__ import annotations

from typing import Any

QR_PREFIX = "HALLSEAL"  # the QR's text: HALLSEAL MONTH SIZE ROOT


def qr_text(month: str, size: int, root: str) -> str:
    return f"{QR_PREFIX} {month} {size} {root}"


def add_seal(report: Any, store: Any, month: Any) -> None:
    """Append the seal's note to ``report`` (and its QR text to ``report.seal_qr``)."""
    found = store.checkpoints(month.label)
    if not found:
        report.notes.append(
            f"封存: {month.label} 尚未封存 (hall-central seal --month {month.label})"
        )
        return
    c = found[-1]
    report.notes.append(
        f"封存: {month.label} 第 {c.id} 号封存, 中心收到的 {c.tree_size} 条事件, "
        f"根 (root) {c.root}; 核对: hall-central verify --month {month.label}"
    )
    report.seal_qr = qr_text(month.label, c.tree_size, c.root)


def qr_svg(text: str) -> str:
    """The QR of ``text`` as inline SVG, or '' without segno."""
    try:
        import segno
    except ImportError:
        return ""
    return str(segno.make(text, error="m").svg_inline(scale=3))


def qr_blocks(text: str) -> str:
    """The QR of ``text`` as lines of block characters (two modules a line), or ''."""
    try:
        import segno
    except ImportError:
        return ""
    matrix = [list(r) for r in segno.make(text, error="m").matrix_iter(border=2)]
    if len(matrix) % 2:
        matrix.append([0] * len(matrix[0]))
    chars = {(0, 0): "█", (1, 0): "▄", (0, 1): "▀", (1, 1): " "}
    lines = [
        "".join(chars[(bool(top), bool(bottom))] for top, bottom in zip(a, b, strict=True))
        for a, b in zip(matrix[::2], matrix[1::2], strict=True)
    ]
    return "\n".join(lines)
