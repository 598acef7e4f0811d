"""``logcap check-config``: everything that can be checked without running the agent.

:func:`check` loads nothing itself (the CLI passes the loaded config and routing, so an invalid
config or processing file is refused before, exit 2, with every problem and its key path; the
pipelines and routing rules are resolved by that load). Then:

- every directory the agent would create (positions, buffer, DLQ, in-flight batches, file
  sink) must be creatable, *without creating it*: it exists and is a writable directory, or
  its nearest existing ancestor is one (:func:`directory_problem`); a problem is exit 2;
- warnings, printed on stderr, exit unchanged: an include that matches no file now, a path it
  matches that cannot be read now (:func:`~logcap.components.registry.config_warnings`);
- with ``--connect``, each sink that talks to a server is probed once
  (:func:`~logcap.components.registry.probes`: Loki's ``GET /ready``), one line per sink on
  stdout; any probe that fails is exit 1.

Exit codes: 0 valid (and every probe answered), 1 a probe failed, 2 bad input.
"""

from __future__ import annotations

import os
import sys

from logcap.components.registry import config_warnings, preflight_directories, probes, summary
from logcap.config import Config

__all__ = ["check", "directory_problem"]

EXIT_OK, EXIT_PROBE_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def directory_problem(path: str) -> str | None:
    """Why the agent could not create and write ``path`` (None if it could), touching
    nothing."""
    target = os.path.abspath(path)
    if os.path.exists(target):
        if not os.path.isdir(target):
            return f"{path!r} exists and is not a directory"
        if not os.access(target, os.W_OK | os.X_OK):
            return f"{path!r} is not writable"
        return None
    parent = os.path.dirname(target)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        return f"{path!r} cannot be created: {parent!r} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{path!r} cannot be created: {parent!r} is not writable"
    return None


def check(config: Config, path: str, described: str, connect: bool) -> int:
    """Run the checks of the module docstring on the loaded ``config`` (read from ``path``;
    ``described``: the pipelines' phrase for the ok line) and print the results."""
    problems = [f"{key}: {why}" for key, directory in preflight_directories(config)
                if (why := directory_problem(directory)) is not None]
    for problem in problems:
        print(f"logcap: {problem}", file=sys.stderr)
    if problems:
        return EXIT_BAD_INPUT
    print(f"{path}: ok ({summary(config)}; {described})")
    for warning in config_warnings(config):
        print(f"logcap: warning: {warning}", file=sys.stderr)
    if not connect:
        return EXIT_OK
    failed = 0
    for key, ok, detail in probes(config):
        print(f"{key}: {'reachable' if ok else 'NOT reachable'}: {detail}")
        failed += not ok
    return EXIT_PROBE_FAILED if failed else EXIT_OK
