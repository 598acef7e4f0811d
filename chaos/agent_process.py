"""The logcap process of a chaos run: start, kill -9, crash an actor through the admin API,
and what ``/proc`` says of its threads and descriptors."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import requests

from tests.harness import LogcapProcess

__all__ = ["ChaosProcess", "CrashRefused"]

CRASH_TRY_S = 10.0
"""How long a crash request is retried while the admin API restarts or nothing runs."""


class CrashRefused(RuntimeError):
    """``POST /chaos/crash`` kept failing (the message has the last answer)."""


class ChaosProcess(LogcapProcess):
    def __init__(self, config: Path, token: str) -> None:
        super().__init__(config)
        self.token = token

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/task"))

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def fd_targets(self) -> list[str]:
        """What each descriptor points to (``readlink``), sorted: a leak's diagnosis. A TCP
        socket is shown with its ends and state (``socket:tcp 127.0.0.1:8401->...:51234
        ESTABLISHED``), so a leaked connection says whose it is."""
        tcp = self._tcp_sockets()
        out = []
        for fd in os.listdir(f"/proc/{self.pid}/fd"):
            try:
                target = os.readlink(f"/proc/{self.pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in tcp:
                target = f"socket:tcp {tcp[target[8:-1]]}"
            out.append(target)
        return sorted(out)

    def _tcp_sockets(self) -> dict[str, str]:
        """Socket inode -> ``local->remote STATE`` from /proc/<pid>/net/tcp (IPv4)."""
        states = {"01": "ESTABLISHED", "06": "TIME_WAIT", "08": "CLOSE_WAIT", "0A": "LISTEN"}
        out = {}
        try:
            with open(f"/proc/{self.pid}/net/tcp") as fh:
                rows = fh.read().splitlines()[1:]
        except OSError:
            return out
        for row in rows:
            cols = row.split()
            if len(cols) > 9:
                out[cols[9]] = (f"{_endpoint(cols[1])}->{_endpoint(cols[2])} "
                                f"{states.get(cols[3], cols[3])}")
        return out

    def crash(self, body: dict[str, Any]) -> dict[str, Any]:
        """Crash an actor; retried on 409 (nothing running to crash right now) and on a
        connection error (the admin server itself is being restarted)."""
        deadline = time.monotonic() + CRASH_TRY_S
        pause = threading.Event()
        last = ""
        while time.monotonic() < deadline:
            try:
                resp = requests.post(f"http://127.0.0.1:{self.port}/chaos/crash", json=body,
                                     headers={"Authorization": f"Bearer {self.token}"},
                                     timeout=5)
            except requests.RequestException as exc:
                last = str(exc)
            else:
                if resp.status_code == 200:
                    return dict(resp.json())
                last = f"{resp.status_code} {resp.text.strip()}"
                if resp.status_code not in (409, 503):
                    break
            pause.wait(0.05)
        raise CrashRefused(f"POST /chaos/crash {body}: {last}")

    def health(self) -> tuple[int, dict[str, Any]]:
        """``/health``'s status code and components ({} when it does not answer)."""
        try:
            resp = requests.get(f"http://127.0.0.1:{self.port}/health", timeout=5)
            return resp.status_code, dict(resp.json().get("components", {}))
        except (requests.RequestException, ValueError):
            return 0, {}

    def tree_alive(self) -> bool:
        """The process runs, ``/health`` is 200 and every actor is running."""
        if self.proc is None or self.proc.poll() is not None:
            return False
        code, components = self.health()
        return code == 200 and bool(components) and all(
            c.get("status") == "running" for c in components.values())


def _endpoint(hex_addr: str) -> str:
    """``0100007F:20D1`` (little-endian IPv4, port) as ``127.0.0.1:8401``."""
    addr, port = hex_addr.split(":")
    octets = [str(int(addr[i:i + 2], 16)) for i in range(6, -1, -2)]
    return f"{'.'.join(octets)}:{int(port, 16)}"

