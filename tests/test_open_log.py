"""Log files are opened with O_NOATIME when allowed, and still opened when it is not (EPERM for
a non-owner without CAP_FOWNER: the image's non-root user reading host logs by group)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from logcap.sources.files import generation
from logcap.sources.files.generation import OPEN_FLAGS, open_log


def test_open_log_uses_o_noatime_when_allowed(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_text("a\n")
    fd = open_log(str(path))
    try:
        assert os.read(fd, 10) == b"a\n"
    finally:
        os.close(fd)


@pytest.mark.skipif(not getattr(os, "O_NOATIME", 0), reason="no O_NOATIME on this platform")
def test_open_log_falls_back_without_o_noatime_on_eperm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "app.log"
    path.write_text("b\n")
    real_open = os.open
    calls: list[int] = []

    def not_owner(p: str, flags: int, *args: int) -> int:
        calls.append(flags)
        if flags & os.O_NOATIME:
            raise PermissionError(1, "Operation not permitted", p)
        return real_open(p, flags, *args)

    monkeypatch.setattr(generation.os, "open", not_owner)
    fd = open_log(str(path))
    try:
        assert os.read(fd, 10) == b"b\n"
    finally:
        os.close(fd)
    assert calls == [OPEN_FLAGS, OPEN_FLAGS & ~os.O_NOATIME]


def test_open_log_still_fails_when_the_file_is_unreadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(p: str, flags: int, *args: int) -> int:
        raise PermissionError(13, "Permission denied", p)

    monkeypatch.setattr(generation.os, "open", denied)
    with pytest.raises(PermissionError):
        open_log(str(tmp_path / "app.log"))
