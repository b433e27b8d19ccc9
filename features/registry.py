"""The feature registry: each feature once, with the words marketing reads.

Marketing-facing text (reports, reasons, CLI tables) comes from here, never
from column names.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import pandas as pd

Family = Literal["fit", "engagement"]
Kind = Literal["numeric", "categorical"]
FAMILIES = ("fit", "engagement")


@dataclass(frozen=True)
class FeatureSpec:
    """What a feature means.

    ``family`` splits the score: *fit* is who the lead is, *engagement* what
    the lead did. ``sales_side`` marks features built from events that sales
    logs once a lead is sales-qualified: using them to score leads before
    that point leaks the outcome.

    ``sentence`` phrases one lead's value of the feature for a marketer (see
    ``leadscore.features.sentences.describe``): templates keyed by the value
    they are for, written out as a sentence shows it (``"0"``, ``"1"``,
    ``"c_level"``), by ``"missing"``, or by ``"value"`` for any other value.
    ``{value}`` stands for the value and ``{label}`` for the label:
    ``{"0": "No demo requests", "1": "Requested a demo once", "value":
    "Requested a demo {value} times"}``. ``"digits"`` rounds numbers first
    (``"0"``: whole days). Without templates a value reads ``"{label}: {value}"``.

    ``field_name`` groups the features derived from one business field (the
    counts of pricing-page views over each window, the days since the last
    one): explanations fold their contributions into one reason and one
    importance, labelled ``field_label``.
    """

    name: str
    label: str
    family: Family
    description: str
    kind: Kind = "numeric"
    sales_side: bool = False
    sentence: dict[str, str] | None = field(default=None, hash=False)  # a dict would make specs unhashable
    field_name: str = ""  # the business field it is derived from ("pricing_page_view"); empty: the feature is one
    field_label: str = ""

    @property
    def business_field(self) -> str:
        return self.field_name or self.name

    @property
    def business_label(self) -> str:
        return self.field_label or self.label

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"feature {self.name!r}: family must be one of {FAMILIES}, got {self.family!r}")
        if self.kind not in ("numeric", "categorical"):
            raise ValueError(f"feature {self.name!r}: kind must be numeric or categorical, got {self.kind!r}")


Compute = Callable[[Any], Any]


class FeatureRegistry:
    """An ordered set of features, each registered once, optionally with the pure function computing it.

    Examples
    --------
    >>> registry = FeatureRegistry()
    >>> @registry.feature(label="Days since the lead was created", family="engagement",
    ...                   description="Age of the lead at the cutoff, in days.")
    ... def lead_age_days(timeline):
    ...     return (timeline.cutoff - timeline.created_at) / 86_400
    >>> registry["lead_age_days"].label
    'Days since the lead was created'
    """

    def __init__(self, specs: Iterable[FeatureSpec] = ()) -> None:
        self._specs: dict[str, FeatureSpec] = {}
        self._compute: dict[str, Compute] = {}
        for spec in specs:
            self.add(spec)

    def add(self, spec: FeatureSpec, compute: Compute | None = None) -> FeatureSpec:
        if spec.name in self._specs:
            raise ValueError(f"feature {spec.name!r} is registered twice")
        self._specs[spec.name] = spec
        if compute is not None:
            self._compute[spec.name] = compute
        return spec

    def feature(
        self,
        *,
        label: str,
        family: Family,
        description: str,
        kind: Kind = "numeric",
        sales_side: bool = False,
        sentence: dict[str, str] | None = None,
        field_name: str = "",
        field_label: str = "",
    ) -> Callable[[Compute], Compute]:
        """Register the decorated function as the feature named after it."""

        def register(function: Compute) -> Compute:
            spec = FeatureSpec(
                function.__name__, label, family, description, kind, sales_side, sentence, field_name, field_label
            )
            self.add(spec, function)
            return function

        return register

    def compute(self, name: str, source: Any) -> Any:
        return self._compute[name](source)

    def __getitem__(self, name: str) -> FeatureSpec:
        return self._specs[name]

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[FeatureSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    @property
    def names(self) -> list[str]:
        return list(self._specs)

    def label(self, name: str) -> str:
        return self._specs[name].label

    def select(self, names: Iterable[str]) -> FeatureRegistry:
        """A registry holding only ``names``, in the given order, with their functions."""
        selected = FeatureRegistry()
        for name in names:
            selected.add(self._specs[name], self._compute.get(name))
        return selected

    def without_sales_side(self) -> FeatureRegistry:
        return self.select(spec.name for spec in self if not spec.sales_side)

    def to_frame(self) -> pd.DataFrame:
        """One row per feature: name, label, family, kind, sales_side, description, field_name."""
        columns = ["name", "label", "family", "kind", "sales_side", "description", "field_name"]
        return pd.DataFrame([asdict(spec) for spec in self], columns=columns)

    def to_json(self) -> str:
        return json.dumps([asdict(spec) for spec in self])

    @classmethod
    def from_json(cls, text: str) -> FeatureRegistry:
        return cls(FeatureSpec(**item) for item in json.loads(text))
