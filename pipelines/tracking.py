"""Stage: record a training run in MLflow, register the model, and promote or roll back the champion.

Tracking defaults to a local SQLite store (``sqlite:///mlflow.db``);
``MLFLOW_TRACKING_URI`` or an explicit URI overrides it. Registered versions
carry aliases: a new model becomes ``challenger``; ``promote`` moves
``champion`` to it only when it beats the champion on the challenger's
held-out rows and is not worse calibrated.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from leadscore.errors import LeadscoreError
from leadscore.files import write_text
from leadscore.models import metrics as scoring
from leadscore.models import plots
from leadscore.models.explain import Explainer
from leadscore.models.importance import family_shares, importance_table, with_rank_change
from leadscore.models.model import LeadScoringModel
from leadscore.pipelines.train import TrainingResult
from leadscore.progress import Progress

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
EXPERIMENT = "leadscore"
DEFAULT_MODEL_NAME = "leadscore"
CHAMPION, CHALLENGER = "champion", "challenger"
HOLDOUT_ARTIFACT = "evaluation/holdout.parquet"
IMPORTANCES_ARTIFACT = "evaluation/importances.csv"
METRIC_UNSAFE = re.compile(r"[^\w\-. /]")  # characters MLflow refuses in a metric name
DEPENDENCE_PLOTS = 3  # top engagement features drawn against their effect
CHAMPION_HISTORY_TAG = "champion_history"
CALIBRATION_TOLERANCE = 0.005  # ECE a challenger may lose and still count as "not worse calibrated"


def tracking_uri(explicit: str | None = None) -> str:
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def mlflow_at(uri: str | None):
    # MLflow draws a progress bar on every artifact download; in a CLI it is noise.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(uri))
    return mlflow


def _use_experiment(mlflow, uri: str | None) -> None:
    """The leadscore experiment; with a SQLite store its artifacts live beside the database file."""
    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        location = None
        store = tracking_uri(uri)
        if store.startswith("sqlite:///"):
            location = (Path(store.removeprefix("sqlite:///")).resolve().parent / "mlruns").as_uri()
        mlflow.create_experiment(EXPERIMENT, artifact_location=location)
    mlflow.set_experiment(EXPERIMENT)


@dataclass(frozen=True)
class LoggedRun:
    run_id: str
    model_name: str
    version: str
    tracking_uri: str
    artifacts: Path  # local copy of metrics.json and the plots

    @property
    def model_uri(self) -> str:
        return f"models:/{self.model_name}/{self.version}"


def write_report_files(result: TrainingResult, folder: Path) -> dict[str, Path]:
    """metrics.json, the plots and the tables of a training run, as files in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    evaluation = result.evaluation
    metrics = {
        "held_out": evaluation.metrics.to_dict(orient="index"),
        "validation": result.validation.to_dict(orient="index"),
        "chosen": result.model.kind,
        "calibration": result.model.summary["calibration"],
        "split": result.split.description,
        "fingerprint": result.fingerprint,
        "lift": {name: table.to_dict(orient="records") for name, table in evaluation.lift.items()},
        "deciles": {name: table.to_dict(orient="records") for name, table in evaluation.deciles.items()},
    }
    insight = result.insight
    model = result.model
    metrics["tiers"] = {
        "rule": model.tiers.description,
        "mql_threshold": model.tiers.mql,
        "sql_threshold": model.tiers.sql,
        "held_out": insight.tiers.reset_index().to_dict(orient="records"),
    }
    metrics["family_shares"] = family_shares(insight.importances).to_dict()
    files = {"metrics": folder / "metrics.json"}
    write_text(files["metrics"], json.dumps(metrics, indent=2, default=_plain))
    files["reliability"] = plots.reliability_plot(evaluation.reliability, folder / "reliability.png")
    files["gains"] = plots.gains_plot(evaluation.gains, folder / "gains.png")
    files["importances"] = folder / "importances.csv"
    write_text(files["importances"], insight.importances.to_csv())
    files["tiers"] = folder / "tiers.csv"
    write_text(files["tiers"], insight.tiers.to_csv())
    files["importance_plot"] = plots.importance_plot(insight.importances, folder / "importance.png")
    explained = result.held_out.iloc[insight.rows][model.features].reset_index(drop=True)
    labels = [model.registry.label(f) for f in model.features]
    files["beeswarm"] = plots.beeswarm_plot(insight.points, explained, labels, folder / "beeswarm.png")
    # Dependence needs one value per lead: the strongest numeric engagement features, not fields.
    strength = np.abs(insight.points).mean(axis=0) if len(insight.points) else np.zeros(len(model.features))
    engagement = [
        index for index in np.argsort(-strength, kind="stable")
        if model.registry[model.features[index]].family == "engagement" and model.registry[model.features[index]].kind == "numeric"
    ][:DEPENDENCE_PLOTS]
    if engagement:
        files["dependence"] = plots.dependence_plots(insight.points, explained, labels, engagement, folder / "dependence.png")
    files["features"] = folder / "feature_registry.csv"
    write_text(files["features"], result.model.registry.to_frame().to_csv(index=False))
    files["validation"] = folder / "validation.csv"
    write_text(files["validation"], result.validation.to_csv())
    return files


def _requirements() -> list[str]:
    """What loading the model needs, pinned to this environment; declaring them spares MLflow a slow probe."""
    from importlib.metadata import version

    packages = ("leadscore", "lightgbm", "scikit-learn", "pandas", "numpy", "pyarrow", "mlflow", "numba")
    return [f"{package}=={version(package)}" for package in packages]


def _plain(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return str(value)


def log_training(
    result: TrainingResult,
    model_name: str = DEFAULT_MODEL_NAME,
    uri: str | None = None,
    report_folder: Path | None = None,
    progress: Progress = Progress(),
) -> LoggedRun:
    """Log parameters, data fingerprint, metrics, plots, registry and the pyfunc model; register it as challenger.

    The importances in ``result.insight`` gain the current champion's rank of each field on the same
    held-out leads (``champion_rank``, ``rank_change``) before they are logged.
    """
    mlflow = mlflow_at(uri)
    from mlflow.models import infer_signature

    model = result.model
    with progress.task("Logging to MLflow", total=3) as advance:
        _use_experiment(mlflow, uri)
        result.insight.importances = with_rank_change(
            result.insight.importances, _champion_importances(mlflow.MlflowClient(), model_name, result, uri)
        )
        with mlflow.start_run(run_name=f"{model.kind} on {result.table.source}"[:250]) as run:
            mlflow.log_params(_params(result))
            mlflow.log_metrics(_metrics(result))
            mlflow.set_tags({"leadscore.kind": model.kind, "leadscore.source": result.table.source})
            with tempfile.TemporaryDirectory() as scratch:
                scratch = Path(scratch)
                folder = report_folder or scratch / "report"
                write_report_files(result, folder)
                mlflow.log_artifacts(str(folder), artifact_path="evaluation")
                result.held_out.to_parquet(scratch / "holdout.parquet")
                mlflow.log_artifact(str(scratch / "holdout.parquet"), artifact_path="evaluation")
                advance(1)
                with open(scratch / "model.pkl", "wb") as handle:
                    pickle.dump(model, handle)
                example = model.raw_input(result.held_out.head(5))
                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=str(Path(__file__).resolve().parent.parent / "models" / "pyfunc_code.py"),
                    artifacts={"model": str(scratch / "model.pkl")},
                    signature=infer_signature(
                        example, pd.DataFrame({"probability": model.predict_proba(example)}), params={"explain": False}
                    ),
                    input_example=example,
                    pip_requirements=_requirements(),
                )
                advance(1)
        version = mlflow.register_model(info.model_uri, model_name).version
        client = mlflow.MlflowClient()
        client.set_registered_model_alias(model_name, CHALLENGER, version)
        held_out = result.evaluation.metrics.loc["leadscore model"]
        for metric in ("roc_auc", "pr_auc", "brier", "ece"):
            client.set_model_version_tag(model_name, version, f"held_out.{metric}", f"{held_out[metric]:.6f}")
        advance(1)
    return LoggedRun(run.info.run_id, model_name, str(version), tracking_uri(uri), folder)


def _champion_importances(client, model_name: str, result: TrainingResult, uri: str | None) -> pd.DataFrame | None:
    """The current champion's importances on the same held-out leads, when it can score them."""
    champion = _version_by_alias(client, model_name, CHAMPION)
    if champion is None:
        return None
    model = load_model(f"models:/{model_name}/{champion.version}", uri)
    rows = result.held_out.iloc[result.insight.rows]
    if any(feature not in rows.columns for feature in model.features):
        return None
    explanations = Explainer(model).explain(rows, keep_contributions=True)
    return importance_table(explanations.contributions, model.features, model.registry, explanations.points_per_log_odds)


def _params(result: TrainingResult) -> dict:
    summary = result.model.summary
    params = {f"config.{k}": v for k, v in asdict(result.config).items()}
    params.update({f"data.{k}": v for k, v in result.fingerprint.items()})
    params.update(
        {
            "model.kind": summary["kind"],
            "model.calibration": summary["calibration"],
            "model.weights": json.dumps(summary["weights"]),
            "tiers.rule": result.model.tiers.description,
            "tiers.mql_threshold": f"{result.model.tiers.mql:.6f}",
            "tiers.sql_threshold": f"{result.model.tiers.sql:.6f}",
            "split": result.split.description[:500],
        }
    )
    for name, settings in summary["candidates"].items():
        params.update({f"{name}.{k}": v for k, v in settings.items()})
    return {key: str(value)[:500] for key, value in params.items()}


def _metrics(result: TrainingResult) -> dict[str, float]:
    values = {}
    for scorer, row in result.evaluation.metrics.iterrows():
        key = {"leadscore model": "model", "Logistic regression": "logistic_baseline", "Hand-set points": "handset"}.get(scorer, scorer)
        values.update({f"held_out.{key}.{m}": float(v) for m, v in row.items() if np.isfinite(v)})
    for tier, row in result.insight.tiers.iterrows():
        key = tier.lower().replace(" ", "_").replace("-", "")
        values.update({f"tiers.{key}.{m}": float(row[m]) for m in ("leads_per_week", "conversion_rate") if np.isfinite(row[m])})
    for field, row in result.insight.importances.head(20).iterrows():
        values[f"importance.{METRIC_UNSAFE.sub('_', field)}"] = float(row["mean_abs_points"])
    for candidate, row in result.validation.iterrows():
        values.update({f"validation.{candidate}.{m}": float(row[m]) for m in ("roc_auc", "pr_auc", "calibrated_brier") if np.isfinite(row[m])})
    return values


# --- the registry -------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    promoted: bool
    message: str
    challenger: dict
    champion: dict | None


def load_model(model_uri: str, uri: str | None = None) -> LeadScoringModel:
    """The ``LeadScoringModel`` inside a logged pyfunc (runs:/..., models:/name/3, models:/name@champion)."""
    mlflow = mlflow_at(uri)
    try:
        return mlflow.pyfunc.load_model(model_uri).unwrap_python_model().model
    except mlflow.exceptions.MlflowException as error:
        raise LeadscoreError(f"Cannot load the model {model_uri!r} from {tracking_uri(uri)}: {error.message}") from error


def _version_by_alias(client, name: str, alias: str):
    import mlflow

    try:
        return client.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException:
        return None


def _score(model: LeadScoringModel, held_out: pd.DataFrame, metric: str) -> dict:
    missing = [f for f in model.features if f not in held_out.columns]
    if missing:
        raise LeadscoreError(
            f"The champion needs features the challenger's held-out rows lack ({', '.join(missing[:5])}): the two "
            "models were trained on different data and cannot be compared. Promote by hand with the MLflow UI."
        )
    y = held_out[model.target_column].to_numpy(dtype=int)
    values = scoring.probability_metrics(y, model.predict_proba(held_out))
    return {"metric": values[metric], "ece": values["ece"], "brier": values["brier"]}


def promote(model_name: str = DEFAULT_MODEL_NAME, metric: str = "pr_auc", uri: str | None = None) -> Decision:
    """Move ``champion`` to the challenger if it scores better on the challenger's held-out rows."""
    if metric not in ("pr_auc", "roc_auc"):
        raise LeadscoreError(f"--metric {metric!r}: choose pr_auc or roc_auc.")
    mlflow = mlflow_at(uri)
    client = mlflow.MlflowClient()
    challenger = _version_by_alias(client, model_name, CHALLENGER)
    if challenger is None:
        raise LeadscoreError(f"No '{CHALLENGER}' version of model {model_name!r} in {tracking_uri(uri)}: run `leadscore train` first.")
    champion = _version_by_alias(client, model_name, CHAMPION)
    if champion is not None and champion.version == challenger.version:
        return Decision(False, f"Version {challenger.version} is already the champion.", {}, None)
    with tempfile.TemporaryDirectory() as scratch:
        path = client.download_artifacts(challenger.run_id, HOLDOUT_ARTIFACT, scratch)
        held_out = pd.read_parquet(path)
    challenger_score = _score(load_model(f"models:/{model_name}/{challenger.version}", uri), held_out, metric)
    if champion is None:
        _set_champion(client, model_name, challenger.version, previous=None)
        return Decision(True, f"Version {challenger.version} is the first champion.", challenger_score, None)
    champion_score = _score(load_model(f"models:/{model_name}/{champion.version}", uri), held_out, metric)
    better = challenger_score["metric"] > champion_score["metric"]
    calibrated = challenger_score["ece"] <= champion_score["ece"] + CALIBRATION_TOLERANCE
    comparison = (
        f"{metric} {challenger_score['metric']:.4f} against {champion_score['metric']:.4f}, calibration error "
        f"{challenger_score['ece']:.4f} against {champion_score['ece']:.4f} on the challenger's {len(held_out):,} held-out leads"
    )
    if better and calibrated:
        _set_champion(client, model_name, challenger.version, previous=champion.version)
        return Decision(True, f"Promoted version {challenger.version} over version {champion.version}: {comparison}.",
                        challenger_score, champion_score)
    reason = "does not score better" if not better else "is worse calibrated"
    return Decision(False, f"Kept version {champion.version}: the challenger (version {challenger.version}) {reason}: {comparison}.",
                    challenger_score, champion_score)


def _history(client, model_name: str) -> list[str]:
    tags = client.get_registered_model(model_name).tags
    return json.loads(tags.get(CHAMPION_HISTORY_TAG, "[]"))


def _set_champion(client, model_name: str, version: str, previous: str | None) -> None:
    history = _history(client, model_name)
    if previous is not None:
        history.append(str(previous))
    client.set_registered_model_tag(model_name, CHAMPION_HISTORY_TAG, json.dumps(history))
    client.set_registered_model_alias(model_name, CHAMPION, version)


def rollback(model_name: str = DEFAULT_MODEL_NAME, uri: str | None = None) -> Decision:
    """Point ``champion`` back to the version that held it before."""
    mlflow = mlflow_at(uri)
    client = mlflow.MlflowClient()
    current = _version_by_alias(client, model_name, CHAMPION)
    history = _history(client, model_name) if current is not None else []
    if not history:
        raise LeadscoreError(f"Model {model_name!r} has no earlier champion to roll back to.")
    previous = history.pop()
    client.set_registered_model_tag(model_name, CHAMPION_HISTORY_TAG, json.dumps(history))
    client.set_registered_model_alias(model_name, CHAMPION, previous)
    return Decision(True, f"Rolled back: version {previous} is the champion again (was version {current.version}).", {}, None)
