"""Flat lead tables from the command line: dates as exports write them."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.features import FeatureTable

runner = CliRunner()


def run(*arguments) -> object:
    return runner.invoke(app, [str(a) for a in arguments])


def _user_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in " ".join(result.output.split()), result.output


def test_ambiguous_dates_are_refused_and_settled_with_time_format(tmp_path):
    leads = tmp_path / "leads.csv"
    days = pd.date_range("2025-01-01", periods=12, freq="MS").repeat(5)  # every day is the 1st: both orders read
    pd.DataFrame({"lead": range(60), "won": [0, 1] * 30, "visits": range(60), "signup": days.strftime("%d/%m/%Y")}
                 ).to_csv(leads, index=False)
    common = ["features", "--data", leads, "--id", "lead", "--target", "won", "--time", "signup",
              "--out", tmp_path / "f.parquet"]
    _user_error(run(*common), "time column 'signup' of leads.csv has 55 of 60 rows whose date depends on the format",
                "'01/02/2025' is 1 February 2025 with %d/%m/%Y but 2 January 2025 with %m/%d/%Y",
                "--time-format %d/%m/%Y")
    assert run(*common, "--time-format", "%d/%m/%Y").exit_code == 0
    assert (FeatureTable.read_parquet(tmp_path / "f.parquet").frame["signup"] == days).all()
    _user_error(run(*common, "--time-format", "%Y-%m-%d"),
                "does not match --time-format %Y-%m-%d on 60 of 60 rows (e.g. '01/01/2025')", "Fix those rows")
