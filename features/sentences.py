"""One lead's value of one feature, as a sentence a marketer reads.

The explanation layer shows each reason as such a sentence followed by its
points: "Viewed the pricing page 4 times in the last 30 days (+12 pts)". The
phrasing is data on the feature's ``FeatureSpec.sentence``, so it travels
with the registry inside the model; a feature without it reads
"{label}: {value}".
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import pandas as pd

from leadscore.features.registry import FeatureSpec

PLAIN_SENTENCE = {"missing": "{label}: unknown", "value": "{label}: {value}"}


def describe(spec: FeatureSpec, value: Any) -> str:
    """The sentence saying what ``value`` of the feature ``spec`` means for a lead.

    ``value`` is the feature table's raw value: a number, a bool, a category,
    or missing (None, NaN, ``pd.NA``).

    Examples
    --------
    >>> spec = FeatureSpec("visits", "Website visits", "engagement", "Visits.")
    >>> describe(spec, 1532.0)
    'Website visits: 1,532'
    >>> describe(spec, None)
    'Website visits: unknown'
    """
    return Phrasing(spec)(value)


class Phrasing:
    """``describe`` for one feature, its templates merged once: the nightly job phrases millions of values."""

    def __init__(self, spec: FeatureSpec) -> None:
        self.label = spec.label
        self.templates = PLAIN_SENTENCE | (spec.sentence or {})
        self.digits = int(self.templates["digits"]) if "digits" in self.templates else None
        self.missing = self.templates["missing"].format(label=spec.label)

    def __call__(self, value: Any) -> str:
        kind = type(value)
        # Plain Python values (what reasons hold) skip pandas' generic missing-value test.
        if value is None or (kind is float and value != value) or (kind not in PLAIN and pd.isna(value)):
            return self.missing
        if self.digits is not None and isinstance(value, numbers.Real):
            value = round(float(value), self.digits)
        written = readable_number(value) if kind in NUMBERS or isinstance(value, numbers.Real | np.bool_) else str(value)
        return self.templates.get(written, self.templates["value"]).format(label=self.label, value=written)


PLAIN = (float, int, str, bool)
NUMBERS = (float, int, bool)


def readable_number(number: float) -> str:
    """A number as a sentence writes it: whole numbers with thousands separators, others to 3 significant digits.

    Digits before the decimal point are all kept: 1234.56 reads 1,235, not a
    rounded 1,230 that matches no figure the marketer sees elsewhere.

    Examples
    --------
    >>> readable_number(1532.0), readable_number(45.37), readable_number(0.012345)
    ('1,532', '45.4', '0.0123')
    """
    if not math.isfinite(number):
        return str(number)
    if float(number).is_integer():
        return f"{int(number):,}"
    decimals = max(0, 2 - math.floor(math.log10(abs(number))))
    text = f"{number:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if decimals else text
