"""Splitting a feature table into fitting, validation and held-out rows.

Forward in time (the default whenever rows carry a time):

    [ training: first | fold 1 | fold 2 | fold 3 | fold 4 | fold 5 ][ embargo ][ test ]
    [ fit ................................. ][ embargo ][ validation ]

* ``test`` holds the newest rows (about ``test_share`` of them): nothing about
  them is used until the final report.
* ``training`` is every row whose label is known before the held-out period:
  what the delivered model learns from. The held-out rows are leads it never saw.
* ``folds`` walk forward through the training rows with an expanding window:
  the training moments are cut into ``folds + 1`` consecutive parts of about
  equal rows; each part after the first is predicted by a model trained on
  everything known before it, as a deployment would be. Those out-of-fold
  predictions cover five sixths of the training rows, and the model choice
  and the calibration are fitted on them, not on one small slice.
* ``fit`` and ``validation`` (the newest training rows) tune each candidate's
  settings: trees by early stopping, the logistic regression's penalty.
* An embargo of one label horizon separates what a model learns from what it
  predicts: a row at time t has a label known only at t + horizon, so
  learning rows must have t + horizon <= the first moment they predict.
* A lead never appears on both sides: rows of a lead already seen in the
  learning rows are left out of the rows predicted.

Without a time column the roles are drawn at random, stratified by the target,
and the folds are repeated stratified K-fold over the training rows (more
repeats on small tables, where one draw of five folds is noisy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import RepeatedStratifiedKFold

from leadscore.errors import LeadscoreError
from leadscore.features.timeline import seconds


@dataclass(frozen=True)
class Split:
    """Row positions of each role; all arrays index the feature table's rows."""

    fit: np.ndarray  # early stopping and regularisation are chosen by predicting validation from these
    validation: np.ndarray
    test: np.ndarray
    training: np.ndarray  # what the delivered model learns from
    folds: tuple[np.ndarray, ...]  # out-of-fold rows: consecutive parts of training, or stratified folds
    fold_training: tuple[np.ndarray, ...]  # for each fold: the rows a model predicting it may learn from
    forward: bool
    description: str
    dropped: int = 0  # rows in no role: under an embargo, or of a lead already seen


def forward_split(
    times: pd.Series,
    leads: pd.Series,
    horizon_days: float = 0.0,
    test_share: float = 0.2,
    validation_share: float = 0.2,
    folds: int = 5,
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
    validation_start = _boundary(at[before_test], training_moments, 1 - validation_share)
    fit = before_test[known_before(validation_start)[before_test]]
    validation = before_test[at[before_test] >= validation_start]
    validation = validation[~np.isin(lead[validation], lead[fit])]

    fold_rows, fold_training = [], []
    for start, end in _consecutive_parts(at[before_test], training_moments, folds + 1)[1:]:
        learn = before_test[known_before(start)[before_test]]
        rows = before_test[(at[before_test] >= start) & (at[before_test] <= end)]
        rows = rows[~np.isin(lead[rows], lead[learn])]
        if len(rows) and len(learn):
            fold_rows.append(rows)
            fold_training.append(learn)
    test = test_rows[~np.isin(lead[test_rows], lead[before_test])]
    predicted = np.concatenate(fold_rows) if fold_rows else test[:0]
    split = Split(
        fit=fit,
        validation=validation,
        test=test,
        training=before_test,
        folds=tuple(fold_rows),
        fold_training=tuple(fold_training),
        forward=True,
        description=(
            f"forward in time: learn from rows up to {_day(at[before_test].max())}, the model chosen and calibrated "
            f"on {len(fold_rows)} walk-forward folds from {_day(at[predicted].min())}, each predicted from "
            f"everything known before it; hold out {_day(at[test].min())} to {_day(at[test].max())}"
            + (f", with a {horizon_days:g}-day embargo before each prediction" if horizon else "")
        ) if len(fit) and len(validation) and len(test) and fold_rows else "forward in time",
        dropped=len(at) - len(before_test) - len(test),
    )
    _check_sizes(split, at)
    return split


def repeats_for(rows: int) -> int:
    """Repeats of stratified K-fold: a small table's fold AUCs vary by a few points from one draw to the next.

    Only the smallest tables repeat: each repeat costs a fit per fold and candidate, and from a few
    thousand rows five folds already predict every row once.
    """
    return 2 if rows < 3_000 else 1


def stratified_split(
    target: pd.Series,
    test_share: float = 0.2,
    validation_share: float = 0.2,
    folds: int = 5,
    seed: int = 42,
    test_rows: np.ndarray | None = None,
) -> Split:
    """Random roles, stratified by ``target``; the folds are repeated stratified K-fold over the training rows.

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
    training = np.sort(np.concatenate([fit, validation]))
    repeats = repeats_for(len(training))
    # A tiny table has fewer positives than folds: StratifiedKFold refuses, so fewer folds then.
    k = max(2, min(folds, int(np.bincount(y[training].astype(int), minlength=2).min())))
    splitter = RepeatedStratifiedKFold(n_splits=k, n_repeats=repeats, random_state=seed)
    parts = [(training[learn], training[rows]) for learn, rows in splitter.split(training, y[training])]
    split = Split(
        fit=fit,
        validation=validation,
        test=test,
        training=training,
        folds=tuple(rows for _, rows in parts),
        fold_training=tuple(learn for learn, _ in parts),
        forward=False,
        description=(
            f"stratified at random (no time column): the model chosen and calibrated on {k}-fold cross-validation "
            f"repeated {repeats} time{'s' if repeats > 1 else ''} over {len(training):,} rows, {len(test):,} held out"
        ),
    )
    _check_sizes(split)
    return split


def _boundary(at: np.ndarray, moments: np.ndarray, share: float) -> int:
    """The first moment from which about ``1 - share`` of the rows remain, never the very first moment."""
    counts = np.searchsorted(np.sort(at), moments, side="left") / len(at)
    position = int(np.searchsorted(counts, share, side="left"))
    return int(moments[min(max(position, 1), len(moments) - 1)])


def _consecutive_parts(at: np.ndarray, moments: np.ndarray, parts: int) -> list[tuple[int, int]]:
    """(first, last) moment of ``parts`` consecutive groups of moments holding about equal numbers of rows."""
    counts = np.searchsorted(np.sort(at), moments, side="right")
    group = np.minimum((counts - 1) * parts // len(at), parts - 1)
    return [(int(moments[group == g].min()), int(moments[group == g].max())) for g in np.unique(group)]


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
