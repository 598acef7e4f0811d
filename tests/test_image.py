"""logcap's container image, built with podman from the repo's Dockerfile, run as compose runs it.

No registry is reachable here, so the base image is built locally, once per session:
``debootstrap --variant=minbase bookworm`` with Debian's ``python3`` and ``python3-venv``,
imported with ``podman import`` as ``localhost/logcap-base:bookworm`` (the tarball is cached in
``$LOGCAP_IMAGE_CACHE`` if set, else in a session temp dir). logcap's image is then built with
``--build-arg BASE_IMAGE=localhost/logcap-base:bookworm`` (docker format, so the HEALTHCHECK is
kept; pip reaches PyPI through the host network, with the host's CA bundle mounted and given as
``PIP_CERT`` because egress here goes through a TLS-inspecting proxy).

The container runs like the compose service: read-only root filesystem (no tmpfs added), the
image's non-root user, ``--cap-drop ALL``, ``no-new-privileges``, the host log directory
mounted read-only (its file ``0640`` group ``adm``, read through ``--group-add 4``), the state
directory and the config mounted in. ``--network host``: the container reaches the Loki
receiver of this process on 127.0.0.1, and the HEALTHCHECK reaches the admin port
(``LOGCAP_HEALTH_URL``). Podman runs with a private config and storage
(:func:`tests.podman_engine.configure`).

Marked ``image``: deselected from the default suite (``pyproject.toml`` addopts), run by
``make image-test``, which CI calls after ``make test``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.actor_kit import wait_until
from tests.harness import REPO, NumberedWriter, free_port, missing_and_duplicates
from tests.loki_receiver import LokiReceiver
from tests.podman_engine import PODMAN, PodmanEngine, configure

pytestmark = [pytest.mark.image, pytest.mark.integration, pytest.mark.timeout(1800)]

BASE_IMAGE = "localhost/logcap-base:bookworm"
IMAGE = "localhost/logcap:test"
MIRROR = os.environ.get("LOGCAP_DEBIAN_MIRROR", "http://deb.debian.org/debian")
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
LOG_GROUP = 4  # adm: the usual group of 0640 host logs
UID = 10001
DUPLICATES_BOUND = 200  # lines sent again after a restart (a batch in flight at most)


def _missing() -> str | None:
    for program in (PODMAN, "/usr/bin/runc", "/usr/sbin/debootstrap"):
        if not os.access(program, os.X_OK):
            return (f"{program} is not installed "
                    "(apt-get install -y podman runc debootstrap busybox-static)")
    if os.geteuid() != 0:
        return "podman build/run and debootstrap run as root here (the tests are not root)"
    return None


if (_reason := _missing()) is not None:
    pytestmark.append(pytest.mark.skip(reason=_reason))


def _timed(what: str, args: list[str], env: dict[str, str] | None = None,
           timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess[str]:
    start = time.monotonic()
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    print(f"[image] {what}: {time.monotonic() - start:.1f}s (rc {result.returncode})")
    if check and result.returncode:
        raise AssertionError(f"{what} failed ({result.returncode}): {' '.join(args)}\n"
                             f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def _podman(engine: PodmanEngine, *args: str, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([PODMAN, *args], env=engine.env(), capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode:
        raise AssertionError(f"podman {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodmanEngine]:
    eng = configure(tmp_path_factory.mktemp("pm"))
    yield eng
    eng.reset()


def _base_tarball(cache: Path) -> Path:
    """The minbase bookworm rootfs with python3 and python3-venv, as a tarball (built once)."""
    tarball = cache / "logcap-base-bookworm.tar"
    if tarball.exists():
        return tarball
    root = cache / "rootfs"
    shutil.rmtree(root, ignore_errors=True)
    _timed("debootstrap", ["/usr/sbin/debootstrap", "--variant=minbase",
                           "--include=python3,python3-venv", "bookworm", str(root), MIRROR],
           timeout=1200)
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for path in (root / junk).glob("*"):
            if path.is_file():
                path.unlink()
    partial = tarball.with_suffix(".partial")
    _timed("tar rootfs", ["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."])
    partial.rename(tarball)
    shutil.rmtree(root, ignore_errors=True)
    return tarball


@pytest.fixture(scope="session")
def base_image(engine: PodmanEngine, tmp_path_factory: pytest.TempPathFactory) -> str:
    cache_env = os.environ.get("LOGCAP_IMAGE_CACHE")
    cache = Path(cache_env) if cache_env else tmp_path_factory.mktemp("image-cache")
    cache.mkdir(parents=True, exist_ok=True)
    tarball = _base_tarball(cache)
    _timed("podman import", [
        PODMAN, "import", "-q",
        "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "--change", 'CMD ["/bin/bash"]', str(tarball), BASE_IMAGE], env=engine.env())
    return BASE_IMAGE


@pytest.fixture(scope="session")
def image(engine: PodmanEngine, base_image: str) -> str:
    args = [PODMAN, "build", "--format", "docker", "--network", "host",
            "--build-arg", f"BASE_IMAGE={base_image}", "-t", IMAGE, "-f", "Dockerfile"]
    if HOST_CA.exists():
        args += ["-v", f"{HOST_CA}:/run/host-ca.crt:ro", "--build-arg", "PIP_CERT=/run/host-ca.crt"]
    _timed("podman build", [*args, str(REPO)], env=engine.env(), timeout=1200)
    return IMAGE


def _inspect(engine: PodmanEngine, *target: str) -> Any:
    return json.loads(_podman(engine, "inspect", *target).stdout)[0]


def test_image_runs_as_non_root_from_the_wheel_with_healthcheck(engine: PodmanEngine,
                                                                image: str) -> None:
    config = _inspect(engine, "--type", "image", image)["Config"]
    assert config["User"] == "logcap"
    assert config["Entrypoint"] == ["logcap"] and config["Cmd"] == ["run"]
    assert config["StopSignal"] == "SIGTERM"
    health = _inspect(engine, "--type", "image", image)["Healthcheck"]
    assert health["Test"][0] == "CMD-SHELL" and "LOGCAP_HEALTH_URL" in health["Test"][1]
    probe = ("import logcap, logcap.actors, os, sys; print(os.getuid(), sys.prefix, "
             "logcap.__file__)")
    out = _podman(engine, "run", "--rm", "--entrypoint", "python", image, "-c", probe).stdout
    uid, prefix, module = out.split()
    assert uid == str(UID)
    assert prefix == "/opt/logcap"
    assert module.startswith("/opt/logcap/lib/python3") and "/site-packages/logcap/" in module
    # a wheel install, not editable: nothing of the build's /src in the runtime stage
    assert _podman(engine, "run", "--rm", "--entrypoint", "test", image, "-e", "/src",
                   check=False).returncode == 1


class Agent:
    """The logcap container, run as compose runs it (see the module docstring)."""

    def __init__(self, engine: PodmanEngine, image: str, tmp: Path, receiver: LokiReceiver):
        self.engine, self.image = engine, image
        self.name = f"logcap-test-{os.getpid()}"
        self.logs = tmp / "logs"
        self.state = tmp / "state"
        for path in (self.logs, self.state):
            path.mkdir(mode=0o755)
        os.chown(self.state, UID, UID)
        self.state.chmod(0o700)
        self.port = free_port()
        self.config = tmp / "config.yaml"
        self.config.write_text(yaml.safe_dump({
            "server": {"host": "127.0.0.1", "port": self.port, "metrics_port": free_port()},
            "sources": {"files": [{"name": "app", "include": ["/var/log/app/*.log"],
                                   "start_at": "beginning", "labels": {"job": "image-test"}}]},
            "dispatcher": {"batch_size": 500, "batch_timeout": "50ms",
                           "retry_base_delay": "50ms", "retry_max_delay": "1s"},
            "sinks": {"file": {"enabled": False},
                      "loki": {"enabled": True, "url": receiver.url, "timeout": "2s",
                               "batch_wait": "200ms"}},
            "positions": {"directory": "/var/lib/logcap/positions", "flush_interval": "100ms"},
            "disk_buffer": {"directory": "/var/lib/logcap/buffer"},
            "batch_persistence": {"directory": "/var/lib/logcap/batches"},
            "dlq": {"directory": "/var/lib/logcap/dlq"},
            "supervision": {"shutdown_timeout": "5s"},
        }))
        self.config.chmod(0o644)

    def log_file(self) -> Path:
        path = self.logs / "app.log"
        path.touch()
        os.chown(path, 0, LOG_GROUP)
        path.chmod(0o640)  # readable by the container only through --group-add
        return path

    def run(self) -> None:
        _podman(self.engine, "run", "-d", "--name", self.name,
                "--network", "host",
                "--read-only", "--read-only-tmpfs=false",
                "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
                "--group-add", str(LOG_GROUP),
                "-v", f"{self.logs}:/var/log/app:ro",
                "-v", f"{self.state}:/var/lib/logcap",
                "-v", f"{self.config}:/etc/logcap/config.yaml:ro",
                "-e", f"LOGCAP_HEALTH_URL=http://127.0.0.1:{self.port}/health",
                self.image)

    def state_of(self) -> dict[str, Any]:
        return dict(_inspect(self.engine, "--type", "container", self.name)["State"])

    def healthcheck(self) -> subprocess.CompletedProcess[str]:
        return _podman(self.engine, "healthcheck", "run", self.name, check=False)

    def wait_healthy(self, timeout: float = 60) -> None:
        def healthy() -> bool:
            state = self.state_of()
            assert state["Running"], f"container exited {state['ExitCode']}:\n{self.logs_text()}"
            if self.healthcheck().returncode == 0:
                return True
            time.sleep(0.5)
            return False
        wait_until(healthy, timeout=timeout, what=f"healthcheck of {self.name}")

    def logs_text(self) -> str:
        result = _podman(self.engine, "logs", self.name, check=False)
        return (result.stdout + result.stderr)[-4000:]

    def stop(self) -> int:
        _podman(self.engine, "stop", "-t", "30", self.name, timeout=60)
        return int(self.state_of()["ExitCode"])

    def start(self) -> None:
        _podman(self.engine, "start", self.name)

    def remove(self) -> None:
        _podman(self.engine, "rm", "-f", "-t", "0", self.name, check=False)


@pytest.fixture
def receiver() -> Iterator[LokiReceiver]:
    rec = LokiReceiver().start()
    yield rec
    rec.stop()


def _all_arrived(receiver: LokiReceiver, total: int) -> bool:
    counts = receiver.received_seq_numbers()
    return all(counts.get(n) for n in range(total))


def test_container_ships_drains_on_sigterm_and_resumes_after_restart(
    engine: PodmanEngine, image: str, tmp_path: Path, receiver: LokiReceiver
) -> None:
    agent = Agent(engine, image, tmp_path, receiver)
    writer = NumberedWriter(agent.log_file())
    writer.write(2000)
    started = time.monotonic()
    agent.run()
    try:
        # the HEALTHCHECK of the Dockerfile, run by podman in the container
        agent.wait_healthy()
        print(f"[image] container healthy after {time.monotonic() - started:.1f}s")
        wait_until(lambda: _all_arrived(receiver, 2000), timeout=60, what="2000 lines")
        missing, dups = missing_and_duplicates(receiver.received_seq_numbers(), 2000)
        assert not missing and dups == 0
        user = _podman(engine, "exec", agent.name, "id", "-u").stdout.strip()
        assert user == str(UID)

        # SIGTERM (podman stop) while lines are still coming: it drains and exits 0
        writer.write(1000)
        stopping = time.monotonic()
        code = agent.stop()
        print(f"[image] podman stop: {time.monotonic() - stopping:.1f}s, exit {code}")
        assert code == 0, agent.logs_text()
        assert (agent.state / "positions").is_dir()

        # a restart with the same state: the rest, then new lines, none lost
        agent.start()
        agent.wait_healthy()
        writer.write(2000)
        total = writer.next
        wait_until(lambda: _all_arrived(receiver, total), timeout=60, what=f"{total} lines")
        missing, dups = missing_and_duplicates(receiver.received_seq_numbers(), total)
        print(f"[image] after restart: {total} lines, {len(missing)} missing, {dups} duplicates")
        assert not missing
        assert dups <= DUPLICATES_BOUND
        assert agent.stop() == 0, agent.logs_text()
    except BaseException:
        print(agent.logs_text())
        raise
    finally:
        agent.remove()
