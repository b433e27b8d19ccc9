"""Channel worth before outcomes arrive: the arithmetic on a hand-made CRM, and the estimate against what a
simulated cohort later realised, with a model trained on another simulated CRM (same true channel rates)."""

from __future__ import annotations

import warnings
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from leadscore.crm.history import CrmHistory
from leadscore.crm.simulator import SimulationConfig, simulate
from leadscore.crm.worth import cohort_cost, cohort_worth


def _history() -> CrmHistory:
    t = lambda text: np.datetime64(text, "s")  # noqa: E731
    leads = pd.DataFrame({
        "id": [1, 2, 3, 4, 5],
        "created_at": [t("2025-05-20"), t("2025-06-02"), t("2025-06-10"), t("2025-06-20"), t("2025-06-25")],
        "channel": ["ebook", "ebook", "ebook", "webinar", "webinar"],
    })
    changes = pd.DataFrame({
        "lead_id": [2, 2, 3, 4, 4],
        "stage": ["mql", "customer", "disqualified", "mql", "sql"],
        "changed_at": [t("2025-06-05"), t("2025-06-20"), t("2025-06-12"), t("2025-06-22"), t("2025-06-24")],
    })
    costs = pd.DataFrame({"channel": ["ebook", "webinar"], "month": [t("2025-06-01"), t("2025-06-01")],
                          "cost": [300.0, 600.0]})
    return CrmHistory(leads, pd.DataFrame({"lead_id": [], "occurred_at": [], "type": []}), changes, costs,
                      pd.Timestamp("2025-07-01"))


def test_expected_customers_add_the_open_leads_probabilities_to_the_customers_so_far():
    history = _history()
    # Lead 1 is older than the window, 2 is a customer, 3 disqualified, 4 and 5 open.
    probability = pd.Series({4: 0.5, 5: 0.1})
    table = cohort_worth(history, datetime(2025, 7, 1), 30, probability).set_index("channel")
    ebook, webinar, total = table.loc["ebook"], table.loc["webinar"], table.loc["total"]
    assert (ebook.leads, ebook.customers_so_far, ebook.open_leads, ebook.expected_customers) == (2, 1, 0, 1.0)
    assert ebook.spread == 0.0  # nothing left to chance
    assert webinar.leads == 2 and webinar.expected_customers == pytest.approx(0.6)
    assert webinar.spread == pytest.approx(2 * np.sqrt(0.5 * 0.5 + 0.1 * 0.9))
    assert (webinar.mqls, webinar.sqls) == (1, 1) and webinar.mql_to_sql == 1.0
    assert webinar.expected_sql_to_customer == pytest.approx(0.5)
    # June's costs fall wholly inside the 30 days before July 1st: 300 / 1 expected customer, 600 / 0.6.
    assert ebook.cost == pytest.approx(300) and ebook.expected_cost_per_customer == pytest.approx(300)
    assert webinar.expected_cost_per_customer == pytest.approx(1000)
    assert total.leads == 4 and total.expected_customers == pytest.approx(1.6) and total.cost == pytest.approx(900)
    assert np.isnan(total.realised_customers)


def test_costs_spread_over_their_month_missing_probabilities_are_refused_and_an_empty_window_counts_none():
    history = _history()
    half = cohort_cost(history, datetime(2025, 6, 16), 15)  # June 1st to 15th: half of June
    assert half["ebook"] == pytest.approx(150) and half["webinar"] == pytest.approx(300)
    with pytest.raises(ValueError, match="2 open leads of the cohort have no probability"):
        cohort_worth(history, datetime(2025, 7, 1), 30, pd.Series(dtype=float))
    empty = cohort_worth(history, datetime(2026, 3, 1), 30, pd.Series(dtype=float), until=datetime(2026, 6, 1))
    assert empty["channel"].tolist() == ["total"]
    assert (empty.leads.iloc[0], empty.expected_customers.iloc[0], empty.realised_customers.iloc[0]) == (0, 0.0, 0)
    assert np.isnan(empty.expected_cost_per_customer.iloc[0])


@pytest.mark.parametrize("seed", [32, 33, 34])
def test_a_cohort_s_expected_customers_hold_against_what_it_later_realised(seed):
    """A model trained on what the CRM knew 100 days before its end scores the leads of the 90 days before then;
    90 days later, the customers they became fall within the estimate's spread, in total and by channel."""
    from leadscore.models.scoring import Scorer
    from leadscore.pipelines.train import TrainingConfig, crm_training_table, train_model
    from leadscore.pipelines.worth import channel_worth, open_lead_probabilities
    from leadscore.progress import Progress

    warnings.filterwarnings("ignore")
    history = simulate(SimulationConfig(leads=10_000, seed=seed)).history()
    moment = (pd.Timestamp(history.as_of) - pd.Timedelta(days=100)).normalize().to_pydatetime()
    model = train_model(crm_training_table(history.known_at(moment)), TrainingConfig(candidates=("lightgbm",))).model
    probability = open_lead_probabilities(history, Scorer(model), moment, 90, Progress())
    table = cohort_worth(history, moment, 90, probability, until=moment + timedelta(days=90)).set_index("channel")
    total = table.loc["total"]
    assert total.open_leads > 900 and total.realised_customers >= 19
    assert abs(total.realised_customers - total.expected_customers) <= total.spread
    channels = table.drop(index="total")
    # A channel's few customers are counts: within the spread, give or take one.
    inside = (channels.realised_customers - channels.expected_customers).abs() <= channels.spread + 1
    assert inside.mean() >= 0.8, channels[["expected_customers", "spread", "realised_customers"]]
    # The same figures through the pipeline, as the CLI and the report show them: the matured cohort of a
    # look back from 90 days later is this cohort.
    worth = channel_worth(history, model, moment + timedelta(days=90))
    matured = worth[(worth["cohort"] == "matured") & (worth["days"] == 90)].set_index("channel")
    pd.testing.assert_series_equal(matured["expected_customers"], table["expected_customers"], check_names=False)
    assert (matured["realised_customers"] == table["realised_customers"]).all()
    assert set(worth["cohort"]) == {"recent", "matured"} and set(worth["days"]) == {30, 90}


def test_a_model_of_a_flat_table_cannot_price_a_crm_s_channels():
    from types import SimpleNamespace

    from leadscore.errors import LeadscoreError
    from leadscore.pipelines.worth import channel_worth

    flat = SimpleNamespace(features=["TotalVisits", "Lead Source"])
    with pytest.raises(LeadscoreError, match=r"\('TotalVisits', 'Lead Source'\).*leadscore train --crm"):
        channel_worth(_history(), flat, datetime(2025, 7, 1))
