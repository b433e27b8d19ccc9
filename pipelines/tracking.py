"""Stage: record a training run in MLflow and register its model as challenger.

The store itself (which one, creating it once, refusing to create one when
only reading) lives in ``store``; loading, promoting and rolling back
registered models in ``registry``; runs left behind by a killed ``train`` in
``runs``.
"""

from __future__ import annotations

import json
import pickle
import re
import tempfile
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from leadscore.files import write_text
from leadscore.models import plots
from leadscore.models.explain import Explainer
from leadscore.models.guards import SUSPECT_AUC, ProbableLeak, probable_leak
from leadscore.models.importance import family_shares, importance_table, with_rank_change
from leadscore.pipelines import bundle
from leadscore.pipelines.registry import CHAMPION, DEFAULT_MODEL_NAME, PROBABLE_LEAK_TAG, register_challenger, version_by_alias
from leadscore.pipelines.registry import Decision, load_model, promote, rollback  # noqa: F401  (the demo and notebooks import them from here)
from leadscore.pipelines.runs import process_tags
from leadscore.pipelines.store import mlflow_at, prepare_store, tracking_uri
from leadscore.pipelines.train import TrainingResult
from leadscore.progress import Progress

METRIC_UNSAFE = re.compile(r"[^\w\-. /]")  # characters MLflow refuses in a metric name
DEPENDENCE_PLOTS = 3  # top engagement features drawn against their effect
VERSION_METRICS = ("roc_auc", "pr_auc", "brier", "ece")  # held-out metrics each registered version carries as tags


@dataclass(frozen=True)
class LoggedRun:
    run_id: str
    model_name: str
    version: str
    tracking_uri: str
    artifacts: Path  # local copy of metrics.json and the plots
    probable_leak: str | None = None  # why the held-out figures look too good to be honest, when they do

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
        "split_forward": bool(result.split.forward),
        "lead_name_columns": list(result.table.name_columns),
        "target_column": result.table.target_column,
        "time_column": result.table.time_column,
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
    channel_worth: pd.DataFrame | None = None,
) -> LoggedRun:
    """Log parameters, data fingerprint, metrics, plots, registry and the pyfunc model; register it as challenger.

    ``channel_worth`` (``pipelines.worth.channel_worth`` of the CRM the model learned from, at its end) is
    logged as ``evaluation/channel_worth.csv``: what each channel's newest leads were expected to bring when
    this model was trained.

    The importances in ``result.insight`` gain the current champion's rank of each field on the same
    held-out leads (``champion_rank``, ``rank_change``) before they are logged. A held-out AUC that looks
    like a leak tags the run and the version ``leadscore.probable_leak``, which ``promote`` refuses.
    """
    experiment_id = prepare_store(uri)
    mlflow = mlflow_at(uri)
    from leadscore.models.pyfunc import MODEL_ARTIFACT, model_signature

    model = result.model
    with progress.task("Logging to MLflow", total=3) as advance:
        result.insight.importances = with_rank_change(
            result.insight.importances, _champion_importances(mlflow.MlflowClient(), model_name, result, uri)
        )
        # The run knows its process from the start, so that a kill at any later point leaves a run the next
        # `train` can tell apart from a live one (runs.py).
        tags = {**process_tags(), "leadscore.kind": model.kind, "leadscore.source": result.table.source}
        leak = _probable_leak(result)
        if leak is not None:
            tags[PROBABLE_LEAK_TAG] = leak.finding
        run_name = f"{model.kind} on {result.table.source}"[:250]
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as run:
            mlflow.log_params(_params(result))
            mlflow.log_metrics(_metrics(result))
            with tempfile.TemporaryDirectory() as scratch:
                scratch = Path(scratch)
                folder = report_folder or scratch / "report"
                write_report_files(result, folder)
                if channel_worth is not None:
                    write_text(folder / "channel_worth.csv", channel_worth.to_csv(index=False))
                mlflow.log_artifacts(str(folder), artifact_path="evaluation")
                result.held_out.to_parquet(scratch / "holdout.parquet")
                mlflow.log_artifact(str(scratch / "holdout.parquet"), artifact_path="evaluation")
                if result.evaluated_model is not None:
                    # The registered model learned from the held-out rows too; the one its figures come from is kept.
                    with open(scratch / "evaluated_model.pkl", "wb") as handle:
                        pickle.dump(result.evaluated_model, handle)
                    mlflow.log_artifact(str(scratch / "evaluated_model.pkl"), artifact_path="evaluation")
                advance(1)
                with open(scratch / "model.pkl", "wb") as handle:
                    pickle.dump(model, handle)
                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=str(resources.files("leadscore.models") / "pyfunc_code.py"),
                    artifacts={MODEL_ARTIFACT: str(scratch / "model.pkl")},
                    code_paths=[str(bundle.code_folder(scratch / "code"))],
                    signature=model_signature(model),
                    input_example=model.raw_input(result.held_out.head(5)),
                    pip_requirements=bundle.requirements(),
                )
                advance(1)
            held_out = result.evaluation.metrics.loc["leadscore model"]
            version_tags = {f"held_out.{metric}": f"{held_out[metric]:.6f}" for metric in VERSION_METRICS}
            if leak is not None:
                version_tags[PROBABLE_LEAK_TAG] = leak.finding  # given at registration: no window without it
            version = register_challenger(info.model_uri, model_name, version_tags)
            advance(1)
    return LoggedRun(run.info.run_id, model_name, version, tracking_uri(uri), folder,
                     leak.finding if leak is not None else None)


def _probable_leak(result: TrainingResult) -> ProbableLeak | None:
    return probable_leak(
        float(result.evaluation.metrics.loc["leadscore model", "roc_auc"]),
        result.evaluated_model or result.model,  # the model the held-out figures come from
        result.held_out, result.insight.importances, SUSPECT_AUC,
    )


def _champion_importances(client, model_name: str, result: TrainingResult, uri: str | None) -> pd.DataFrame | None:
    """The current champion's importances on the same held-out leads, when it can score them."""
    champion = version_by_alias(client, model_name, CHAMPION)
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
            "model.rows": result.model.summary.get("refit", {}).get("rows", len(result.split.training)),
            "evaluated_model.rows": len(result.split.training),
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
