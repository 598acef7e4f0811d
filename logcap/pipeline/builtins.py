r"""The pipelines shipped with logcap, usable by name without a pipelines file.

They are written in the pipelines-file format (:data:`BUILTIN_PIPELINES_YAML`) and decoded by
the same code as a user's file, once, on first use (:func:`builtin_pipelines`).

* ``opensips``: OpenSIPS on stderr (``Mmm dd HH:MM:SS [pid] LEVEL:module:function: msg``) or
  through syslog (rsyslog's ``2026-12-01T20:34:47.146887+00:00 host opensips[pid]: ...`` with
  line breaks escaped as ``#015#012``, which become CR LF again, or the traditional
  ``Mmm dd HH:MM:SS host opensips[pid]: ...``). Labels ``level`` and ``module`` (``xlog``
  lines have no module); structured metadata ``pid``, ``function`` and, when the entry shows
  them, ``call_id``, ``from_tag``, ``to_tag``, ``method``, ``status`` and ``src_ip`` (from a
  SIP message dump's headers, or ``callid=``, ``method=``... in an xlog text). A SIP message
  logged after its xlog line (lines without the timestamp prefix) is joined to it as one entry
  (the multiline stage: a line with the prefix starts an entry). Timestamp from the prefix
  (syslog times take the year closest to the read time).
* ``mysql_error``: MariaDB (``2026-12-01 23:46:44 16 [Warning] msg``) and MySQL 8
  (``2024-12-01T20:34:47.123456Z 8 [ERROR] [MY-012592] [InnoDB] msg``) error logs, and the
  older ``YYMMDD HH:MM:SS [Note] msg``. Label ``level``; metadata ``thread``, ``error_code``
  (``MY-012592``) and ``subsystem`` when present. Lines without the prefix (``Version: ...``,
  stack traces) join the entry before them.
* ``mysql_slow``: the slow-query log of MariaDB and MySQL. Each entry (``# User@Host``, the
  ``# Thread_id``/``# Query_time`` comments, ``SET timestamp=...;``, the statement over any
  number of lines) is one entry; the ``# Time:`` line MariaDB writes when the second changes
  precedes an entry and is dropped from the end of the one before it (``SET timestamp``
  carries the time). Metadata ``user``, ``host``, ``ip`` (when not empty), ``query_time``,
  ``lock_time``, ``rows_sent``, ``rows_examined`` (and ``schema``); timestamp from
  ``SET timestamp``; passwords in ``IDENTIFIED BY '...'`` and ``PASSWORD('...')`` masked
  as ``'***'``.
* ``docker_json``: Docker's ``json-file`` lines; the line becomes ``log`` (without its
  newline), timestamp from ``time``, label ``stream``. A record whose ``log`` does not end in a
  newline (Docker cuts lines at 16 KiB) is joined at the source with the records after it up
  to the one that does, into one line; ``time`` and ``stream`` are the last record's.
* ``cri``: CRI (containerd, CRI-O) log lines ``<time> <stream> <F|P> <text>``; the line becomes
  the text, timestamp from the time, label ``stream``. A partial (``P``) record is joined at the
  source with the records after it up to the next ``F`` one, into one line (time and stream
  of the first).

  For both, the joining is by position in the file: a partial line of one stream followed by
  a record of the other stream (both write to one file) is joined with that record. A line
  longer than the multiline caps (500 records, ``max_bytes`` = the default ``max_line_bytes``)
  is cut into several entries, nothing dropped; an unfinished one is flushed after the
  multiline timeout.
* ``json`` and ``logfmt``: every top-level key becomes a field; ``level`` (when present) a
  label.
"""

from __future__ import annotations

from functools import lru_cache

import yaml

from logcap.config.errors import ConfigError, ConfigIssue, IssueCollector
from logcap.pipeline.compiled import PipelineSpec
from logcap.pipeline.decoding import decode_pipelines

__all__ = ["BUILTIN_ORIGIN", "BUILTIN_PIPELINES_YAML", "builtin_pipelines"]

BUILTIN_ORIGIN = "built-in"

BUILTIN_PIPELINES_YAML = r"""
pipelines:
  opensips:
    stages:
      - multiline:
          firstline: '^(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)'
          max_lines: 500
      # the header, the SIP identifiers and the timestamp, in one pass
      - opensips: {}
      - labels: {level: , module: }
      - structured_metadata:
          pid:
          function:
          call_id:
          from_tag:
          to_tag:
          method:
          status:
          src_ip:

  mysql_error:
    stages:
      - multiline:
          firstline: '^(?:\d{4}-\d\d-\d\d[ T]|\d{6} +\d{1,2}:\d\d:\d\d)'
      - regex:
          expression: >-
            (?x) ^(?P<time>\d{4}-\d\d-\d\d[ T]+\d{1,2}:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?
            |\d{6}[ ]+\d{1,2}:\d\d:\d\d)
            [ ]+(?:(?P<thread>\d+)[ ])?\[(?P<level>[A-Za-z]+)\][ ]
            (?:\[(?P<error_code>MY-\d+)\][ ]\[(?P<subsystem>[A-Za-z]+)\][ ])?
      - timestamp: {source: time, format: mysql}
      - labels: {level: }
      - structured_metadata: {thread: , error_code: , subsystem: }

  mysql_slow:
    stages:
      - multiline:
          firstline: '^# User@Host: '
          max_lines: 10000
          max_bytes: 1MiB
      - replace: {expression: '\n# Time: [^\n]*\n?\Z', replace: ''}
      - replace:
          contains: [IDENTIFIED, identified, PASSWORD, password]
          expression: >-
            (?x) ((?:IDENTIFIED|identified)[ ](?:BY|by|(?:WITH|with)[ ]\w+[ ](?:BY|AS|by|as))
            |(?:PASSWORD|password)[ ]*\()[ ]*'(?:[^'\\]|\\.)*'
          replace: "\\1 '***'"
      - regex:
          expression: >-
            (?xsm) ^\#[ ]User@Host:[ ](?P<user>[^\[\s]*)\[[^\]]*\][ ]@[ ](?P<host>[^\s\[]*)[ ]?
            \[(?P<ip>[^\]]*)\]
            .*?\#[ ]Query_time:[ ](?P<query_time>[\d.]+)\s+Lock_time:[ ](?P<lock_time>[\d.]+)
            \s+Rows_sent:[ ](?P<rows_sent>\d+)\s+Rows_examined:[ ](?P<rows_examined>\d+)
            .*?^SET[ ]timestamp=(?P<timestamp>\d+);
      - regex: {optional: true, expression: '# Thread_id: \d+\s+Schema: (?P<schema>\w+)'}
      - timestamp: {source: timestamp, format: unix}
      - structured_metadata:
          user:
          host:
          ip:
          query_time:
          lock_time:
          rows_sent:
          rows_examined:
          schema:

  docker_json:
    stages:
      # a record whose log does not end in a newline (\n escaped) is a partial line (Docker
      # cuts lines at 16 KiB): it continues in the next record
      - multiline:
          pattern: '^\{"log":"(?:[^"\\]|\\.)*(?:[^"\\]|\\[^n])"'
          match: before
      # the records of a joined line become one: each joint (the end of a record, its other
      # keys, and the start of the next one) is cut out, the last record's keys remain
      - replace:
          contains: ["\n"]
          expression: >-
            "(?:,"\w+":(?:"(?:[^"\\]|\\.)*"|\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\}))*\}\n\{"log":"
      - json: {fields: {log: log, stream: stream, time: time}}
      - replace: {source: log, expression: '\r?\n\Z', replace: ''}
      - timestamp: {source: time, format: rfc3339}
      - labels: {stream: }
      - output: {source: log}

  cri:
    stages:
      # a P (partial) record continues in the next record; the joint (the newline and the next
      # record's time, stream and tag) is cut out
      - multiline:
          pattern: '^\S+ (?:stdout|stderr) P '
          match: before
      - replace: {contains: ["\n"], expression: '\n\S+ (?:stdout|stderr) [FP] '}
      - regex:
          expression: '^(?P<time>\S+) (?P<stream>stdout|stderr) (?P<flags>[FP]) (?P<content>.*)'
      - timestamp: {source: time, format: rfc3339}
      - labels: {stream: }
      - output: {source: content}

  json:
    stages:
      - json: {}
      - labels: {level: }

  logfmt:
    stages:
      - logfmt: {}
      - labels: {level: }
"""


@lru_cache(maxsize=1)
def builtin_pipelines() -> dict[str, PipelineSpec]:
    """The built-in pipelines by name (decoded once)."""
    issues = IssueCollector()
    specs = decode_pipelines(yaml.safe_load(BUILTIN_PIPELINES_YAML), BUILTIN_ORIGIN, issues)
    if issues.items:  # a bug in this module: the tests load it
        raise ConfigError([ConfigIssue(f"built-in: {i.path}", i.reason) for i in issues.items])
    return specs
