"""The ``opensips`` stage against the generic stages it replaced in the built-in pipeline (a
``replace``, seven ``regex`` and a ``timestamp`` stage, kept here as the reference): on
generated OpenSIPS entries, the same fields, timestamps and failure counts; and its compiled
implementation (``_opensips.c``) against its Python one, on those entries and on adversarial
ones (partial headers, non-ASCII digits, letters and spaces, identifiers at the edges)."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from logcap.config.errors import IssueCollector
from logcap.pipeline.batch import LineBatch
from logcap.pipeline.decoding import decode_pipelines
from logcap.pipeline.stages.opensips import COMPILED, OpensipsConfig, OpensipsStage
from tests.pipeline_kit import READ_NS, leaked

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


IMPLEMENTATIONS = pytest.mark.parametrize("compiled", [False, True], ids=["python", "compiled"])


@IMPLEMENTATIONS
@settings(max_examples=300, deadline=None)
@given(lines=st.lists(opensips_entries(), min_size=1, max_size=30))
def test_the_opensips_stage_gives_what_the_generic_stages_gave(compiled: bool,
                                                               lines: list[str]) -> None:
    expected = run(reference_stages(), lines)
    got = run([OpensipsStage(OpensipsConfig(), "1:opensips", compiled=compiled)], lines)
    assert got.lines == expected.lines
    assert got.timestamps == expected.timestamps
    for want, have in zip(expected.fields, got.fields, strict=True):
        assert (have or {}) == {k: v for k, v in (want or {}).items() if v is not None}
    no_header = expected.failures.get(("1:regex", "no_match"), 0)
    unparsable = expected.failures.get(("2:timestamp", "unparsable"), 0)
    assert got.failures == {k: v for k, v in {("1:opensips", "no_match"): no_header,
                                              ("1:opensips", "unparsable"): unparsable}.items()
                            if v}


@IMPLEMENTATIONS
def test_identifiers_are_searched_after_the_header_only(compiled: bool) -> None:
    line = "Dec  1 20:34:05 [2311] ERROR:get_callid:do: nothing here"
    got = run([OpensipsStage(OpensipsConfig(), "1:opensips", compiled=compiled)], [line])
    assert got.fields[0] == {"time": "Dec  1 20:34:05", "pid": "2311", "level": "ERROR",
                             "module": "get_callid", "function": "do"}


def test_the_compiled_stage_is_built_and_chosen() -> None:
    """The development install builds ``_opensips`` (setup.py; ``make .venv/bin/activate``),
    so the comparisons below run; the stage takes it unless told not to."""
    assert COMPILED is not None, "logcap/pipeline/stages/_opensips.c was not built"
    assert OpensipsStage(OpensipsConfig(), "1:opensips")._compiled is COMPILED
    assert OpensipsStage(OpensipsConfig(), "1:opensips", compiled=False)._compiled is None


FRAGMENTS = st.sampled_from([
    # the identifiers' parts, whole and broken
    "callid=", "call-id:", "CALL_ID: ", "Call-Id=", "call id=", "cALL-ID=", "CaLL-id=", "all",
    "\ncall-id:", "\nCALL-\u0130D\t: ", "\nCall-\u0131d:", "\ni", "\nI :", "\n\u0130:", "\n\u0131:",
    "\nx:",
    "from_tag=", "fromtag=", "from_tag", "tag=", ";tag=", ";TAG=", ";Tag=", ";tag", "\nFrom:",
    "\nf :", "\nFROM\t:", "\nfrom", "to_tag=", "totag=", "\nTo:", "\nt:", "\nTO :",
    "request ", "request", "method=", "\nCSeq: 12 ", "\nCSeq:\t\u0663 ", "\nCSeq:1", "\nCSeq: 7\t",
    "INVITE", "INVITEx", "INVITE_", "INVITEé", "INVITE1", "INFO", "ACK", "CANCEL", "\nINVITE",
    "repl", "reply ", "replied ", "replies ", "status=", "code=", "\nSIP/2.0 ", "\nSIP/2.0",
    "from ", "src_ip=", "source ", "\nVia: SIP/2.0/UDP ", "\nVia:SIP/2.0/é\t", "\nVia: SIP/2.0/ ",
    # values
    "a1@h", "486", "200", "700", "1000", "\u0663\u0662\u0661", "4\u06636", "1.2.3.4", "1234.5.6.7",
    "1.2.3.4567",
    "256.1.1.1.1", "1.2.3", "\u0661.\u0662.\u0663.\u0664", "[2001:db8::1]", "[]", "[2001:db8::g]",
    "[::1",
    # separators, spaces (ASCII and not), line breaks, non-ASCII letters and digits
    " ", "\t", ":", ";", ",", ">", "<", "=", "_", "-", ".", "/", "[", "]", "\n", "\r", "\r\n",
    "\n\n", "#015#012", "#015", "#012#015#012", "\u00a0", "\u2028", "\x1c", "\u3000", "é",
    "ß", "\u0130", "\u0131", "\u0663", "\uff11", "x", "0", "6",
])
HEADS = st.sampled_from([
    "Dec  1 20:34:05 [2311] ERROR:tm:t_reply: ", "Dec  1 20:34:05 [2311] ERROR:",
    "2026-12-01T20:34:47.146887+00:00 sip01 opensips[2311]: INFO:core:main: ",
    "Dec  1 20:34:05 sip01 /usr/sbin/opensips[2311]: CRITICAL:",
    "Dec \u06631 2\u0663:34:05 [1] BUG:",
    "Dec  1 20:34:05 h\u00a0x [2] DBG:", "Dec  1 20:34:05 é/ü.x-[3]: DEBUG:mod:fn:",
    "\u0662026-12-01T20:34:47Z [4] NOTICE:a:b:\t", "Dec  1 20:34:05 a b [5] WARNING:",
    "Dec  1 20:34:05  [6] ALERT:", "Feb 30 10:00:00 [7] CRIT:x:y: ", "Dec  1 20:34:05 [8] CRITIC:",
])


@st.composite
def adversarial_entries(draw: st.DrawFn) -> str:
    """A header (maybe cut short or missing) and a message of fragments and arbitrary text."""
    head = draw(st.one_of(HEADS, opensips_entries(), st.just("")))
    if draw(st.booleans()):
        head = head[:draw(st.integers(0, len(head)))]
    parts = draw(st.lists(st.one_of(FRAGMENTS, st.text(max_size=4)), max_size=12))
    return head + "".join(parts)


def prefilled(lines: list[str], given: list[int]) -> LineBatch:
    """A batch of ``lines`` whose lines at the ``given`` positions already have fields."""
    batch = LineBatch(list(lines), list(range(READ_NS, READ_NS + len(lines))), READ_NS)
    for i in given:
        if i < len(lines):
            batch.fields[i] = {"time": "earlier", "kept": "yes"}
    return batch


def outcome(lines: list[str], given: list[int], compiled: bool) -> tuple[object, ...]:
    batch = prefilled(lines, given)
    OpensipsStage(OpensipsConfig(), "1:opensips", compiled=compiled)(batch)
    fields = [None if f is None else list(f.items()) for f in batch.fields]  # order too
    return batch.lines, fields, batch.timestamps, batch.failures, batch.timestamped


needs_compiled = pytest.mark.skipif(COMPILED is None, reason="_opensips not built")


@needs_compiled
@settings(max_examples=1500, deadline=None)
@given(st.lists(st.one_of(adversarial_entries(), opensips_entries()), min_size=1, max_size=20),
       st.lists(st.integers(0, 19), max_size=5))
def test_the_compiled_stage_fills_the_batch_as_the_python_one(lines: list[str],
                                                              given: list[int]) -> None:
    assert outcome(lines, given, True) == outcome(lines, given, False)


@needs_compiled
@pytest.mark.parametrize("line", [
    "", "\n", "\r\n", "#015#012", "Dec  1 20:34:05 [2311] ERROR:", "Dec  1 20:34:05 [2311] ERROR",
    "Dec  1 20:34:05 [2311] ERROR:tm:t_reply:", "Dec  1 20:34:05 [2311] ERROR:callid=x",
    "Dec  1 20:34:05 [2311] ERROR:tm:t: callid=", "callid=x", "c", "\ni:", "\ni:x",
    "x\nFrom: a;tag=", "x\nFrom: a;tag=1", "x\nFrom: a\r;tag=1", "x\nf:;tag=;tag=2",
    "request INVITE", "request INVITEé", "request INVITE\u0663", "request INVITE\u00b2",
    "code=486\u0663",
    "Dec  1 20:34:05 x\u0663/y [1] ERROR:m\u0663:f\u2167: x",
    "\nBYE", "\nCSeq: 1 BYE_", "reply 200", "code=2001",
    "from 1.2.3.4", "from 1.2.3.4567", "src_ip=[::1]", "source [::1", "\nVia: SIP/2.0/X 1.2.3.4",
    "Dec  1 20:34:05 [2311] ERROR:tm:t_reply: " + "callid=a;from_tag=b,to_tag=c>method=BYE "
    "code=486 src_ip=10.0.0.1",
])
def test_the_compiled_stage_on_entries_at_the_edges(line: str) -> None:
    assert outcome([line], [], True) == outcome([line], [], False)


@needs_compiled
def test_the_compiled_stage_checks_its_arguments() -> None:
    assert COMPILED is not None
    with pytest.raises(TypeError):
        COMPILED.parse([b"bytes"], [None], [0], lambda text, ns: ns)
    with pytest.raises(ValueError):
        COMPILED.parse(["a"], [], [0], lambda text, ns: ns)
    with pytest.raises(ZeroDivisionError):  # the converter's error comes through
        COMPILED.parse(["Dec  1 20:34:05 [1] ERROR:"], [None], [0], lambda text, ns: 1 // 0)


@needs_compiled
def test_the_compiled_stage_leaks_nothing() -> None:
    """References and memory stay the same over many batches (each object the C code makes is
    released or owned by the batch)."""
    lines = ["Dec  1 20:34:05 [2311] ERROR:tm:t_reply: callid=a from_tag=f code=486#015#012x",
             "Dec  1 20:34:06 sip01 opensips[1]: INFO:\nCall-ID: c\nFrom: <a>;tag=t\nCSeq: 1 BYE",
             "no header from 10.0.0.1", "Feb 30 10:00:00 [7] CRIT:x"]
    stage = OpensipsStage(OpensipsConfig(), "1:opensips")

    def batches(n: int) -> None:
        for _ in range(n):
            batch = prefilled(lines, [1])
            stage(batch)

    grown, references = leaked(batches, [*lines, None])
    assert references[:-1] == [0] * len(lines)
    assert abs(references[-1]) < 50  # None: other code takes and drops references too
    assert grown < 10_000, f"{grown} bytes more after 5000 batches"
