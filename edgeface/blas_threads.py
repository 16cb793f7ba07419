"""One BLAS thread per process, for the detector's helper processes to have the cores.

Why: with helpers (``DetectorConfig.workers``), each core already runs one process of the
detector. numpy's BLAS (OpenBLAS in the wheels) starts a thread per core of its own, and
those threads compete with the helpers: on the 2-core dev VM the default detector took 37 ms
a frame at 640x480 / min face 40 with two OpenBLAS threads in the main process, against 16 ms
with one (and 157 ms when, in addition, nothing was pinned to its CPU). BLAS reads these
variables once, when numpy is first imported, so programs set them at their very start. This
module imports nothing heavy for that reason.
"""

from __future__ import annotations

import os

#: the variables that numpy's BLAS builds read for their thread count
BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def use_one_blas_thread() -> None:
    """For programs (the CLI, benchmarks): call before numpy is imported. A value that the
    user set wins."""
    for var in BLAS_THREAD_VARS:
        os.environ.setdefault(var, "1")


def blas_is_single_threaded() -> bool:
    """Whether the environment asks numpy's BLAS for one thread (read when numpy loaded)."""
    return any(os.environ.get(var) == "1" for var in BLAS_THREAD_VARS)


def single_threaded_env() -> dict[str, str]:
    """The environment for a helper process: ours, with one BLAS and OpenMP thread."""
    return {**os.environ, **dict.fromkeys((*BLAS_THREAD_VARS, "OMP_NUM_THREADS"), "1")}
