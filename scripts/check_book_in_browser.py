"""Render every page of the book (``make book``) in headless Chromium, check what a reader sees, and screenshot it.

Fails (exit 1) when a page is missing, an image did not load, a link points to a missing page or anchor, a cell
output shows an error, a warning box is shown (a docutils system message, a stderr output with a Python warning),
a formula is left unrendered after MathJax ran (a ``$``, ``\\(`` or ``\\[`` in the page's prose, code excluded, or a
MathJax error), the page loads a script or style from the network, or search finds nothing. Saves the top of each
page (the window a reader first sees, 1280x900) and the whole page in tiles of 4,000 px to ``build/book-screens/``.
Needs Debian's ``chromium`` (``apt-get install chromium``); talks to it over the DevTools protocol with tornado's
websocket client (installed with Jupyter), so no other package is needed.

    python scripts/check_book_in_browser.py [build/book] [--shots build/book-screens] [--search VICReg]
    python scripts/check_book_in_browser.py --fixture   # builds and checks tests/data/book's maths (build/book-fixture)
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import posixpath
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tornado.websocket import websocket_connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tools.book import ERROR_MARK, build, check_site  # noqa: E402

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "data" / "book"
FIXTURE_TOC = {"chapters": [{"name": "00_maths", "title": "Maths", "blurb": "Inline and display LaTeX, in the text "
                             "and in an output."}], "pages": {"globs": []}}

WIDTH, HEIGHT, TILE = 1280, 900, 4000
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--hide-scrollbars",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--mute-audio",
         "--allow-file-access-from-files"]
# Resolves once MathJax 2 has typeset the page (at once on pages without maths, where it is not loaded).
MATHJAX_DONE = """new Promise(done => {
  if (!document.querySelector('.math')) return done('no maths');
  const wait = (n) => window.MathJax && MathJax.isReady ? MathJax.Hub.Queue(() => done('typeset'))
                      : n > 400 ? done('MathJax never loaded') : setTimeout(() => wait(n + 1), 50);
  wait(0);
})"""
# What the page itself reports after MathJax ran: images, links, error outputs, warning boxes, unrendered maths.
PROBE = """JSON.stringify((() => {
  const article = document.querySelector('article.bd-article') || document.body;
  const prose = article.cloneNode(true);
  prose.querySelectorAll('pre, code, script, style, .MathJax_Preview, .highlight').forEach(e => e.remove());
  const text = prose.textContent;
  const raw = [...text.matchAll(/.{0,40}(\\$|\\\\\\(|\\\\\\[|\\\\begin\\{).{0,40}/g)].map(m => m[0].replace(/\\s+/g, ' '));
  return {
    images: document.images.length,
    broken: [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src.slice(0, 80)),
    links: [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href')),
    sidebar: [...document.querySelectorAll('nav.bd-docs-nav a')].map(a => a.textContent.trim()),
    errors: [...document.querySelectorAll('.output')].filter(e => e.textContent.includes(%s)).length,
    warnings: [...document.querySelectorAll('.system-message, .problematic, .output.stderr')]
                .filter(e => !e.matches('.output.stderr') || /Warning:/.test(e.textContent))
                .map(e => e.textContent.trim().slice(0, 100)),
    formulas: article.querySelectorAll('.MathJax, .MathJax_Display').length,
    math_errors: article.querySelectorAll('.MathJax_Error, merror, .math-error').length,
    raw: raw.slice(0, 5),
    remote: [...document.querySelectorAll('script[src], link[href]')].map(e => e.src || e.href)
              .filter(u => /^https?:/.test(u)),
    height: Math.ceil(document.documentElement.scrollHeight)};
})())""" % json.dumps(ERROR_MARK)
SEARCH_DONE = """new Promise(done => {
  const poll = (n) => {
    const hits = document.querySelectorAll('#search-results li');
    const summary = document.querySelector('#search-results p.search-summary, #search-results .search-summary');
    if (hits.length || n > 300) done(JSON.stringify({hits: hits.length,
        first: [...hits].slice(0, 3).map(h => h.querySelector('a')?.textContent.trim())}));
    else setTimeout(() => poll(n + 1), 100);
  };
  poll(0);
})"""


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

    async def evaluate(self, expression: str):
        reply = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return reply["result"]["value"]


def start_chromium(profile: Path) -> tuple[subprocess.Popen, int]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("no chromium on PATH. Fix: `apt-get install chromium` (Debian), then run this again")
    proc = subprocess.Popen([browser, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                             f"--window-size={WIDTH},{HEIGHT}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port_file = profile / "DevToolsActivePort"
    for _ in range(300):
        if port_file.is_file() and port_file.read_text().strip():
            return proc, int(port_file.read_text().split()[0])
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("chromium did not open its DevTools port within 30 s")


async def shoot(tools: DevTools, name: str, shots: Path, height: int) -> list[Path]:
    """The first window (name_top.png) and the whole page in tiles (name_01.png, ...)."""
    await tools.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1,
                     mobile=False)
    tiles = [shots / f"{name}_top.png"]
    tiles[0].write_bytes(base64.b64decode((await tools.call("Page.captureScreenshot", format="png"))["data"]))
    for n, top in enumerate(range(0, height, TILE)):
        shot = await tools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                                clip={"x": 0, "y": top, "width": WIDTH, "height": min(TILE, height - top), "scale": 1})
        tiles.append(shots / f"{name}_{n + 1:02d}.png")
        tiles[-1].write_bytes(base64.b64decode(shot["data"]))
    return tiles


async def check_page(tools: DevTools, page: Path, shots: Path) -> tuple[dict, list[Path]]:
    await tools.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1,
                     mobile=False)
    await tools.call("Page.navigate", url=page.resolve().as_uri())
    await tools.wait_for("Page.loadEventFired")
    found = {"maths": await asyncio.wait_for(tools.evaluate(MATHJAX_DONE), 60)}
    found.update(json.loads(await tools.evaluate(PROBE)))
    return found, await shoot(tools, page.stem, shots, found["height"])


def problems_of(name: str, found: dict, chapters: list[str]) -> list[str]:
    """What only a browser sees; links to missing files and anchors are `check_site`'s."""
    out = [f"{name}: image did not load: {src}" for src in found["broken"]]
    folder = posixpath.dirname(name)  # a page in docs/ links to ../01_diffusion.html: compare from the book's root
    local = {posixpath.normpath(posixpath.join(folder, href.split("#")[0])) for href in found["links"]
             if ":" not in href and not href.startswith("#")}
    out += [f"{name}: no link to {c}.html" for c in chapters if f"{c}.html" not in local and f"{c}.html" != name]
    if found["errors"]:
        out.append(f"{name}: {found['errors']} cell output(s) show an error")
    out += [f"{name}: warning box: {w!r}" for w in found["warnings"]]
    out += [f"{name}: unrendered formula: {r!r}" for r in found["raw"]]
    if found["math_errors"]:
        out.append(f"{name}: {found['math_errors']} formula(s) MathJax could not typeset")
    if found["maths"] == "MathJax never loaded":
        out.append(f"{name}: the page has maths but MathJax did not load")
    out += [f"{name}: loads {url} from the network" for url in found["remote"]]
    return out


async def run(book: Path, shots: Path, query: str) -> list[str]:
    documents = [p.relative_to(book).with_suffix("").as_posix() for p in sorted(book.rglob("*.html"))
                 if p.parent.name not in ("_static", "_sources") and p.name not in ("search.html", "genindex.html")
                 and "_static" not in p.parts]
    chapters = [d for d in documents if d[:2].isdigit()]
    if "index" not in documents or not chapters:
        return [f"no book in {book} (index.html and chapter pages): run `make book` first"]
    shots.mkdir(parents=True, exist_ok=True)
    problems = check_site(book, documents)
    with tempfile.TemporaryDirectory() as profile:
        proc, port = start_chromium(Path(profile))
        try:
            targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
            url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
            tools = DevTools(await websocket_connect(url, max_message_size=1 << 30))
            await tools.call("Page.enable")
            for doc in documents:
                began = time.perf_counter()
                found, tiles = await check_page(tools, book / f"{doc}.html", shots)
                problems += problems_of(f"{doc}.html", found, chapters)
                print(f"{doc}.html: {found['height']} px tall, {found['images']} images ({len(found['broken'])} "
                      f"broken), {found['formulas']} typeset formulas ({found['maths']}), {len(found['sidebar'])} "
                      f"sidebar entries, {found['errors']} error outputs, {len(found['warnings'])} warning boxes, "
                      f"{len(tiles)} screenshots, {time.perf_counter() - began:.1f} s")
            await tools.call("Page.navigate", url=(book / "search.html").resolve().as_uri() + f"?q={query}")
            await tools.wait_for("Page.loadEventFired")
            hits = json.loads(await asyncio.wait_for(tools.evaluate(SEARCH_DONE), 60))
            await shoot(tools, "search", shots, HEIGHT)
            print(f"search.html?q={query}: {hits['hits']} results, first {hits['first']}")
            if not hits["hits"]:
                problems.append(f"search.html: no result for {query!r}")
            return problems
        finally:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("book", nargs="?", default="build/book")
    parser.add_argument("--shots", default="build/book-screens")
    parser.add_argument("--search", default="VICReg", help="a word search must find")
    parser.add_argument("--fixture", action="store_true", help="build the synthetic book of tests/data/book (LaTeX "
                        "inline and displayed) into build/book-fixture/site and check that instead")
    args = parser.parse_args()
    if args.fixture:
        args.book, args.shots, args.search = "build/book-fixture/site", "build/book-fixture/screens", "ELBO"
        build(FIXTURE, args.book, {}, FIXTURE_TOC, work="build/book-fixture")
    problems = asyncio.run(run(Path(args.book), Path(args.shots), args.search))
    if problems:
        raise SystemExit("the book has problems a reader would trip over:\n  " + "\n  ".join(problems))
    print(f"no problems; screenshots in {args.shots}")


if __name__ == "__main__":
    main()
