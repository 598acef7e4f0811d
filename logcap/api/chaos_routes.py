"""The admin API's chaos endpoint: crash an actor of the running agent on purpose.

``POST /chaos/crash`` is served only with ``server.chaos: true`` (else **404** saying how to turn
it on) and needs the admin token like every mutating endpoint (401 without or with a wrong
one). The body is a JSON object, one of::

    {"actor": "root/dispatchers/shard-0"}                 # this actor
    {"random": true}                                      # any running actor but root/admin
    {"random": true, "groups": ["dispatchers", "sinks"]}  # any running actor of these groups

plus an optional ``"reason"`` (text put in the crash, so in the supervisor's log and
``last_error``). An actor's group is the second part of its name (``root/sinks/loki`` is in
``sinks``); the group supervisors themselves (``root/sinks``, ...) are in ``supervisors`` and
the admin server (``root/admin``, the one answering) in ``admin``, which a random pick leaves
out unless ``groups`` names it. The root cannot be crashed: its exit ends the agent (that is a
process kill, not an actor crash).

The crash is a :class:`~logcap.runtime.crash.CrashActor` told to the actor: it raises in the
actor's own thread, so its supervisor sees a real crash and restarts it. The answer (200) names
the actor (``{"crashed": name, "group": group, "reason": reason}``) once the command is queued;
the crash itself follows within the actor's next message. An unknown actor, a bad body: 400
with the reason (an unknown name lists the known ones). The actor, or every candidate, is not
running now (restarting): 409. A tree that does not answer in time: 503.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from flask import Flask, Response, jsonify, request

from logcap.api.errors import BackendTimeout

__all__ = [
    "ADMIN_GROUP",
    "CRASH_GROUPS",
    "CRASH_KEYS",
    "ROOT_NAME",
    "SUPERVISORS_GROUP",
    "ChaosBackend",
    "CrashRequest",
    "CrashRequestError",
    "actor_group",
    "choose_target",
    "parse_crash_request",
    "register_chaos_routes",
]

ROOT_NAME = "root"
SUPERVISORS_GROUP = "supervisors"
ADMIN_GROUP = "admin"
CRASH_GROUPS = ("state", "sinks", "dispatchers", "sources", SUPERVISORS_GROUP, ADMIN_GROUP)
"""The groups a random crash can be limited to."""
RANDOM_DEFAULT_GROUPS = tuple(g for g in CRASH_GROUPS if g != ADMIN_GROUP)
CRASH_KEYS = ("actor", "random", "groups", "reason")
DEFAULT_REASON = "crash injected (POST /chaos/crash)"
MAX_REASON_CHARS = 200
RUNNING = "running"


class ChaosBackend(Protocol):
    """What the chaos endpoint needs from the running agent; each call is bounded in time and
    raises :class:`~logcap.api.errors.BackendTimeout` past it."""

    chaos_enabled: bool

    def actor_statuses(self) -> dict[str, str]:
        """Every actor of the tree (the root excepted) by name: its supervisor's status of it
        (``running``, ``restarting``, ...)."""
        ...

    def crash_actor(self, name: str, reason: str) -> bool:
        """Tell ``name`` to crash with ``reason``; False if no live actor holds the name."""
        ...


class CrashRequestError(ValueError):
    """A crash request is invalid; the message says which part and why."""


@dataclass(frozen=True, slots=True)
class CrashRequest:
    """A validated body: ``actor`` (a name), or ``random`` among ``groups``."""

    actor: str | None
    groups: tuple[str, ...]
    reason: str


def parse_crash_request(body: Any) -> CrashRequest:
    """Validate a ``POST /chaos/crash`` body (module docstring)."""
    if not isinstance(body, dict):
        raise CrashRequestError("the body must be a JSON object")
    unknown = sorted(set(body) - set(CRASH_KEYS))
    if unknown:
        raise CrashRequestError(f"unknown keys {unknown}; allowed: {', '.join(CRASH_KEYS)}")
    reason = body.get("reason", DEFAULT_REASON)
    if not isinstance(reason, str) or not reason.strip():
        raise CrashRequestError("reason: expected a non-empty string")
    reason = reason[:MAX_REASON_CHARS]
    actor, chosen_randomly = body.get("actor"), body.get("random", False)
    if not isinstance(chosen_randomly, bool):
        raise CrashRequestError("random: expected true or false")
    if actor is not None and chosen_randomly:
        raise CrashRequestError("give either actor or random: true, not both")
    if actor is None and not chosen_randomly:
        raise CrashRequestError('say which actor: {"actor": "root/<group>/<name>"} or '
                                '{"random": true}')
    if actor is not None:
        if not isinstance(actor, str) or not actor:
            raise CrashRequestError("actor: expected an actor name such as "
                                    "root/dispatchers/shard-0")
        if actor == ROOT_NAME:
            raise CrashRequestError("root cannot be crashed: its exit ends the agent "
                                    "(kill the process instead)")
        if "groups" in body:
            raise CrashRequestError("groups: only with random: true")
        return CrashRequest(actor, (), reason)
    groups = body.get("groups", list(RANDOM_DEFAULT_GROUPS))
    if not isinstance(groups, list) or not groups or \
            not all(isinstance(g, str) for g in groups):
        raise CrashRequestError(f"groups: expected a non-empty list of {', '.join(CRASH_GROUPS)}")
    bad = sorted(set(groups) - set(CRASH_GROUPS))
    if bad:
        raise CrashRequestError(f"groups: unknown {bad}; known: {', '.join(CRASH_GROUPS)}")
    return CrashRequest(None, tuple(dict.fromkeys(groups)), reason)


def actor_group(name: str) -> str:
    """The crash group of an actor's name: ``root/<group>/...`` is ``<group>``; a group
    supervisor ``root/<group>`` is ``supervisors``, the admin server ``admin``."""
    parts = name.split("/")
    if len(parts) == 2:
        return ADMIN_GROUP if parts[1] == ADMIN_GROUP else SUPERVISORS_GROUP
    return parts[1] if len(parts) > 2 else name


def choose_target(statuses: Mapping[str, str], groups: Iterable[str],
                  rng: random.Random) -> str | None:
    """A running actor of one of ``groups``, uniformly at random; None if there is none."""
    wanted = set(groups)
    candidates = sorted(name for name, status in statuses.items()
                        if status == RUNNING and actor_group(name) in wanted)
    return rng.choice(candidates) if candidates else None


def _error(status: int, detail: str) -> Response:
    resp = jsonify({"error": detail})
    resp.status_code = status
    return resp


def register_chaos_routes(app: Flask, backend: ChaosBackend,
                          authorized: Callable[[], Response | None],
                          rng: random.Random | None = None) -> None:
    """Add ``POST /chaos/crash`` to ``app`` (module docstring); ``authorized()`` returns None
    for a request with the admin token, else the response to send."""
    pick = rng or random.Random()

    @app.post("/chaos/crash")
    def chaos_crash() -> Any:
        if not backend.chaos_enabled:
            return _error(404, "POST /chaos/crash is off: it crashes actors on purpose and is "
                               "served only with server.chaos: true (and the admin token)")
        refused = authorized()
        if refused is not None:
            return refused
        raw = request.get_data()
        try:
            wanted = parse_crash_request(json.loads(raw) if raw.strip() else {})
        except (ValueError, UnicodeDecodeError) as exc:  # CrashRequestError, JSONDecodeError
            reason = str(exc) if isinstance(exc, CrashRequestError) \
                else "the body is not valid JSON"
            return _error(400, reason)
        try:
            statuses = backend.actor_statuses()
            if wanted.actor is not None:
                name = wanted.actor
                if name not in statuses:
                    return _error(400, f"actor: no actor {name!r}; actors: "
                                       f"{', '.join(sorted(statuses))}")
                if statuses[name] != RUNNING:
                    return _error(409, f"{name} is not running now ({statuses[name]})")
            else:
                chosen = choose_target(statuses, wanted.groups, pick)
                if chosen is None:
                    return _error(409, "no running actor in groups "
                                       f"{', '.join(wanted.groups)} right now")
                name = chosen
            if not backend.crash_actor(name, wanted.reason):
                return _error(409, f"{name} is not running now (restarting)")
        except BackendTimeout as exc:
            return jsonify({"error": "timeout", "detail": str(exc)}), 503
        return jsonify({"crashed": name, "group": actor_group(name), "reason": wanted.reason})
