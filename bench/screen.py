"""The kiosk page: from a look's decision reaching the agent to its text on the screen.

A real ScreenServer (agent/kiosk/screen.py) and Debian's headless ``chromium`` on the kiosk page,
driven over the DevTools protocol. A MutationObserver in the page stamps the wall clock
whenever the result box changes; the bench stamps the wall clock just before
``ScreenHub.look`` (what the attendance worker calls when the recognition process's look
arrives). The preview stream runs meanwhile (a JPEG at ``preview_fps``), as on a kiosk.

Baseline, in the same run: the same DOM change made by a DevTools ``Runtime.evaluate``
(bench -> browser over a WebSocket, no server, no SSE): the floor of telling a browser
anything. Target: look -> text p99 < 500 ms (docs/attendance.md "Kiosk screen").

    python bench/screen.py [--looks 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.config import AgentConfig  # noqa: E402
from agent.kiosk.screen import ScreenHub, ScreenServer  # noqa: E402

OBSERVE = """
window.__shown = [];
new MutationObserver(() => window.__shown.push(performance.timeOrigin + performance.now()))
  .observe(document.getElementById('result'), {childList: true, subtree: true});
"""


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]


def chromium(profile: Path) -> tuple[subprocess.Popen[str], int]:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        raise SystemExit("bench/screen.py: needs Debian's chromium")
    proc = subprocess.Popen(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    for line in proc.stderr:  # type: ignore[union-attr]
        if line.startswith("DevTools listening on ws://"):
            return proc, int(line.split("ws://127.0.0.1:")[1].split("/")[0])
    raise SystemExit("chromium did not start its DevTools server")


async def run(port: int, devtools: int, hub: ScreenHub, looks: int) -> tuple[list, list]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{devtools}/json/list") as r:
            targets = await r.json()
        ws_url = next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"]
        async with http.ws_connect(ws_url, max_msg_size=0) as ws:
            ids = iter(range(1, 1_000_000))

            async def call(method: str, **params: object) -> dict:
                mid = next(ids)
                await ws.send_json({"id": mid, "method": method, "params": params})
                while True:
                    msg = await ws.receive_json()
                    if msg.get("id") == mid:
                        return msg.get("result", {})

            async def evaluate(js: str) -> object:
                r = await call("Runtime.evaluate", expression=js, returnByValue=True)
                return r.get("result", {}).get("value")

            await call("Page.enable")
            await call("Page.navigate", url=f"http://127.0.0.1:{port}/")
            while not await evaluate("!!document.getElementById('result')"):
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # the SSE stream is open
            await evaluate(OBSERVE)

            async def measure(send) -> list[float]:
                out = []
                for i in range(looks):
                    before = await evaluate("window.__shown.length")
                    sent = time.time() * 1000
                    await send(i)
                    while (await evaluate("window.__shown.length")) == before:
                        await asyncio.sleep(0.005)
                    shown = await evaluate(f"window.__shown[{before}]")
                    out.append(float(shown) - sent)  # type: ignore[arg-type]
                    await asyncio.sleep(0.05)
                return out

            async def via_screen(i: int) -> None:
                kind = ("unknown_face", "repeat")[i % 2]
                hub.look({"kind": kind, "staff_id": "S001"})

            async def via_devtools(i: int) -> None:
                text = json.dumps(f"baseline {i}")
                js = f"document.querySelector('#result').firstElementChild.textContent = {text}"
                await call("Runtime.evaluate", expression=js)

            screen = await measure(via_screen)
            baseline = await measure(via_devtools)
            return screen, baseline


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--looks", type=int, default=40)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
        probe.close()
        cfg = AgentConfig.model_validate(
            {
                "device": {"id": "kiosk-01", "site": "bench", "data_dir": tmp},
                "attendance": {},
                "screen": {"listen": f"127.0.0.1:{free}", "result_s": 60},
            }
        )
        hub = ScreenHub(cfg)
        server = ScreenServer(hub, cfg.screen.listen)
        assert server.start() and server.port, server.error
        stop = threading.Event()
        frame = _jpeg()

        def preview() -> None:  # the MJPEG stream at the default rate, as on a kiosk
            while not stop.wait(1 / cfg.screen.preview_fps):
                hub.frame(frame)

        feeder = threading.Thread(target=preview, daemon=True)
        feeder.start()
        browser, devtools = chromium(Path(tmp) / "profile")
        try:
            screen, baseline = asyncio.run(run(server.port, devtools, hub, args.looks))
        finally:
            stop.set()
            browser.terminate()
            browser.wait(10)
            server.stop()
    p50, p99 = percentile(screen, 0.5), percentile(screen, 0.99)
    b50, b99 = percentile(baseline, 0.5), percentile(baseline, 0.99)
    ok = p99 < 500
    print(f"look -> text on the page: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(screen):.1f}")
    print(f"baseline (DevTools evaluate): p50 {b50:.1f} ms, p99 {b99:.1f} ms")
    print(
        f"looks={len(screen)} look_p50_ms={p50:.1f} look_p99_ms={p99:.1f} "
        f"baseline_p50_ms={b50:.1f} baseline_p99_ms={b99:.1f} "
        f"ratio_p50={p50 / max(b50, 0.1):.2f} target_p99_ms=500 ok={int(ok)}"
    )
    return 0 if ok else 1


def _jpeg() -> bytes:
    """A small grey JPEG made with Pillow or OpenCV when present, else a fixed tiny one."""
    try:
        import io

        from PIL import Image

        buf = io.BytesIO()
        Image.new("RGB", (480, 360), (90, 110, 140)).save(buf, "JPEG", quality=70)
        return buf.getvalue()
    except ImportError:
        return b"\xff\xd8\xff\xd9"


if __name__ == "__main__":
    sys.exit(main())
