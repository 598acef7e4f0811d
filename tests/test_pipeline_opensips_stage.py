"""The ``opensips`` stage against the generic stages it replaced in the built-in pipeline (a
``replace``, seven ``regex`` and a ``timestamp`` stage, kept here as the reference): on
generated OpenSIPS entries, the same fields, timestamps and failure counts."""

from __future__ import annotations

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from logcap.config.errors import IssueCollector
from logcap.pipeline.batch import LineBatch
from logcap.pipeline.decoding import decode_pipelines
from logcap.pipeline.stages.opensips import OpensipsConfig, OpensipsStage
from tests.pipeline_kit import READ_NS

REFERENCE = r"""
pipelines:
  reference:
    stages:
      - replace: {expression: '#015#012', replace: "\r\n"}
      - regex:
          expression: >-
            (?x) ^(?P<time>\d{4}-\d\d-\d\dT\S+|[A-Z][a-z]{2}[ ][ \d]\d[ ]\d\d:\d\d:\d\d)
            [ ](?:[^\s\[]+[ ])?[\w./-]*\[(?P<pid>\d+)\]:?[ ]
            (?P<level>ALERT|CRITICAL|CRIT|ERROR|WARNING|NOTICE|INFO|DBG|DEBUG|BUG):
            (?:(?P<module>\w+):(?P<function>\w+):[ ])?
      - timestamp: {source: time, format: syslog, fallback_formats: [rfc3339]}
      - regex:
          optional: true
          expression: >-
            (?x) [cC\n](?:(?<=[cC])(?:all|ALL)[-_]?(?:id|Id|ID)[=:][ \t]*
            |(?<=\n)(?i:Call-ID|i)[ \t]*:[ \t]*)(?P<call_id>[^\s;,]+)
      - regex:
          optional: true
          expression: >-
            (?x) (?:from_?tag=|\n(?i:From|f)[ \t]*:[^\r\n]*?;(?i:tag)=)(?P<from_tag>[^\s;>,]+)
      - regex:
          optional: true
          expression: >-
            (?x) (?:to_?tag=|\n(?i:To|t)[ \t]*:[^\r\n]*?;(?i:tag)=)(?P<to_tag>[^\s;>,]+)
      - regex:
          optional: true
          expression: >-
            (?x) (?:request[ ]|method=|\nCSeq:[ \t]*\d+[ \t]+|\n)
            (?P<method>INVITE|ACK|BYE|CANCEL|REGISTER|OPTIONS|PRACK|SUBSCRIBE|NOTIFY|PUBLISH
            |INFO|REFER|MESSAGE|UPDATE)\b
      - regex:
          optional: true
          expression: '(?:repl(?:y|ied) |status=|code=|\nSIP/2\.0 )(?P<status>[1-6]\d\d)\b'
      - regex:
          optional: true
          expression: >-
            (?x) (?:from[ ]|src_ip=|source[ ]|\nVia:[ \t]*SIP/2\.0/\w+[ \t]+)
            (?P<src_ip>\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:]+\])
"""


def reference_stages() -> list:  # type: ignore[type-arg]
    issues = IssueCollector()
    specs = decode_pipelines(yaml.safe_load(REFERENCE), "test", issues)
    assert not issues.items
    return list(specs["reference"].compile().stages)


TIMES = st.sampled_from(["Dec  1 20:34:05", "Jan 31 00:00:01", "Feb 30 10:00:00",
                         "2026-12-01T20:34:47.146887+00:00", "2026-12-01T20:34:49.5+01:00",
                         "2026-13-01T00:00:00Z", "dec  1 20:34:05", "Dec 1 20:34:05"])
BEFORE_PID = st.sampled_from(["", "sip01 opensips", "sip01 /usr/sbin/opensips", "opensips",
                              "a b opensips", "host\tprog"])
LEVELS = st.sampled_from(["ERROR", "CRIT", "CRITICAL", "DBG", "NOTICE", "WARN", "error"])
WORDS = st.sampled_from(["tm", "t_reply", "core", "main", "dialog", "x1", "a b", ""])
MESSAGES = st.lists(st.sampled_from([
    "callid=a1@h", "call-id: a2@h;", "CALL_ID=z", "recall id=q", "from_tag=f1", "totag=t2>",
    "method=BYE", "request INVITE", "replied 486", "reply 200", "status=700", "code=408",
    "from 192.0.2.10", "src_ip=[2001:db8::1]", "source 10.0.0.1", "text", "x=1", ": ",
    "#015#012", "\nINVITE sip:b@x SIP/2.0", "\nVia: SIP/2.0/UDP 192.0.2.9:5060",
    "\nFrom: <sip:a@x>;tag=ft", "\nt: <sip:b@x>;TAG=tt", "\ni: cid@x", "\nCSeq: 1 CANCEL",
    "\nSIP/2.0 180 Ringing", " "]), max_size=8).map("".join)


@st.composite
def opensips_entries(draw: st.DrawFn) -> str:
    """An entry built from the header's parts (some of them wrong) and a message."""
    before = draw(BEFORE_PID)
    pid = draw(st.sampled_from(["2311", "", "23a"]))
    colon = ":" if before and draw(st.booleans()) else ""
    head = f"{draw(TIMES)} {before + ' ' if before else ''}[{pid}]{colon} {draw(LEVELS)}:"
    if draw(st.booleans()):
        head += f"{draw(WORDS)}:{draw(WORDS)}: "
    return head + draw(MESSAGES)


def run(stages: list, lines: list[str]) -> LineBatch:  # type: ignore[type-arg]
    batch = LineBatch(list(lines), list(range(READ_NS, READ_NS + len(lines))), READ_NS)
    for stage in stages:
        stage(batch)
    return batch


@settings(max_examples=300, deadline=None)
@given(st.lists(opensips_entries(), min_size=1, max_size=30))
def test_the_opensips_stage_gives_what_the_generic_stages_gave(lines: list[str]) -> None:
    expected = run(reference_stages(), lines)
    got = run([OpensipsStage(OpensipsConfig(), "1:opensips")], lines)
    assert got.lines == expected.lines
    assert got.timestamps == expected.timestamps
    for want, have in zip(expected.fields, got.fields, strict=True):
        assert (have or {}) == {k: v for k, v in (want or {}).items() if v is not None}
    no_header = expected.failures.get(("1:regex", "no_match"), 0)
    unparsable = expected.failures.get(("2:timestamp", "unparsable"), 0)
    assert got.failures == {k: v for k, v in {("1:opensips", "no_match"): no_header,
                                              ("1:opensips", "unparsable"): unparsable}.items()
                            if v}


def test_identifiers_are_searched_after_the_header_only() -> None:
    line = "Dec  1 20:34:05 [2311] ERROR:get_callid:do: nothing here"
    got = run([OpensipsStage(OpensipsConfig(), "1:opensips")], [line])
    assert got.fields[0] == {"time": "Dec  1 20:34:05", "pid": "2311", "level": "ERROR",
                             "module": "get_callid", "function": "do"}
