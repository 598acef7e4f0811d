"""Which containers are followed: labels (all must match), name globs, exclude wins."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from logcap.config.sources import ContainersConfig
from logcap.sources.containers.filters import ContainerFilter, container_name


def test_no_filter_follows_every_container() -> None:
    assert ContainerFilter().follows("/anything", None)


def test_every_include_label_must_match_exactly() -> None:
    f = ContainerFilter(include_labels={"logs": "yes", "team": "voip"})
    assert f.follows("x", {"logs": "yes", "team": "voip", "other": "1"})
    assert not f.follows("x", {"logs": "yes"})
    assert not f.follows("x", {"logs": "yes", "team": "db"})
    assert not f.follows("x", None)


def test_names_are_globs_without_the_api_slash_and_exclude_wins() -> None:
    f = ContainerFilter(include_names=("opensips*", "mysql"), exclude_names=("*-test",))
    assert f.follows("/opensips-1", {}) and f.follows("mysql", {})
    assert not f.follows("/redis", {})
    assert not f.follows("/opensips-test", {})
    assert not f.follows(["/web", "/opensips-test"], {})
    assert f.follows(["/web", "/opensips-2"], {})


def test_globs_are_case_sensitive() -> None:
    assert not ContainerFilter(include_names=("Web*",)).follows("/web-1", {})


def test_the_filter_comes_from_the_config_section() -> None:
    section = ContainersConfig(include_labels={"a": "b"}, include_names=("w*",),
                               exclude_names=("w2",))
    f = ContainerFilter.from_config(section)
    assert f.follows("/w1", {"a": "b"})
    assert not f.follows("/w2", {"a": "b"}) and not f.follows("/w1", {})


names = st.text(alphabet="abc-/", min_size=1, max_size=6)


@given(names, st.lists(st.text(alphabet="abc*?", max_size=4), max_size=3),
       st.lists(st.text(alphabet="abc*?", max_size=4), max_size=3))
def test_an_excluded_name_is_never_followed_and_a_slash_changes_nothing(
        name, include, exclude) -> None:
    f = ContainerFilter(include_names=tuple(include), exclude_names=tuple(exclude))
    plain = container_name(name)
    assert f.follows(name, {}) == f.follows(plain, {}) == f.follows("/" + plain, {})
    if ContainerFilter(include_names=tuple(exclude)).follows(plain, {}) and exclude:
        assert not f.follows(name, {})
