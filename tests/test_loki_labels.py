"""Loki labels: sanitised names, rendering, the per-stream cap and the stream-count cap."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logcap.sinks.loki.labels import (
    OVERFLOW_LABEL,
    LabelPolicy,
    StreamLimiter,
    escape_label_value,
    is_valid_label_name,
    parse_labels,
    render_labels,
    sanitize_label_name,
)
from tests.loki_receiver import parse_label_string


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("app", "app"),
        ("_private", "_private"),
        ("app-name", "app_name"),
        ("k8s.pod", "k8s_pod"),
        ("1abc", "_1abc"),
        ("9", "_9"),
        ("caf\u00e9", "caf_"),
        ("--x", "_x"),
        ("a b", "a_b"),
        ("", ""),
    ],
)
def test_label_names_are_sanitised_to_the_prometheus_alphabet(raw, clean):
    assert sanitize_label_name(raw) == clean


@given(st.text(max_size=30))
def test_a_sanitised_name_is_valid_unreserved_and_stable(raw):
    clean = sanitize_label_name(raw)
    if clean:
        assert is_valid_label_name(clean)
        assert not clean.startswith("__")
        assert sanitize_label_name(clean) == clean


def test_label_values_are_escaped_like_prometheus():
    assert escape_label_value('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
    assert escape_label_value("plain value") == "plain value"


def test_rendered_labels_are_sorted_by_name_and_comma_space_separated():
    assert render_labels({"b": "2", "a": "1"}) == '{a="1", b="2"}'
    assert render_labels([]) == "{}"


NAMES = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)


@given(st.dictionaries(NAMES, st.text(max_size=20)))
def test_rendered_labels_parse_back_both_here_and_in_lokis_syntax(labels):
    rendered = render_labels(labels)
    assert parse_labels(rendered) == labels
    assert dict(parse_label_string(rendered)) == labels


@pytest.mark.parametrize(
    "bad", ["", "a", "{", "{a}", '{a="x"', '{a="x" b="y"}', '{a="\\q"}', "{}x"]
)
def test_malformed_label_strings_are_refused(bad):
    with pytest.raises(ValueError):
        parse_labels(bad)


def test_static_labels_come_first_then_dynamic_ones_sorted_up_to_the_cap():
    policy = LabelPolicy({"host": "h1", "env": "prod"}, max_labels=4)
    result = policy.build({"zeta": "z", "alpha": "a", "mid": "m", "beta": "b"})
    assert dict(result.labels) == {"host": "h1", "env": "prod", "alpha": "a", "beta": "b"}
    assert result.dropped == 2
    assert result.rendered == '{alpha="a", beta="b", env="prod", host="h1"}'


def test_the_default_cap_is_fifteen_labels_per_stream():
    result = LabelPolicy().build({f"l{i:02d}": "v" for i in range(20)})
    assert len(result.labels) == 15
    assert result.dropped == 5
    assert [name for name, _ in result.labels] == [f"l{i:02d}" for i in range(15)]


def test_the_kept_subset_does_not_depend_on_input_order():
    policy = LabelPolicy({"host": "h"}, max_labels=3)
    items = [("c", "3"), ("a", "1"), ("b", "2"), ("d", "4")]
    assert policy.build(items).rendered == policy.build(list(reversed(items))).rendered


def test_empty_values_are_dropped_without_counting_as_losses():
    result = LabelPolicy().build({"a": "", "b": "x"})
    assert result.labels == (("b", "x"),)
    assert (result.dropped, result.invalid) == (0, 0)


def test_reserved_double_underscore_labels_are_dropped_and_counted():
    result = LabelPolicy().build({"__path__": "/var/log/x", "job": "j"})
    assert result.labels == (("job", "j"),)
    assert result.invalid == 1


def test_renamed_names_are_counted_and_collisions_keep_one_deterministically():
    result = LabelPolicy().build({"a.b": "dot", "a-b": "dash", "1x": "y"})
    assert dict(result.labels) == {"a_b": "dash", "_1x": "y"}
    assert result.sanitized == 3
    assert result.invalid == 1


def test_a_static_label_wins_over_a_dynamic_label_of_the_same_name():
    result = LabelPolicy({"host": "static"}).build({"host": "dynamic"})
    assert dict(result.labels) == {"host": "static"}
    assert result.invalid == 1


def test_long_values_are_cut_at_a_character_boundary_and_counted():
    result = LabelPolicy(max_value_bytes=5).build({"v": "\u00e9\u00e9\u00e9"})
    assert dict(result.labels) == {"v": "\u00e9\u00e9"}
    assert result.truncated == 1


def test_a_replacement_character_in_a_value_becomes_a_question_mark():
    assert dict(LabelPolicy({"s": "a\ufffd"}).build({"d": "b\ufffd"}).labels) == {
        "s": "a?",
        "d": "b?",
    }


def test_building_the_same_labels_twice_is_served_from_the_cache():
    policy = LabelPolicy()
    assert policy.build({"a": "1"}) is policy.build({"a": "1"})


def test_static_labels_are_sanitised_and_the_overflow_stream_keeps_them():
    policy = LabelPolicy({"my-host": "h", "__internal": "x", "empty": ""})
    assert policy.static_labels == {"my_host": "h"}
    assert policy.overflow_labels == f'{{{OVERFLOW_LABEL}="true", my_host="h"}}'


def test_a_cap_below_one_label_is_refused():
    with pytest.raises(ValueError):
        LabelPolicy(max_labels=0)


def test_the_stream_limiter_folds_new_streams_beyond_the_cap_into_the_overflow_stream():
    limiter = StreamLimiter('{logcap_overflow="true"}', max_streams=2, clock=FakeClock())
    assert limiter.admit('{s="1"}') == '{s="1"}'
    assert limiter.admit('{s="2"}', lines=3) == '{s="2"}'
    assert limiter.admit('{s="3"}', lines=7) == '{logcap_overflow="true"}'
    assert limiter.admit('{s="1"}') == '{s="1"}'
    assert (limiter.active_streams, limiter.folded_streams, limiter.folded_lines) == (2, 1, 7)


def test_the_overflow_stream_itself_never_counts_against_the_cap():
    limiter = StreamLimiter('{o="t"}', max_streams=1, clock=FakeClock())
    assert limiter.admit('{o="t"}') == '{o="t"}'
    assert limiter.admit('{s="1"}') == '{s="1"}'
    assert limiter.folded_streams == 0


def test_an_idle_stream_gives_its_place_to_a_new_one():
    clock = FakeClock()
    limiter = StreamLimiter("{o=\"t\"}", max_streams=2, idle_timeout_s=60, clock=clock)
    limiter.admit('{s="old"}')
    clock.now += 30
    limiter.admit('{s="busy"}')
    clock.now += 40  # "old" idle for 70 s, "busy" for 40 s
    assert limiter.admit('{s="new"}') == '{s="new"}'
    assert limiter.admit('{s="newer"}') == '{o="t"}'


def test_forgetting_idle_streams_frees_their_places():
    clock = FakeClock()
    limiter = StreamLimiter('{o="t"}', max_streams=5, idle_timeout_s=10, clock=clock)
    for i in range(3):
        limiter.admit(f'{{s="{i}"}}')
    clock.now += 5
    limiter.admit('{s="0"}')
    clock.now += 6
    assert limiter.forget_idle() == 2
    assert limiter.active_streams == 1


def test_a_stream_cap_below_one_is_refused():
    with pytest.raises(ValueError):
        StreamLimiter("{}", max_streams=0)
