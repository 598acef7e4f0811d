"""A private MariaDB server for tests and fixture generation: its own datadir, socket, error
log and slow-query log under a temporary directory, no networking, never the system service.

``PrivateMariaDB(root).start()`` runs ``mariadb-install-db`` then ``mariadbd`` with
``slow_query_log=1`` and ``long_query_time=0`` (every statement is logged), waits for the
socket, and :meth:`query` runs SQL through the ``mariadb`` client. :meth:`stop` ends the
server it started (by its pid).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

__all__ = ["MARIADBD", "PrivateMariaDB", "available"]

MARIADBD = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
START_TIMEOUT_S = 60.0


def available() -> bool:
    return os.path.exists(MARIADBD) and shutil.which("mariadb-install-db") is not None \
        and shutil.which("mariadb") is not None


class PrivateMariaDB:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.datadir = self.root / "data"
        self.socket = self.root / "mysql.sock"
        self.error_log = self.root / "error.log"
        self.slow_log = self.root / "slow.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def _user(self) -> list[str]:
        return ["--user=root"] if os.geteuid() == 0 else []

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mariadb-install-db", "--no-defaults", f"--datadir={self.datadir}",
             "--auth-root-authentication-method=normal", "--skip-test-db", *self._user()],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        self.proc = subprocess.Popen(
            [MARIADBD, "--no-defaults", f"--datadir={self.datadir}", f"--socket={self.socket}",
             f"--pid-file={self.root / 'mariadbd.pid'}", "--skip-networking",
             f"--log-error={self.error_log}", "--slow-query-log=1",
             f"--slow-query-log-file={self.slow_log}", "--long-query-time=0",
             "--log-warnings=2", "--innodb-buffer-pool-size=16M", *self._user()],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mariadbd exited with {self.proc.returncode}: "
                                   f"{self.error_log.read_text(errors='replace')[-2000:]}")
            if self.socket.exists() and self.query("SELECT 1", check=False).returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError("mariadbd did not start in time")

    def query(self, sql: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``sql`` as root through the socket (errors allowed unless ``check``)."""
        return subprocess.run(
            ["mariadb", "--no-defaults", f"--socket={self.socket}", "-uroot", "--batch"],
            input=sql, text=True, capture_output=True, check=check, timeout=60)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
