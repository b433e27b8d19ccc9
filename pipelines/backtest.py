"""Stage: replay history to choose how often to retrain.

Vendors choose the cadence for their users (Einstein retrains every 10 days, Dynamics every 15); the
backtest lets a team measure it on its own history. From ``start`` on, each cadence retrains on its
dates (``never``: once, at the start) and every row arriving before its next retraining date is scored
by the model of the last one. Each period's AUC, Brier score and calibration (ECE, and the mean
prediction against the observed rate) then show what retraining more often buys.

Time: a row's outcome is known ``label_delay_days`` after its time. A CRM row at cutoff c, labelled by
conversion within a horizon h, is known at c + h; a flat table's row (delay 0) at its own time. A
model retrained on date d learns only from rows known strictly before d and scores only rows at d or
later, so no scored row's outcome ever reached its model.

Speed: the rows known before a date fix the training set, so dates that know the same rows (on one
cadence or several: 90-day dates from the same start are 30-day dates too) share one model, and a
date whose model would score no row (nothing arrives before the next retraining) trains nothing. Each
model is trained, used at once and dropped. More than ``max_trainings`` models is refused before any
training starts, saying which cadence asks for how many.

Training settings: ``training`` as the user gave it (the options of ``leadscore train``), because the
question is how often to retrain the model ``train`` delivers, with ``refit=True`` always: a refit model
learns from every row known at its date, the newest fifth too, which ``train`` holds out for its own
report; without it a model would ignore exactly the recent rows that frequent retraining is about.
Every date uses the same seed, so cadences differ by the data they saw, not by chance. ``train_model``
also computes its held-out report, tiers and drift reference at each date; the backtest discards them.
"""

from __future__ import annotations

import textwrap
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from math import ceil
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from leadscore.errors import LeadscoreError
from leadscore.features.table import FeatureTable
from leadscore.files import atomic_path, write_text
from leadscore.models import metrics as scoring
from leadscore.models.plots import DPI
from leadscore.pipelines.runs import process_tags
from leadscore.pipelines.store import mlflow_at, prepare_store, tracking_uri
from leadscore.pipelines.train import TrainingConfig, train_model
from leadscore.progress import Progress

DAY = np.timedelta64(1, "D")
TITLE_CHARACTERS = 70  # a line of the plot's 13-point title across its 8 inches


def parse_cadences(text: str) -> tuple[int | None, ...]:
    """``"never,90,30,7"`` as ``(None, 90, 30, 7)``: ``never`` trains once, a number retrains every so many days."""
    cadences = []
    for part in (p.strip().lower() for p in text.split(",") if p.strip()):
        if part == "never":
            cadences.append(None)
        elif part.isdigit() and int(part) > 0:
            cadences.append(int(part))
        else:
            raise LeadscoreError(
                f"--cadence {text!r}: {part!r} is neither 'never' nor a whole number of days. "
                "Write e.g. never,90,30,7."
            )
    if not cadences:
        raise LeadscoreError("--cadence is empty: write e.g. never,90,30,7.")
    return tuple(dict.fromkeys(cadences))


def cadence_name(cadence: int | None) -> str:
    return "never" if cadence is None else "every day" if cadence == 1 else f"every {cadence} days"


def cadence_key(cadence: int | None) -> str:
    """The cadence in MLflow metric names: ``never`` or ``90d``."""
    return "never" if cadence is None else f"{cadence}d"


@dataclass(frozen=True)
class BacktestConfig:
    cadences: tuple[int | None, ...] = (None, 90, 30, 7)
    start: datetime | None = None  # default: the first midnight by which half of the rows are known
    period_days: int = 30  # length of the periods metrics are reported for
    label_delay_days: float = 0.0  # CRM: the label horizon
    max_trainings: int = 100
    training: TrainingConfig = TrainingConfig()

    def __post_init__(self) -> None:
        if not self.cadences or any(c is not None and c < 1 for c in self.cadences):
            raise LeadscoreError("--cadence: give 'never' or whole numbers of days of at least 1, e.g. never,90,30,7.")
        if self.period_days < 1 or self.max_trainings < 1 or self.label_delay_days < 0:
            raise LeadscoreError("--period-days and --max-trainings must be at least 1, the label delay 0 or more.")


@dataclass
class BacktestResult:
    config: BacktestConfig
    start: pd.Timestamp
    source: str
    periods: pd.DataFrame  # one row per cadence and period: rows, outcomes, AUC, Brier, ECE, mean prediction
    cadences: pd.DataFrame  # one row per cadence, over every scored row
    trainings: pd.DataFrame  # one row per model trained, in training order
    scores: pd.DataFrame  # one row per cadence and scored row: which model scored it, and what it said
    notes: list[str] = field(default_factory=list)


def run_backtest(table: FeatureTable, config: BacktestConfig = BacktestConfig(),
                 progress: Progress = Progress()) -> BacktestResult:
    """Replay ``table``'s history for every cadence of ``config``: see the module docstring."""
    if not table.time_column:
        raise LeadscoreError(
            f"{table.source or 'The table'} has no time column: a backtest replays time. Name the column "
            "holding each lead's date with --time."
        )
    training = replace(config.training, refit=True)
    at = pd.to_datetime(table.frame[table.time_column]).to_numpy("datetime64[ns]")
    known = at + np.timedelta64(int(round(config.label_delay_days * 86_400)), "s")
    y = table.target.to_numpy(dtype=int)
    start = _start(config, at, known, y, training)
    scored = np.flatnonzero(at >= start)
    scored = scored[np.argsort(at[scored], kind="stable")]  # periods and tables then follow time
    assigned, dates = _plan(config.cadences, at[scored], np.sort(known), start)
    keys = np.unique(assigned)
    _refuse_too_many(config, assigned, keys)

    training_of = np.searchsorted(keys, assigned)  # for each cadence and scored row: the number of its training
    probability = np.full(assigned.shape, np.nan)
    trainings = []
    with progress.task(f"Replaying history: training {len(keys)} models and scoring what each saw next",
                       total=len(keys)) as advance:
        for number in range(len(keys)):
            mine = training_of == number
            # Among the dates that know these rows, the earliest names the training; all know the same rows.
            retrained_on = dates[mine].min()
            rows = known < retrained_on
            began = time.perf_counter()
            result = _train(replace(table, frame=table.frame[rows].reset_index(drop=True)), training, retrained_on)
            uses = np.flatnonzero(mine.any(axis=0))
            predicted = np.full(len(scored), np.nan)
            predicted[uses] = result.model.predict_proba(table.frame.iloc[scored[uses]])
            probability[mine] = np.broadcast_to(predicted, mine.shape)[mine]
            trainings.append({
                "retrained_on": pd.Timestamp(retrained_on), "known_until": pd.Timestamp(known[rows].max()),
                "rows": int(rows.sum()), "positives": int(y[rows].sum()), "model": result.model.kind,
                "calibration": result.model.summary.get("calibration", ""), "seconds": time.perf_counter() - began,
            })
            del result  # a training result holds its table and explanations: one at a time is enough
            advance(1)

    scores = _scores(table, config, start, scored, at, y, training_of, dates, probability)
    periods = _summaries(scores, ["cadence", "period_start", "period_end"])
    cadences = _summaries(scores, ["cadence"])
    cadences["mean_period_auc"] = cadences["cadence"].map(periods.groupby("cadence")["roc_auc"].mean())
    notes = [
        f"Scored {len(scored):,} rows from {start:%Y-%m-%d} to {pd.Timestamp(at[scored].max()):%Y-%m-%d} with "
        f"{len(keys)} models; each learned only from rows whose outcome was known before its retraining date"
        + (f" (a row's outcome is known {config.label_delay_days:g} days after its time)." if config.label_delay_days else ".")
    ]
    return BacktestResult(config, start, table.source, periods, cadences, pd.DataFrame(trainings), scores, notes)


def _train(table: FeatureTable, training: TrainingConfig, retrained_on: np.datetime64):
    try:
        return train_model(table, training)
    except LeadscoreError as error:
        raise LeadscoreError(
            f"Training on the {len(table.frame):,} rows known before {pd.Timestamp(retrained_on):%Y-%m-%d} failed: "
            f"{error} If the early dates have too little history, start the backtest later (--start)."
        ) from None


def _start(config: BacktestConfig, at, known, y, training: TrainingConfig) -> pd.Timestamp:
    """The first retraining date: given, or the first midnight by which half the rows are known; checked."""
    # The first training holds out its newest rows for its own report, and needs its minimum of positives before them.
    needed = ceil(training.min_positives / (1 - training.test_share))
    positives_known = np.sort(known[y == 1])
    earliest = (pd.Timestamp(positives_known[needed - 1]).floor("D") + pd.Timedelta(days=1)
                if len(positives_known) >= needed else None)
    last = pd.Timestamp(at.max())
    if config.start is not None:
        start = pd.Timestamp(config.start)
    else:
        start = pd.Timestamp(np.sort(known)[len(known) // 2]).ceil("D")
        start = max(start, earliest) if earliest is not None else start
    if earliest is None:
        raise LeadscoreError(
            f"The table holds {len(positives_known):,} converted rows; a backtest's first training needs about "
            f"{needed:,} known before it (--min-positives {training.min_positives}, and the newest "
            f"{training.test_share:.0%} of its rows are held out). Use a longer history or lower --min-positives."
        )
    if start < earliest:
        raise LeadscoreError(
            f"--start {start:%Y-%m-%d}: only {int(np.sum(positives_known < start.to_datetime64())):,} converted rows are "
            f"known before it; the first training needs about {needed:,} (--min-positives {training.min_positives}, "
            f"and the newest {training.test_share:.0%} of its rows are held out). Start on {earliest:%Y-%m-%d} or later."
        )
    if start > last:
        raise LeadscoreError(
            f"--start {start:%Y-%m-%d}: no row to score at or after it; the table's rows end on {last:%Y-%m-%d}."
        )
    return start


def _plan(cadences, scored_at: np.ndarray, known_sorted: np.ndarray, start: pd.Timestamp):
    """For each cadence and scored row: the training that scores it (by how many rows it knows), and its date.

    Both are (cadences, scored rows) arrays; a training is keyed by the number of rows known before its
    date, which fixes the set, so equal keys are one training.
    """
    first = start.to_datetime64().astype("datetime64[ns]")
    last = scored_at.max()
    keys, dates = [], []
    for cadence in cadences:
        retraining = np.array([first]) if cadence is None else np.arange(first, last + 1, cadence * DAY)
        latest = np.searchsorted(retraining, scored_at, side="right") - 1
        dates.append(retraining[latest])
        keys.append(np.searchsorted(known_sorted, retraining, side="left")[latest])
    return np.array(keys), np.array(dates)


def _refuse_too_many(config: BacktestConfig, assigned: np.ndarray, keys: np.ndarray) -> None:
    if len(keys) <= config.max_trainings:
        return
    counts = ", ".join(f"{cadence_name(c)}: {len(np.unique(row))}" for c, row in zip(config.cadences, assigned))
    raise LeadscoreError(
        f"This backtest would train {len(keys):,} models ({counts}), more than --max-trainings "
        f"{config.max_trainings}; each takes as long as a `leadscore train`. Drop the shortest cadence, start "
        "later (--start), or raise --max-trainings if the wait is worth it."
    )


def _scores(table, config, start, scored, at, y, assigned, dates, probability) -> pd.DataFrame:
    period = np.timedelta64(config.period_days, "D")
    first = start.to_datetime64().astype("datetime64[ns]")
    period_start = first + (at[scored] - first) // period * period
    return pd.concat(
        [
            pd.DataFrame({
                "cadence": cadence_name(cadence),
                "row": scored,
                table.id_column: table.frame[table.id_column].to_numpy()[scored],
                "time": at[scored],
                "period_start": period_start,
                "period_end": period_start + period,
                "training": assigned[i],
                "retrained_on": dates[i],
                "probability": probability[i],
                "converted": y[scored],
            })
            for i, cadence in enumerate(config.cadences)
        ],
        ignore_index=True,
    )


def _metrics(y: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    """AUC and ECE need both outcomes: a period of one outcome reports its Brier score and rates only."""
    both = 0 < y.sum() < len(y)
    measured = scoring.probability_metrics(y, probability) if both else {}
    return {
        "rows": len(y),
        "positives": int(y.sum()),
        "observed_rate": float(y.mean()),
        "mean_predicted": float(probability.mean()),
        "roc_auc": measured.get("roc_auc", np.nan),
        "brier": float(np.mean((probability - y) ** 2)),
        "ece": measured.get("ece", np.nan),
    }


def _summaries(scores: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """One row per group of ``by``, in the order the cadences were given: models used, outcomes, metrics."""
    rows = [
        {**dict(zip(by, keys)), "models": group["training"].nunique(),
         **_metrics(group["converted"].to_numpy(), group["probability"].to_numpy())}
        for keys, group in scores.groupby(by, sort=False)
    ]
    return pd.DataFrame(rows)


# --- the edge: files and MLflow ---------------------------------------------------------------


def backtest_plot(result: BacktestResult, path) -> Path:
    """AUC, Brier score, and mean prediction against the observed rate, per period: one line per cadence."""
    figure = Figure(figsize=(8.0, 9.0), layout="constrained")
    FigureCanvasAgg(figure)
    auc, brier, rate = figure.subplots(3, 1, sharex=True)
    for name, group in result.periods.groupby("cadence", sort=False):
        style = {"marker": "o", "markersize": 4, "linewidth": 1.6, "label": name}
        auc.plot(group["period_start"], group["roc_auc"], **style)
        brier.plot(group["period_start"], group["brier"], **style)
        rate.plot(group["period_start"], 100 * group["mean_predicted"], **style)
    observed = result.periods.drop_duplicates("period_start")
    rate.plot(observed["period_start"], 100 * observed["observed_rate"], color="black", linewidth=2.4,
              label="observed conversion")
    titles = (
        (auc, "ROC AUC (higher ranks better)", "ROC AUC"),
        (brier, "Brier score (lower is better)", "Brier score"),
        (rate, "Mean predicted probability against the observed rate", "Conversion (%)"),
    )
    for axes, title, label in titles:
        axes.set_title(title, fontsize=12)
        axes.set_ylabel(label, fontsize=11)
        axes.grid(True, color="0.9")
        axes.tick_params(labelsize=9)
    auc.legend(fontsize=9, title="Retraining", title_fontsize=9)
    rate.legend(fontsize=9)
    rate.set_xlabel(f"Period of {result.config.period_days} days, by its first day", fontsize=11)
    # A CRM's URL or a file's path can be longer than the figure is wide: the title wraps instead of clipping.
    title = f"Backtest on {result.source}: each period scored by models of its past"
    figure.suptitle(textwrap.fill(title, TITLE_CHARACTERS), fontsize=13)
    path = Path(path)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=DPI, format="png")
    return path


def write_backtest_files(result: BacktestResult, folder: Path) -> dict[str, Path]:
    """The period, cadence and training tables as CSV, and the plot, in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tables = {"periods": result.periods, "cadences": result.cadences, "trainings": result.trainings}
    files = {name: write_text(folder / f"{name}.csv", table.to_csv(index=False)) for name, table in tables.items()}
    files["plot"] = backtest_plot(result, folder / "backtest.png")
    return files


@dataclass(frozen=True)
class LoggedBacktest:
    run_id: str
    tracking_uri: str
    files: dict[str, Path]  # the tables and the plot, where ``report_folder`` kept them (else gone with the run's scratch)


def log_backtest(result: BacktestResult, uri: str | None = None, report_folder: Path | None = None,
                 progress: Progress = Progress()) -> LoggedBacktest:
    """One MLflow run: settings as parameters, each cadence's figures as metrics (per period, by step), the
    tables and the plot as artifacts under ``backtest/``."""
    experiment_id = prepare_store(uri)
    mlflow = mlflow_at(uri)
    from mlflow.entities import Metric

    with progress.task("Logging to MLflow", total=1) as advance:
        tags = {**process_tags(), "leadscore.kind": "backtest", "leadscore.source": result.source}
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"backtest on {result.source}"[:250],
                              tags=tags) as run:
            mlflow.log_params(_params(result))
            now = int(time.time() * 1000)
            metrics = [Metric(key, value, now, 0) for key, value in _cadence_metrics(result).items()]
            metrics += [Metric(key, value, now, step) for key, value, step in _period_metrics(result)]
            client = mlflow.MlflowClient()
            for first in range(0, len(metrics), 1000):  # MLflow takes at most 1,000 metrics a call
                client.log_batch(run.info.run_id, metrics=metrics[first:first + 1000])
            with tempfile.TemporaryDirectory() as scratch:
                files = write_backtest_files(result, Path(report_folder or scratch))
                for path in files.values():
                    mlflow.log_artifact(str(path), artifact_path="backtest")
            advance(1)
    return LoggedBacktest(run.info.run_id, tracking_uri(uri), files if report_folder else {})


def _params(result: BacktestResult) -> dict[str, str]:
    config = result.config
    params = {
        "backtest.cadences": ",".join(cadence_key(c) for c in config.cadences),
        "backtest.start": f"{result.start:%Y-%m-%d}",
        "backtest.period_days": config.period_days,
        "backtest.label_delay_days": config.label_delay_days,
        "backtest.models": len(result.trainings),
        "data.source": result.source,
        "data.scored_rows": result.scores["row"].nunique(),
    }
    params.update({f"config.{k}": v for k, v in asdict(replace(config.training, refit=True)).items()})
    return {key: str(value)[:500] for key, value in params.items()}


def _cadence_metrics(result: BacktestResult) -> dict[str, float]:
    names = {cadence_name(c): cadence_key(c) for c in result.config.cadences}
    return {
        f"cadence.{names[row['cadence']]}.{metric}": float(row[metric])
        for _, row in result.cadences.iterrows()
        for metric in ("models", "roc_auc", "mean_period_auc", "brier", "ece", "mean_predicted", "observed_rate")
        if np.isfinite(row[metric])
    }


def _period_metrics(result: BacktestResult) -> list[tuple[str, float, int]]:
    """(name, value, step): the step numbers the periods in time, so MLflow draws each cadence over time."""
    names = {cadence_name(c): cadence_key(c) for c in result.config.cadences}
    order = {start: step for step, start in enumerate(sorted(result.periods["period_start"].unique()))}
    return [
        (f"period.{names[row['cadence']]}.{metric}", float(row[metric]), order[row["period_start"]])
        for _, row in result.periods.iterrows()
        for metric in ("roc_auc", "brier", "ece", "mean_predicted", "observed_rate")
        if np.isfinite(row[metric])
    ]
