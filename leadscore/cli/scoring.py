"""Commands that use a registered model: predict a file, score the CRM, report, serve, and the demo."""

from __future__ import annotations

import enum
import os
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Optional

import pandas as pd
import typer
from rich.text import Text

from leadscore.cli.common import (
    CrmOption,
    CurrencyOption,
    MapStageOption,
    MinReasonPointsOption,
    ModelOption,
    TrackingOption,
    app,
    console,
    crm_engine,
    errors,
    parse_moment,
    stage_map_from,
    user_errors,
)
from leadscore.cli.crm_commands import print_funnel, print_rows
from leadscore.cli.training import print_training
from leadscore.errors import LeadscoreError
from leadscore.progress import for_console
from leadscore.settings import configured_crm_url


class Engine(str, enum.Enum):
    local = "local"
    dask = "dask"


@app.command()
@user_errors
def predict(
    data: Annotated[
        Path,
        typer.Option(help="Flat file (CSV or Parquet) with the model's feature columns and lead id; a model trained "
                          "without --id numbers the rows instead (row_number, 1 for the first row)."),
    ],
    out: Annotated[
        Path,
        typer.Option(help="Where to write the id, probability, tier and never-seen values of every row (.csv or .parquet)."),
    ],
    model: ModelOption = "models:/leadscore@champion",
    tracking_uri: TrackingOption = None,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain",
            help="Add each row's fit and engagement scores (0-100), its top three reasons as sentences "
            "(reason_1..reason_3) and all six reasons as JSON (reasons).",
        ),
    ] = False,
    min_reason_points: MinReasonPointsOption = 0.5,
) -> None:
    """Write the calibrated probability of conversion of every row of a file, with its tier and reasons if asked."""
    from leadscore.pipelines.predict import predict_file

    with for_console(console) as progress:
        scored = predict_file(model, data, out, tracking_uri, explain, progress, min_reason_points)
    from leadscore.models.tiers import TIER_DISPLAY

    counts = scored["tier"].value_counts()
    tiers = ", ".join(f"{counts.get(code, 0):,} {TIER_DISPLAY[code]}" for code in ("sql", "mql", "none"))
    console.print(
        f"Scored {len(scored):,} rows with {model}: mean probability {scored['probability'].mean():.1%}; {tiers}; "
        f"wrote {out}."
    )
    new = scored["unseen"].astype(bool)
    if new.any():
        examples = "; ".join(pd.Series(scored.loc[new, "unseen"].str.split("; ").explode()).value_counts().index[:5])
        console.print(
            f"Note: {int(new.sum()):,} rows hold values the model never saw at training (e.g. {examples}): they are "
            "scored like rare values, and their reasons say so (column unseen).",
            style="yellow",
        )


@app.command()
@user_errors
def score(
    crm: CrmOption = None,
    model: Annotated[
        str, typer.Option(help="Model URI: models:/leadscore@champion, models:/leadscore/3.")
    ] = "models:/leadscore@champion",
    tracking_uri: TrackingOption = None,
    as_of: Annotated[
        Optional[str],
        typer.Option(help="Score the leads open at this time (UTC), seeing only activities before it. Default: now."),
    ] = None,
    allow_drift: Annotated[
        bool, typer.Option("--allow-drift", help="Write the scores even when drift is above the holding level.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Score and report what would be written, writing nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object (for a cron log).")] = False,
    history_points: Annotated[
        float,
        typer.Option(help="Add a history row when the probability moved by at least this many points (or the tier "
                          "or the model changed).", min=0),
    ] = 1.0,
    wait: Annotated[
        bool, typer.Option("--wait", help="When another scoring job holds the CRM, wait for it instead of exiting 4.")
    ] = False,
    map_stage: MapStageOption = None,
    workers: Annotated[
        int, typer.Option(help="Processes explaining leads at once; 0: one per core this job may use.", min=0)
    ] = 0,
    min_reason_points: MinReasonPointsOption = 0.5,
    engine: Annotated[
        Engine,
        typer.Option(help="Where the work runs: local (this machine) or dask (a Dask cluster: each worker reads a "
                          "range of lead ids from the CRM, builds their features and explains chunks of leads).",
                     case_sensitive=False),
    ] = Engine.local,
    scheduler: Annotated[
        str | None,
        typer.Option(help="With --engine dask: your cluster's scheduler, e.g. tcp://host:8786. Default: a local "
                          "cluster on this machine.", show_default=False),
    ] = None,
    dask_workers: Annotated[
        int, typer.Option(help="With --engine dask and no --scheduler: worker processes of the local cluster; 0: one "
                               "per core this job may use.", min=0)
    ] = 0,
    out: Annotated[
        Path | None,
        typer.Option(help="A data lake's folder: every scored lead goes to Parquet files in a new sub-folder per run "
                          "(run-<as of>-<run id>/scores, beside run.json and rejects.parquet), instead of to the CRM, "
                          "which is only read.", show_default=False),
    ] = None,
) -> None:
    """Score every open lead of the CRM and write probability, tier and reasons back: the nightly job.

    Exit status: 0 done, 2 a problem to fix (named in the message), 3 held by drift (nothing written),
    4 another scoring job holds the CRM.
    """
    import json

    from leadscore.crm.scores import JobLocked
    from leadscore.serve.nightly import EXIT_HELD, EXIT_LOCKED, ScoringOptions, score_crm
    from leadscore.serve.score_files import check_out_folder
    from leadscore.serve.targets import scoring_target

    _check_engine_options(engine, scheduler, dask_workers, workers)
    options = ScoringOptions(
        model_uri=model, tracking_uri=tracking_uri, as_of=parse_moment(as_of, "--as-of"), allow_drift=allow_drift,
        dry_run=dry_run, history_points=history_points, wait=wait, stage_map=stage_map_from(map_stage), workers=workers,
        min_reason_points=min_reason_points, out=out,
    )
    if out is not None:
        check_out_folder(out)  # before the run: a folder it cannot write is told now, not after scoring every lead
    try:
        with ExitStack() as stack:
            target = stack.enter_context(scoring_target(crm, writable=options.writes_crm))
            progress = stack.enter_context(for_console(errors if as_json else console))
            compute, read_history = None, target.read_history
            if engine is Engine.dask:
                compute, read_history = _dask_compute(stack, target, scheduler, dask_workers, progress)
            result = score_crm(target.engine, options, progress, compute=compute, read_history=read_history,
                               sink=target.sink)
    except JobLocked as locked:
        errors.print(Text.assemble(("Locked:", "bold yellow"), " ", str(locked)), soft_wrap=True)
        raise typer.Exit(EXIT_LOCKED) from None
    if as_json:
        print(json.dumps(result.as_dict(), default=str))
    else:
        print_scoring(result)
    if result.status == "held":
        raise typer.Exit(EXIT_HELD)


def _check_engine_options(engine: Engine, scheduler: str | None, dask_workers: int, workers: int) -> None:
    if engine is not Engine.dask and (scheduler is not None or dask_workers):
        option = "--scheduler" if scheduler is not None else "--dask-workers"
        raise LeadscoreError(f"{option} is for the Dask engine: add --engine dask, or leave out {option}.")
    if scheduler is not None and dask_workers:
        raise LeadscoreError("--dask-workers sizes the local cluster started without --scheduler; the cluster at "
                             "--scheduler has the workers it was started with. Leave out one of the two.")
    if engine is Engine.dask and workers:
        raise LeadscoreError("--workers sets this machine's explaining processes (--engine local); with --engine dask "
                             "the cluster's workers explain: size a local cluster with --dask-workers N.")


def _dask_compute(stack: ExitStack, target, scheduler: str | None, dask_workers: int, progress):
    """The Dask engine on ``target``'s CRM, started (or connected) within ``stack``, and the reader its workers use."""
    try:
        from leadscore.serve.dask_compute import DaskCompute, require_range_reader
    except ImportError as error:
        raise LeadscoreError(f"--engine dask needs Dask ({error.name} is not installed): pip install "
                             "'leadscore[dask]'.") from None
    from leadscore.crm.sql import HistoryAtUrl

    read_history = target.read_history or HistoryAtUrl.of(target.engine)
    require_range_reader(read_history)  # before a cluster starts
    compute = stack.enter_context(DaskCompute(scheduler, local_workers=dask_workers, progress=progress))
    return compute, read_history


def print_scoring(result) -> None:
    from leadscore.models.tiers import TIER_DISPLAY

    verb = {"complete": "Scored", "held": "Held", "dry run": "Dry run: would have scored"}.get(result.status, "Scored")
    console.print(
        f"{verb} {result.scored:,} of {result.open_leads:,} open leads as of {result.as_of} with {result.model} "
        f"in {result.seconds:.1f} s: {result.written:,} written, {result.unchanged:,} unchanged, "
        f"{result.rejected:,} rejected, {result.history_rows:,} history rows (run {result.run_id})."
    )
    if result.tiers:
        console.print("Tiers: " + ", ".join(f"{result.tiers.get(code, 0):,} {TIER_DISPLAY[code]}" for code in ("sql", "mql", "none")))
    for reason, count in list(result.rejects.items())[:10]:
        console.print(f"Rejected {count:,} leads: {reason}.", style="yellow")
    if result.unseen:
        listing = ", ".join(f"{value} ({count:,})" for value, count in sorted(result.unseen.items(), key=lambda i: -i[1])[:8])
        console.print(f"Values the model never saw at training, scored like rare ones: {listing}.", style="yellow")
    if result.files:
        console.print(f"Wrote every scored lead to {result.files}/scores (Parquet, one file a chunk; run.json beside "
                      "it says what the run did).")
    for run in result.failed_runs:
        console.print(f"Marked run {run} failed: its process ended before it finished.", style="yellow")
    for note in result.notes:
        console.print(f"Note: {note}", style="yellow")
    if result.status == "held":
        console.print("Held by drift: nothing was written to lead_scores, the last good scores stay. Check the data, "
                      "retrain, or rerun with --allow-drift to write anyway.", style="bold red")


@app.command()
@user_errors
def report(
    out: Annotated[Path, typer.Option(help="Where to write the HTML page, e.g. report.html.")],
    model: ModelOption = "models:/leadscore@champion",
    crm: Annotated[
        Optional[str],
        typer.Option(help="CRM whose funnel and costs the report shows (an SQLAlchemy URL or SQLite file). "
                     "Default: $LEADSCORE_CRM, when set."),
    ] = None,
    tracking_uri: TrackingOption = None,
    map_stage: MapStageOption = None,
    currency: CurrencyOption = None,
) -> None:
    """Write one self-contained HTML page: for marketing the funnel, what each channel's new leads are worth, how
    well the score finds converters, its drivers, tiers, three example leads and the scores' movement; then an
    appendix for data scientists."""
    from leadscore.crm.funnel import funnel_by_channel
    from leadscore.crm.scores import read_score_movement
    from leadscore.crm.sql import load_history
    from leadscore.pipelines.report import write_report

    funnel, note, history, movement = None, "", None, None
    source = crm or configured_crm_url()
    if source:
        with crm_engine(source) as engine:
            history = load_history(engine, stage_map=stage_map_from(map_stage))
            with engine.connect() as connection:
                movement = read_score_movement(connection)
        funnel = funnel_by_channel(history)
    else:
        note = "No CRM was given (--crm or $LEADSCORE_CRM): funnel rates and costs come from the CRM."
    write_report(model, out, tracking_uri, funnel, note, history, movement=movement, currency=currency)
    console.print(f"Wrote the report of {model} to {out}.")


@app.command()
@user_errors
def serve(
    model: ModelOption = "models:/leadscore@champion",
    crm: Annotated[
        Optional[str],
        typer.Option(help="CRM to read leads' history from when a request names them by id (an SQLAlchemy URL or "
                          "SQLite file). Without it, requests send each lead's profile and activities.",
                     show_default=False),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(help="Processes, each with the model loaded once.", min=1)] = 1,
    tracking_uri: TrackingOption = None,
) -> None:
    """Serve POST /score (probability, tier, fit and engagement, reasons), GET /health, GET /model and the OpenAPI
    schema (/docs), with the model loaded once."""

    import uvicorn

    from leadscore.crm.database import connect
    from leadscore.pipelines.registry import resolve_model
    from leadscore.serve.api import SERVE_SETTINGS, create_app, settle_collector

    resolved = resolve_model(model, tracking_uri)  # a model that cannot load is refused here, not by each worker
    engine = connect(crm) if crm else None
    console.print(f"Serving {resolved.name} version {resolved.version} at http://{host}:{port} (API docs at /docs); "
                  "Ctrl+C stops.")
    if workers == 1:
        app = create_app(resolved, engine)
        settle_collector()
        uvicorn.run(app, host=host, port=port, log_level="warning")
        return
    os.environ.update({name: value for name, value in zip(SERVE_SETTINGS, (resolved.uri, tracking_uri or "", crm or ""))})
    uvicorn.run("leadscore.serve.api:app_from_environment", factory=True, host=host, port=port, workers=workers,
                log_level="warning")


@app.command()
@user_errors
def demo(
    directory: Annotated[Path, typer.Option("--dir", help="Folder for the demo's files.")] = Path("leadscore-demo"),
    leads: Annotated[int, typer.Option(help="Number of leads to simulate.", min=100)] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
) -> None:
    """Simulate a CRM in DIR/crm.db, print its funnel, train and register a model in DIR/mlflow.db, write the report,
    and score every open lead back into the CRM."""
    from leadscore.pipelines.demo import run_demo

    began = time.perf_counter()
    with for_console(console) as progress:
        result = run_demo(directory, leads=leads, seed=seed, progress=progress)
    if result.replaced:
        console.print(f"Replaced the previous demo in {directory}.", style="dim")
    print_rows(result.summary.rows)
    print_funnel(result.funnel)
    print_training(result.training)
    console.print(result.promotion.message, style="green")
    print_scoring(result.scoring)
    store = result.logged.tracking_uri
    console.print(
        f"Demo CRM: sqlite:///{result.crm_file}, scores in its tables lead_scores, lead_score_history and "
        f"scoring_runs (rerun the job with `leadscore score --crm {result.crm_file} --tracking-uri {store} "
        f"--as-of '{result.scoring.as_of}'`); MLflow store: {store} (browse it with `mlflow ui --backend-store-uri "
        f"{store}`); plots and metrics.json in {result.logged.artifacts}; marketing report: {result.report}. "
        f"Done in {time.perf_counter() - began:.0f} s."
    )
