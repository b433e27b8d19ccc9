"""Stage: learn a calibrated conversion model from a feature table, and judge it against today's baselines.

The steps, in order (see ``models.split`` for the roles of the rows):

1. choose the features: the table's registry, minus sales-side features and
   anything excluded, then refuse any feature that predicts the label almost
   perfectly on its own;
2. tune each candidate (LightGBM's trees, the logistic regression's penalty)
   by predicting the validation slice from the fitting rows;
3. predict every fold out of fold (``models.split``: walk-forward folds over
   the training rows with time, repeated stratified folds without), with and
   without extra weight on recent rows; each fold is a deployment period, so
   candidates are compared by their mean AUC over folds (a pooled AUC would
   mix the periods' base rates into the ranking); a blend of the two is
   weighed the same way; the best wins, and a blend or recency weighting
   must earn it. With time, a candidate beats the logistic regression only
   if it leads it steadily, fold after fold: trees that win on average but
   lose whenever the world shifts would lose in production;
4. fit the calibrator (the model's own log-odds, sigmoid or centred
   isotonic: ``models.calibration``) on the winner's out-of-fold
   predictions, then refit the winner on all training rows;
5. score the newest, held-out rows with the model and both baselines (a plain
   logistic regression and the hand-set points teams use today);
6. explain them: which fields move the scores (importances), the reference
   for the fit and engagement sub-scores, and the MQL and SQL thresholds
   chosen by the configured rule, with each tier's volume and conversion;
7. keep the reference distributions that scoring runs are checked against
   for drift (``models.drift``): every lead open at the held-out cutoffs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from leadscore.crm.history import LEAD_NAME_COLUMNS, CrmHistory
from leadscore.errors import LeadscoreError
from leadscore.features.build import crm_feature_table
from leadscore.features.crm_features import CRM_FEATURES
from leadscore.features.registry import FeatureRegistry
from leadscore.features.snapshots import open_leads_at
from leadscore.features.table import FeatureTable
from leadscore.features.timeline import seconds
from leadscore.models import metrics as scoring
from leadscore.models.candidates import LightGBMCandidate, LogisticCandidate, lightgbm_params
from leadscore.models.choice import (
    candidate_weights, choose_recency, choose_strength, newest_fold_note, validation_table,
)
from leadscore.models.drift import DriftReference
from leadscore.models.encoding import FrameEncoder
from leadscore.models.explain import Explainer
from leadscore.models.importance import importance_table
from leadscore.models.guards import (
    LEAK_AUC, leaky_features, require_both_outcomes, require_disjoint, require_positives, suspect_note,
)
from leadscore.models.model import LeadScoringModel, Member
from leadscore.models.rules import HandSetScoring
from leadscore.models.split import Split, forward_split, stratified_split
from leadscore.models.tiers import SubScores, TierConfig, choose_tiers, tier_report
from leadscore.progress import Progress

CANDIDATES = ("lightgbm", "logistic", "blend")
RECENCY_HALF_LIFE = 0.25  # share of the training rows' time span after which a row counts half
SUBSAMPLE_ROWS = 200_000  # above this, tuning and walk-forward models learn from all positives and a weighted sample
OPEN_STAGES = ("lead", "mql", "sql", "opportunity")
EXPLAINED_ROWS = 50_000  # held-out rows whose contributions give the importances and the sub-score reference
DRIFT_REFERENCE_ROWS = 200_000  # rows the drift reference is fitted on: deciles and shares need no more
MODEL_SCORE = "score: leadscore model"
HANDSET_POINTS = "score: Hand-set points (raw)"


ROWS_PER_LEVEL_COUNT = 5_000  # a category level keeps its own code when seen once per this many rows


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that shapes a training run; every field is logged with it."""

    horizon_days: int = 90
    min_positives: int = 100
    leakage_auc: float = LEAK_AUC  # a feature above it on its own is refused (see guards.SUSPECT_AUC)
    allow_leaky: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    candidates: tuple[str, ...] = CANDIDATES
    test_share: float = 0.2
    validation_share: float = 0.2
    folds: int = 5
    min_category_count: int | None = None  # None: by the training rows, see category_min_count
    seed: int = 42
    tiers: TierConfig = TierConfig()
    refit: bool = True  # after evaluation, the registered model learns from every row, the held-out ones too

    def __post_init__(self) -> None:
        unknown = set(self.candidates) - set(CANDIDATES)
        if unknown or not self.candidates:
            raise LeadscoreError(f"--candidates: choose among {', '.join(CANDIDATES)} (got {', '.join(self.candidates)}).")
        if not 0 < self.test_share < 0.5 or not 0 < self.validation_share < 0.5:
            raise LeadscoreError("--test-share and --validation-share must lie between 0 and 0.5.")


@dataclass
class Evaluation:
    """How the model and the baselines score the held-out rows."""

    metrics: pd.DataFrame  # one row per scorer
    lift: dict[str, pd.DataFrame]
    deciles: dict[str, pd.DataFrame]
    reliability: dict[str, pd.DataFrame]
    gains: dict[str, pd.DataFrame]


@dataclass
class HeldOutInsight:
    """What the explanations of the held-out leads say: for the report, MLflow and the CLI."""

    rows: np.ndarray  # positions in ``held_out`` that were explained (a sample when there are many)
    points: np.ndarray  # (rows, features) contributions in percentage points
    importances: pd.DataFrame
    tiers: pd.DataFrame  # volume and conversion per tier, next to the hand-set MQLs


@dataclass
class TrainingResult:
    model: LeadScoringModel
    table: FeatureTable
    split: Split
    config: TrainingConfig
    validation: pd.DataFrame  # one row per candidate: walk-forward AUC, PR AUC, calibration Brier
    evaluation: Evaluation
    held_out: pd.DataFrame  # the held-out rows: id, time, features, target, every scorer's output
    fingerprint: dict
    insight: HeldOutInsight
    notes: list[str] = field(default_factory=list)
    # The model every held-out figure comes from, when ``model`` was refitted on every row after evaluation.
    evaluated_model: LeadScoringModel | None = None


# --- the training table from a CRM ------------------------------------------------------


def monthly_cutoffs(history: CrmHistory, horizon_days: int, every_months: int = 1) -> list[datetime]:
    """First days of months from the first lead's next month, while cutoff + horizon has passed."""
    first = pd.Timestamp(history.leads["created_at"].min()).to_period("M") + 1
    last = pd.Timestamp(history.as_of) - pd.Timedelta(days=horizon_days)
    months = pd.period_range(first, last.to_period("M"), freq=f"{every_months}M")
    return [month.to_timestamp().to_pydatetime() for month in months if month.to_timestamp() <= last]


def crm_training_table(
    history: CrmHistory,
    horizon_days: int = 90,
    every_months: int = 1,
    stages: tuple[str, ...] = OPEN_STAGES,
    registry: FeatureRegistry | None = None,
    progress: Progress = Progress(),
) -> FeatureTable:
    """Each lead open at each monthly cutoff is one row, labelled by conversion within the horizon.

    ``stages`` narrows the rows to leads in those stages at the cutoff (for
    example lead and mql only, for a model of leads marketing still owns).

    Cutoffs whose horizon has not fully passed are left out, so leads that are
    simply recent are never counted as failures.
    """
    cutoffs = monthly_cutoffs(history, horizon_days, every_months)
    if len(cutoffs) < 4:
        raise LeadscoreError(
            f"The CRM's history (to {pd.Timestamp(history.as_of):%Y-%m-%d}) allows only {len(cutoffs)} monthly "
            f"cutoffs with a complete {horizon_days}-day horizon; training needs at least 4. Load more history "
            "or shorten --horizon-days."
        )
    pairs = pd.concat([open_leads_at(history, cutoff) for cutoff in cutoffs], ignore_index=True)
    registry = registry or CRM_FEATURES
    table = crm_feature_table(history, pairs, horizon_days, registry, source="CRM", progress=progress)
    keep = table.frame["stage_at_cutoff"].isin(stages).to_numpy()
    names = history.leads.set_index("id").reindex(columns=list(LEAD_NAME_COLUMNS))
    frame = table.frame[keep].reset_index(drop=True)
    frame = frame.join(names.astype("string"), on="lead_id")
    note = (
        f"{len(frame):,} rows: leads in stage {' or '.join(stages)} at {len(cutoffs)} monthly cutoffs from "
        f"{cutoffs[0]:%Y-%m-%d} to {cutoffs[-1]:%Y-%m-%d}, each labelled by conversion within {horizon_days} days."
    )
    return FeatureTable(
        frame=frame,
        registry=table.registry,
        id_column="lead_id",
        target_column="converted",
        time_column="cutoff",
        source=f"CRM, monthly cutoffs {cutoffs[0]:%Y-%m} to {cutoffs[-1]:%Y-%m}",
        notes=(note, *[n for n in table.notes if "label may still change" not in n]),
        name_columns=LEAD_NAME_COLUMNS,
    )


# --- training ---------------------------------------------------------------------------


def category_min_count(config: TrainingConfig, rows: int) -> int:
    """How often a category level must be seen to keep its own code; rarer ones share "(other)".

    Grouping bounds the width of the logistic regression's one-hot columns on large tables; LightGBM
    sets its own floor (``min_data_per_group``), and the logistic regression's penalty already shrinks
    a level seen a few times. On small tables those few rows are often all there is: an Olist landing
    page seen under ten times in 5,000 leads still told converting pages apart (held-out AUC 0.649 with
    levels grouped below 10, 0.667 with every level kept, the one-hot default's figure). So one row in
    5,000 is the floor: every level on tables under 10,000 rows, ten rows from 50,000 rows.
    """
    if config.min_category_count is not None:
        return config.min_category_count
    return int(np.clip(rows // ROWS_PER_LEVEL_COUNT, 1, 10))


def select_features(table: FeatureTable, config: TrainingConfig) -> tuple[FeatureRegistry, list[str]]:
    """The registry's features minus exclusions and sales-side ones (unless allowed), with notes saying so."""
    unknown = [name for name in (*config.exclude, *config.allow_leaky) if name not in table.registry]
    if unknown:
        raise LeadscoreError(
            f"{', '.join(map(repr, unknown))}: no such feature in the table. Its features are: "
            f"{', '.join(table.registry.names[:30])}{' ...' if len(table.registry) > 30 else ''}."
        )
    notes = []
    sales_side = [s.name for s in table.registry if s.sales_side and s.name not in config.allow_leaky]
    if sales_side:
        notes.append(
            f"Left out {len(sales_side)} sales-side features ({'; '.join(table.registry.label(n) for n in sales_side[:3])}"
            f"{' ...' if len(sales_side) > 3 else ''}): they are recorded only after a lead is sales-qualified "
            "and would leak the outcome. Allow one with --allow-leaky and its name from the feature registry "
            "(feature_registry.csv in the run)."
        )
    dropped = set(sales_side) | set(config.exclude)
    return table.registry.select(n for n in table.registry.names if n not in dropped), notes


def _split(table: FeatureTable, config: TrainingConfig, test_rows: np.ndarray | None) -> tuple[Split, list[str]]:
    if test_rows is not None:
        split = stratified_split(table.target, config.test_share, config.validation_share, config.folds, config.seed, test_rows)
        return split, ["The held-out rows were given (a cross-validation fold); the rest was split at random."]
    if table.time_column:
        horizon = config.horizon_days if table.time_column == "cutoff" else 0
        split = forward_split(
            table.frame[table.time_column], table.frame[table.id_column], horizon,
            config.test_share, config.validation_share, config.folds,
        )
        return split, []
    split = stratified_split(table.target, config.test_share, config.validation_share, config.folds, config.seed)
    return split, ["No time column: rows were split at random, stratified by the target, not forward in time."]


def _fingerprint(table: FeatureTable, registry: FeatureRegistry) -> dict:
    frame = table.frame
    schema = [(name, registry[name].kind, str(frame[name].dtype)) for name in registry.names]
    fingerprint = {
        "rows": int(len(frame)),
        "positives": int(table.target.sum()),
        "features": len(registry),
        "schema_hash": hashlib.sha256(json.dumps(schema).encode()).hexdigest()[:16],
        "source": table.source,
    }
    if table.time_column:
        times = pd.to_datetime(frame[table.time_column])
        fingerprint["time_from"] = f"{times.min():%Y-%m-%d}"
        fingerprint["time_to"] = f"{times.max():%Y-%m-%d}"
    return fingerprint


def train_model(
    table: FeatureTable,
    config: TrainingConfig = TrainingConfig(),
    rules: HandSetScoring | None = None,
    progress: Progress = Progress(),
    test_rows: np.ndarray | None = None,
) -> TrainingResult:
    """Learn the model from ``table`` and evaluate it on the newest held-out rows.

    ``test_rows`` replaces the held-out slice by given rows, for cross-validation.
    """
    registry, notes = select_features(table, config)
    notes = [*table.notes, *notes]
    y = table.target.to_numpy(dtype=int)
    split, split_notes = _split(table, config, test_rows)
    notes += split_notes
    require_positives(y[split.training], config.min_positives, "training rows")
    require_disjoint(table.frame[table.id_column], split.training, split.test)
    require_both_outcomes(y, split.test, "held-out rows", "no way to measure a model on them")
    require_both_outcomes(y, split.validation, "validation rows", "no way to compare candidates on them")
    require_both_outcomes(y, split.fit, "oldest rows (used to tune the candidates)", "a model cannot learn from one outcome")

    features = registry.names
    numeric = tuple(n for n in features if registry[n].kind == "numeric")
    categorical = tuple(n for n in features if registry[n].kind == "categorical")
    encoder = FrameEncoder(numeric, categorical, category_min_count(config, len(split.training))).fit(
        table.frame.iloc[split.training])
    X = encoder.transform(table.frame)
    alone = leaky_features(X.iloc[split.fit], y[split.fit], config.leakage_auc, config.allow_leaky, registry)
    suspects = suspect_note(alone, config.leakage_auc, config.allow_leaky, registry)
    notes += [suspects] if suspects else []

    times = seconds(table.frame[table.time_column]) if split.forward else None
    # A fold whose learning rows hold one outcome only (early walk-forward folds of a rare outcome) teaches nothing.
    folds = [(rows, learn) for rows, learn in zip(split.folds, split.fold_training) if 0 < y[learn].sum() < len(learn)]
    if not folds:
        raise LeadscoreError(
            f"No fold of the training rows has both outcomes to learn from ({int(y[split.training].sum()):,} converted "
            f"of {len(split.training):,}): add history, or shorten --horizon-days."
        )
    with progress.task("Choosing the model", total=len(folds) + 2) as advance:
        rng = np.random.default_rng(config.seed)
        fit_rows, fit_weight = _subsample(split.fit, y, rng)
        fold_rows = [(*_subsample(learn, y, rng), fold) for fold, learn in folds]
        tuned, margins = _tune(X, y, split.validation, fit_rows, fit_weight, fold_rows, config, numeric, categorical)
        advance(1)
        variants = [(name, recency) for name in tuned for recency in ((False, True) if times is not None else (False,))
                    if (name, recency) not in margins]
        margins.update({variant: [] for variant in variants})
        for rows, weight, fold in fold_rows:
            for name, recency in variants:
                fitted = tuned[name].fit(X.iloc[rows], y[rows], _weights(times, rows, weight, recency))
                margins[(name, recency)].append(tuned[name].margin(fitted, X.iloc[fold]))
            advance(1)
        fold_y = [y[fold] for fold, _ in folds]
        recency = choose_recency(margins, fold_y, tuned)
        candidates = {name: margins[(name, recency[name])] for name in tuned}
        weights = candidate_weights(candidates, fold_y, config.candidates)
        validation, calibrators = validation_table(weights, candidates, fold_y, recency, config.seed, split.forward)
        notes += newest_fold_note(validation)
        members_weights = weights[validation.index[0]]
        calibrator = calibrators[validation.index[0]]
        if not calibrator.signal_:
            notes.append(
                f"Out of fold, the chosen model ranked no better than chance (mean fold AUC "
                f"{validation['roc_auc'].iloc[0]:.3f}): on this table the past did not predict the next period. Its "
                "probabilities are its own fit's, not calibrated on out-of-fold evidence (a calibration fitted to no "
                "signal gives every lead the same probability); judge it on the held-out figures."
            )
        training = split.training
        members = tuple(
            Member(
                tuned[name],
                tuned[name].fit(X.iloc[training], y[training], _weights(times, training, None, recency[name])),
                weight,
            )
            for name, weight in members_weights.items()
        )
        advance(1)

    model = LeadScoringModel(
        registry=registry,
        encoder=encoder,
        members=members,
        calibrator=calibrator,
        id_column=table.id_column,
        target_column=table.target_column,
        time_column=table.time_column,
        reading=table.reading,
    )
    fingerprint = _fingerprint(table, registry)
    model.summary = {
        "trained_at": datetime.now().isoformat(timespec="seconds"),
        "kind": model.kind,
        "calibration": calibrator.method_,
        "calibration_cv_brier": calibrator.cv_brier_,
        "calibration_signal": bool(calibrator.signal_),
        "split": split.description,
        "candidates": {name: {**c.describe(), "recency_weighted": recency[name]} for name, c in tuned.items()},
        "weights": members_weights,
        "recency_half_life": RECENCY_HALF_LIFE if any(recency[name] for name in members_weights) else None,
        "config": asdict(config),
        "fingerprint": fingerprint,
    }

    with progress.task("Scoring the held-out leads", total=1) as advance:
        held_out, evaluation, baseline_notes = _evaluate(model, table, X, y, split, numeric, categorical, rules)
        advance(1)
    insight = _explain_held_out(model, held_out, config, rules, progress)
    model.drift = _drift_reference(model, table, split, insight, config.seed)
    evaluated = None
    if config.refit:
        with progress.task("Refitting on every row", total=1) as advance:
            evaluated, model = model, _refit_on_every_row(model, table, recency, split)
            # Scored by the refitted model itself: its step-wise calibrated scores fall on the calibrator's steps in
            # other proportions than the evaluated model's, and a reference from that one put the score's PSI on
            # fresh, undrifted leads at 0.22 to 0.25, at the holding level (0.01 to 0.02 against its own).
            model.drift = _drift_reference(model, table, split, insight, config.seed)
            advance(1)
        notes.append(
            f"The registered model was refitted on all {len(table.frame):,} rows after evaluation, with the settings "
            f"chosen; every held-out figure comes from the same model trained on the {len(split.training):,} "
            "training rows only (--no-refit registers that one)."
        )
    return TrainingResult(
        model=model,
        evaluated_model=evaluated,
        table=table,
        split=split,
        config=config,
        validation=validation,
        evaluation=evaluation,
        held_out=held_out,
        fingerprint=fingerprint,
        insight=insight,
        notes=[*notes, *baseline_notes, f"Tiers by {model.tiers.description}."],
    )


def _refit_on_every_row(evaluated: LeadScoringModel, table: FeatureTable, recency: dict[str, bool],
                        split: Split) -> LeadScoringModel:
    """The evaluated model's choices refitted on every row, as PyCaret's ``finalize_model`` does: candidates,
    tuned settings, blend weights and recency weighting, on an encoder that has seen every row.

    What was decided on held-out predictions stays as decided: the calibrator (fitted on walk-forward
    predictions, which a refit cannot provide again), tiers, sub-score reference. With a forward split
    the held-out rows are the newest, the most like the leads the model will score: leaving them out of
    the registered model would leave out the most relevant fifth of the history.
    """
    y = table.target.to_numpy(dtype=int)
    rows = np.arange(len(y))
    numeric, categorical = evaluated.encoder.numeric, evaluated.encoder.categorical
    encoder = FrameEncoder(numeric, categorical, evaluated.encoder.min_count).fit(table.frame)
    X = encoder.transform(table.frame)
    times = seconds(table.frame[table.time_column]) if split.forward else None
    training_rows = len(split.training)
    # The members were built in the order of the weights the summary records, so the names pair with them.
    members = tuple(
        Member(member.candidate, member.candidate.fit(X, y, _weights(times, rows, None, recency[name])), member.weight)
        for name, member in zip(evaluated.summary["weights"], evaluated.members)
    )
    summary = {**evaluated.summary, "refit": {"rows": len(y), "evaluated_model_rows": training_rows}}
    return replace(evaluated, encoder=encoder, members=members, summary=summary)


def _subsample(rows: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """All positives and a sample of negatives weighted back up, when ``rows`` is large.

    Choosing between candidates needs their ranking, not a million rows each
    time; the weights keep the margins' level right for calibration.
    """
    if len(rows) <= SUBSAMPLE_ROWS:
        return rows, None
    positive = rows[y[rows] == 1]
    negative = rows[y[rows] == 0]
    keep = max(SUBSAMPLE_ROWS - len(positive), 1)
    if keep >= len(negative):
        return rows, None
    sampled = np.sort(rng.choice(negative, keep, replace=False))
    chosen = np.concatenate([positive, sampled])
    order = np.argsort(chosen)
    weight = np.concatenate([np.ones(len(positive)), np.full(keep, len(negative) / keep)])
    return chosen[order], weight[order]


def _weights(times: np.ndarray | None, rows: np.ndarray, weight: np.ndarray | None, recency: bool):
    """Row weights: the subsampling weights, times a halving every ``RECENCY_HALF_LIFE`` of the span when asked."""
    if not recency:
        return weight
    at = times[rows]
    span = max(int(at.max() - at.min()), 1)
    decay = 0.5 ** ((at.max() - at) / (RECENCY_HALF_LIFE * span))
    return decay if weight is None else decay * weight


def _tune(X, y, validation, fit_rows, fit_weight, fold_rows, config: TrainingConfig, numeric, categorical):
    """The candidates with their settings, and the fold margins already computed on the way (by variant).

    LightGBM's trees are counted on the validation slice (early stopping needs one); the logistic
    regression's penalty is chosen on every fold, whose margins at that penalty are kept.
    """
    tuned, margins = {}, {}
    if {"lightgbm", "blend"} & set(config.candidates):
        tuned["lightgbm"] = LightGBMCandidate(lightgbm_params(len(fit_rows), config.seed)).tune(
            X.iloc[fit_rows], y[fit_rows], X.iloc[validation], y[validation], fit_weight
        )
    if {"logistic", "blend"} & set(config.candidates):
        tuned["logistic"], margins[("logistic", False)] = choose_strength(
            LogisticCandidate(numeric, categorical, seed=config.seed), X, y, fold_rows)
    return tuned, margins


def _evaluate(model, table, X, y, split, numeric, categorical, rules):
    """Model, plain logistic regression and hand-set points on the held-out rows."""
    train, test = split.training, split.test
    scores = {"leadscore model": model.calibrator.predict(model.encoded_margin(X.iloc[test]))}
    notes = []
    # The baseline a team would fit today: one-hot logistic regression with scikit-learn's defaults.
    plain = LogisticCandidate(numeric, categorical, strength=1.0, log_skewed=False, solver="lbfgs")
    scores["Logistic regression"] = plain.probability(plain.fit(X.iloc[train], y[train]), X.iloc[test])
    points = None
    if rules is not None:
        missing = [rule.feature for rule in rules.rules if rule.feature not in table.frame.columns]
        if missing:
            notes.append(f"Hand-set scoring '{rules.name}' skipped: the table has no {', '.join(sorted(set(missing)))}.")
        else:
            all_points = rules.score(table.frame)
            # Points are not probabilities: a logistic fit on the training rows maps them to a conversion rate.
            mapping = LogisticRegression(C=1e6).fit(all_points[train].reshape(-1, 1), y[train])
            points = all_points[test]
            scores["Hand-set points"] = mapping.predict_proba(points.reshape(-1, 1))[:, 1]
    y_test = y[test]
    rows, lift, deciles, reliability, gains = {}, {}, {}, {}, {}
    for name, probability in scores.items():
        ranking = points if name == "Hand-set points" else probability
        rows[name] = {**scoring.probability_metrics(y_test, probability), **scoring.ranking_metrics(y_test, ranking)}
        lift[name] = scoring.lift_table(y_test, ranking)
        deciles[name] = scoring.decile_table(y_test, ranking)
        reliability[name] = scoring.reliability_curve(y_test, probability)
        gains[name] = scoring.gains_curve(y_test, ranking)
    held_out = table.frame.iloc[test].reset_index(drop=True).copy()
    for name, probability in scores.items():
        held_out[f"score: {name}"] = probability
    if points is not None:
        held_out["score: Hand-set points (raw)"] = points
    evaluation = Evaluation(pd.DataFrame.from_dict(rows, orient="index"), lift, deciles, reliability, gains)
    return held_out, evaluation, notes



def _explain_held_out(model, held_out, config, rules, progress) -> HeldOutInsight:
    """Sub-score reference, tier thresholds, tier volumes and importances, all from the held-out leads.

    Sets ``model.subscores`` and ``model.tiers``, and adds each held-out
    row's tier to ``held_out``.
    """
    rng = np.random.default_rng(config.seed)
    rows = np.arange(len(held_out))
    if len(rows) > EXPLAINED_ROWS:
        rows = np.sort(rng.choice(rows, EXPLAINED_ROWS, replace=False))
    explanations = Explainer(model).explain(held_out.iloc[rows], progress, keep_contributions=True)
    model.subscores = SubScores.fit(explanations.fit_log_odds, explanations.engagement_log_odds)

    probability = held_out[MODEL_SCORE].to_numpy()
    leads = held_out[model.id_column]
    times = held_out[model.time_column] if model.time_column else None
    model.tiers = choose_tiers(probability, leads, times, config.tiers, model.calibrator)
    held_out["tier: leadscore model"] = model.tiers.assign(probability)
    handset = held_out[HANDSET_POINTS].to_numpy() if HANDSET_POINTS in held_out.columns else None
    tiers = tier_report(
        probability, held_out[model.target_column].to_numpy(dtype=int), leads, times, model.tiers,
        config.tiers.leads_per_week, handset, rules.mql_threshold if rules is not None else None,
    )
    importances = importance_table(
        explanations.contributions, model.features, model.registry, explanations.points_per_log_odds
    )
    return HeldOutInsight(rows, explanations.points(explanations.contributions), importances, tiers)


def _drift_reference(model, table: FeatureTable, split: Split, insight: HeldOutInsight, seed: int) -> DriftReference:
    """The reference scoring runs are measured against for drift: every row at the held-out moments.

    A forward split holds out only leads the model never learned from, so its
    held-out rows are the young leads (none older than the gap since the last
    training cutoff), while a nightly run scores every open lead, old ones too.
    Every row at the held-out cutoffs is that population as the newest
    cutoffs saw it, scored by the delivered model. Training rows would be
    older still, and the channel mix drifts. A random split's held-out rows are
    already a sample of the whole population. Each feature's weight is its
    mean absolute contribution, in points, on the explained held-out leads.
    """
    rows = split.test
    if split.forward:
        times = seconds(table.frame[table.time_column])
        rows = np.flatnonzero(times >= times[split.test].min())
    if len(rows) > DRIFT_REFERENCE_ROWS:
        rows = np.sort(np.random.default_rng(seed).choice(rows, DRIFT_REFERENCE_ROWS, replace=False))
    frame = table.frame.iloc[rows]
    weight = np.abs(insight.points).mean(axis=0)
    share = weight / weight.sum() if weight.sum() > 0 else np.zeros(len(weight))
    return DriftReference.fit(
        frame[model.features], model.predict_proba(frame), model.registry, dict(zip(model.features, share)),
        model.encoder.seen_, frame[model.id_column],
    )
