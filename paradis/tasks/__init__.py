"""Tasks: one registered object each (:mod:`paradis.tasks.base`); a new task is one file here and its
import below."""

from paradis.tasks import classification, super_resolution  # noqa: F401  (registers the tasks)
from paradis.tasks.base import Objective, Task, get_task, list_tasks, model_arguments, register_task

__all__ = ["Objective", "Task", "get_task", "list_tasks", "model_arguments", "register_task"]
