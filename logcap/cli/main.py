"""The ``logcap`` command: ``run``, ``check-config`` (see :mod:`logcap.cli.check`), ``version``
(also ``--version``); ``dlq stats|list|show|
reprocess`` and ``buffer verify DIR`` (see :mod:`logcap.cli.dlq`); ``pipeline test`` (see
:mod:`logcap.cli.pipeline_test`); ``status`` (see :mod:`logcap.cli.status`). ``run``,
``check-config`` and ``pipeline test`` load the config and its processing files (pipelines,
routing); a problem in any is bad input.

Exit codes: 0 success; 1 the agent failed while running (the supervision tree gave up);
2 bad input (invalid or missing config, a port already in use, a directory that cannot be
created or written, a state directory locked by another agent: the message names its PID).
Bad input is one clear line per problem on stderr, never a traceback.

``run`` stops on SIGTERM or SIGINT: the tree stops in reverse order within
``supervision.shutdown_timeout`` (positions are flushed by their keeper's stop); a second signal
exits at once. SIGHUP reloads the config file (:mod:`logcap.reloading`; the same as
``POST /config/reload``).
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from logcap import __version__
from logcap.agent import Agent
from logcap.cli import check as check_cli
from logcap.cli import dlq as dlq_cli
from logcap.cli import pipeline_test
from logcap.cli import status as status_cli
from logcap.components.registry import (
    preflight_directories,
    preflight_problems,
    state_locks,
    summary,
)
from logcap.config import Config, ConfigError, resolve_config_path
from logcap.logsetup import configure
from logcap.pipeline.loading import load_checked
from logcap.pipeline.routing import Routing
from logcap.state.dirlock import DirectoryLockError, lock_directory

__all__ = ["main"]

log = logging.getLogger("logcap")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
STOP_GRACE_FACTOR = 3
"""The whole tree gets this many shutdown_timeouts to stop before logcap exits anyway."""


class BadInput(Exception):
    """A problem with what the operator gave us; its message is the one line to print."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="logcap", description="Ship logs to Grafana Loki.")
    parser.add_argument("--version", action="version", version=f"logcap {__version__}",
                        help="print the version (as `logcap version`)")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the agent")
    run.add_argument("-c", "--config", help="config file (default: $LOGCAP_CONFIG or "
                     "configs/config.yaml)")
    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("-c", "--config", help="config file")
    check.add_argument("--connect", action="store_true",
                       help="also probe each sink once (Loki: GET /ready); exit 1 if one fails")
    sub.add_parser("version", help="print the version")
    dlq_cli.add_subcommands(sub)
    pipeline_test.add_subcommand(sub)
    status_cli.add_subcommand(sub)
    return parser


def _load(path_arg: str | None) -> tuple[Config, Routing, str]:
    path = str(resolve_config_path(path_arg, os.environ))
    config, routing = load_checked(path, os.environ)
    return config, routing, path


def _check_port(host: str, port: int, what: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            reason = "already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise BadInput(f"{what} {host}:{port}: {reason}") from exc


def _check_dir(path: str, what: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"{what} {path!r} cannot be created: {exc.strerror}") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise BadInput(f"{what} {path!r} is not writable")


def lock_state(config: Config) -> list[int]:
    """Lock the state directories (:func:`~logcap.components.registry.state_locks`) for the
    life of the process; another agent holding one is bad input naming its PID. Returns the
    descriptors (closing them releases the locks)."""
    held: list[int] = []
    for key, directory, lock_name in state_locks(config):
        try:
            held.append(lock_directory(directory, lock_name, key.rsplit(".", 1)[0]
                                       + " directory"))
        except DirectoryLockError as exc:
            for fd in held:
                os.close(fd)
            raise BadInput(f"{key}: {exc}") from exc
    return held


def preflight(config: Config) -> None:
    """Refuse to start on problems an operator must fix: ports and directories."""
    server = config.server
    if server.port:
        _check_port(server.host, server.port, "server.port")
    if server.metrics_port:
        _check_port(server.host, server.metrics_port, "server.metrics_port")
    for key, directory in preflight_directories(config):
        _check_dir(directory, key)
    problems = preflight_problems(config)
    if problems:
        raise BadInput("; ".join(problems))


def _run(config: Config, routing: Routing, path: str) -> int:
    configure(config.logging.level, config.logging.format)
    locks = lock_state(config)  # first: a second agent is named as such, not by its port
    try:
        return _run_locked(config, routing, path)
    finally:
        for fd in locks:
            os.close(fd)


def _run_locked(config: Config, routing: Routing, path: str) -> int:
    preflight(config)
    log.info("logcap %s starting: %s (config %s)", __version__, summary(config), path)
    stop = threading.Event()
    signals_seen = [0]

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        signals_seen[0] += 1
        if signals_seen[0] > 1:
            log.warning("second signal: exiting now")
            os._exit(128 + signum)
        log.info("%s received: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    agent = Agent(config, path, routing)

    def on_hangup(_signum: int, _frame: FrameType | None) -> None:
        # the reload drains and restarts actors: not in a signal handler (its answer is
        # logged by the reload itself)
        threading.Thread(target=agent.reload_config, args=("SIGHUP",), name="reload",
                         daemon=True).start()

    signal.signal(signal.SIGHUP, on_hangup)
    try:
        agent.start()
    except RuntimeError as exc:
        log.error("logcap could not start: %s", exc)
        agent.stop(config.supervision.shutdown_timeout)
        return EXIT_FAILED
    log.info("logcap running; admin API on http://%s:%d", config.server.host, config.server.port)
    failure = agent.wait(stop)
    deadline = config.supervision.shutdown_timeout * STOP_GRACE_FACTOR
    if failure:
        log.error("logcap stopping: the supervision tree gave up: %s", failure)
    in_time = agent.stop(deadline)
    if not in_time:
        log.error("logcap did not stop within %.0fs; exiting anyway", deadline)
    log.info("logcap stopped")
    return EXIT_FAILED if failure else EXIT_OK


def _describe(config: Config, routing: Routing) -> str:
    files = [f for f in (config.processing.pipelines_file, config.processing.routing_file) if f]
    # (as written in the config; relative ones are read beside it)
    return (f"pipelines: {len(routing.pipelines)} ({', '.join(files) or 'built-in only'}), "
            f"{len(routing.rules)} routing rule{'' if len(routing.rules) == 1 else 's'}")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(f"logcap {__version__}")
        return EXIT_OK
    if args.command in dlq_cli.COMMANDS:
        return dlq_cli.run(args)
    if args.command == "status":
        return status_cli.run(args)
    try:
        config, routing, path = _load(args.config)
        if args.command == "check-config":
            return check_cli.check(config, path, _describe(config, routing), args.connect)
        if args.command == "pipeline":
            pipeline_test.run_test(config, routing, args)
            return EXIT_OK
        return _run(config, routing, path)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_BAD_INPUT
    except (BadInput, pipeline_test.UnknownName) as exc:
        print(f"logcap: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:  # pipeline test's FILE
        print(f"logcap: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
