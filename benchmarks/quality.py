"""Quality as a user measures it: split outside the tool, train with the CLI, predict with the registered model.

    python benchmarks/quality.py                            # every table, 5 seeds where there is no time
    python benchmarks/quality.py --only bank-marketing,caravan --seeds 3

For each table of ``benchmarks/tables.py`` and each split (five stratified
80/20 splits for tables without time, the newest 20 % for tables with time):

1. the training part is written to a CSV and given to ``leadscore train`` with
   the column roles a user would give (id, target, time, leaky columns dropped);
2. ``leadscore predict`` scores the other part, without its outcomes, with the
   version just registered (``models:/NAME@challenger``);
3. LightGBM with its default settings and scikit-learn's default logistic
   regression on one-hot categories and standardised numbers are fitted on the
   same training rows and score the same rows.

It prints, per table, the mean AUC and Brier score of each, the difference
between leadscore and the best default with a 95 % paired bootstrap interval
(test rows resampled within each split, the same rows for both scorers), and
whether the table meets the bar: AUC at least the best default's minus 0.005,
Brier at most the best default's plus 0.002. ``OUT/quality.json`` keeps every
split's figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss, roc_auc_score

sys.path.insert(0, str(Path(__file__).parent))
import tables  # noqa: E402  (a sibling module: benchmarks/ is not a package)

AUC_BAR = 0.005
BRIER_BAR = 0.002
BOOTSTRAP = 1_000
LEADSCORE = Path(sys.executable).parent / "leadscore"


def as_pandas_reads(X: pd.DataFrame) -> pd.DataFrame:
    """Numbers as numbers, as ``pandas.read_csv`` reads a file: the loaders keep text as text, and a default
    fitted on that would one-hot encode every number (on bank marketing, every value of the Euribor rate)."""
    parsed = {}
    for column in X.columns:
        if not pd.api.types.is_numeric_dtype(X[column]):
            try:
                parsed[column] = pd.to_numeric(X[column])
            except (TypeError, ValueError):
                pass
    return X.assign(**parsed)


def default_scores(table: tables.Table, learn: np.ndarray, test: np.ndarray) -> dict[str, np.ndarray]:
    """LightGBM's defaults and a default one-hot logistic regression, as a team would fit them today."""
    import lightgbm as lgb
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    X = table.frame.drop(columns=[table.target, table.id, *table.drop, *([table.time] if table.time else [])])
    if table.na_values:
        X = X.replace(list(table.na_values), np.nan)
    X = as_pandas_reads(X)
    numeric = [c for c in X.columns if pd.api.types.is_numeric_dtype(X[c])]
    text = [c for c in X.columns if c not in numeric]
    as_category = X.assign(**{c: X[c].astype(str).astype("category") for c in text})
    trees = lgb.LGBMClassifier(verbose=-1).fit(as_category.iloc[learn], table.y[learn])
    as_text = X.assign(**{c: X[c].astype(object).where(X[c].notna(), "missing").astype(str) for c in text})
    columns = ColumnTransformer([
        ("numbers", make_pipeline(SimpleImputer(), StandardScaler()), numeric),
        ("categories", OneHotEncoder(handle_unknown="ignore"), text),
    ])
    logistic = make_pipeline(columns, LogisticRegression(max_iter=1_000)).fit(as_text.iloc[learn], table.y[learn])
    return {
        "LightGBM defaults": trees.predict_proba(as_category.iloc[test])[:, 1],
        "one-hot logistic": logistic.predict_proba(as_text.iloc[test])[:, 1],
    }


def leadscore_scores(table: tables.Table, learn: np.ndarray, test: np.ndarray, folder: Path) -> tuple[np.ndarray, dict]:
    """Train with the CLI on the training part, predict the test part with the registered challenger."""
    store = f"sqlite:///{folder / 'mlflow.db'}"
    table.frame.iloc[learn].to_csv(folder / "train.csv", index=False)
    table.frame.iloc[test].drop(columns=[table.target]).to_csv(folder / "leads.csv", index=False)
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "250"}
    began = time.perf_counter()
    trained = subprocess.run(
        [str(LEADSCORE), "train", "--data", str(folder / "train.csv"), *table.train_options(),
         "--tracking-uri", store, "--model-name", "bench"],
        capture_output=True, text=True, env=env, cwd=folder,
    )
    if trained.returncode:
        raise SystemExit(f"leadscore train failed on {table.name}:\n{trained.stdout[-3000:]}\n{trained.stderr[-3000:]}")
    seconds = time.perf_counter() - began
    predicted = subprocess.run(
        [str(LEADSCORE), "predict", "--data", str(folder / "leads.csv"), "--out", str(folder / "scores.csv"),
         "--model", "models:/bench@challenger", "--tracking-uri", store],
        capture_output=True, text=True, env=env, cwd=folder,
    )
    if predicted.returncode:
        raise SystemExit(f"leadscore predict failed on {table.name}:\n{predicted.stdout[-3000:]}\n{predicted.stderr[-3000:]}")
    scores = pd.read_csv(folder / "scores.csv")
    from leadscore.pipelines.registry import load_model

    chosen = load_model("models:/bench@challenger", store).kind  # from the registry, not from the printed table
    return scores["probability"].to_numpy(), {"train_seconds": round(seconds, 1), "chosen": chosen}


def paired_interval(splits: list[dict], metric, reference: str, seed: int = 42) -> list[float]:
    """95 % bootstrap interval of mean(leadscore - reference) over the splits, test rows resampled within each."""
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(BOOTSTRAP):
        differences = []
        for split in splits:
            y = split["y"]
            rows = rng.integers(0, len(y), len(y))
            if y[rows].min() == y[rows].max():
                continue
            differences.append(metric(y[rows], split["leadscore"][rows]) - metric(y[rows], split[reference][rows]))
        if differences:
            draws.append(np.mean(differences))
    return [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))]


def measure(name: str, seeds: int) -> dict:
    table = tables.load(name)
    splits = []
    for label, learn, test in tables.splits(table, seeds):
        with tempfile.TemporaryDirectory(prefix="leadscore-quality-") as scratch:
            probability, run = leadscore_scores(table, learn, test, Path(scratch))
        split = {"label": label, "y": table.y[test], "leadscore": probability, **default_scores(table, learn, test), **run}
        splits.append(split)
        print(f"  {name} {label}: leadscore AUC {roc_auc_score(split['y'], probability):.4f} "
              f"({run['chosen']}, {run['train_seconds']:.0f} s)", flush=True)
    scorers = ("leadscore", "LightGBM defaults", "one-hot logistic")
    auc = {s: float(np.mean([roc_auc_score(p["y"], p[s]) for p in splits])) for s in scorers}
    brier = {s: float(np.mean([brier_score_loss(p["y"], p[s]) for p in splits])) for s in scorers}
    best_auc = max(scorers[1:], key=auc.get)
    best_brier = min(scorers[1:], key=brier.get)
    return {
        "table": name,
        "rows": len(table.frame),
        "base_rate": float(table.y.mean()),
        "protocol": "forward, newest 20 %" if table.protocol == "forward" else f"{seeds} stratified 80/20 splits",
        "auc": auc,
        "brier": brier,
        "best_auc_default": best_auc,
        "best_brier_default": best_brier,
        "auc_difference": auc["leadscore"] - auc[best_auc],
        "auc_difference_95": paired_interval(splits, roc_auc_score, best_auc),
        "brier_difference": brier["leadscore"] - brier[best_brier],
        "brier_difference_95": paired_interval(splits, brier_score_loss, best_brier),
        "meets_bar": bool(auc["leadscore"] >= auc[best_auc] - AUC_BAR and brier["leadscore"] <= brier[best_brier] + BRIER_BAR),
        "chosen": [split["chosen"] for split in splits],
        "train_seconds": [split["train_seconds"] for split in splits],
        "splits": [{"label": s["label"], **{k: float(roc_auc_score(s["y"], s[k])) for k in scorers}} for s in splits],
    }


def markdown(reports: list[dict]) -> str:
    lines = [
        "| table | rows | base rate | protocol | leadscore AUC | best default AUC | difference (95 %) "
        "| leadscore Brier | best default Brier | difference (95 %) | bar met |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in reports:
        lines.append(
            f"| {r['table']} | {r['rows']:,} | {r['base_rate']:.1%} | {r['protocol']} | {r['auc']['leadscore']:.4f} "
            f"| {r['auc'][r['best_auc_default']]:.4f} ({r['best_auc_default']}) | {r['auc_difference']:+.4f} "
            f"({r['auc_difference_95'][0]:+.3f} to {r['auc_difference_95'][1]:+.3f}) | {r['brier']['leadscore']:.4f} "
            f"| {r['brier'][r['best_brier_default']]:.4f} | {r['brier_difference']:+.4f} "
            f"({r['brier_difference_95'][0]:+.4f} to {r['brier_difference_95'][1]:+.4f}) | {'yes' if r['meets_bar'] else 'no'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", help=f"comma-separated tables among {', '.join(tables.LOADERS)}")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(tables.LOADERS)
    warnings.filterwarnings("ignore")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / ("quality.json" if not args.only else f"quality_{args.only.replace(',', '_')}.json")
    reports = []
    for name in names:
        began = time.perf_counter()
        print(f"{name}:", flush=True)
        report = measure(name, args.seeds)
        report["seconds"] = round(time.perf_counter() - began, 1)
        reports.append(report)
        # Written after every table: a long run stopped halfway keeps what it measured.
        path.write_text(json.dumps({
            "measured_at": datetime.now().isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "seeds": args.seeds,
            "tables": reports,
        }, indent=2))
        print(markdown(reports[-1:]), flush=True)
    print(markdown(reports))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
