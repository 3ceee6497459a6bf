"""The model-backed task functions the window runs, handed to it by the app.

Views may not import the model library (an import-linter contract), not even indirectly, so
they never import the modules that do; :func:`create_window` passes this object in instead.
Each attribute is a generator function usable with :class:`~workbench.workers.Task`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Services:
    """Task functions: ``separate(samples, rate, request)``, ``batch_item(path, request,
    out_dir, template, extension)``, ``separation_catalog()``, and the speaker tasks."""

    separate: Callable[..., Any]
    batch_item: Callable[..., Any]
    separation_catalog: Callable[..., Any]
    speaker_call: Callable[..., Any]
    live_pipeline: Callable[..., Any]
    live_catalog: Callable[..., Any]


def default_services() -> Services:
    from workbench import live, separation, speaker_tasks

    return Services(
        separate=separation.separate_task,
        batch_item=separation.batch_item_task,
        separation_catalog=separation.catalog_task,
        speaker_call=speaker_tasks.speaker_call,
        live_pipeline=live.LivePipeline,
        live_catalog=live.catalog_task,
    )
