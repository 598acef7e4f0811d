"""Headless Chromium driven over the DevTools protocol on loopback, for tests of pages logcap
serves (no selenium here: a small RFC 6455 client is enough for ``Runtime.evaluate``).

:class:`HeadlessChromium` starts Debian's ``chromium`` (``--headless --no-sandbox``, as root
here, with a fresh profile in a temp dir and a DevTools port chosen by Chromium and read from
``DevToolsActivePort``) on a URL; :meth:`HeadlessChromium.evaluate` runs a JavaScript
expression in the page and returns its value (JSON-serialisable values only).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from tests.actor_kit import wait_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--no-first-run", "--disable-extensions", "--remote-debugging-address=127.0.0.1",
         "--remote-debugging-port=0")


class _WebSocket:
    """A blocking text-only WebSocket client (client frames masked, as RFC 6455 requires)."""

    def __init__(self, url: str, timeout: float = 30) -> None:
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the connection during the handshake")
            head += chunk
        head, _, self._pending = head.partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"DevTools refused the WebSocket: {head[:200]!r}")

    def _exact(self, n: int) -> bytes:
        while len(self._pending) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            self._pending += chunk
        out, self._pending = self._pending[:n], self._pending[n:]
        return out

    def send(self, text: str) -> None:
        payload = text.encode()
        n = len(payload)
        if n < 126:
            header = bytes([0x81, 0x80 | n])
        elif n < 1 << 16:
            header = bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
        else:
            header = bytes([0x81, 0x80 | 127]) + n.to_bytes(8, "big")
        mask = os.urandom(4)
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def recv(self) -> str:
        message = b""
        while True:
            first, second = self._exact(2)
            n = second & 0x7F
            if n == 126:
                n = int.from_bytes(self._exact(2), "big")
            elif n == 127:
                n = int.from_bytes(self._exact(8), "big")
            data = self._exact(n)
            opcode = first & 0x0F
            if opcode == 0x8:
                raise ConnectionError("DevTools closed the WebSocket")
            if opcode in (0x9, 0xA):  # ping, pong: Chromium does not ping; ignore either
                continue
            message += data
            if first & 0x80:
                return message.decode()

    def close(self) -> None:
        self.sock.close()


class HeadlessChromium:
    def __init__(self, url: str) -> None:
        assert CHROMIUM is not None
        self.profile = Path(tempfile.mkdtemp(prefix="logcap-chromium-"))
        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}", url],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = self.profile / "DevToolsActivePort"
        wait_until(lambda: self._alive() and port_file.exists()
                   and len(port_file.read_text().splitlines()) >= 2,
                   timeout=60, what="Chromium's DevTools port")
        port = int(port_file.read_text().splitlines()[0])
        pages: list[dict[str, Any]] = []

        def page_listed() -> bool:
            pages[:] = [t for t in requests.get(f"http://127.0.0.1:{port}/json/list",
                                                timeout=5).json() if t["type"] == "page"]
            return bool(pages)

        wait_until(page_listed, timeout=30, what="Chromium's page target")
        self.ws = _WebSocket(pages[0]["webSocketDebuggerUrl"])
        self._next_id = 0

    def _alive(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"chromium exited {self.proc.returncode}")
        return True

    def evaluate(self, expression: str) -> Any:
        """The value of ``expression`` in the page (``Runtime.evaluate``, by value)."""
        self._next_id += 1
        self.ws.send(json.dumps({"id": self._next_id, "method": "Runtime.evaluate",
                                 "params": {"expression": expression, "returnByValue": True}}))
        while True:
            answer = json.loads(self.ws.recv())
            if answer.get("id") == self._next_id:
                break
        result = answer["result"]
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def close(self) -> None:
        self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.profile, ignore_errors=True)
