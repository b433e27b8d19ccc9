"""What every command shares: the Typer app, the consoles, the options, user-error handling and parsing."""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import Annotated, Optional

import pandas as pd
import sqlalchemy as sa
import typer
from rich.console import Console
from rich.text import Text
from typer.exceptions import TyperException

from leadscore.errors import LeadscoreError
from leadscore.redact import redact, url_secrets
from leadscore.settings import crm_url_from_env

app = typer.Typer(
    help="Lead-conversion scoring learned from CRM history.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)
crm_app = typer.Typer(help="Create and inspect the CRM database.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(crm_app, name="crm")

# Piped output (CI logs, files) gets room for the funnel table instead of rich's 80 columns. Markup is off:
# channel names, file names and column names are the user's text, and "[/b]" in them must print as it is.
console = Console(width=None if sys.stdout.isatty() else 120, markup=False, highlight=False)
errors = Console(stderr=True, width=None if sys.stderr.isatty() else 120, markup=False, highlight=False)

CrmOption = Annotated[
    Optional[str],
    typer.Option(
        "--crm",
        help="CRM database: an SQLAlchemy URL (sqlite:///crm.db, postgresql://user@host/db) or an SQLite "
        "file path. Default: $LEADSCORE_CRM, else sqlite:///leadscore.db.",
        show_default=False,
    ),
]
AppendOption = Annotated[
    bool, typer.Option("--append", help="Keep the tables already in the database and add to them.")
]
ForceOption = Annotated[
    bool,
    typer.Option("--force", help="Delete leadscore's tables (never other tables) and start empty."),
]


def flat_roles(id, target, time_column, time_format, drop, na_value, fit, positive, keep):
    from leadscore.features.flat import ColumnRoles

    if target is None:
        raise LeadscoreError(
            "A flat table needs --target COLUMN, the column saying whether each lead converted. --id COLUMN is "
            "optional: without it, leads are numbered by their row."
        )
    return ColumnRoles(
        id=id,
        target=target,
        time=time_column,
        time_format=time_format,
        drop=tuple(drop or ()),
        na_values=tuple(na_value or ()),
        fit=tuple(fit or ()),
        keep=tuple(keep or ()),
        positive=positive,
    )


def column_labels(labels: str | None):
    from leadscore.features.column_labels import read_column_labels

    return read_column_labels(labels) if labels else None


def read_crm_training_table(crm, map_stage, horizon_days: int, cutoff_every: int, progress):
    """The CRM's history, and as the training table: one row per lead open at each monthly cutoff (train and
    backtest)."""
    from leadscore.crm.sql import load_history
    from leadscore.crm.tryton.connection import is_tryton_url
    from leadscore.pipelines.train import crm_training_table

    if is_tryton_url(crm or crm_url_from_env()):  # Tryton's opportunities, read through Tryton's API
        from leadscore.crm.tryton.connection import TrytonDatabase, parse_tryton_url
        from leadscore.crm.tryton.reader import read_tryton_history

        tryton = TrytonDatabase(parse_tryton_url(crm or crm_url_from_env()))
        history = read_tryton_history(tryton, progress=progress, stage_map=stage_map_from(map_stage))
    else:
        with crm_engine(crm) as engine:
            history = load_history(engine, progress=progress, stage_map=stage_map_from(map_stage))
    return history, crm_training_table(history, horizon_days, cutoff_every, progress=progress)


IdOption = Annotated[
    Optional[str],
    typer.Option("--id", help="Flat table: the lead id column. Default: none, leads are numbered by their row "
                              "(row_number, 1 for the first row), and predict numbers rows the same way."),
]
TargetOption = Annotated[Optional[str], typer.Option(help="Flat table: the outcome column.")]
TimeOption = Annotated[
    Optional[str], typer.Option("--time", help="Flat table: a date column, for forward-in-time splits.")
]
TimeFormatOption = Annotated[
    Optional[str],
    typer.Option(help="Flat table: how --time writes dates, in strftime codes, e.g. %d/%m/%Y. "
                      "Default: the one format that reads every date; ambiguous dates are refused."),
]
DropOption = Annotated[Optional[list[str]], typer.Option(help="Flat table: a column to leave out (repeat the option).")]
NaValueOption = Annotated[
    Optional[list[str]], typer.Option(help="Flat table: a value meaning missing, e.g. Select (repeatable).")
]
FitOption = Annotated[
    Optional[list[str]],
    typer.Option(help="Flat table: a column describing who the lead is (repeatable). Default: columns named like "
                      "country, city, industry, occupation, job, age; the rest is engagement."),
]
PositiveOption = Annotated[
    Optional[str], typer.Option(help="Flat table: the target value meaning converted, when not 1/yes/true.")
]
KeepOption = Annotated[
    Optional[list[str]],
    typer.Option(help="Flat table: keep this column although it looks like an identifier (repeatable)."),
]
LabelsOption = Annotated[
    Optional[str],
    typer.Option(help="Flat table: a YAML file giving columns business labels, families (fit or engagement) and "
                      "reason sentences; x-education names the one shipped for the X Education leads."),
]
MapStageOption = Annotated[
    Optional[list[str]],
    typer.Option(
        "--map-stage",
        help="CRM: read one of your CRM's stage names as a leadscore stage, e.g. won=customer (repeatable).",
    ),
]
ModelNameOption = Annotated[str, typer.Option(help="Name of the model in the MLflow registry.")]
ModelOption = Annotated[
    str, typer.Option(help="Model URI: models:/leadscore@champion, models:/leadscore/3 or runs:/RUN_ID/model.")
]
MinReasonPointsOption = Annotated[
    float,
    typer.Option(help="A field is a reason only when it moves the lead's probability by at least this many points "
                      "(and carries a tenth of what moves the lead); a lead with none says nothing stands out.", min=0),
]
CurrencyOption = Annotated[
    Optional[str],
    typer.Option(help="Currency the CRM's campaign costs are in, shown beside every cost (default: "
                      "$LEADSCORE_CURRENCY, else USD).", show_default=False),
]
TrackingOption = Annotated[
    Optional[str],
    typer.Option(help="MLflow tracking URI. Default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db.", show_default=False),
]


# Access tokens read from the environment (`leadscore export --push`): masked whole wherever they appear.
TOKEN_VARIABLES = ("SALESFORCE_ACCESS_TOKEN", "HUBSPOT_ACCESS_TOKEN")


def environment_tokens() -> tuple[str, ...]:
    # A token shorter than this is no credential, and masking it would blank out ordinary words.
    return tuple(token for token in (os.environ.get(name, "").strip() for name in TOKEN_VARIABLES) if len(token) >= 8)


def _secrets(values) -> tuple[str, ...]:
    """Passwords of every URI the command was given, by option or environment, and the access tokens of the
    environment, to keep out of any output."""
    candidates = [value for value in values if isinstance(value, str)]
    candidates += [os.environ.get(name) for name in ("LEADSCORE_CRM", "MLFLOW_TRACKING_URI")]
    return tuple(secret for value in candidates for secret in url_secrets(value)) + environment_tokens()


def _fail(label: str, message: str, secrets: tuple[str, ...], status: int) -> typer.Exit:
    errors.print(Text.assemble((label, "bold red"), " ", redact(message, secrets)), soft_wrap=True)
    return typer.Exit(status)


def user_errors(command):
    """Print a user error as one message and exit with status 2; a bug keeps its traceback, passwords masked."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        secrets = _secrets([*args, *kwargs.values()])
        try:
            return command(*args, **kwargs)
        except LeadscoreError as error:
            raise _fail("Error:", str(error), secrets, 2) from None
        except sa.exc.DBAPIError as error:
            # The database's own words name the problem: a server down, a permission, a lock, a constraint.
            raise _fail("Database error:", str(error.orig).strip(), secrets, 2) from None
        except KeyboardInterrupt:
            raise _fail("Interrupted:", "stopped before the end; files and CRM writes are all-or-nothing, so nothing half-written was kept.", secrets, 130) from None
        except (typer.Exit, typer.Abort, TyperException):
            raise
        except Exception:
            details = redact(traceback.format_exc(), secrets)
            raise _fail("Unexpected error (a bug in leadscore; please report it with these lines):", "\n" + details,
                        secrets, 1) from None

    return wrapper


def stage_map_from(pairs: list[str] | None) -> dict[str, str]:
    from leadscore.crm.conform import parse_stage_map

    return parse_stage_map(pairs or [])


@contextmanager
def crm_engine(crm: str | None, *, writable: bool = False) -> Iterator[sa.Engine]:
    """The CRM's engine for one command; its connections are closed when the command ends (SQLite locks)."""
    from leadscore.crm.database import connect
    from leadscore.crm.tryton.connection import is_tryton_url

    if is_tryton_url(crm or crm_url_from_env()):
        raise LeadscoreError("A tryton:// CRM is read by `leadscore score`, `train` and `backtest`; this command reads "
                             "leadscore's own tables. Give it an SQLite path or a database URL.")
    engine = connect(crm or crm_url_from_env(), writable=writable)
    try:
        yield engine
    finally:
        engine.dispose()


def parse_day(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.combine(date.fromisoformat(value), datetime.min.time())
    except ValueError:
        raise LeadscoreError(f"{option} {value!r} is not a date: use YYYY-MM-DD, e.g. 2025-06-01.") from None


def percent(value: float) -> str:
    return "—" if pd.isna(value) else f"{value:.1%}"


def money(value: float) -> str:
    return "—" if pd.isna(value) else f"{value:,.0f}"


def number(value: float, digits: int = 3) -> str:
    return "—" if pd.isna(value) else f"{value:.{digits}f}"


def parse_moment(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value).replace(tzinfo=None)
    except ValueError:
        raise LeadscoreError(f"{option} {value!r} is not a time: use YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS (UTC).") from None
