"""Where window tasks run: this process, a local process pool, or a Ray cluster. Same tasks, same results."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Literal

from wtours.analysis.window import WindowOutcome, WindowTask, run_window
from wtours.errors import WtoursError

ExecutorName = Literal["local", "ray"]


def run_tasks(
    tasks: Sequence[WindowTask],
    *,
    executor: ExecutorName = "local",
    workers: int = 1,
    ray_address: str | None = None,
) -> Iterator[WindowOutcome]:
    """Run every task; yield outcomes as they finish (in any order)."""
    if not tasks:
        return
    if executor == "ray":
        yield from _run_ray(tasks, workers=workers, address=ray_address)
    elif executor == "local":
        yield from _run_local(tasks, workers=workers)
    else:
        raise WtoursError(f"unknown executor {executor!r} (local or ray)")


def threads_per_worker(workers: int) -> int:
    """FFmpeg decoding threads per worker so that workers x threads fills the machine's cores
    (0 for a single worker: FFmpeg's own choice, which is what the decode floor is measured with)."""
    if workers <= 1:
        return 0
    return max(1, (os.cpu_count() or 1) // workers)


def _run_local(tasks: Sequence[WindowTask], *, workers: int) -> Iterator[WindowOutcome]:
    if workers <= 1:
        # One worker: run here, no process start-up, and the detector is loaded once for all windows.
        for task in tasks:
            yield run_window(task)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn, not fork: forking a process that already holds decoder or torch threads can deadlock.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(run_window, task) for task in tasks]
        try:
            for future in as_completed(futures):
                yield future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def _run_ray(tasks: Sequence[WindowTask], *, workers: int, address: str | None) -> Iterator[WindowOutcome]:
    try:
        import ray
    except ImportError:
        raise WtoursError("--executor ray needs Ray: pip install 'wtours[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        try:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=max(1, workers), include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise WtoursError(f"cannot start or reach Ray at {address or 'a local instance'}: {err}") from None
    try:
        remote_window: Callable = ray.remote(num_cpus=1, max_retries=2)(run_window)
        pending = [remote_window.remote(task) for task in tasks]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield from ray.get(done)
    finally:
        if started_here:
            ray.shutdown()
