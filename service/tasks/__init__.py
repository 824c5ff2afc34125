"""Pre- and post-processing per task, behind one small interface (see base.TaskHandler).

Every task module exposes `HANDLER`, an object with `task`, `outputs` (the graph outputs it
fetches) and `infer(model, items) -> list` (run on the model's inference thread: pad, run,
slice one result per item), plus plain async functions that the routes call. The registry finds
a task's module here by name. NER and QA keep their decoding pure (ner.py, qa.py, windows.py) and
are served by spans.py, named in SERVING.
"""

from __future__ import annotations

import importlib

from service.tasks.base import TaskHandler

# Tasks whose serving side lives apart from their decoding module (ner.py/qa.py stay pure).
SERVING = {"ner": ("service.tasks.spans", "NER_HANDLER"), "qa": ("service.tasks.spans", "QA_HANDLER")}


def handler_for(task: str) -> TaskHandler:
    """The HANDLER of `service.tasks.<task>`; ValueError when this build cannot serve the task."""
    if task in SERVING:
        module_name, attr = SERVING[task]
        return getattr(importlib.import_module(module_name), attr)
    try:
        module = importlib.import_module(f"service.tasks.{task}")
    except ModuleNotFoundError as exc:
        raise ValueError(f"task {task!r} is not served by this build") from exc
    handler = getattr(module, "HANDLER", None)
    if handler is None:
        raise ValueError(f"task {task!r} is not served yet (service.tasks.{task} has no HANDLER)")
    return handler
