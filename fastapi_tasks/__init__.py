"""In-process background tasks for FastAPI: three timing modes, per-task settings, shielding,
a sync-first thread pool of its own, graceful shutdown and live stats."""

from ._app import get_tasks as get_tasks
from ._config import ErrorHandler as ErrorHandler
from ._config import TaskConfig as TaskConfig
from ._dependencies import Tasks as Tasks
from ._lifespan import add_tasks as add_tasks
from ._lifespan import task_runtime as task_runtime
from ._scheduler import TaskScheduler as TaskScheduler
from ._stats import TaskStats as TaskStats
from ._task import Task as Task
from ._task import TaskState as TaskState
from ._types import AnyTask as AnyTask
from .errors import FastAPITasksAlreadyAddedError as FastAPITasksAlreadyAddedError
from .errors import FastAPITasksAppStartedError as FastAPITasksAppStartedError
from .errors import FastAPITasksError as FastAPITasksError
from .errors import FastAPITasksNoRequestError as FastAPITasksNoRequestError
from .errors import FastAPITasksQueueFullError as FastAPITasksQueueFullError
from .errors import FastAPITasksShutdownError as FastAPITasksShutdownError
from .errors import FastAPITasksTimeoutError as FastAPITasksTimeoutError
from .errors import FastAPITasksUninitializedAppError as FastAPITasksUninitializedAppError

__version__ = "0.2.0"

__all__ = [
    "AnyTask",
    "ErrorHandler",
    "FastAPITasksAlreadyAddedError",
    "FastAPITasksAppStartedError",
    "FastAPITasksError",
    "FastAPITasksNoRequestError",
    "FastAPITasksQueueFullError",
    "FastAPITasksShutdownError",
    "FastAPITasksTimeoutError",
    "FastAPITasksUninitializedAppError",
    "Task",
    "TaskConfig",
    "TaskScheduler",
    "TaskState",
    "TaskStats",
    "Tasks",
    "__version__",
    "add_tasks",
    "get_tasks",
    "task_runtime",
]
