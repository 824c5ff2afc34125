"""Pre- and post-processing per task, behind one small interface (see base.TaskHandler).

Every task module exposes `HANDLER`, an object with `task`, `outputs` (the graph outputs it
fetches) and `infer(model, items) -> list` (run on the model's inference thread: pad, run,
slice one result per item), plus plain async functions that the routes call. The registry finds
a task's module here by name, so ner/qa plug in by defining HANDLER the same way.
"""

from __future__ import annotations

import importlib

from service.tasks.base import TaskHandler


def handler_for(task: str) -> TaskHandler:
    """The HANDLER of `service.tasks.<task>`; ValueError when this build cannot serve the task."""
    try:
        module = importlib.import_module(f"service.tasks.{task}")
    except ModuleNotFoundError as exc:
        raise ValueError(f"task {task!r} is not served by this build") from exc
    handler = getattr(module, "HANDLER", None)
    if handler is None:
        raise ValueError(f"task {task!r} is not served yet (service.tasks.{task} has no HANDLER)")
    return handler
