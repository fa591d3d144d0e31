"""What a study's data is, apart from any model: the `Task` interface and the `Probe` that
head statistics read. The spatial-relation `World` is one task; a user's own task is another."""

from circuits.tasks.base import Probe, Task, build_task

__all__ = ["Probe", "Task", "build_task"]
