"""Stage: the model registry. Load a registered model, register a new one as challenger, promote or roll back.

Registered versions carry aliases: a new model becomes ``challenger``;
``promote`` moves ``champion`` to it only when it passes the gate of
``models.gate`` on the challenger's held-out rows: no loss to a baseline and a
gain over the champion, both beyond noise, and no worse calibration.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import tempfile
import time
from datetime import datetime, timezone
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from leadscore.errors import LeadscoreError
from leadscore.models.comparison import METRICS, RESAMPLES, Difference
from leadscore.models.gate import judge
from leadscore.models.model import LeadScoringModel
from leadscore.pipelines.runs import INCOMPLETE_TAG
from leadscore.pipelines.store import read_store, shown, store_error

DEFAULT_MODEL_NAME = "leadscore"
CHAMPION, CHALLENGER = "champion", "challenger"
HOLDOUT_ARTIFACT = "evaluation/holdout.parquet"
CHAMPION_HISTORY_TAG = "champion_history"
ROLLED_BACK_TAG = "leadscore.rolled_back"
PROBABLE_LEAK_TAG = "leadscore.probable_leak"
EVALUATED_MODEL_ARTIFACT = "evaluation/evaluated_model.pkl"
PROMOTED, ALREADY_CHAMPION, KEPT, ROLLED_BACK = "promoted", "already champion", "kept", "rolled back"
# `promote`'s exit status when it kept the champion: cron tells it from 0 (promoted), 1 (a crash) and 2 (a problem to fix).
EXIT_KEPT = 3
REGISTERED = re.compile(r"models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))/?")
PAUSE_BEFORE_ALIAS = "LEADSCORE_TEST_PAUSE_BEFORE_ALIAS"


@dataclass(frozen=True)
class Decision:
    """What ``promote`` or ``rollback`` did, the message saying why, and the challenger's comparisons."""

    outcome: str  # PROMOTED, ALREADY_CHAMPION, KEPT or ROLLED_BACK
    message: str
    differences: dict[str, Difference] = field(default_factory=dict)  # by "champion" and baseline name

    @property
    def promoted(self) -> bool:
        """The champion alias moved."""
        return self.outcome in (PROMOTED, ROLLED_BACK)


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


def _held_out(client, version, uri: str | None) -> pd.DataFrame:
    import mlflow

    with tempfile.TemporaryDirectory() as scratch:
        try:
            path = client.download_artifacts(version.run_id, HOLDOUT_ARTIFACT, scratch)
        except mlflow.exceptions.MlflowException as error:
            raise store_error(f"Cannot read the held-out rows of version {version.version} from {shown(uri)}", error, uri) from error
        return pd.read_parquet(path)


def _evaluated_model(client, model_name: str, version, uri: str | None) -> LeadScoringModel:
    """The model a version's held-out figures come from: the one trained without its held-out rows, kept
    beside the registered one when that was refitted on every row; the registered one itself otherwise."""
    import mlflow

    try:
        kept = EVALUATED_MODEL_ARTIFACT in {artifact.path for artifact in client.list_artifacts(version.run_id, "evaluation")}
        if kept:
            with tempfile.TemporaryDirectory() as scratch:
                with open(client.download_artifacts(version.run_id, EVALUATED_MODEL_ARTIFACT, scratch), "rb") as handle:
                    return pickle.load(handle)  # our own store's artifact, as trusted as the pyfunc's pickle
    except mlflow.exceptions.MlflowException as error:
        raise store_error(f"Cannot read version {version.version}'s model from {shown(uri)}", error, uri) from error
    return load_model(f"models:/{model_name}/{version.version}", uri)


def promote(model_name: str = DEFAULT_MODEL_NAME, metric: str = "pr_auc", uri: str | None = None,
            force: bool = False, resamples: int = RESAMPLES) -> Decision:
    """Move ``champion`` to the challenger when it earns it on the challenger's held-out leads (``models.gate``:
    no loss to a baseline beyond noise, better than the champion beyond noise, not worse calibrated).

    Refused too, without comparison: a version that training flagged as a probable leak, and one taken off
    by ``rollback``, which a plain ``promote`` would otherwise bring back at the next cron run. ``force``
    promotes the challenger whatever the comparison or the tags say, and says what it overrode.

    Both sides are scored by the model their held-out figures come from: the challenger's stored scores,
    and the champion's evaluated model (a refitted registered model has learned from rows like these).
    Rows the champion did learn from, when the two runs' data overlap, favour the champion: the gate errs on
    keeping it.
    """
    if metric not in METRICS:
        raise LeadscoreError(f"--metric {metric!r}: choose {' or '.join(METRICS)}.")
    client = read_store(uri)
    challenger = version_by_alias(client, model_name, CHALLENGER)
    if challenger is None:
        raise LeadscoreError(f"No '{CHALLENGER}' version of model {model_name!r} in {shown(uri)}: run `leadscore train` first.")
    champion = version_by_alias(client, model_name, CHAMPION)
    if champion is not None and champion.version == challenger.version:
        return Decision(ALREADY_CHAMPION, f"Version {challenger.version} is already the champion: nothing changed.")
    kept = f"Kept version {champion.version}" if champion is not None else "Promoted nothing"
    who = f"the challenger, version {challenger.version},"
    tags = challenger.tags or {}
    flags = []
    if tags.get(ROLLED_BACK_TAG):
        flags.append(f"was rolled back ({tags[ROLLED_BACK_TAG]})")
        if not force:
            return Decision(KEPT, f"{kept}: {who} {flags[-1]}. Train a new challenger, or `leadscore promote --force` "
                                  "to promote it again.")
    if tags.get(PROBABLE_LEAK_TAG):
        flags.append(f"was flagged as a probable leak when trained: {tags[PROBABLE_LEAK_TAG].rstrip('.')}")
        if not force:
            return Decision(KEPT, f"{kept}: {who} {flags[-1]}. If every feature it names is known before the cutoff, "
                                  "`leadscore promote --force` promotes it.")

    held_out = _held_out(client, challenger, uri)
    ours = _evaluated_model(client, model_name, challenger, uri)  # for the names of its id and target columns
    theirs = None
    if champion is not None:
        theirs, missing = _champion_scores(client, model_name, champion, held_out, uri)
        if missing and not force:
            raise LeadscoreError(
                f"The champion, version {champion.version}, needs features the challenger's held-out rows lack "
                f"({missing}): the two models were trained on different data and cannot be compared. "
                "`leadscore promote --force` promotes the challenger without this comparison."
            )
        if missing:
            flags.append(f"could not be compared with the champion, which needs {missing}")
    verdict = judge(held_out, ours.target_column, ours.id_column, theirs,
                    f"the champion (version {champion.version})" if champion is not None else "", metric, resamples)
    refusals = [*flags, *verdict.refusals]
    if refusals and not force:
        return Decision(KEPT, f"{kept}: {who} {_and(refusals)}. {verdict.figures} "
                              "`leadscore promote --force` promotes it anyway.", verdict.differences)
    _set_champion(client, model_name, challenger.version, previous=champion.version if champion is not None else None)
    if refusals:
        done = f"Promoted version {challenger.version}" + (f" over version {champion.version}" if champion is not None else "")
        return Decision(PROMOTED, f"{done}, forced: it {_and(refusals)}. {verdict.figures}", verdict.differences)
    if champion is None:
        return Decision(PROMOTED, f"Version {challenger.version} is the first champion: it loses to no baseline "
                                  f"beyond noise. {verdict.figures}", verdict.differences)
    return Decision(PROMOTED, f"Promoted version {challenger.version} over version {champion.version}: better than "
                              f"the champion beyond noise, and losing to no baseline. {verdict.figures}", verdict.differences)


def _champion_scores(client, model_name: str, champion, held_out: pd.DataFrame, uri: str | None):
    """The champion's scores of the challenger's held-out rows, or None and the features it lacks there."""
    model = _evaluated_model(client, model_name, champion, uri)
    missing = [feature for feature in model.features if feature not in held_out.columns]
    if missing:
        return None, ", ".join(missing[:5]) + (", …" if len(missing) > 5 else "")
    return model.predict_proba(held_out), ""


def _and(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"


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
    return Decision(ROLLED_BACK, f"Rolled back: version {previous} is the champion again (was version {current.version}).")
