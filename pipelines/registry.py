"""Stage: the model registry. Load a registered model, register a new one as challenger, promote or roll back.

Registered versions carry aliases: a new model becomes ``challenger``;
``promote`` moves ``champion`` to it only when it beats the champion on the
challenger's held-out rows and is not worse calibrated.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from datetime import datetime, timezone
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from leadscore.errors import LeadscoreError
from leadscore.models import metrics as scoring
from leadscore.models.model import LeadScoringModel
from leadscore.pipelines.runs import INCOMPLETE_TAG
from leadscore.pipelines.store import read_store, shown, store_error

DEFAULT_MODEL_NAME = "leadscore"
CHAMPION, CHALLENGER = "champion", "challenger"
HOLDOUT_ARTIFACT = "evaluation/holdout.parquet"
CHAMPION_HISTORY_TAG = "champion_history"
ROLLED_BACK_TAG = "leadscore.rolled_back"
CALIBRATION_TOLERANCE = 0.005  # ECE a challenger may lose and still count as "not worse calibrated"
REGISTERED = re.compile(r"models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))/?")
PAUSE_BEFORE_ALIAS = "LEADSCORE_TEST_PAUSE_BEFORE_ALIAS"


@dataclass(frozen=True)
class Decision:
    promoted: bool
    message: str
    challenger: dict
    champion: dict | None


def load_model(model_uri: str, uri: str | None = None) -> LeadScoringModel:
    """The ``LeadScoringModel`` inside a logged pyfunc (runs:/..., models:/name/3, models:/name@champion).

    The store must exist already; a registered name, alias or version that is not there is refused with
    what the registry does hold and the command that would fix it.
    """
    client = read_store(uri)
    check_registered(client, model_uri, uri)
    import mlflow

    try:
        return mlflow.pyfunc.load_model(model_uri).unwrap_python_model().model
    except mlflow.exceptions.MlflowException as error:
        raise store_error(f"Cannot load the model {model_uri!r} from {shown(uri)}", error, uri) from error


@dataclass(frozen=True)
class ResolvedModel:
    """A model and the registry coordinates it was loaded from: what a score records as its origin."""

    model: LeadScoringModel
    name: str
    version: str
    uri: str  # models:/name/version: the exact version, even when an alias was asked for


def resolve_model(model_uri: str, uri: str | None = None) -> ResolvedModel:
    """Load ``model_uri`` pinned to one version: an alias is read once, so a promotion during a long job
    cannot mix two models in one run."""
    client = read_store(uri)
    check_registered(client, model_uri, uri)
    match = REGISTERED.fullmatch(model_uri)
    if match is None:  # runs:/RUN_ID/model: no registered name; the run identifies it
        run = model_uri.removeprefix("runs:/").split("/")[0]
        return ResolvedModel(load_model(model_uri, uri), "run", run[:40], model_uri)
    name, alias, version = match["name"], match["alias"], match["version"]
    if alias is not None:
        found = version_by_alias(client, name, alias)
        if found is None:
            raise LeadscoreError(
                f"Cannot load the model {model_uri!r} from {shown(uri)}: no version of model {name!r} has the alias "
                f"{alias!r}. Pass --model models:/{name}@{CHAMPION}, or a version such as models:/{name}/1."
            )
        version = str(found.version)
    pinned = f"models:/{name}/{version}"
    return ResolvedModel(load_model(pinned, uri), name, str(version), pinned)


def _aliases(aliases: dict) -> str:
    named = sorted(aliases.items(), key=lambda item: (int(item[1]), item[0]))
    return ", ".join(f"version {version} is {alias}" for alias, version in named) or "none of its versions has an alias"


def _versions(numbers: list[int]) -> str:
    if not numbers:
        return "it has no version left"
    if len(numbers) == 1:
        return f"its only version is {numbers[0]}"
    if len(numbers) <= 6:
        return f"its versions are {', '.join(map(str, numbers[:-1]))} and {numbers[-1]}"
    return f"its versions run from {numbers[0]} to {numbers[-1]}"


def _absent(error, model_uri: str, uri: str | None) -> None:
    """Return when MLflow says the thing does not exist; raise any other failure as a user error."""
    if error.error_code != "RESOURCE_DOES_NOT_EXIST":
        raise store_error(f"Cannot look up {model_uri!r} in {shown(uri)}", error, uri) from error


def check_registered(client, model_uri: str, uri: str | None) -> None:
    """Refuse ``models:/name@alias`` or ``models:/name/N`` when the registry lacks that model, alias or version."""
    import mlflow

    match = REGISTERED.fullmatch(model_uri)
    if match is None:
        return  # runs:/ and logged-model URIs: MLflow's own message names what is missing
    name, alias, version = match["name"], match["alias"], match["version"]
    cannot = f"Cannot load the model {model_uri!r} from {shown(uri)}"
    try:
        model = client.get_registered_model(name)
    except mlflow.exceptions.MlflowException as error:
        _absent(error, model_uri, uri)
        names = [registered.name for registered in client.search_registered_models(max_results=6)]
        held = f"it holds: {', '.join(names[:5])}{', …' if len(names) > 5 else ''}" if names else "it holds no model yet"
        raise LeadscoreError(
            f"{cannot}: no model is named {name!r} there ({held}). Run `leadscore train` to register one, or pass "
            "the right --model."
        ) from None
    if alias is None:
        try:
            client.get_model_version(name, version)
        except mlflow.exceptions.MlflowException as error:
            _absent(error, model_uri, uri)
            numbers = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
            fix = f"Pass one of them, e.g. --model models:/{name}/{numbers[-1]}." if numbers else "Run `leadscore train`."
            raise LeadscoreError(f"{cannot}: model {name!r} has no version {version} ({_versions(numbers)}). {fix}") from None
    elif alias == CHAMPION and alias not in model.aliases:
        fix = (f"Run `leadscore promote` to make the challenger champion, or pass --model models:/{name}@{CHALLENGER}."
               if CHALLENGER in model.aliases else "Run `leadscore train` to register a challenger, then `leadscore promote`.")
        raise LeadscoreError(f"{cannot}: no version of model {name!r} is champion yet ({_aliases(model.aliases)}). {fix}")
    elif alias not in model.aliases:
        fix = f" Pass one of them, e.g. --model models:/{name}@{min(model.aliases)}." if model.aliases else ""
        raise LeadscoreError(f"{cannot}: model {name!r} has no version aliased {alias!r} ({_aliases(model.aliases)}).{fix}")


def _pause_for_kill_test() -> None:
    # Test-only (tests/test_store.py): stop between registering a version and aliasing it, so that a test can
    # kill `train` at the one moment that leaves a version without alias.
    marker = os.environ.get(PAUSE_BEFORE_ALIAS)
    if marker:
        Path(marker).touch()
        time.sleep(120)


def register_challenger(logged_model_uri: str, model_name: str, tags: dict[str, str]) -> str:
    """Register the logged model as a new version carrying ``tags``, then alias it challenger; return its number.

    MLflow writes a version and its tags in one transaction, but the alias only afterwards. Call this inside
    the training run: if the process dies in between, its run stays RUNNING and the next ``train`` finds it
    and tags the version incomplete (``runs.fail_dead_runs``).
    """
    import mlflow

    version = str(mlflow.register_model(logged_model_uri, model_name, tags=tags).version)
    _pause_for_kill_test()
    client = mlflow.MlflowClient()
    try:
        client.set_registered_model_alias(model_name, CHALLENGER, version)
    except BaseException:
        with suppress(Exception):
            client.set_model_version_tag(model_name, version, INCOMPLETE_TAG, f"naming it {CHALLENGER} failed; do not promote it")
        raise
    return version


def version_by_alias(client, name: str, alias: str):
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


def promote(model_name: str = DEFAULT_MODEL_NAME, metric: str = "pr_auc", uri: str | None = None,
            force: bool = False) -> Decision:
    """Move ``champion`` to the challenger if it scores better on the challenger's held-out rows.

    A version taken off by ``rollback`` is not promoted again by a plain ``promote``, which would otherwise
    undo the rollback at the next cron run; ``force`` promotes the challenger whatever the comparison says.
    """
    if metric not in ("pr_auc", "roc_auc"):
        raise LeadscoreError(f"--metric {metric!r}: choose pr_auc or roc_auc.")
    client = read_store(uri)
    challenger = version_by_alias(client, model_name, CHALLENGER)
    if challenger is None:
        raise LeadscoreError(f"No '{CHALLENGER}' version of model {model_name!r} in {shown(uri)}: run `leadscore train` first.")
    champion = version_by_alias(client, model_name, CHAMPION)
    if champion is not None and champion.version == challenger.version:
        return Decision(False, f"Version {challenger.version} is already the champion.", {}, None)
    rolled_back = (challenger.tags or {}).get(ROLLED_BACK_TAG)
    if rolled_back and not force:
        kept = f"Kept version {champion.version}" if champion is not None else "Promoted nothing"
        return Decision(False, f"{kept}: the challenger, version {challenger.version}, was rolled back ({rolled_back}). "
                               "Train a new challenger, or `leadscore promote --force` to promote it again.", {}, None)
    import mlflow

    with tempfile.TemporaryDirectory() as scratch:
        try:
            path = client.download_artifacts(challenger.run_id, HOLDOUT_ARTIFACT, scratch)
        except mlflow.exceptions.MlflowException as error:
            raise store_error(f"Cannot read the challenger's held-out rows from {shown(uri)}", error, uri) from error
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
    if (better and calibrated) or force:
        _set_champion(client, model_name, challenger.version, previous=champion.version)
        forced = "" if better and calibrated else " (forced)"
        return Decision(True, f"Promoted version {challenger.version} over version {champion.version}{forced}: {comparison}.",
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
    if ROLLED_BACK_TAG in (client.get_model_version(model_name, version).tags or {}):
        client.delete_model_version_tag(model_name, version, ROLLED_BACK_TAG)  # promoted on purpose: trusted again


def rollback(model_name: str = DEFAULT_MODEL_NAME, uri: str | None = None) -> Decision:
    """Point ``champion`` back to the version that held it before."""
    client = read_store(uri)
    current = version_by_alias(client, model_name, CHAMPION)
    history = _history(client, model_name) if current is not None else []
    if not history:
        raise LeadscoreError(f"Model {model_name!r} has no earlier champion to roll back to.")
    previous = history.pop()
    client.set_registered_model_tag(model_name, CHAMPION_HISTORY_TAG, json.dumps(history))
    client.set_registered_model_alias(model_name, CHAMPION, previous)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    client.set_model_version_tag(model_name, current.version, ROLLED_BACK_TAG,
                                 f"on {when}, back to version {previous}")
    return Decision(True, f"Rolled back: version {previous} is the champion again (was version {current.version}).", {}, None)
