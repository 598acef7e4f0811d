"""The ``opensips`` stage: an OpenSIPS log entry's header and SIP identifiers in one pass.

What it reads (an entry is one log line, or an xlog line with the SIP message dump joined to
it by the multiline stage):

* the header, in its three forms: OpenSIPS on stderr ``Mmm dd HH:MM:SS [pid] LEVEL:...``,
  rsyslog's ``2026-12-01T20:34:47.146887+00:00 host opensips[pid]: LEVEL:...`` and the
  traditional ``Mmm dd HH:MM:SS host /usr/sbin/opensips[pid]: LEVEL:...``; the level is one of
  :data:`LEVELS`, followed by ``module:function: `` except on xlog lines. Precisely, the
  header is what :data:`HEADER` matches at the start of the entry.
* rsyslog's escaped line breaks ``#015#012`` become CR LF again (before anything is read).
* fields ``time``, ``pid``, ``level``, ``module``, ``function`` from the header; and
  ``call_id``, ``from_tag``, ``to_tag``, ``method``, ``status`` and ``src_ip``, searched in
  the text after the header (the whole text of an entry without one; :data:`IDENTIFIERS`):
  from the xlog text (``callid=``, ``call-id:``, ``from_tag=``, ``method=``,
  ``request INVITE``, ``replied 486``, ``code=``, ``from 192.0.2.10``, ``src_ip=``...) or
  from a SIP message dump (the ``Call-ID``/``i``, ``From``/``f`` and ``To``/``t`` tags, the
  request line or ``CSeq`` method, the status line, the top ``Via`` address), the first
  occurrence of each;
* the entry's timestamp from ``time`` (syslog times take the year closest to the read time;
  ``timezone`` is the zone of times without an offset, default UTC).

An entry without the header keeps its read time and gets no header field (``no_match``); a
header whose time does not convert (``Feb 30``) keeps the read time (``unparsable``).

How it stays cheap: the stage runs the compiled :mod:`logcap.pipeline.stages._opensips` when
it is importable (built from ``_opensips.c`` by ``setup.py``; optional: a build without a C
compiler leaves it out). It does the same as the Python code here, which is its specification
and the fallback: one pass over each entry instead of the regex engine (the stage runs about
a quarter of the instructions: 36k -> 7.8k per entry in ``bench/pipelines.py``). In Python,
an identifier's expression runs on a one-line entry only when the entry contains one of the
strings all the expression's matches contain there; the entries that do are found with one
scan of the batch per string (:class:`~logcap.pipeline.textindex.TextIndex`) unless the
strings are in most entries. A time text seen before in the batch is not converted again (in
both). Followed only by ``labels``/``structured_metadata`` stages that read its fields, the
compile step fuses it with them (:mod:`logcap.pipeline.stages.fused`: no fields made).
"""

from __future__ import annotations

import re

import attrs

from logcap.config.section import Section
from logcap.pipeline.batch import Fields, LineBatch
from logcap.pipeline.stages.base import compiled_module
from logcap.pipeline.stages.timestamp import timezone_option
from logcap.pipeline.textindex import DENSE, Needles
from logcap.pipeline.timeformats import SecondCache, zone

__all__ = ["COMPILED", "FIELDS", "HEADER", "IDENTIFIERS", "LEVELS", "OpensipsConfig",
           "OpensipsStage"]


COMPILED = compiled_module("logcap.pipeline.stages._opensips")
"""The compiled stage (:mod:`logcap.pipeline.stages._opensips`), None where it was not built."""

LEVELS = frozenset(("ALERT", "CRITICAL", "CRIT", "ERROR", "WARNING", "NOTICE", "INFO", "DBG",
                    "DEBUG", "BUG"))
"""OpenSIPS's log levels as they appear in a line (``L_ALERT`` ... ``L_DBG``, and ``BUG``)."""

HEADER = re.compile(r"""(?x)
    (?P<time>\d{4}-\d\d-\d\dT\S+|[A-Z][a-z]{2}[ ][ \d]\d[ ]\d\d:\d\d:\d\d)
    [ ](?:[^\s\[]+[ ])?[\w./-]*\[(?P<pid>\d+)\]:?[ ]
    (?P<level>ALERT|CRITICAL|CRIT|ERROR|WARNING|NOTICE|INFO|DBG|DEBUG|BUG):
    (?:(?P<module>\w+):(?P<function>\w+):[ ])?""")
"""The header, matched at the start of an entry. (Taking it apart with string methods
instead costs about three times as much: each method call costs what the regex engine
spends on a dozen characters.)"""

IDENTIFIERS: tuple[tuple[str, tuple[str, ...], re.Pattern[str]], ...] = (
    ("call_id", ("all", "ALL"), re.compile(
        r"(?x) [cC\n](?:(?<=[cC])(?:all|ALL)[-_]?(?:id|Id|ID)[=:][ \t]*"
        r"|(?<=\n)(?i:Call-ID|i)[ \t]*:[ \t]*)([^\s;,]+)")),
    ("from_tag", ("from_tag=", "fromtag="), re.compile(
        r"(?x) (?:from_?tag=|\n(?i:From|f)[ \t]*:[^\r\n]*?;(?i:tag)=)([^\s;>,]+)")),
    ("to_tag", ("to_tag=", "totag="), re.compile(
        r"(?x) (?:to_?tag=|\n(?i:To|t)[ \t]*:[^\r\n]*?;(?i:tag)=)([^\s;>,]+)")),
    ("method", ("request ", "method="), re.compile(
        r"(?x) (?:request[ ]|method=|\nCSeq:[ \t]*\d+[ \t]+|\n)"
        r"(INVITE|ACK|BYE|CANCEL|REGISTER|OPTIONS|PRACK|SUBSCRIBE|NOTIFY|PUBLISH"
        r"|INFO|REFER|MESSAGE|UPDATE)\b")),
    ("status", ("repl", "status=", "code="), re.compile(
        r"(?:repl(?:y|ied) |status=|code=|\nSIP/2\.0 )([1-6]\d\d)\b")),
    ("src_ip", ("from ", "src_ip=", "source "), re.compile(
        r"(?x) (?:from[ ]|src_ip=|source[ ]|\nVia:[ \t]*SIP/2\.0/\w+[ \t]+)"
        r"(\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:]+\])")),
)
"""``(field, strings, expression)``: the identifiers searched after the header. On an entry of
one line (no ``\\n``: no SIP dump), every match of the expression contains one of the strings,
so the expression runs only where one is found."""


FIELDS = ("time", "pid", "level", "module", "function", *(name for name, _, _ in IDENTIFIERS))
"""Every field the stage makes, in the order the compiled module numbers them (its fused step,
:mod:`logcap.pipeline.stages.fused`, is told the fields it reads by number)."""


ESCAPED_BREAK = "#015#012"
"""A line break (CR LF) as rsyslog escapes it."""


def _set(fields: list[Fields | None], i: int, name: str, value: str) -> None:
    current = fields[i]
    if current is None:
        fields[i] = {name: value}
    else:
        current[name] = value


@attrs.frozen
class OpensipsConfig(Section):
    """Options of ``opensips``."""

    timezone: str = timezone_option()


class OpensipsStage:
    """Fields and timestamp of OpenSIPS log entries (module docstring)."""

    __slots__ = ("_compiled", "_needles", "label", "rfc3339", "syslog")

    def __init__(self, config: OpensipsConfig, label: str, *,
                 compiled: bool = COMPILED is not None) -> None:
        """``compiled``: run :data:`COMPILED` (if there is one) rather than the Python code."""
        self.label = label
        self._compiled = COMPILED if compiled else None
        tz = zone(config.timezone)
        self.syslog = SecondCache("syslog", tz).parse
        self.rfc3339 = SecondCache("rfc3339", tz).parse
        self._needles = [Needles((*strings, "\n")) for _, strings, _ in IDENTIFIERS]

    def __call__(self, batch: LineBatch) -> None:
        if self._compiled is None:
            self._parse(batch)
            return
        no_header, unparsable = self._compiled.parse(batch.lines, batch.fields,
                                                     batch.timestamps, self.convert)
        self.count(batch, no_header, unparsable)

    def _parse(self, batch: LineBatch) -> None:
        """What :data:`COMPILED` does, in Python (the specification of the compiled code)."""
        lines = batch.lines
        index = batch.line_index()
        escaped = index.first_positions((ESCAPED_BREAK,), len(lines))
        if escaped:
            for i in escaped:
                lines[i] = lines[i].replace(ESCAPED_BREAK, "\r\n")
            index = batch.line_index()
        ends = self._headers(batch)
        limit = len(lines) // DENSE
        fields = batch.fields
        for (name, strings, pattern), needles in zip(IDENTIFIERS, self._needles, strict=True):
            search = pattern.search
            found = needles.positions(index, limit)  # the entries with a string or a "\n"
            if found is not None:
                for i in found:
                    m = search(lines[i], ends[i])
                    if m is not None:
                        _set(fields, i, name, m.group(1))
                continue
            for i, line in enumerate(lines):  # too many: entry by entry
                if "\n" not in line:
                    for s in strings:  # plain loops: cheaper than any() or a generator
                        if s in line:
                            break
                    else:
                        continue
                m = search(line, ends[i])
                if m is not None:
                    _set(fields, i, name, m.group(1))

    def _headers(self, batch: LineBatch) -> list[int]:
        """Fields and timestamps from the headers; where each header ends (0: none)."""
        lines, fields, stamps = batch.lines, batch.fields, batch.timestamps
        match = HEADER.match
        seen: dict[str, int | None] = {}  # time text -> ns (None: does not convert)
        ends = [0] * len(lines)
        no_header = unparsable = 0
        for i, line in enumerate(lines):
            m = match(line)
            if m is None:
                no_header += 1
                continue
            ends[i] = m.end()
            time_text, pid, level, module, function = m.group(1, 2, 3, 4, 5)
            found: Fields = {"time": time_text, "pid": pid, "level": level}
            if module is not None:
                found["module"] = module
                found["function"] = function
            current = fields[i]
            if current is None:
                fields[i] = found
            else:
                current.update(found)
            ns = seen.get(time_text, 0)
            if ns == 0:
                ns = seen[time_text] = self.convert(time_text, stamps[i])
            if ns is None:
                unparsable += 1
            else:
                stamps[i] = ns
        self.count(batch, no_header, unparsable)
        return ends

    def count(self, batch: LineBatch, no_header: int, unparsable: int) -> None:
        """The batch is timestamped; its entries without a header or a convertible time."""
        batch.timestamped = True
        if no_header:
            batch.fail(self.label, "no_match", no_header)
        if unparsable:
            batch.fail(self.label, "unparsable", unparsable)

    def convert(self, time_text: str, read_ns: int) -> int | None:
        """``time_text`` in ns since the epoch (None: it does not convert)."""
        try:
            if time_text[:1].isdigit():
                return self.rfc3339(time_text, read_ns)
            return self.syslog(time_text, read_ns)
        except ValueError:
            return None
