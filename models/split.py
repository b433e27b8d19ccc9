"""Splitting a feature table into fitting, validation and held-out rows.

Forward in time (the default whenever rows carry a time):

    [ fit ........ ][ embargo ][ validation: chunk 1 | chunk 2 | chunk 3 ][ embargo ][ test ]

* ``test`` holds the newest rows (about ``test_share`` of them): nothing about
  them is used until the final report.
* ``validation`` is the slice just before; ``fit`` the oldest rows.
* An embargo of one label horizon separates the slices: a row at time t has a
  label known only at t + horizon, so training rows must have
  t + horizon <= the first moment of the slice they are used to predict.
* A lead never appears in two slices: rows of a lead already seen in an
  earlier slice are left out of the later one.
* Validation is cut into consecutive ``chunks``; each chunk gets its own
  training rows (everything known before it). Predicting each chunk from a
  model trained on its past mimics deployment, and those held-out predictions
  are what calibration and model choice are fitted on.
* The delivered model learns from ``training``: every row whose label is
  known before the held-out period. The held-out rows are leads it never saw.

Without a time column the same roles are drawn at random, stratified by the
target, and the validation chunks are cross-fitted (each predicted by a model
trained on everything else but the test rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadscore.errors import LeadscoreError
from leadscore.features.timeline import seconds


@dataclass(frozen=True)
class Split:
    """Row positions of each role; all arrays index the feature table's rows."""

    fit: np.ndarray  # early stopping and regularisation are chosen by predicting validation from these
    validation: np.ndarray
    test: np.ndarray
    training: np.ndarray  # what the delivered model learns from
    chunks: tuple[np.ndarray, ...]  # consecutive parts of validation
    chunk_training: tuple[np.ndarray, ...]  # for each chunk: the rows a model predicting it may learn from
    forward: bool
    description: str
    dropped: int = 0  # rows in no role: under an embargo, or of a lead already seen


def forward_split(
    times: pd.Series,
    leads: pd.Series,
    horizon_days: float = 0.0,
    test_share: float = 0.2,
    validation_share: float = 0.2,
    chunks: int = 3,
) -> Split:
    """Split rows by ``times`` (datetimes): see the module docstring."""
    at = seconds(times)
    lead = pd.factorize(leads)[0]
    horizon = int(horizon_days * 86_400)
    moments = np.unique(at)
    if len(moments) < 3:
        raise LeadscoreError(
            f"A forward-in-time split needs rows at 3 or more distinct times; these rows have {len(moments)}."
        )
    def known_before(moment: int) -> np.ndarray:
        # A row teaches about a later moment only if it is earlier and its label was known by then.
        return (at < moment) & (at + horizon <= moment)

    test_start = _boundary(at, moments, 1 - test_share)
    test_rows = np.flatnonzero(at >= test_start)
    before_test = np.flatnonzero(known_before(test_start))
    training_moments = np.unique(at[before_test])
    if len(training_moments) < 2:
        raise LeadscoreError(
            "Too little history before the held-out rows for a forward split with a "
            f"{horizon_days:g}-day horizon: add history, or shorten --horizon-days."
        )
    # Open leads pile up, so later moments hold more rows: a share of rows alone could leave validation a
    # single moment. It spans at least one moment per walk-forward chunk when the history allows it.
    validation_start = min(
        _boundary(at[before_test], training_moments, 1 - validation_share),
        int(training_moments[-min(chunks, len(training_moments) - 1)]),
    )
    fit = before_test[known_before(validation_start)[before_test]]
    candidates = before_test[at[before_test] >= validation_start]

    chunk_rows, chunk_training = [], []
    validation_moments = np.unique(at[candidates])
    for group in np.array_split(validation_moments, min(chunks, len(validation_moments))):
        learn = before_test[known_before(group[0])[before_test]]
        rows = candidates[np.isin(at[candidates], group)]
        rows = rows[~np.isin(lead[rows], lead[learn])]
        if len(rows):
            chunk_rows.append(rows)
            chunk_training.append(learn)
    validation = np.sort(np.concatenate(chunk_rows)) if chunk_rows else candidates[:0]
    test = test_rows[~np.isin(lead[test_rows], lead[before_test])]
    split = Split(
        fit=fit,
        validation=validation,
        test=test,
        training=before_test,
        chunks=tuple(chunk_rows),
        chunk_training=tuple(chunk_training),
        forward=True,
        description=(
            f"forward in time: learn from rows up to {_day(at[before_test].max())} (validation "
            f"{_day(at[validation].min())} to {_day(at[validation].max())} in {len(chunk_rows)} walk-forward "
            f"chunks), hold out {_day(at[test].min())} to {_day(at[test].max())}"
            + (f", with a {horizon_days:g}-day embargo before each slice" if horizon else "")
        ) if len(fit) and len(validation) and len(test) else "forward in time",
        dropped=len(at) - len(before_test) - len(test),
    )
    _check_sizes(split, at)
    return split


def stratified_split(
    target: pd.Series,
    test_share: float = 0.2,
    validation_share: float = 0.2,
    chunks: int = 3,
    seed: int = 42,
    test_rows: np.ndarray | None = None,
) -> Split:
    """Random roles, stratified by ``target``; validation chunks are cross-fitted.

    ``test_rows`` fixes the held-out rows (a cross-validation fold); the
    others are shared between fitting and validation.
    """
    y = np.asarray(target, dtype=bool)
    rng = np.random.default_rng(seed)
    role = np.zeros(len(y), dtype=np.int8)  # 0 fit, 1 validation, 2 test
    if test_rows is not None:
        role[test_rows] = 2
    for value in (False, True):
        rows = rng.permutation(np.flatnonzero((y == value) & (role != 2)))
        n_test = 0 if test_rows is not None else round(len(rows) * test_share)
        n_validation = round((len(rows) - n_test) * validation_share)
        role[rows[:n_test]] = 2
        role[rows[n_test : n_test + n_validation]] = 1
    fit, validation, test = (np.flatnonzero(role == r) for r in (0, 1, 2))
    # A tiny table has fewer validation rows than chunks: an empty chunk has nothing to predict.
    parts = tuple(np.sort(part) for part in np.array_split(rng.permutation(validation), chunks) if len(part))
    training = np.concatenate([fit, validation])
    split = Split(
        fit=fit,
        validation=validation,
        test=test,
        training=training,
        chunks=parts,
        chunk_training=tuple(np.setdiff1d(training, part) for part in parts),
        forward=False,
        description=(
            f"stratified at random (no time column): {len(fit):,} rows to fit, {len(validation):,} to validate "
            f"in {len(parts)} cross-fitted chunks, {len(test):,} held out"
        ),
    )
    _check_sizes(split)
    return split


def _boundary(at: np.ndarray, moments: np.ndarray, share: float) -> int:
    """The first moment from which about ``1 - share`` of the rows remain, never the very first moment."""
    counts = np.searchsorted(np.sort(at), moments, side="left") / len(at)
    position = int(np.searchsorted(counts, share, side="left"))
    return int(moments[min(max(position, 1), len(moments) - 1)])


def _day(seconds: int) -> str:
    return str(np.datetime64(int(seconds), "s").astype("datetime64[D]"))


def _check_sizes(split: Split, at: np.ndarray | None = None) -> None:
    for role in ("fit", "validation", "test"):
        if len(getattr(split, role)) == 0:
            if split.forward:
                span = f"{len(at):,} rows at {len(np.unique(at)):,} distinct times from {_day(at.min())} to {_day(at.max())}"
                fix = "Add history (a longer time span), or shorten --horizon-days, which sets the gap between slices."
            else:
                span = f"{len(split.fit) + len(split.validation) + len(split.test):,} rows"
                fix = "Add rows."
            raise LeadscoreError(
                f"The {role} slice is empty: {span} are too few for a {'forward' if split.forward else 'stratified'} "
                f"split into rows to fit, to validate and to hold out. {fix}"
            )
