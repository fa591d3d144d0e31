"""What a study's data is, apart from any model: the `Task` interface and the `Probe` that
head statistics read. The spatial-relation `World` is one task; `CaptionTask` (the same worlds
captioned by a prefix-LM) another; a user's own task is another."""

from typing import Any

from circuits.tasks.base import Probe, Task, build_task

__all__ = ["CaptionBatch", "CaptionTask", "Probe", "Task", "build_task"]


def __getattr__(name: str) -> Any:  # lazy: circuits.data.world imports circuits.tasks.base
    if name in ("CaptionBatch", "CaptionTask"):
        from circuits.tasks import captioning

        return getattr(captioning, name)
    raise AttributeError(f"module 'circuits.tasks' has no attribute {name!r}")
