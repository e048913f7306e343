"""Render every page of the book (``make book``) in headless Chromium and screenshot it, full page, in tiles.

Fails (exit 1) when a page has an image that did not load, a missing chapter link, a link to a missing page, or a
cell output showing an error. Needs Debian's ``chromium`` (``apt-get install chromium``); talks to it over the
DevTools protocol with tornado's websocket client (installed with Jupyter), so no other package is needed.

    python scripts/check_book_in_browser.py [build/book] [--shots build/book-screenshots]
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tornado.websocket import websocket_connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from helpers.book import CHAPTERS, ERROR_MARK, check_site, page_name  # noqa: E402

WIDTH, TILE = 1280, 4000
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--hide-scrollbars",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--mute-audio"]
# What the page itself reports: images that failed, every link, cell outputs that show a traceback, its height.
PROBE = """JSON.stringify({
  images: document.images.length,
  broken: [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src.slice(0, 80)),
  links: [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href')),
  errors: [...document.querySelectorAll('[data-mime-type="application/vnd.jupyter.stderr"]')]
            .filter(e => e.textContent.includes(%s)).length,
  answers: [...document.querySelectorAll('strong')].filter(s => s.textContent.startsWith('Answer')).length,
  height: Math.ceil(document.documentElement.scrollHeight)})""" % json.dumps(ERROR_MARK)


class DevTools:
    """The smallest DevTools-protocol client: send a command, wait for its reply or for an event."""

    def __init__(self, ws):
        self.ws, self.next_id, self.events = ws, 0, []

    async def call(self, method: str, **params) -> dict:
        self.next_id += 1
        await self.ws.write_message(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(await self.ws.read_message())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            self.events.append(message.get("method"))

    async def wait_for(self, event: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while event not in self.events:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {event} within {timeout} s")
            message = json.loads(await asyncio.wait_for(self.ws.read_message(), left))
            self.events.append(message.get("method"))
        self.events.clear()


def start_chromium(profile: Path) -> tuple[subprocess.Popen, int]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("no chromium on PATH. Fix: `apt-get install chromium` (Debian), then run this again")
    proc = subprocess.Popen([browser, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                             f"--window-size={WIDTH},1000", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port_file = profile / "DevToolsActivePort"
    for _ in range(300):
        if port_file.is_file() and port_file.read_text().strip():
            return proc, int(port_file.read_text().split()[0])
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("chromium did not open its DevTools port within 30 s")


async def check_page(tools: DevTools, page: Path, shots: Path) -> tuple[dict, list[Path]]:
    await tools.call("Page.navigate", url=page.resolve().as_uri())
    await tools.wait_for("Page.loadEventFired")
    found = json.loads((await tools.call("Runtime.evaluate", expression=PROBE, returnByValue=True))["result"]["value"])
    height = found["height"]
    await tools.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=min(height, TILE),
                     deviceScaleFactor=1, mobile=False)
    tiles = []
    for n, top in enumerate(range(0, height, TILE)):
        shot = await tools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                                clip={"x": 0, "y": top, "width": WIDTH, "height": min(TILE, height - top), "scale": 1})
        tiles.append(shots / f"{page.stem}_{n + 1:02d}.png")
        tiles[-1].write_bytes(base64.b64decode(shot["data"]))
    return found, tiles


def problems_of(page: Path, found: dict, chapters: list[str]) -> list[str]:
    """What only a browser sees (images that did not load, rendered error outputs) and the chapter links each page
    must have; links to missing files are `check_site`'s."""
    out = [f"{page.name}: image did not load: {src}" for src in found["broken"]]
    local = {href.split("#")[0] for href in found["links"] if ":" not in href and not href.startswith("#")}
    expected = [page_name(n) for n in chapters] if page.name == "index.html" else ["index.html"]
    if page.name != "index.html":
        i = chapters.index(page.stem)
        expected += [page_name(n) for n in chapters[max(i - 1, 0):i + 2] if n != page.stem]
    out += [f"{page.name}: no link to {name}" for name in expected if name not in local]
    if found["errors"]:
        out.append(f"{page.name}: {found['errors']} cell output(s) show an error")
    return out


async def run(book: Path, shots: Path) -> list[str]:
    chapters = [n for n in CHAPTERS if (book / page_name(n)).is_file()]
    pages = [book / "index.html"] + [book / page_name(n) for n in chapters]
    missing = [p for p in pages if not p.is_file()]
    if missing or not chapters:
        return [f"missing page {p}" for p in missing] or [f"no chapter pages in {book}: run `make book` first"]
    shots.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        proc, port = start_chromium(Path(profile))
        try:
            targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
            url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
            tools = DevTools(await websocket_connect(url, max_message_size=1 << 30))
            await tools.call("Page.enable")
            problems = []
            for page in pages:
                began = time.perf_counter()
                found, tiles = await check_page(tools, page, shots)
                problems += problems_of(page, found, chapters)
                print(f"{page.name}: {found['height']} px tall, {found['images']} images "
                      f"({len(found['broken'])} broken), {found['answers']} answers, {found['errors']} error outputs, "
                      f"{len(tiles)} screenshot tile(s), {time.perf_counter() - began:.1f} s")
            return problems + [p for p in check_site(book) if "error" not in p]  # errors: counted in the page
        finally:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("book", nargs="?", default="build/book")
    parser.add_argument("--shots", default="build/book-screenshots")
    args = parser.parse_args()
    problems = asyncio.run(run(Path(args.book), Path(args.shots)))
    if problems:
        raise SystemExit("the book has problems a reader would trip over:\n  " + "\n  ".join(problems))
    print(f"no problems; screenshots in {args.shots}")


if __name__ == "__main__":
    main()
