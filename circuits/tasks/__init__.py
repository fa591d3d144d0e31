"""What a study's data is, apart from any model: the `Task` interface and the `Probe` that
head statistics read. The spatial-relation `World` is one task; `CaptionTask` (the same worlds
captioned by a prefix-LM) another; `Toy2DSTask` (questions about coloured shapes, [B] Sec. 5.1)
a third; a user's own task is another."""

from typing import Any

from circuits.tasks.base import Probe, Task, build_task

__all__ = ["CaptionBatch", "CaptionTask", "Probe", "Task", "Toy2DSTask", "build_task"]


def __getattr__(name: str) -> Any:  # lazy: circuits.data.world imports circuits.tasks.base
    if name in ("CaptionBatch", "CaptionTask"):
        from circuits.tasks import captioning

        return getattr(captioning, name)
    if name == "Toy2DSTask":
        from circuits.tasks import toy2ds

        return toy2ds.Toy2DSTask
    raise AttributeError(f"module 'circuits.tasks' has no attribute {name!r}")
