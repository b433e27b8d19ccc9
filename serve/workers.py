"""Scoring chunks of leads on every core: worker processes that each hold the model once.

Past TreeSHAP, explaining a lead is Python (its reasons, sentences and JSON),
so threads would take turns on one interpreter. Each worker process scores
whole chunks through the same ``Scorer`` as everything else, while the job
compares and writes the chunks already done. A worker runs its libraries on
one thread: two workers on two cores each asking LightGBM and numba for two
threads would only make them wait on each other.

Workers start fresh (``spawn``): forking a process whose OpenMP runtime has
already run (LightGBM's predictions for the drift check) can hang the child.
Starting them costs seconds, so a job of one chunk scores in its own process.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import pickle
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor

import pandas as pd

from leadscore.models.scoring import Scorer

_scorer: Scorer | None = None
_thread_limits = None


def available_cores() -> int:
    """Cores this process may run on (a container's or taskset's limit, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


class ChunkScorer:
    """``Scorer(model).score(chunk, **options)`` for a stream of chunks, on ``workers`` processes.

    ``scored(chunks)`` yields each chunk with its scores, in the chunks' order,
    keeping at most one chunk per worker waiting, so memory holds a few
    chunks, never the whole batch.
    """

    def __init__(self, model, workers: int, **options) -> None:
        self.model, self.workers, self.options = model, max(1, workers), options
        self.scorer: Scorer | None = None
        self.pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> ChunkScorer:
        if self.workers > 1:
            self.pool = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
                initargs=(pickle.dumps(self.model, protocol=pickle.HIGHEST_PROTOCOL),),
            )
        else:
            self.scorer = Scorer(self.model)
        return self

    def __exit__(self, *exc_info) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def scored(self, chunks: Iterable[pd.DataFrame]) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
        if self.pool is None:
            for chunk in chunks:
                yield chunk, self.scorer.score(chunk, **self.options)
            return
        waiting: deque = deque()
        for chunk in chunks:
            waiting.append((chunk, self.pool.submit(_score, chunk, self.options)))
            if len(waiting) > self.workers:
                done, result = waiting.popleft()
                yield done, result.result()
        while waiting:
            done, result = waiting.popleft()
            yield done, result.result()


def _start_worker(model_bytes: bytes) -> None:
    global _scorer, _thread_limits
    # A worker waits for chunks on a queue it also holds the writing end of, so a job killed with -9 would
    # leave it waiting forever: it ends itself when the job's process is gone.
    threading.Thread(target=_exit_with_parent, name="leadscore worker watch", daemon=True).start()
    _thread_limits = one_thread_each()  # kept: the limit lasts as long as this object
    _scorer = Scorer(pickle.loads(model_bytes))


def one_thread_each():
    """Numba (from now on, in the calling thread) and the native thread pools (OpenMP, BLAS: as long as the
    returned object is kept, or for its ``with`` block) on one thread each: see the module's docstring for why.
    """
    import numba
    from threadpoolctl import threadpool_limits

    numba.set_num_threads(1)
    return threadpool_limits(1)


def _exit_with_parent() -> None:
    multiprocessing.connection.wait([multiprocessing.parent_process().sentinel])
    os._exit(1)


def _score(chunk: pd.DataFrame, options: dict) -> pd.DataFrame:
    return _scorer.score(chunk, **options)
