"""What every stage is: a callable over a batch, with the label its counts are reported under.

A stage is built once from its config (regexes compiled then) and called once per batch. Its
``label`` is ``"<index>:<kind>"`` (``"0:regex"``), the ``stage`` label of the pipeline metrics:
unique within a pipeline, and from a closed set (the configured stages).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Protocol

from logcap.pipeline.batch import LineBatch

__all__ = ["Stage", "compiled_module", "stage_label"]


class Stage(Protocol):
    """One step of a pipeline over a batch (module docstring)."""

    label: str

    def __call__(self, batch: LineBatch) -> None: ...


def stage_label(index: int, kind: str) -> str:
    """The metrics label of stage ``index`` of kind ``kind``."""
    return f"{index}:{kind}"


def compiled_module(name: str) -> ModuleType | None:
    """The compiled module ``name`` (one of setup.py's optional extensions), or None where it
    was not built (no C compiler at install time): the stage then runs its Python code."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None
