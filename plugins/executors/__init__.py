"""Built-in executors: in-process, a local process pool, Ray and Slurm (submitit).

``ray`` and ``submitit`` are optional dependencies (``pip install 'ebmbench[ray]'``,
``'ebmbench[slurm]'``), imported only when their executor runs.
"""

from ebmbench import hookimpl

from .local import LocalExecutor
from .process import ProcessPoolExecutor
from .ray_cluster import RayExecutor
from .slurm import SlurmExecutor

__all__ = ["LocalExecutor", "ProcessPoolExecutor", "RayExecutor", "SlurmExecutor"]


@hookimpl
def ebmbench_register_executors(register):
    for cls in (LocalExecutor, ProcessPoolExecutor, RayExecutor, SlurmExecutor):
        register(cls)
