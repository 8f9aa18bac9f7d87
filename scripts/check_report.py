"""Look at a report.html as a person does: render it in headless Chromium, save a full-page
screenshot, and list what a reader would see broken.

    python scripts/check_report.py runs/default/report.html --screenshot report.png

Exit status 1 when the page has a problem: an image that does not load or decode, a "missing
figure" placeholder, a table without data rows (or with only empty cells), a console error or an
uncaught exception. Chromium is driven over the DevTools protocol (``websocket-client``), so the
checks run on the rendered DOM (``img.naturalWidth``), not on the HTML source. Needs Debian's
``chromium`` (``apt-get install -y chromium``) or ``$CHROMIUM``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

PAGE_FACTS_JS = r"""
(() => {
  const heading = (el) => { let p = el.previousElementSibling; while (p && !/^H[1-6]$/.test(p.tagName)) p = p.previousElementSibling; return p ? p.textContent.trim() : "(no heading)"; };
  const images = Array.from(document.images).map((img) => ({alt: img.alt, complete: img.complete, width: img.naturalWidth, height: img.naturalHeight}));
  const tables = Array.from(document.querySelectorAll("table")).map((t) => {
    const rows = Array.from(t.rows).filter((r) => r.querySelector("td"));
    const cells = rows.flatMap((r) => Array.from(r.cells).filter((c) => c.tagName === "TD").map((c) => c.textContent.trim()));
    return {title: heading(t), data_rows: rows.length, filled_cells: cells.filter((c) => c !== "").length, visible: t.getBoundingClientRect().height > 0};
  });
  const missing = Array.from(document.querySelectorAll("em")).filter((e) => e.textContent.startsWith("missing figure")).map((e) => e.textContent);
  return {title: document.title, images, tables, missing, height: document.documentElement.scrollHeight, text_length: document.body.innerText.length};
})()
"""


def find_chromium() -> str | None:
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


@dataclass
class Rendered:
    """What Chromium showed: the page's facts, console messages, and the problems found in them."""

    screenshot: Path
    facts: dict
    console: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class _DevTools:
    def __init__(self, ws_url: str, timeout: float):
        import websocket  # websocket-client

        self.ws = websocket.create_connection(ws_url, timeout=timeout, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, method: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        if any(e.get("method") == method for e in self.events):
            return
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            self.events.append(msg)
            if msg.get("method") == method:
                return
        raise TimeoutError(f"no {method} within {timeout} s")

    def close(self) -> None:
        self.ws.close()


def _console_lines(events: list[dict]) -> list[str]:
    out = []
    for e in events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append("console.error: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
        elif m == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            out.append("uncaught exception: " + str(d.get("exception", {}).get("description") or d.get("text")))
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            entry = p["entry"]
            out.append(f"{entry.get('source', 'log')} error: {entry.get('text')} {entry.get('url', '')}".strip())
    return out


def problems_of(facts: dict, console: list[str]) -> list[str]:
    problems = [f"image {i['alt']!r} did not load or decode ({i['width']}x{i['height']})"
                for i in facts["images"] if not i["complete"] or i["width"] == 0 or i["height"] == 0]
    problems += [f"placeholder shown: {m}" for m in facts["missing"]]
    problems += [f"table {t['title']!r} is empty ({t['data_rows']} data rows, {t['filled_cells']} filled cells)"
                 for t in facts["tables"] if t["data_rows"] == 0 or t["filled_cells"] == 0]
    problems += console
    if facts["text_length"] == 0:
        problems.append("the page shows no text")
    return problems


def render_report(html: str | os.PathLike, screenshot: str | os.PathLike, *, width: int = 1200,
                  timeout: float = 60.0, chromium: str | None = None) -> Rendered:
    """Load ``html`` in headless Chromium, save a full-page PNG screenshot, return what it showed."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError("chromium not found: apt-get install -y chromium (or set $CHROMIUM).")
    html, screenshot = Path(html).resolve(), Path(screenshot)
    if not html.exists():
        raise FileNotFoundError(f"no report at {html}")
    with tempfile.TemporaryDirectory(prefix="rc_chromium_") as profile:
        cmd = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars",
               f"--user-data-dir={profile}", "--remote-debugging-port=0", "--remote-allow-origins=*",
               f"--window-size={width},900", "about:blank"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        devtools = None
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + timeout
            while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"chromium did not start: {proc.stderr.read().decode()[-2000:] if proc.poll() is not None else 'timeout'}")
                time.sleep(0.1)
            port = int(port_file.read_text().split()[0])
            targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout).read())
            page = next(t for t in targets if t.get("type") == "page")
            devtools = _DevTools(page["webSocketDebuggerUrl"], timeout)
            for domain in ("Page", "Runtime", "Log"):
                devtools.call(f"{domain}.enable")
            devtools.call("Page.navigate", url=html.as_uri())
            devtools.wait_for("Page.loadEventFired", timeout)
            facts = devtools.call("Runtime.evaluate", expression=PAGE_FACTS_JS, returnByValue=True)["result"]["value"]
            metrics = devtools.call("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            shot = devtools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                                 clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            devtools.call("Runtime.evaluate", expression="1")  # flush pending console events
            console = _console_lines(devtools.events)
        finally:
            if devtools is not None:
                devtools.close()
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)  # chromium and the helpers it started (its own session)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)
    return Rendered(screenshot, facts, console, problems_of(facts, console))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", help="report.html to render")
    parser.add_argument("--screenshot", default=None, help="PNG to write (default: next to the report)")
    parser.add_argument("--width", type=int, default=1200)
    args = parser.parse_args(argv)
    shot = args.screenshot or str(Path(args.report).with_name("report_screenshot.png"))
    r = render_report(args.report, shot, width=args.width)
    f = r.facts
    print(f"{args.report}: {len(f['images'])} images, {len(f['tables'])} tables, page height {f['height']} px; "
          f"screenshot {shot}")
    for p in r.problems:
        print("PROBLEM:", p)
    return 1 if r.problems else 0


if __name__ == "__main__":
    sys.exit(main())
