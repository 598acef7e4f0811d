"""The status page at ``/`` of a running logcap, in headless Chromium: it loads, shows the
components of the agent, and its numbers (lines, lines/s in and out) move while lines flow.
Also: the page needs nothing from outside the agent."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.actor_kit import wait_until
from tests.chromium import CHROMIUM, HeadlessChromium
from tests.harness import LogcapProcess, NumberedWriter, make_config

pytestmark = pytest.mark.integration

READ_PAGE = """document.getElementById("health") === null ? "null" : JSON.stringify({
  health: document.getElementById("health").textContent,
  fetchError: document.getElementById("fetch-error").textContent,
  rateIn: document.getElementById("rate-in").textContent,
  rateOut: document.getElementById("rate-out").textContent,
  components: [...document.querySelectorAll("#components tr[data-name]")].map(r => [
      r.dataset.name, r.querySelector('[data-k="status"]').textContent]),
  sources: Object.fromEntries([...document.querySelectorAll("#sources tr[data-name]")].map(
      r => [r.dataset.name, {lines: r.querySelector('[data-k="lines"]').textContent,
                             rate: r.querySelector('[data-k="lines-rate"]').textContent}])),
  sinks: Object.fromEntries([...document.querySelectorAll("#sinks tr[data-name]")].map(
      r => [r.dataset.name, {sent: r.querySelector('[data-k="sent"]').textContent,
                             rate: r.querySelector('[data-k="sent-rate"]').textContent}])),
  streams: document.querySelectorAll("#streams tbody tr").length,
  buffer: (document.querySelector('[data-k="buffer-bytes"]') || {}).textContent,
  dlq: (document.querySelector('[data-k="dlq"]') || {}).textContent,
})"""


def _number(text: str) -> float:
    return float(text.replace(",", "")) if re.fullmatch(r"[\d,.]+", text) else -1.0


@pytest.fixture
def flowing_agent(tmp_path: Path) -> Iterator[LogcapProcess]:
    """logcap tailing a file written at 400 lines/s, with the disk buffer and the DLQ."""
    (tmp_path / "logs").mkdir()
    config = make_config(tmp_path, [str(tmp_path / "logs" / "*.log")],
                         disk_buffer={"enabled": True, "directory": str(tmp_path / "buffer")},
                         dlq={"directory": str(tmp_path / "dlq")})
    proc = LogcapProcess(config).start()
    stop = threading.Event()
    writer = threading.Thread(
        target=NumberedWriter(tmp_path / "logs" / "app.log").write_at_rate,
        args=(400 * 120, 400), kwargs={"stop": stop}, daemon=True)
    writer.start()
    try:
        yield proc
    finally:
        stop.set()
        writer.join(10)
        proc.stop()


def test_the_page_needs_no_external_asset_and_forbids_loading_any(tmp_path: Path) -> None:
    from logcap.api.app import STATUS_PAGE  # the bytes served at /

    page = STATUS_PAGE.decode()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "innerHTML" not in page  # every value is set as text
    assert 'fetch("status.json"' in page


@pytest.mark.skipif(CHROMIUM is None, reason="chromium missing (apt-get install -y chromium)")
def test_the_page_shows_the_components_and_its_numbers_move_while_lines_flow(
        flowing_agent: LogcapProcess) -> None:
    base = f"http://127.0.0.1:{flowing_agent.port}"
    served = requests.get(f"{base}/", timeout=5)
    assert served.status_code == 200 and served.headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in served.headers["Content-Security-Policy"]
    browser = HeadlessChromium(f"{base}/")
    try:
        seen: list[dict[str, Any]] = []

        def page() -> dict[str, Any]:
            doc: dict[str, Any] = json.loads(browser.evaluate(READ_PAGE)) or {}
            seen.append(doc)
            return doc

        def rendered() -> bool:
            doc = page()
            return doc.get("health") == "ok" and "app" in doc["sources"] and "file" in doc["sinks"]

        wait_until(rendered, timeout=60, what="the page rendering the agent")
        first = seen[-1]
        names = dict(first["components"])
        for name in ("root/sources/app", "root/dispatchers/shard-0", "root/sinks/file",
                     "root/state/positions", "root/state/buffer", "root/state/dlq",
                     "root/admin"):
            assert names.get(name) == "running", (name, names)
        assert first["streams"] == 1  # the one file, with its lag
        assert first["buffer"].startswith(("0 B", "1", "2", "3", "4", "5", "6", "7", "8", "9"))
        assert first["dlq"].startswith("0 entries")
        assert first["fetchError"] == ""

        def moving() -> bool:
            doc = page()
            return (_number(doc["sources"]["app"]["lines"])
                    > _number(first["sources"]["app"]["lines"])
                    and _number(doc["sinks"]["file"]["sent"])
                    > _number(first["sinks"]["file"]["sent"])
                    and _number(doc["sources"]["app"]["rate"]) > 0
                    and _number(doc["sinks"]["file"]["rate"]) > 0
                    and _number(doc["rateIn"]) > 0 and _number(doc["rateOut"]) > 0)

        wait_until(moving, timeout=60, what="the page's numbers moving")
        assert seen[-1]["fetchError"] == ""
    finally:
        browser.close()
