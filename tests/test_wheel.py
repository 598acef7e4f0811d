"""logcap as users install it: the built wheel (and the sdist) in a fresh virtualenv, not ``-e``.

The wheel is built from the checkout, installed with its dependencies into a new virtualenv,
and its ``logcap`` command is run from a directory outside the checkout, so nothing can be
imported from the source tree: ``check-config`` on the shipped default, then a short ``run``
that tails a file into the file sink and stops cleanly on SIGTERM. The compiled modules
(``setup.py``'s ``EXTENSIONS``) are in the wheel, their sources in the sdist, and the installed
agent imports them.
"""

from __future__ import annotations

import ast
import importlib.machinery
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
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


def _extensions() -> list[tuple[str, list[str]]]:
    """``(module, sources)`` of each ``Extension`` in setup.py's ``EXTENSIONS`` (read, not run:
    running setup.py would build)."""
    tree = ast.parse((REPO / "setup.py").read_text())
    found = [node.value for node in tree.body if isinstance(node, ast.Assign)
             and any(isinstance(t, ast.Name) and t.id == "EXTENSIONS" for t in node.targets)]
    assert len(found) == 1 and isinstance(found[0], ast.List), "setup.py has no EXTENSIONS list"
    modules = []
    for call in found[0].elts:
        assert isinstance(call, ast.Call) and getattr(call.func, "id", "") == "Extension"
        name, sources = ast.literal_eval(call.args[0]), ast.literal_eval(call.args[1])
        modules.append((name, list(sources)))
    assert modules, "EXTENSIONS is empty"
    return modules


def _holds_module(names: set[str], module: str) -> bool:
    """Whether a wheel's file ``names`` hold the compiled ``module`` (any ABI suffix)."""
    stem = module.replace(".", "/")
    return any(f"{stem}{suffix}" in names for suffix in importlib.machinery.EXTENSION_SUFFIXES)


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
                        ignore=shutil.ignore_patterns("__pycache__", "*.so"))  # built here
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
    for module, _ in _extensions():
        assert _holds_module(names, module), f"compiled {module} not in the wheel"
        assert f"{module.replace('.', '/')}.pyi" in names, f"{module} has no type stub"


def test_the_sdist_builds_a_wheel_with_every_package(dist: Path, tmp_path: Path) -> None:
    sdist = next(dist.glob("logcap-*.tar.gz"))
    _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", tmp_path, sdist, cwd=tmp_path)
    with tarfile.open(sdist) as archive:
        packed = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert "setup.py" in packed
    for module, sources in _extensions():
        assert set(sources) <= packed, f"sources of {module} not in the sdist"
    names = set(zipfile.ZipFile(next(tmp_path.glob("logcap-*.whl"))).namelist())
    held = {os.path.dirname(n) for n in names if n.endswith(".py")}
    assert _packages() <= held
    assert "logcap/api/status_page.html" in names
    for module, _ in _extensions():
        assert _holds_module(names, module), f"compiled {module} not in the sdist's wheel"


def test_the_installed_agent_imports_its_compiled_modules(installed: Path,
                                                          tmp_path: Path) -> None:
    for module, _ in _extensions():
        path = _run(installed / "bin" / "python", "-c",
                    f"import {module} as m; print(m.__file__)", cwd=tmp_path).strip()
        assert path.startswith(str(installed)) and "/site-packages/" in path, path
        assert path.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)), path
    chosen = _run(installed / "bin" / "python", "-c",
                  "from logcap.pipeline.stages.opensips import COMPILED; print(COMPILED)",
                  cwd=tmp_path)
    assert "_opensips" in chosen, chosen


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
