"""Stage: one self-contained HTML page for marketing about a logged model.

Everything it shows comes from the model's training run (metrics, tier
volumes, importances, plots, held-out leads) and, when a CRM is given, from
the CRM: its funnel, what its newest leads are worth, and the movement of
the scores the nightly job wrote back. Marketing's sections come first, in
leads, points and money (``report_marketing``); the model's own measures
close the page, for data scientists (``report_appendix``). Images are embedded, there is no script and nothing is
fetched, so the file opens offline and can be mailed as it is.
"""

from __future__ import annotations

import json
import pickle
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from leadscore.crm.funnel import funnel_by_channel
from leadscore.crm.history import CrmHistory
from leadscore.crm.movement import ScoreMovement
from leadscore.errors import LeadscoreError
from leadscore.features.crm_features import foreign_features
from leadscore.files import check_folder, write_text
from leadscore.models.explain import Explainer
from leadscore.models.model import LeadScoringModel
from leadscore.pipelines import report_marketing as marketing
from leadscore.pipelines.registry import load_model
from leadscore.pipelines.report_appendix import appendix
from leadscore.pipelines.report_html import STYLE, e
from leadscore.pipelines.store import read_store, shown, store_error
from leadscore.pipelines.worth import channel_worth
from leadscore.settings import configured_currency


@dataclass(frozen=True)
class RunFiles:
    """What the model's training run logged, read back from MLflow."""

    run_id: str
    folder: Path
    metrics: dict
    importances: pd.DataFrame
    tiers: pd.DataFrame
    held_out: pd.DataFrame
    evaluated: LeadScoringModel | None  # the model the held-out figures come from, when the registered one was refitted

    def image(self, name: str) -> Path | None:
        path = self.folder / name
        return path if path.exists() else None


def read_run(model_uri: str, scratch: Path, uri: str | None = None) -> RunFiles:
    read_store(uri)  # refuses a store that does not exist rather than letting MLflow create it
    import mlflow

    try:
        run_id = mlflow.models.get_model_info(model_uri).run_id
        folder = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="evaluation", dst_path=str(scratch)))
    except mlflow.exceptions.MlflowException as error:
        raise store_error(f"Cannot read the run of {model_uri!r} from {shown(uri)}", error, uri) from error
    missing = [name for name in ("metrics.json", "importances.csv", "tiers.csv", "holdout.parquet") if not (folder / name).exists()]
    if missing:
        raise LeadscoreError(
            f"The run of {model_uri!r} lacks {', '.join(missing)}: it was trained by an older leadscore. Retrain it "
            "with `leadscore train` to get a report."
        )
    return RunFiles(
        run_id=run_id,
        folder=folder,
        metrics=json.loads((folder / "metrics.json").read_text()),
        importances=pd.read_csv(folder / "importances.csv", index_col="field"),
        tiers=pd.read_csv(folder / "tiers.csv", index_col="tier"),
        held_out=pd.read_parquet(folder / "holdout.parquet"),
        evaluated=_evaluated_model(folder / "evaluated_model.pkl"),
    )


def _evaluated_model(path: Path) -> LeadScoringModel | None:
    if not path.exists():
        return None
    with open(path, "rb") as handle:  # leadscore's own artifact, logged beside the registered model
        return pickle.load(handle)


def write_report(
    model_uri: str, out: Path, uri: str | None = None, funnel: pd.DataFrame | None = None, crm_note: str = "",
    history: CrmHistory | None = None, worth: pd.DataFrame | None = None, movement: ScoreMovement | None = None,
    currency: str | None = None,
) -> Path:
    """Write the report of ``model_uri`` to ``out``.

    ``funnel`` is ``funnel_by_channel`` of the CRM; ``history`` the CRM itself, whose recent leads a CRM model
    prices by channel unless ``worth`` (their ``channel_worth``) is given; ``movement`` what the nightly job
    wrote back (``crm.scores.read_score_movement``); ``currency`` names the costs' currency (default:
    ``LEADSCORE_CURRENCY``, else USD).
    """
    if out.suffix.lower() not in (".html", ".htm"):
        raise LeadscoreError(f"--out {out}: the report is an HTML page; name it e.g. report.html.")
    check_folder(out)
    marketing, data_science, run_id = _sections(model_uri, uri, funnel, crm_note, history, worth, movement, currency)
    page = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>Lead scoring report</title><style>{STYLE}</style></head>"
        f"<body><main><section class='marketing'>{''.join(marketing.values())}</section>{data_science}"
        f"<p class='note'>Generated {datetime.now():%Y-%m-%d %H:%M} by leadscore from run {e(run_id)}.</p>"
        "</main></body></html>\n"
    )
    return write_text(out, page)


def marketing_sections(
    model_uri: str, uri: str | None = None, history: CrmHistory | None = None, movement: ScoreMovement | None = None,
    currency: str | None = None,
) -> dict[str, str]:
    """The report's marketing sections as HTML fragments by name (header, funnel, worth, gains, drivers, tiers,
    examples, movement), for a notebook to show one at a time."""
    funnel = funnel_by_channel(history) if history is not None else None
    return _sections(model_uri, uri, funnel, "", history, None, movement, currency)[0]


def _sections(model_uri, uri, funnel, crm_note, history, worth, movement, currency) -> tuple[dict[str, str], str, str]:
    """Marketing's sections, the data scientists' appendix and the run id, images embedded."""
    currency = currency or configured_currency()
    model = load_model(model_uri, uri)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        run = read_run(model_uri, scratch, uri)
        if worth is None and history is not None and not foreign_features(model.features):
            worth = channel_worth(history, model, pd.Timestamp(history.as_of).to_pydatetime())
        judged = run.evaluated or model  # held-out leads are explained by the model that never saw them
        held = marketing.HeldOutLeads.of(run, judged)
        explainer = Explainer(judged)  # compiled once for the drivers and the example leads
        sections = {
            "header": marketing.header(model_uri, model, run, held, currency),
            "funnel": marketing.funnel_section(funnel, marketing.funnel_image(funnel, scratch, currency), crm_note,
                                               currency),
            "worth": marketing.worth_section(worth, currency),
            "gains": marketing.gains_section(held),
            "drivers": marketing.drivers_section(explainer, run, held, scratch),
            "tiers": marketing.tier_section(judged, run),
            "examples": marketing.example_section(explainer, run, held),
            "movement": marketing.movement_section(movement, model, scratch) if funnel is not None else "",
        }
        return ({name: html for name, html in sections.items() if html}, appendix(model_uri, judged, run, len(held)),
                run.run_id)
