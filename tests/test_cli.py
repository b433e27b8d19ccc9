"""The command line: help everywhere, user errors as one message and exit status 2."""

from __future__ import annotations

import pandas as pd
import pytest
import typer.main
from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.features import FeatureTable

runner = CliRunner()


def run(*arguments: str):
    return runner.invoke(app, [str(a) for a in arguments])


def _commands(group, prefix=()):
    # Typer vendors its own click, so groups and options are recognised by shape, not class.
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


def test_every_command_and_option_has_help_text():
    commands = list(_commands(typer.main.get_command(app)))
    assert {" ".join(path) for path, _ in commands} >= {"crm init", "crm describe", "simulate", "features", "funnel", "demo"}
    for path, command in commands:
        assert command.help, f"{' '.join(path)} has no help"
        for parameter in command.params:
            if parameter.param_type_name == "option" and parameter.name != "help":
                assert parameter.help, f"{' '.join(path)} {parameter.opts[0]} has no help"
        result = run(*path, "--help")
        assert result.exit_code == 0, result.output


def _user_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in " ".join(result.output.split()), result.output


def test_crm_init_refuses_an_existing_crm_and_obeys_append_and_force(tmp_path):
    crm = f"sqlite:///{tmp_path / 'crm.db'}"
    assert run("crm", "init", "--crm", crm).exit_code == 0
    _user_error(run("crm", "init", "--crm", crm), "already holds tables", "--append", "--force")
    assert run("crm", "init", "--crm", crm, "--append").exit_code == 0
    assert run("crm", "init", "--crm", crm, "--force").exit_code == 0
    _user_error(run("crm", "init", "--crm", crm, "--force", "--append"), "contradict")
    described = run("crm", "describe", "--crm", crm)
    assert described.exit_code == 0 and "lead_score_history" in described.output


def test_simulate_features_and_funnel_from_the_command_line(tmp_path):
    crm = str(tmp_path / "crm.db")  # a bare path means SQLite
    simulated = run("simulate", "--crm", crm, "--leads", 800, "--months", 12, "--seed", 3)
    assert simulated.exit_code == 0, simulated.output
    assert "Simulated 800 leads" in simulated.output
    _user_error(run("simulate", "--crm", crm, "--leads", 800), "already holds tables", "Nothing was changed")

    out = tmp_path / "snapshot.parquet"
    written = run("features", "--crm", crm, "--cutoff", "2024-09-01", "--out", out)
    assert written.exit_code == 0, written.output
    table = FeatureTable.read_parquet(out)
    assert (table.frame["cutoff"] == pd.Timestamp("2024-09-01")).all()
    assert "pricing_page_views_30d" in table.frame.columns

    at_mql = run("features", "--crm", crm, "--policy", "mql", "--out", tmp_path / "mql.parquet")
    assert at_mql.exit_code == 0 and "label may still change" in " ".join(at_mql.output.split())

    funnel = run("funnel", "--crm", crm)
    assert funnel.exit_code == 0
    assert "Demo request" in funnel.output and "Cost / MQL" in funnel.output


@pytest.mark.parametrize(
    "arguments, fragments",
    [
        (("--cutoff", "01/06/2025"), ("--cutoff '01/06/2025' is not a date",)),
        (("--policy", "weekly"), ("--policy 'weekly'", "cutoff or mql")),
        ((), ("cutoff policy needs --cutoff",)),
    ],
)
def test_bad_feature_options_are_explained(tmp_path, arguments, fragments):
    crm = str(tmp_path / "crm.db")
    assert run("simulate", "--crm", crm, "--leads", 200, "--months", 6).exit_code == 0
    _user_error(run("features", "--crm", crm, "--out", tmp_path / "x.parquet", *arguments), *fragments)


def test_flat_table_errors_name_the_file_the_column_and_the_fix(tmp_path):
    leads = tmp_path / "leads.csv"
    pd.DataFrame({"Lead ID": [1, 2, 2], "Converted": [0, 1, 0], "Visits": [3, 5, 1]}).to_csv(leads, index=False)
    _user_error(
        run("features", "--data", leads, "--id", "lead id", "--target", "Converted", "--out", tmp_path / "f.parquet"),
        "--id 'lead id'", "leads.csv has no such column", "Did you mean 'Lead ID'",
    )
    _user_error(
        run("features", "--data", leads, "--id", "Lead ID", "--target", "Converted", "--out", tmp_path / "f.parquet"),
        "repeats 1 ids on 2 rows", "Remove the duplicates",
    )
    _user_error(
        run("features", "--data", tmp_path / "nope.csv", "--id", "a", "--target", "b", "--out", tmp_path / "f.parquet"),
        "nope.csv: there is no such file",
    )
    _user_error(run("features", "--data", leads, "--out", tmp_path / "f.parquet"), "needs --target COLUMN", "--id COLUMN is optional")


def test_flat_table_from_the_command_line(tmp_path):
    leads = tmp_path / "leads.csv"
    pd.DataFrame(
        {"id": range(6), "won": ["yes", "no"] * 3, "visits": [1, 2, 3, 4, 5, 6], "source": ["Select", "ads", "seo"] * 2}
    ).to_csv(leads, index=False)
    out = tmp_path / "flat.parquet"
    result = run("features", "--data", leads, "--id", "id", "--target", "won", "--na-value", "Select",
                 "--fit", "source", "--out", out)
    assert result.exit_code == 0, result.output
    assert "stratified split" in result.output
    table = FeatureTable.read_parquet(out)
    assert table.registry["source"].family == "fit"
    assert table.frame["source"].isna().sum() == 2


def test_bad_crm_urls_are_user_errors(tmp_path):
    _user_error(run("crm", "describe", "--crm", "postgresql://nobody@127.0.0.1:1/none"), "Cannot open the CRM database", "Connection refused")
    _user_error(run("crm", "init", "--crm", str(tmp_path / "no" / "such" / "crm.db")), "does not exist")


def test_demo_prints_the_funnel_and_the_model_against_the_baselines(tmp_path, monkeypatch, chromium):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / ".leadscore-demo").write_text("an earlier demo")
    (tmp_path / "demo" / "crm.db").write_text("an earlier demo's CRM")
    result = run("demo", "--dir", tmp_path / "demo", "--leads", 6_000, "--seed", 3)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    for fragment in ("Replaced the previous demo", "Lead→MQL", "MQL→SQL", "Cost / MQL", "Cost / SQL", "E-book",
                     "All channels", "Held-out leads", "Hand-set points", "Lift, top 10%", "first champion"):
        assert fragment in text
    # The demo's report, after eight weekly scoring runs: marketing's words, and its score movement.
    from leadscore.pipelines.registry import load_model
    from report_checks import check_marketing_report

    page = (tmp_path / "demo" / "report.html").read_text()
    store = f"sqlite:///{tmp_path / 'demo' / 'mlflow.db'}"
    check_marketing_report(page, load_model("models:/leadscore@champion", store),
                           chromium.render(tmp_path / "demo" / "report.html", tmp_path / "demo.png"))
    assert "Entered MQL or SQL" in page and "8 scoring runs" in page

    # What each channel's recent leads are worth, scored by the champion the demo promoted.
    worth = run("funnel", "--crm", tmp_path / "demo" / "crm.db", "--expected", "--tracking-uri", store)
    assert worth.exit_code == 0, worth.output
    text = " ".join(worth.output.split())
    # Titles and the closing note (column headers wrap inside their cells on a narrow terminal).
    for fragment in ("Leads created in the last 30 days", "Leads created in the last 90 days", "All channels",
                     "How the estimate held 90 days ago", "E-book", "± is two standard deviations",
                     "they flatter its record"):
        assert fragment in text
    _user_error(run("funnel", "--crm", tmp_path / "demo" / "crm.db", "--expected", "--tracking-uri", store,
                    "--as-of", "June 1st"), "--as-of 'June 1st' is not a date")


def test_user_text_is_printed_as_it_is_never_read_as_markup(tmp_path):
    """Issue 9, case 8: '[/b]' in a channel crashed the funnel, '[emea]' lost its brackets, '[/x]' in an option
    crashed the error handler itself."""
    import sqlalchemy as sa

    crm = tmp_path / "crm.db"
    assert run("simulate", "--crm", crm, "--leads", 300, "--months", 6).exit_code == 0
    engine = sa.create_engine(f"sqlite:///{crm}")
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE leads SET channel = 'Partner [/b]' WHERE channel = 'partner'"))
        connection.execute(sa.text("UPDATE leads SET channel = '[emea] partner' WHERE channel = 'event'"))
    engine.dispose()
    funnel = run("funnel", "--crm", crm)
    assert funnel.exit_code == 0, funnel.output
    assert "Partner [/b]" in funnel.output and "[emea] partner" in funnel.output
    data = tmp_path / "export [" / "x] leads.csv"  # the path of a file in a folder named "export ["
    data.parent.mkdir()
    pd.DataFrame({"id": [1, 2, 3], "won": [0, 1, 0], "visits": [1, 2, 3]}).to_csv(data, index=False)
    _user_error(run("features", "--data", data, "--id", "[/lead_id]", "--target", "won", "--out", tmp_path / "f.parquet"),
                "--id '[/lead_id]'", "x] leads.csv has no such column")
    _user_error(run("features", "--data", data, "--id", "id", "--target", "won", "--drop", "[bold]x[/bold]",
                    "--out", tmp_path / "f.parquet"), "--drop '[bold]x[/bold]'")


def test_piped_output_gets_plain_progress_lines_not_bars(tmp_path):
    crm = tmp_path / "crm.db"
    result = run("simulate", "--crm", crm, "--leads", 300, "--months", 6)
    assert result.exit_code == 0
    assert "Writing leads (0/300)..." in result.output and "Writing leads: done in" in result.output
    assert "━" not in result.output


def test_passwords_never_print_even_from_an_unexpected_error(tmp_path, monkeypatch):
    url = "postgresql://crm_user:p@ssw0rd!@127.0.0.1:1/crm"
    result = run("funnel", "--crm", url)
    assert result.exit_code == 2
    assert "ssw0rd" not in result.output and "***" in result.output

    import leadscore.crm.sql as history

    def broken(*args, **kwargs):
        raise RuntimeError(f"something went wrong talking to {url}")

    monkeypatch.setattr(history, "load_history", broken)
    crashed = run("funnel", "--crm", url)
    assert crashed.exit_code == 1
    assert "a bug in leadscore" in crashed.output and "Traceback" in crashed.output
    assert "ssw0rd" not in crashed.output
