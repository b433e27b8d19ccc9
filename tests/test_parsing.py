"""Reading dates as flat files write them: one format per column, no guessing."""

from __future__ import annotations

import pandas as pd
import pytest

from leadscore.errors import LeadscoreError
from leadscore.features.parsing import read_times


def _text(*values) -> pd.Series:
    return pd.Series(values, dtype="str")


# --- dates -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "written, expected",
    [
        (["2024-03-01", "2024-03-02T10:30:00"], ["2024-03-01", "2024-03-02 10:30"]),
        (["2024-03-01T10:00:00+02:00", "2024-03-01T10:00:00Z"], ["2024-03-01 08:00", "2024-03-01 10:00"]),
        (["31.12.24", "01.01.25"], ["2024-12-31", "2025-01-01"]),
        (["13-04-2025 09:15", "03-04-2025 17:00"], ["2025-04-13 09:15", "2025-04-03 17:00"]),
        (["4/13/2025 2:15 PM", "4/3/2025 9:00 AM"], ["2025-04-13 14:15", "2025-04-03 09:00"]),
        (["1700000000", "1700086400"], ["2023-11-14 22:13:20", "2023-11-15 22:13:20"]),
        ([1_700_000_000_000, 1_700_086_400_000], ["2023-11-14 22:13:20", "2023-11-15 22:13:20"]),
    ],
)
def test_dates_in_common_export_formats(written, expected):
    times = read_times(pd.Series(written), "signup", "leads.csv")
    assert times.tolist() == pd.to_datetime(expected, format="ISO8601").tolist()


def test_formats_that_agree_on_every_value_need_no_choice():
    times = read_times(_text("01/01/2024", "02/02/2024", "12/12/2024"), "signup", "leads.csv")
    assert times.dt.strftime("%Y-%m-%d").tolist() == ["2024-01-01", "2024-02-02", "2024-12-12"]


def test_dates_that_read_both_ways_are_refused_with_the_option_that_settles_them():
    values = _text("03/04/2025", "05/04/2025", "12/12/2025", "01/02/2025")
    with pytest.raises(LeadscoreError) as refused:
        read_times(values, "signup", "leads.csv")
    message = str(refused.value)
    assert "time column 'signup' of leads.csv has 3 of 4 rows whose date depends on the format" in message
    assert "'03/04/2025' is 3 April 2025 with %d/%m/%Y but 4 March 2025 with %m/%d/%Y" in message
    assert "--time-format %d/%m/%Y" in message
    assert read_times(values, "signup", "leads.csv", "%m/%d/%Y")[0] == pd.Timestamp("2025-03-04")


@pytest.mark.parametrize(
    "values, time_format, message",
    [
        (["13/04/2025", "2025-04-14", "14/04/2025"], "%d/%m/%Y",
         "does not match --time-format %d/%m/%Y on 1 of 3 rows (e.g. '2025-04-14')"),
        (["13/04/2025"], "dd/mm/yyyy", "--time-format 'dd/mm/yyyy' holds no date code"),
        (["13/04/2025"], "%d/%Q/%Y", "--time-format '%d/%Q/%Y' is not a date format"),
        (["2024-01-01", "13/04/2025", "2024-01-03"], None,
         "not a date on 1 of 3 rows, e.g. '13/04/2025' (its other rows hold ISO dates"),
        (["13/04/2025", "14/04/2025", "soon"], None, "e.g. 'soon' (its other rows are written %d/%m/%Y)"),
        (["soon", "later"], None, "not a date on 2 of 2 rows, e.g. 'soon'. If it holds dates, give their format"),
        ([5, 17], None, "not a date on 2 of 2 rows, e.g. '5'"),  # numbers too small for epoch times
        (["13/04/2025", None], None, "empty on 1 of 2 rows of leads.csv"),
    ],
)
def test_dates_that_cannot_be_read_name_the_column_the_rows_and_the_fix(values, time_format, message):
    with pytest.raises(LeadscoreError) as refused:
        read_times(pd.Series(values), "signup", "leads.csv", time_format)
    assert message in str(refused.value)
