"""logcap as users install it: the built wheel (and the sdist) in a fresh virtualenv, not ``-e``.

The wheel is built from the checkout, installed with its dependencies into a new virtualenv,
and its ``logcap`` command is run from a directory outside the checkout, so nothing can be
imported from the source tree: ``check-config`` on the shipped default, then a short ``run``
that tails a file into the file sink and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import venv
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.harness import REPO, free_port

pytestmark = pytest.mark.timeout(600)


def _packages() -> set[str]:
    """Every package of the source tree, as a wheel path (``logcap/actors``)."""
    return {str(p.parent.relative_to(REPO)) for p in (REPO / "logcap").rglob("*.py")
            if "__pycache__" not in p.parts}


def _shipped(out: Path) -> list[str]:
    """The lines in the file sink's JSON files (complete records only: it may be writing)."""
    records = [raw for sink in out.glob("*") for raw in sink.read_text().split("\n")[:-1]]
    return [json.loads(raw)["line"] for raw in records]


def _run(*args: str | Path, cwd: Path, timeout: float = 300) -> str:
    result = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Wheel and sdist built from a copy of the tracked files (a build in the checkout would
    leave ``build/``, whose stale modules a later wheel could pick up)."""
    source = tmp_path_factory.mktemp("source") / "logcap"
    tracked = _run("git", "ls-files", "-z", cwd=REPO).split("\0")
    for name in filter(None, tracked):
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    for name in ("logcap",):  # files not yet committed belong to the build under test too
        shutil.copytree(REPO / name, source / name, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--sdist", "--wheel", "--no-isolation",
         "--outdir", out, source, cwd=out)
    return out


@pytest.fixture(scope="module")
def installed(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel installed as the image installs it: dependencies (from
    the index or cache) at the versions pinned in ``requirements/runtime.txt``."""
    env_dir = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    wheel = next(dist.glob("logcap-*.whl"))
    _run(env_dir / "bin" / "python", "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", "-c", REPO / "requirements" / "runtime.txt", wheel,
         cwd=env_dir)
    return env_dir


def test_the_wheel_holds_every_package_and_the_type_marker(dist: Path) -> None:
    wheel = next(dist.glob("logcap-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    held = {os.path.dirname(n) for n in names if n.endswith(".py")}
    missing = _packages() - held
    assert not missing, f"packages left out of the wheel: {sorted(missing)}"
    assert "logcap/py.typed" in names
    assert "logcap/api/status_page.html" in names  # the status page, read at import
    for package in _packages():
        assert f"{package}/__init__.py" in names, f"{package} has no __init__.py"


def test_the_sdist_builds_a_wheel_with_every_package(dist: Path, tmp_path: Path) -> None:
    sdist = next(dist.glob("logcap-*.tar.gz"))
    _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", tmp_path, sdist, cwd=tmp_path)
    names = zipfile.ZipFile(next(tmp_path.glob("logcap-*.whl"))).namelist()
    held = {os.path.dirname(n) for n in names if n.endswith(".py")}
    assert _packages() <= held
    assert "logcap/api/status_page.html" in names


def test_the_installed_command_checks_the_shipped_config(installed: Path, tmp_path: Path) -> None:
    out = _run(installed / "bin" / "logcap", "check-config", "-c",
               REPO / "configs" / "config.yaml", cwd=tmp_path)
    assert "ok" in out.lower()
    version = _run(installed / "bin" / "logcap", "version", cwd=tmp_path)
    assert version.startswith("logcap ")


def test_the_installed_command_ships_lines_and_stops_cleanly(installed: Path,
                                                             tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.log").write_text("".join(f"line {i}\n" for i in range(100)))
    config = {
        "server": {"host": "127.0.0.1", "port": free_port(), "metrics_port": free_port()},
        "sources": {"files": [{"name": "app", "include": [str(logs / "*.log")],
                               "start_at": "beginning"}]},
        "sinks": {"file": {"enabled": True, "directory": str(tmp_path / "out"),
                           "format": "json"}},
        "positions": {"directory": str(tmp_path / "positions")},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.Popen([str(installed / "bin" / "logcap"), "run", "-c", str(path)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        lines: list[str] = []
        while time.monotonic() < deadline and len(lines) < 100:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            time.sleep(0.2)
            lines = _shipped(tmp_path / "out")
        assert sorted(lines, key=lambda s: int(s.split()[1])) == \
            [f"line {i}" for i in range(100)]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
