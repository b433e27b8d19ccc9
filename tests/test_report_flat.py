"""The marketing report of a model trained on a flat table with a labels file: business words, named leads, no collapse."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.pipelines.registry import load_model
from report_checks import check_marketing_report, marketing_part, row_cells, visible_text

runner = CliRunner()
LABELS = """
name: [Company, Job title]
columns:
  web_visits: {label: Website visits, family: engagement}
  pricing_views: {label: Pricing-page views, family: engagement}
  webinars: {label: Webinars attended, family: engagement}
  employees: {label: Company size (employees), family: fit}
  sector: {label: Industry, family: fit}
  ref_score: {label: Partner referral score, family: fit}
"""


def _flat_table(rows: int = 3_000, seed: int = 5) -> pd.DataFrame:
    """Leads whose conversion (about 60 %, above both precision targets, so the tiers must fall back to rank) follows
    pricing-page views, webinars and company size; every lead has a company and a job title."""
    rng = np.random.default_rng(seed)
    pricing = rng.poisson(0.8, rows)
    webinars = rng.poisson(0.3, rows)
    employees = rng.lognormal(4, 1.2, rows).round()
    sector = rng.choice(["Software", "Retail", "Finance", "Health"], rows)
    visits = rng.poisson(3, rows) + pricing
    margin = -1.6 + 0.9 * pricing + 0.8 * webinars + 0.25 * np.log1p(employees) + (sector == "Software") * 0.6
    converted = rng.random(rows) < 1 / (1 + np.exp(-margin))
    return pd.DataFrame({
        "lead": np.arange(100_000, 100_000 + rows),
        "Company": [f"{rng.choice(['Acme', 'Globex', 'Initech', 'Umbrella', 'Hooli'])} {n}" for n in range(rows)],
        "Job title": rng.choice(["Head of Marketing", "CFO", "IT Manager", "Analyst"], rows),
        "web_visits": visits, "pricing_views": pricing, "webinars": webinars, "employees": employees,
        "sector": sector, "ref_score": rng.normal(0, 1, rows).round(2),
        "created": pd.date_range("2025-01-01", periods=rows, freq="2h").strftime("%Y-%m-%d %H:%M"),
        "converted": np.where(converted, "yes", "no"),
    })


def test_a_flat_table_with_a_labels_file_reads_in_business_words(tmp_path, chromium):
    data, labels = tmp_path / "leads.csv", tmp_path / "labels.yaml"
    _flat_table().to_csv(data, index=False)
    labels.write_text(LABELS)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    outcome = runner.invoke(app, ["train", "--data", str(data), "--id", "lead", "--target", "converted", "--time",
                                  "created", "--labels", str(labels), "--drop", "Company", "--drop", "Job title",
                                  "--tracking-uri", store, "--model-name", "flat"])
    assert outcome.exit_code == 0, outcome.output
    out = tmp_path / "flat.html"
    outcome = runner.invoke(app, ["report", "--model", "models:/flat@challenger", "--out", str(out),
                                  "--tracking-uri", store])
    assert outcome.exit_code == 0, outcome.output
    page = out.read_text()
    model = load_model("models:/flat@challenger", store)
    check_marketing_report(page, model, chromium.render(out, tmp_path / "flat.png"))
    marketing = visible_text(marketing_part(page))
    # Named by the labels file's name columns, never by the lead's number alone.
    titles = re.findall(r"<div class='card example'><h3>(.*?) <span", page)
    assert all(re.fullmatch(r"\w+ \d+ · [A-Za-z ]+", title) for title in titles), titles
    # No collapse: at a 30 % base rate the tiers rank, so not every lead is an SQL.
    tiers = page.split("<h2>Tiers")[1].split("<h2>")[0]
    sql_leads = int(row_cells(tiers, "SQL")[1].replace(",", ""))
    total = int(row_cells(tiers, "All held-out leads")[1].replace(",", ""))
    assert 0 < sql_leads < total / 2
    # Effect curves only for behaviours: pricing-page views and webinars are tallies; size and score are not.
    assert "How the score grows with what the lead does" in marketing
    assert "fit 50 / engagement 50" not in marketing
