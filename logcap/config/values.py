"""Value kinds of logcap's configuration: how a field is declared, parsed and rendered.

Text grammars (every parser raises :class:`ValueError` whose message is the whole reason):

* **Durations** are a sequence of ``<number><unit>`` parts, with units ``ns``, ``us`` (or
  ``µs``), ``ms``, ``s``, ``m``, ``h`` and ``d``: ``500ms``, ``10s``, ``1h30m``, ``1.5h``,
  ``168h``. A bare number (``30``, ``0.5``) is seconds. Units are case-sensitive (``M`` is not a
  unit). Negative durations are refused. :func:`parse_duration` returns float seconds;
  :func:`format_duration` renders float seconds back (``1s500ms``), to the microsecond.
* **Sizes** are a number and an optional unit, case-insensitive: ``B``, the decimal ``KB``,
  ``MB``, ``GB``, ``TB`` (powers of 1000) and the binary ``KiB``, ``MiB``, ``GiB``, ``TiB``
  (powers of 1024). A bare number is bytes. The result must be a whole number of bytes
  (``1.5KiB`` is fine, ``1.5B`` is not). :func:`parse_size` returns int bytes;
  :func:`format_size` renders bytes with the unit that gives the smallest exact number.
* **Variable references** in string values: ``${NAME}`` is replaced by the variable's value,
  ``${NAME:-default}`` by the default when the variable is unset *or empty* (shell semantics),
  and ``$$`` by a literal ``$``. A ``$`` followed by anything else is kept as it is. Defaults are
  taken literally (no nesting). :func:`expand_vars` raises :class:`UnsetVariableError` naming
  every unset variable that has no default.

Field declarations: a config section is an ``attrs`` class whose fields are made by the helpers
here (:func:`duration`, :func:`size`, :func:`choice`, ...). Each helper stores a :class:`Spec` in
the field's metadata under :data:`SPEC_KEY`; the loader reads it to convert and check raw YAML
values, and :func:`render` reads it to turn a section back into plain data. Every field has a
default, so sections can be built in code; ``required`` means *the loader* insists on a value.
"""

from __future__ import annotations

import enum
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Any, TypeAlias, TypeVar

import attrs

__all__ = [
    "EMPTY_MAP", "SPEC_KEY", "Kind", "Spec", "UnsetVariableError", "choice", "duration",
    "expand_vars", "field_specs", "flag", "format_duration", "format_size", "integer",
    "is_secret_key", "optional_text", "parse_duration", "parse_size", "redact_url", "regex",
    "render", "section_list", "size", "str_list", "str_map", "tcp_port", "text",
]

_T = TypeVar("_T")

SPEC_KEY = "logcap.config.spec"
"""Key of the :class:`Spec` in an ``attrs`` field's metadata."""

EMPTY_MAP: Mapping[str, str] = MappingProxyType({})
"""The shared, read-only empty string map (default of every map field)."""

REDACTED = "***"

# --- durations ----------------------------------------------------------------------------

_DURATION_UNITS: dict[str, Decimal] = {
    "ns": Decimal("0.000000001"),
    "us": Decimal("0.000001"),
    "µs": Decimal("0.000001"),
    "ms": Decimal("0.001"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
    "d": Decimal(86400),
}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_BARE_NUMBER = re.compile(_NUMBER)
_DURATION_PART = re.compile(rf"({_NUMBER})([^\d.\s]+)")
_DURATION_HINT = "(expected e.g. 500ms, 10s, 5m)"


def parse_duration(text: str) -> float:
    """Parse a duration such as ``500ms``, ``1h30m`` or ``30`` (seconds) into float seconds."""
    stripped = text.strip()
    if stripped.startswith("-"):
        raise ValueError(f"invalid duration {text!r}: must not be negative")
    if _BARE_NUMBER.fullmatch(stripped):
        return float(Decimal(stripped))
    if not stripped:
        raise ValueError(f"invalid duration {text!r} {_DURATION_HINT}")
    total = Decimal(0)
    pos = 0
    while pos < len(stripped):
        match = _DURATION_PART.match(stripped, pos)
        if match is None:
            raise ValueError(f"invalid duration {text!r} {_DURATION_HINT}")
        number, unit = match.groups()
        factor = _DURATION_UNITS.get(unit)
        if factor is None:
            raise ValueError(
                f"invalid duration {text!r}: unknown unit {unit!r} (use ns, us, ms, s, m, h, d)"
            )
        total += Decimal(number) * factor
        pos = match.end()
    return float(total)


_DURATION_STEPS_US = (("h", 3_600_000_000), ("m", 60_000_000), ("s", 1_000_000), ("ms", 1000))


def format_duration(seconds: float) -> str:
    """Render float seconds as a duration string that :func:`parse_duration` reads back."""
    if seconds < 0:
        raise ValueError(f"negative duration: {seconds}")
    micros = round(seconds * 1_000_000)
    if micros == 0:
        return "0s"
    parts: list[str] = []
    for unit, step in _DURATION_STEPS_US:
        count, micros = divmod(micros, step)
        if count:
            parts.append(f"{count}{unit}")
    if micros:
        parts.append(f"{micros}us")
    return "".join(parts)


# --- sizes --------------------------------------------------------------------------------

_SIZE_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE_NAMES = {"KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4}
_SIZE_NAMES.update({"KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4})
_SIZE = re.compile(rf"(-?)({_NUMBER})\s*([A-Za-z]*)")
_SIZE_HINT = "(expected e.g. 512KiB, 64MiB, 1GiB)"


def parse_size(text: str) -> int:
    """Parse a size such as ``64MiB``, ``10MB`` or ``100`` (bytes) into int bytes."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"invalid size {text!r} {_SIZE_HINT}")
    sign, number, unit = match.groups()
    if sign:
        raise ValueError(f"invalid size {text!r}: must not be negative")
    factor = _SIZE_UNITS.get(unit.lower())
    if factor is None:
        raise ValueError(
            f"invalid size {text!r}: unknown unit {unit!r} "
            "(use B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
        )
    value = Decimal(number) * factor
    if value != value.to_integral_value():
        raise ValueError(f"invalid size {text!r}: not a whole number of bytes")
    return int(value)


def format_size(num_bytes: int) -> str:
    """Render bytes in the unit giving the smallest exact count: ``64MiB``, ``10MB``, ``100B``."""
    if num_bytes < 0:
        raise ValueError(f"negative size: {num_bytes}")
    best_count, best_unit = num_bytes, "B"
    for unit, factor in _SIZE_NAMES.items():
        if num_bytes and num_bytes % factor == 0 and num_bytes // factor < best_count:
            best_count, best_unit = num_bytes // factor, unit
    return f"{best_count}{best_unit}"


# --- variable references ------------------------------------------------------------------

_REFERENCE = re.compile(
    r"\$(?:(?P<escape>\$)"
    r"|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}"
    r"|(?P<bad>\{[^}]*\}?))"
)


class UnsetVariableError(ValueError):
    """A ``${NAME}`` reference has no value and no default; ``names`` lists every such name."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        quoted = ", ".join(repr(name) for name in names)
        first = names[0]
        noun = "variable" if len(names) == 1 else "variables"
        verb = "is" if len(names) == 1 else "are"
        super().__init__(
            f"environment {noun} {quoted} {verb} not set "
            f"(give a default with ${{{first}:-default}})"
        )


def expand_vars(value: str, env: Mapping[str, str]) -> str:
    """Expand ``${NAME}``, ``${NAME:-default}`` and ``$$`` in ``value`` from ``env``."""
    if "$" not in value:
        return value
    missing: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        if match.group("escape"):
            return "$"
        bad = match.group("bad")
        if bad is not None:
            raise ValueError(
                f"invalid variable reference '${bad}' "
                "(expected ${NAME} or ${NAME:-default}; write $$ for a literal $)"
            )
        name = match.group("name")
        default = match.group("default")
        found = env.get(name)
        if default is not None:
            return found if found else default
        if found is None:
            if name not in missing:
                missing.append(name)
            return ""
        return found

    expanded = _REFERENCE.sub(substitute, value)
    if missing:
        raise UnsetVariableError(missing)
    return expanded


# --- field declarations -------------------------------------------------------------------


class Kind(enum.Enum):
    """What a config field holds; decides how the loader converts it and how it renders."""

    BOOL = "a boolean"
    INT = "an integer"
    STR = "a string"
    DURATION = "a duration"
    SIZE = "a size"
    CHOICE = "one of the listed words"
    REGEX = "a regular expression"
    STR_LIST = "a list of strings"
    STR_MAP = "a mapping of strings to strings"
    SECTION = "a mapping"
    SECTION_LIST = "a list of mappings"


Check: TypeAlias = Callable[[Any], str | None]
"""An extra check on a converted value: returns the reason it is wrong, or None."""


@attrs.frozen
class Spec:
    """How the loader treats one field (see the module docstring)."""

    kind: Kind
    section: type | None = None
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    positive: bool = False
    required: bool = False
    nullable: bool = False
    label_names: bool = False
    blank_items: bool = False
    check: Check | None = None


_FIELD_SPECS: dict[type, tuple[tuple[str, Spec], ...]] = {}


def field_specs(cls: type) -> tuple[tuple[str, Spec], ...]:
    """``(name, spec)`` for each field of a section class, in declaration order.

    A field declared with the helpers here carries its spec; a plain ``attrs`` field typed as
    a section class (``server: ServerConfig = attrs.field(factory=ServerConfig)``) or as
    ``Section | None`` (default None) is a nested section.
    """
    cached = _FIELD_SPECS.get(cls)
    if cached is not None:
        return cached
    attrs.resolve_types(cls)
    specs: list[tuple[str, Spec]] = []
    for field in attrs.fields(cls):
        spec = field.metadata.get(SPEC_KEY)
        if spec is None:
            spec = _section_spec(field.type)
            if spec is None:
                raise TypeError(f"{cls.__name__}.{field.name}: no config spec for {field.type}")
        specs.append((field.name, spec))
    _FIELD_SPECS[cls] = tuple(specs)
    return _FIELD_SPECS[cls]


def _section_spec(annotation: Any) -> Spec | None:
    if isinstance(annotation, type) and attrs.has(annotation):
        return Spec(Kind.SECTION, section=annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(members) == 1 and isinstance(members[0], type) and attrs.has(members[0]):
            return Spec(Kind.SECTION, section=members[0], nullable=True)
    return None


def _declare(spec: Spec, default: Any = attrs.NOTHING, factory: Any = None) -> Any:
    if factory is not None:
        return attrs.field(factory=factory, metadata={SPEC_KEY: spec})
    return attrs.field(default=default, metadata={SPEC_KEY: spec})


def flag(default: bool) -> bool:
    """A YAML boolean (``true``/``false``); integers and strings are refused."""
    return _declare(Spec(Kind.BOOL), default)


def integer(default: int, *, minimum: int, maximum: int | None = None,
            required: bool = False) -> int:
    """A YAML integer within ``[minimum, maximum]``; booleans are refused; ``required``
    refuses a missing value."""
    return _declare(Spec(Kind.INT, minimum=minimum, maximum=maximum, required=required),
                    default)


def tcp_port(default: int) -> int:
    """A TCP port, 1..65535."""
    return integer(default, minimum=1, maximum=65535)


def text(default: str = "", *, required: bool = False, check: Check | None = None) -> str:
    """A string; ``required`` refuses a missing or empty value."""
    return _declare(Spec(Kind.STR, required=required, check=check), default)


def optional_text(*, check: Check | None = None) -> str | None:
    """A string or null (the default)."""
    return _declare(Spec(Kind.STR, nullable=True, check=check), None)


def choice(default: str, choices: tuple[str, ...]) -> str:
    """One of ``choices``, matched case-insensitively and stored in lower case."""
    return _declare(Spec(Kind.CHOICE, choices=choices), default)


def duration(default: float, *, allow_zero: bool = False) -> float:
    """A duration (string or bare number of seconds) as float seconds; > 0 unless allow_zero."""
    return _declare(Spec(Kind.DURATION, positive=not allow_zero), default)


def size(default: int, *, required: bool = False) -> int:
    """A size (string or bare number of bytes) as int bytes, > 0; ``required`` refuses a
    missing value (the default then only serves sections built in code)."""
    return _declare(Spec(Kind.SIZE, positive=True, required=required), default)


def regex(*, required: bool = False) -> str:
    """A regular expression (kept as text) that must compile."""
    return _declare(Spec(Kind.REGEX, required=required), "")


def str_list(*, required: bool = False, blank_items: bool = False) -> tuple[str, ...]:
    """A list of non-empty strings, stored as a tuple; ``required`` refuses an empty list;
    ``blank_items`` accepts items of white space only (a newline to search for)."""
    return _declare(Spec(Kind.STR_LIST, required=required, blank_items=blank_items), ())


def str_map(*, label_names: bool = False) -> Mapping[str, str]:
    """A string-to-string mapping, stored read-only; ``label_names`` checks Loki label names."""
    return _declare(Spec(Kind.STR_MAP, label_names=label_names), EMPTY_MAP)


def section_list(cls: type[_T]) -> tuple[_T, ...]:
    """A list of sections, stored as a tuple."""
    return _declare(Spec(Kind.SECTION_LIST, section=cls), ())


# --- rendering ----------------------------------------------------------------------------

_SECRET_WORDS = ("password", "token", "secret")
_URL_PASSWORD = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://[^/@:]*:)([^/@]*)(@)")


def is_secret_key(key: str) -> bool:
    """Whether a key names a secret: it contains password/token/secret and does not end in
    ``_file`` or ``_env`` (those name *where* a secret lives, which is not itself secret)."""
    lowered = key.lower()
    if lowered.endswith(("_file", "_env")):
        return False
    return any(word in lowered for word in _SECRET_WORDS)


def redact_url(url: str) -> str:
    """Replace the password in a URL's user-info (``https://u:p@host``) with ``***``."""
    return _URL_PASSWORD.sub(rf"\g<1>{REDACTED}\g<3>", url)


def render(section_value: object, *, redact: bool = True) -> dict[str, Any]:
    """A section as plain data (dicts, lists, str, int, bool, None) with the YAML key names.

    Durations render as duration strings and sizes as size strings, so the result loads back
    into an equal config. With ``redact``, secrets that are set become ``***`` and passwords in
    URLs are hidden; empty secrets stay empty, so one can see that they are unset.
    """
    return dict(_render_fields(section_value, redact))


def _render_fields(section_value: object, redact: bool) -> Iterator[tuple[str, Any]]:
    for name, spec in field_specs(type(section_value)):
        value = getattr(section_value, name)
        if redact and is_secret_key(name) and value:
            yield name, REDACTED
        else:
            yield name, _render_value(spec, value, redact)


def _render_value(spec: Spec, value: Any, redact: bool) -> Any:
    if value is None:
        return None
    if spec.kind is Kind.DURATION:
        return format_duration(value)
    if spec.kind is Kind.SIZE:
        return format_size(value)
    if spec.kind is Kind.STR_LIST:
        return list(value)
    if spec.kind is Kind.STR_MAP:
        return {
            key: REDACTED if redact and item and is_secret_key(key) else item
            for key, item in value.items()
        }
    if spec.kind is Kind.SECTION:
        return render(value, redact=redact)
    if spec.kind is Kind.SECTION_LIST:
        return [render(item, redact=redact) for item in value]
    if redact and isinstance(value, str):
        return redact_url(value)
    return value
