"""Built-in executors."""

from ebmbench import hookimpl

from .local import LocalExecutor

__all__ = ["LocalExecutor"]


@hookimpl
def ebmbench_register_executors(register):
    register(LocalExecutor)
