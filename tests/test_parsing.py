"""Reading dates and numbers as flat files write them: one format per column, no guessing."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from leadscore.errors import LeadscoreError
from leadscore.features.parsing import NumberFormat, ReadingRule, number_formats, read_times


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


# --- numbers ---------------------------------------------------------------------------------


def _formats(**columns) -> tuple[dict[str, NumberFormat], str]:
    formats, notes = number_formats(pd.DataFrame({c: pd.Series(v, dtype="str") for c, v in columns.items()}), "leads.csv")
    return formats, " ".join(notes)


def test_a_few_placeholders_are_read_as_missing_and_named():
    formats, notes = _formats(visits=["?", "3", "-", "?"] + [str(i) for i in range(96)])
    assert formats["visits"] == NumberFormat(".", ("-", "?"))
    assert "Read 3 values of 'visits' as missing, not numbers: '?' ×2, '-' ×1." in notes
    numbers, unreadable = formats["visits"].read(pd.Series(["?", "12", None, "-"]))
    assert numbers.iloc[1] == 12 and numbers.drop(1).isna().all() and not unreadable.any()


@pytest.mark.parametrize(
    "values, kept",
    [
        (["?"] * 10 + [str(i) for i in range(90)], "Did not read 'visits' as numbers: 10 of its 100 values are not numbers"),
        (["65+"] + [str(i) for i in range(99)], "Did not read 'visits' as numbers: 1 of its 100 values are not numbers ('65+' ×1)"),
    ],
)
def test_too_many_placeholders_or_values_with_digits_leave_the_column_text_and_say_so(values, kept):
    formats, notes = _formats(visits=values)
    assert "visits" not in formats
    assert kept in notes and "--na-value" in notes


def test_decimal_commas_are_detected_from_the_column_itself():
    formats, notes = _formats(amount=["1,5", "1.234,56", "12", "0,25"])
    assert formats["amount"].decimal == ","
    assert formats["amount"].read(_text("1,5", "1.234,56", "12"))[0].tolist() == [1.5, 1234.56, 12.0]
    assert "Read 'amount' with decimal commas, as its values show ('1,5' is 1.5)." in notes


@pytest.mark.parametrize(
    "other, decimal, read",
    [
        (["0,5", "1,25"], ",", 1.234),  # the file writes decimal commas: 1,234 is one point two
        (["0.5", "1.25"], ".", 1234.0),  # the file writes decimal points: 1,234 is a thousand and more
    ],
)
def test_values_fitting_both_marks_follow_the_file(other, decimal, read):
    formats, notes = _formats(price=["1,234", "12", "5,000", "7"], rate=other + other)
    assert formats["price"].decimal == decimal
    assert formats["price"].read(_text("1,234"))[0].iloc[0] == pytest.approx(read)
    assert "Read 'price' with decimal" in notes and "as the other columns of leads.csv write numbers" in notes


def test_values_fitting_both_marks_with_nothing_to_decide_stay_text():
    formats, notes = _formats(price=["1,234", "12", "5,000"])
    assert "price" not in formats
    assert "Did not read 'price' as numbers: '1,234' is 1234 with a decimal point or 1.234 with a decimal comma" in notes


def test_a_column_mixing_decimal_marks_stays_text():
    formats, notes = _formats(rate=["1.5", "1,5", "2"])
    assert "rate" not in formats
    assert "mixes decimal points and decimal commas ('1.5' and '1,5')" in notes


def test_leading_zeros_and_grouping_are_read_as_their_mark_allows():
    point, comma = NumberFormat("."), NumberFormat(",")
    assert point.read(_text("0,125", "1,234,567.5", "-1e3", " 7 "))[0].tolist()[1:] == [1234567.5, -1000.0, 7.0]
    assert point.read(_text("0,125"))[1].all()  # never a grouped thousand: it starts with 0
    assert comma.read(_text("0.125", "1.234.567,5", "-3,5"))[0].tolist()[1:] == [1234567.5, -3.5]
    assert comma.read(_text("0.125"))[1].all()


# --- the reading rule that travels with the model -------------------------------------------


def test_the_reading_rule_reads_new_rows_as_training_did_and_refuses_what_training_never_saw():
    rule = ReadingRule(("Select",), {"visits": NumberFormat(",", ("?",)), "amount": NumberFormat(".")})
    new = pd.DataFrame({"visits": ["1,5", "?", None], "amount": [1.0, 2.0, None], "source": ["Select", "ads", "seo"]})
    read = rule.apply(new, "new.csv")
    assert read["visits"].iloc[0] == 1.5 and read["visits"].iloc[1:].isna().all()
    assert read["source"].isna().tolist() == [True, False, False]
    assert new["visits"].iloc[0] == "1,5"  # the caller's frame is left alone
    with pytest.raises(LeadscoreError, match=r"Column 'visits' of new.csv is not a number on 1 of 2 rows \(e.g. 'n/a'\); "
                                             r"the model was trained reading it with decimal commas, '\?' as missing"):
        rule.apply(pd.DataFrame({"visits": ["n/a", "2"]}), "new.csv")
    unused = rule.apply(pd.DataFrame({"visits": ["n/a"], "amount": ["3"]}), "new.csv", used=["amount"])
    assert unused["visits"].iloc[0] == "n/a" and unused["amount"].iloc[0] == 3.0  # a column the model leaves out
    assert ReadingRule.from_json(rule.to_json()) == rule
    assert pickle.loads(pickle.dumps(rule)) == rule


def test_models_pickled_before_the_reading_rule_keep_their_missing_markers():
    from leadscore.models.model import LeadScoringModel

    model = LeadScoringModel.__new__(LeadScoringModel)
    model.__setstate__({"id_column": "lead", "na_values": ("Select",)})
    assert model.reading == ReadingRule(na_values=("Select",))
    assert model.reading.apply(pd.DataFrame({"source": ["Select"]}), "new.csv")["source"].isna().all()


def test_a_column_of_numbers_in_several_dtypes_reads_the_same():
    expected = [1.0, np.nan, 3.0]
    for values in (pd.Series([1, None, 3], dtype="Int64"), pd.Series(["1", None, "3"], dtype=object),
                   pd.Series([1.0, np.nan, 3.0])):
        numbers, unreadable = NumberFormat().read(values)
        np.testing.assert_array_equal(numbers.to_numpy(dtype=float), expected)
        assert not unreadable.any()



@pytest.mark.parametrize("decimal", [",", "."])
def test_the_fast_reading_of_plain_numbers_agrees_with_the_exact_one(decimal, monkeypatch):
    from leadscore.features import parsing

    rng = np.random.default_rng(3)
    plain = ["12", "-3", "+4", "007", "1.5", "0.25", ".5", "5.", "1.234", "-123.456", "1234.567", "3e4", "-2E-3",
             "+.5", "1.e5", "0.123456"]
    other = ["1,5", "1.234,5", "12.345.678", "nan", "inf", "1e999", "١٢", "?", "", "1 234", "abc", "12,345"]
    samples = []
    for _ in range(40):
        pieces = plain if rng.random() < 0.6 else plain + other  # the fast path sees whole columns of plain numbers
        samples.append(pd.Series(rng.choice(pieces, size=30), dtype="str").where(rng.random(30) > 0.1))
    fast = [parsing._numbers(values, decimal) for values in samples]
    assert sum(parsing._plain_numbers(values, decimal) is not None for values in samples) >= 15
    monkeypatch.setattr(parsing, "_plain_numbers", lambda text, mark: None)
    for values, quick in zip(samples, fast):
        pd.testing.assert_series_equal(quick, parsing._numbers(values, decimal), check_names=False)
