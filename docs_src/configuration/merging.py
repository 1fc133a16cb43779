from fastapi_tasks import AnyTask, TaskConfig


def alert(task: AnyTask, error: Exception) -> None:
    print(f"{task.name} failed: {error!r}")


def quiet(task: AnyTask, error: Exception) -> None:
    pass


# What add_tasks(app, config=...) was given.
global_config = TaskConfig(shield=True, on_error=alert)

# What tasks.task(...) receives: None means "keep what you had".
override = TaskConfig(name="nightly-export", on_error=quiet)

effective = global_config.merge(override)
# effective.name == "nightly-export"   (set by the override)
# effective.shield is True              (inherited: the override left it as None)
# effective.on_error is quiet           (the override wins)

# To switch an inherited setting off, set it explicitly: shield=False, not None.
unshielded = effective.merge(TaskConfig(shield=False))
# unshielded.shielded is False
