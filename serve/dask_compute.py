"""The nightly job's reading, features and explanations spread over a Dask cluster (``leadscore score --engine dask``).

``DaskCompute`` is a ``serve.compute.Compute``:

* ``open_leads`` cuts the CRM into ranges of lead ids holding about as many
  leads each (``crm.sql.lead_id_ranges``). Each task reads its range's
  history straight from the CRM, through an engine of its own (the driver
  sends the CRM's URL, never data), and builds the features of its open
  leads with the training code (``serve.compute.open_lead_features``). A
  lead's features come from its own records only, whether it is open is
  decided from its own stage changes, a lead is rejected for its own records
  only, the activities read stop at the run's moment in every part, and every
  part's history has the whole CRM's latest moment as its ``as_of`` (found
  once by the driver), so a part gives its leads exactly the features and
  rejects the whole CRM gives them. The driver gathers the parts' features,
  rejects and notes; the job then measures drift over all of them before
  anything is written, as on one machine.
* ``explained`` sends chunks of those features to the workers, each holding
  the model once (a worker plugin takes it to every worker when the run
  begins, and to workers that join later), and yields the chunks scored, in
  order, a few at a time in flight, so the driver holds a few chunks'
  results, never a second copy of the run.

Worker processes under a nanny (a ``LocalCluster``'s, or ``dask worker``'s)
are daemonic, and a daemonic process may not start ``multiprocessing``
children. Nothing here needs one: the SQLite reader's ADBC process
(``crm.bulk``) is started with ``subprocess``, which that rule does not
cover, and scoring runs in the worker's own thread. So the workers keep
Dask's default (``distributed.worker.daemon: True``), which ties each worker
to its nanny: a killed nanny takes its worker with it, and a killed worker
its ADBC reader, whose pipe closes.
"""

from __future__ import annotations

import importlib.metadata
import pickle
import uuid
from collections import Counter, deque
from collections.abc import Iterator, Mapping
from concurrent.futures import CancelledError
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, Self

import pandas as pd
from distributed import Client, Future, KilledWorker, LocalCluster, WorkerPlugin, as_completed, get_worker

from leadscore.crm.history import CrmHistory
from leadscore.crm.sql import LeadIdRange
from leadscore.errors import LeadscoreError
from leadscore.models.scoring import Scorer
from leadscore.progress import Progress
from leadscore.redact import masked_url
from leadscore.serve.compute import (CHUNK_ROWS, HistoryReader, OpenLeads, nightly_score_options, open_lead_features,
                                     unknown_types_notes)
from leadscore.serve.workers import available_cores, one_thread_each

PARTS_PER_THREAD = 2  # ranges per worker thread: one slow part (a busy range of ids) leaves the others work to take
PART_LEADS = 250_000  # most leads one part holds: about 6M activities, 1.5 GB of a worker while it builds features
IN_FLIGHT_PER_THREAD = 2  # chunks sent ahead per worker thread: each has its next chunk at hand as it ends one
LOST_CHUNK_RESENDS = 2  # times a chunk whose worker died is sent again before the run gives up
WORKER_WAIT_SECONDS = 10  # how long a scheduler may take to show its first worker
# A model is shipped pickled: these must be the driver's versions on every worker, or it may not load, or score
# otherwise than here.
SAME_VERSION_PACKAGES = ("leadscore", "lightgbm", "scikit-learn", "numpy", "pandas")


@dataclass
class PartFeatures:
    """What one range of lead ids gives: its open leads' features, its rejects, its notes and the activities left
    out for their type (kept apart, so that the parts add up to one note)."""

    features: pd.DataFrame
    rejects: list[tuple[int, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unknown_types: dict[str, int] = field(default_factory=dict)


class RangeReader(Protocol):
    """A ``HistoryReader`` that reads one range of lead ids, in any process: ``crm.sql.HistoryAtUrl`` is one."""

    def __call__(self, *, activities_before: datetime, stage_map: Mapping[str, str], rejects: list,
                 lead_id_range: LeadIdRange, latest_moment: pd.Timestamp) -> CrmHistory: ...

    def lead_id_ranges(self, parts: int, most_leads: int | None = None) -> list[LeadIdRange]: ...

    def latest_moment(self) -> pd.Timestamp: ...


def part_features(read_history: RangeReader, lead_id_range: LeadIdRange, as_of: datetime,
                  stage_map: Mapping[str, str], crm_latest: pd.Timestamp) -> PartFeatures:
    """One range's history read from the CRM and its open leads' features: a Dask task, run on a worker.
    ``crm_latest``, the whole CRM's latest moment, becomes the part's ``as_of``, as it is the whole history's."""
    rejects: list[tuple[int, str]] = []
    try:
        history = read_history(activities_before=as_of, stage_map=stage_map, rejects=rejects,
                               lead_id_range=lead_id_range, latest_moment=crm_latest)
        features, notes, unknown_types = open_lead_features(history, as_of)
    except LeadscoreError as error:  # a problem in one part's records: say where, as the whole CRM's run could not
        raise LeadscoreError(f"In {describe_range(lead_id_range)}: {error}") from error
    return PartFeatures(features, rejects, notes, unknown_types)


def require_range_reader(read_history: HistoryReader) -> None:
    """Refuse a reader that is no ``RangeReader``."""
    if not all(hasattr(read_history, name) for name in ("lead_id_ranges", "latest_moment")):
        raise LeadscoreError(
            "The Dask engine has each worker read its own range of lead ids from the CRM's database; this CRM's "
            "history is read through its API, which cannot be read by range yet. Score it with --engine local."
        )


def describe_range(lead_id_range: LeadIdRange) -> str:
    first, last = lead_id_range
    if first is None and last is None:
        return "every lead"
    if first is None:
        return f"lead ids up to {last:,}"
    if last is None:
        return f"lead ids from {first:,} on"
    return f"lead ids {first:,} to {last:,}"


class ScorerPlugin(WorkerPlugin):
    """Gives a worker one ``Scorer`` of the run's model, built when the plugin arrives and dropped when it goes."""

    def __init__(self, model_bytes: bytes) -> None:
        self.model_bytes = model_bytes
        self.scorer: Scorer | None = None

    def setup(self, worker) -> None:
        self.scorer = Scorer(pickle.loads(self.model_bytes))

    def teardown(self, worker) -> None:
        self.scorer = None


def score_chunk(chunk: pd.DataFrame, plugin: str, options: dict) -> pd.DataFrame:
    """``Scorer(model).score(chunk, **options)`` with the worker's scorer: a Dask task."""
    with one_thread_each():
        return get_worker().plugins[plugin].scorer.score(chunk, **options)


class DaskCompute:
    """Reads, builds features and explains on the Dask cluster whose scheduler is at ``scheduler``
    (``tcp://host:8786``), or, without one, on a local cluster of ``local_workers`` processes (0: one per core this
    process may use), one thread each.

    A context manager: it connects (or starts the local cluster) on entry, refusing a scheduler it cannot reach,
    without workers, or whose workers lack this leadscore and its libraries' versions, and lets go on exit. ``parts``: how many ranges of lead ids the CRM is read
    in (0: ``PARTS_PER_THREAD`` per worker thread, more when a range would hold more than ``PART_LEADS`` leads);
    ``chunk_rows``: leads a worker explains at once; ``memory_limit``: a local worker's (Dask's ``"auto"`` shares
    the machine's memory among them).

    >>> with DaskCompute(local_workers=2) as compute:                     # doctest: +SKIP
    ...     report = score_crm(engine, options, read_history=HistoryAtUrl.of(engine), compute=compute)
    """

    chunk_task = staticmethod(score_chunk)  # what a worker runs on each chunk: (chunk, plugin name, options)

    def __init__(self, scheduler: str | None = None, *, local_workers: int = 0, parts: int = 0,
                 chunk_rows: int = CHUNK_ROWS, memory_limit: str | int = "auto",
                 progress: Progress | None = None) -> None:
        self.scheduler, self.local_workers, self.parts = scheduler, local_workers, parts
        self.chunk_rows, self.memory_limit, self.progress = chunk_rows, memory_limit, progress or Progress()
        self.cluster: LocalCluster | None = None
        self.client: Client | None = None

    def __enter__(self) -> Self:
        if self.scheduler is None:
            workers = self.local_workers or available_cores()
            with self.progress.task(f"Starting a local Dask cluster of {workers} worker{'s' * (workers > 1)}"):
                # No dashboard: it needs bokeh and a free port; a cluster of your own (--scheduler) has one.
                self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                            memory_limit=self.memory_limit, dashboard_address=None)
                self.client = Client(self.cluster)
            return self
        with self.progress.task(f"Connecting to the Dask scheduler at {masked_url(self.scheduler)}"):
            self.client = _connect(self.scheduler)
        try:
            _require_workers(self.client, self.scheduler)
        except BaseException:
            self.client.close()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        self.client = self.cluster = None

    def threads(self) -> int:
        """Worker threads of the cluster, at this moment."""
        return max(1, sum(self._started().nthreads().values()))

    def open_leads(self, read_history: HistoryReader, as_of: datetime, stage_map: Mapping[str, str],
                   progress: Progress) -> OpenLeads:
        """Every open lead's features, read and built part by part on the workers (module docstring)."""
        client = self._started()
        require_range_reader(read_history)
        ranges = read_history.lead_id_ranges(self.parts or PARTS_PER_THREAD * self.threads(), PART_LEADS)
        crm_latest = read_history.latest_moment()
        futures = [client.submit(part_features, read_history, lead_id_range, as_of, dict(stage_map), crm_latest,
                                 pure=False, key=f"leadscore-part-{number}-{uuid.uuid4().hex[:8]}")
                   for number, lead_id_range in enumerate(ranges)]
        try:
            with progress.task(f"Reading the CRM and building features in {len(ranges)} parts on the Dask workers",
                               total=len(ranges)) as advance:
                for _ in as_completed(futures):
                    advance(1)
            with _dead_workers_told("reading the CRM"):
                parts = client.gather(futures)
        finally:
            client.cancel(futures)
        return _joined(parts, ranges)

    @contextmanager
    def explained(self, model, features: pd.DataFrame, workers: int,
                  min_reason_points: float) -> Iterator[Iterator[tuple[pd.DataFrame, pd.DataFrame]]]:
        """Each chunk of ``features`` with its scores and reasons, in order. ``workers`` is the local engine's
        number of processes: here every worker thread of the cluster takes chunks."""
        client = self._started()
        plugin = f"leadscore-scorer-{uuid.uuid4().hex[:12]}"
        # The model goes to each worker once, with the plugin, instead of once per chunk.
        client.register_plugin(ScorerPlugin(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)), name=plugin)
        in_flight: deque = deque()
        try:
            yield self._scored_in_order(features, plugin, nightly_score_options(min_reason_points), in_flight)
        finally:
            client.cancel([future for _, future in in_flight if future is not None])
            client.unregister_worker_plugin(plugin)

    def _scored_in_order(self, features: pd.DataFrame, plugin: str, options: dict,
                         in_flight: deque) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
        most = IN_FLIGHT_PER_THREAD * self.threads()
        for start in range(0, len(features), self.chunk_rows):
            chunk = features.iloc[start:start + self.chunk_rows]
            in_flight.append((chunk, self._submitted(chunk, plugin, options)))
            if len(in_flight) >= most:
                yield self._first_done(in_flight, plugin, options)
        while in_flight:
            yield self._first_done(in_flight, plugin, options)

    def _submitted(self, chunk: pd.DataFrame, plugin: str, options: dict) -> Future | None:
        """The chunk's scoring task, or None when the worker chosen to hold it died on receiving it (it is sent
        again when its turn comes)."""
        client = self._started()
        try:
            # Scattered, the chunk goes to a worker directly rather than inside the task graph through the scheduler.
            [data] = client.scatter([chunk], hash=False)
        except OSError:  # distributed's CommClosedError, among others
            return None
        return client.submit(self.chunk_task, data, plugin, options, pure=False)

    def _first_done(self, in_flight: deque, plugin: str, options: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The oldest chunk, scored; sent again when the worker holding it died (a scattered chunk dies with its
        worker, where a task whose inputs the scheduler holds would be run again elsewhere)."""
        chunk, future = in_flight[0]
        for _ in range(1 + LOST_CHUNK_RESENDS):
            try:
                if future is None:
                    future = self._submitted(chunk, plugin, options)
                if future is not None:
                    with _dead_workers_told("explaining the leads"):
                        scored = future.result()
                    break
            except CancelledError:
                future = None
            in_flight[0] = (chunk, future)
        else:
            raise LeadscoreError(
                f"Dask workers died {1 + LOST_CHUNK_RESENDS} times while explaining one chunk of {len(chunk):,} "
                "leads: see the workers' logs (memory, a machine going away). The chunks written so far are kept; "
                "the next run writes the rest."
            )
        in_flight.popleft()
        return chunk, scored

    def _started(self) -> Client:
        if self.client is None:
            raise RuntimeError("DaskCompute is used as a context manager: `with DaskCompute(...) as compute:`")
        return self.client


@contextmanager
def _dead_workers_told(doing: str) -> Iterator[None]:
    """A task whose workers kept dying (Dask gives up after a few) told as the user's problem, with its usual cause."""
    try:
        yield
    except KilledWorker as error:
        raise LeadscoreError(
            f"Dask workers kept dying while {doing} ({error}). The usual cause is memory: each worker holds a part "
            f"of up to {PART_LEADS:,} leads while it reads, and the model with a chunk while it explains. Give the "
            "workers more memory (dask worker --memory-limit), or run fewer workers a machine."
        ) from None


def _joined(parts: list[PartFeatures], ranges: list[LeadIdRange]) -> OpenLeads:
    """The parts as one run's open leads: features one below the other, rejects and notes together."""
    notes = [f"In {describe_range(lead_id_range)}: {note}" if len(parts) > 1 else note
             for part, lead_id_range in zip(parts, ranges) for note in part.notes]
    unknown = Counter()
    for part in parts:
        unknown.update(part.unknown_types)
    ranked = dict(sorted(unknown.items(), key=lambda item: (-item[1], item[0])))
    return OpenLeads(_stacked([part.features for part in parts]),
                     [reject for part in parts for reject in part.rejects], notes + unknown_types_notes(ranked))


def _stacked(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Frames one below the other; a categorical column stays one, with the levels of every part (each part only
    knows its own leads' values, and the model reads a lead's value, never its code)."""
    frames = [frame for frame in frames if len(frame)] or frames[:1]
    if len(frames) == 1:
        return frames[0].reset_index(drop=True)
    columns = {}
    for name in frames[0].columns:
        if isinstance(frames[0][name].dtype, pd.CategoricalDtype):
            columns[name] = pd.Series(pd.api.types.union_categoricals([frame[name] for frame in frames]), name=name)
        else:
            columns[name] = pd.concat([frame[name] for frame in frames], ignore_index=True)
    return pd.DataFrame(columns)


def _connect(scheduler: str) -> Client:
    import dask

    try:
        return Client(scheduler)
    except (OSError, ValueError) as error:
        timeout = dask.config.get("distributed.comm.timeouts.connect")
        raise LeadscoreError(
            f"Could not reach the Dask scheduler at {masked_url(scheduler)}: {error}. Check the address (e.g. "
            f"tcp://host:8786) and that `dask scheduler` runs there and is reachable from here (waited {timeout}; "
            "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT sets how long), or leave out --scheduler for a local cluster."
        ) from None


def _require_workers(client: Client, scheduler: str) -> None:
    """Refuse a cluster without workers (the job would wait forever), or whose workers could not unpickle this model
    or would score it differently: leadscore and the libraries a fitted model is made of must be the driver's."""
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_SECONDS)
    except TimeoutError:
        raise LeadscoreError(
            f"The Dask scheduler at {masked_url(scheduler)} has no workers. Start them on each machine with "
            f"`dask worker {masked_url(scheduler)} --nthreads 1 --nworkers N` (leadscore installed, the CRM "
            "reachable)."
        ) from None
    wrong: dict[str, list[str]] = {}
    for package in SAME_VERSION_PACKAGES:
        ours = importlib.metadata.version(package)
        # A function of the standard library: it runs on a worker that lacks leadscore too.
        for worker, theirs in client.run(importlib.metadata.version, package, on_error="return").items():
            if theirs != ours:
                found = "none" if isinstance(theirs, BaseException) else theirs
                wrong.setdefault(worker, []).append(f"{package} {found} (here {ours})")
    if wrong:
        listing = "; ".join(f"{worker}: {', '.join(packages)}" for worker, packages in list(wrong.items())[:5])
        raise LeadscoreError(
            f"{len(wrong)} Dask workers cannot score with this model as this machine would: {listing}. Install the "
            "same versions on every worker's machine (the same lock file or image as here, with leadscore's dask "
            "extra), then restart the workers."
        )
