"""The one fitted object that scores leads: encoder, estimator(s) and calibrator together."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from leadscore.features.parsing import ReadingRule
from leadscore.features.registry import FeatureRegistry
from leadscore.models.calibration import Calibrator
from leadscore.models.candidates import LightGBMCandidate, LogisticCandidate
from leadscore.models.drift import DriftReference
from leadscore.models.encoding import EncodedRows, FrameEncoder
from leadscore.models.tiers import SubScores, Tiers


@dataclass(frozen=True)
class Member:
    """A fitted candidate and its weight in the model's margin."""

    candidate: LightGBMCandidate | LogisticCandidate
    fitted: object
    weight: float = 1.0

    def inputs(self, encoded: pd.DataFrame | EncodedRows) -> np.ndarray:
        """What the fitted candidate reads of ``encoded`` (see the candidates' ``inputs``)."""
        return self.candidate.inputs(self.fitted, encoded)

    def margin(self, encoded: pd.DataFrame | EncodedRows, inputs: np.ndarray | None = None) -> np.ndarray:
        inputs = self.inputs(encoded) if inputs is None else inputs
        return self.weight * self.candidate.margin_of_inputs(self.fitted, inputs)


@dataclass
class LeadScoringModel:
    """Everything learned from data, so training and scoring cannot drift apart.

    ``margin`` is the log-odds the estimators agree on (a weighted sum when the
    model is a blend); ``predict_proba`` passes it through the calibrator.
    ``tiers`` holds the MQL and SQL thresholds and ``subscores`` the reference
    for the fit and engagement scores, both chosen at training time.
    ``summary`` records how it was trained. ``reading`` is how the training
    table's text was read (missing markers, decimal marks, placeholders):
    new rows must be read the same way before they are scored. ``drift`` holds
    the reference distributions of the features and the score that scoring
    runs are measured against; models trained before it have none (the class
    default), so there is nothing to check them against.
    """

    registry: FeatureRegistry
    encoder: FrameEncoder
    members: tuple[Member, ...]
    calibrator: Calibrator
    id_column: str
    target_column: str
    time_column: str | None
    reading: ReadingRule = field(default_factory=ReadingRule)
    tiers: Tiers | None = None
    subscores: SubScores | None = None
    summary: dict = field(default_factory=dict)
    drift: DriftReference | None = None

    def __setstate__(self, state: dict) -> None:
        # Models registered before the reading rule kept only the missing-value markers: they must still score.
        if "reading" not in state:
            state["reading"] = ReadingRule(na_values=tuple(state.pop("na_values", ())))
        self.__dict__.update(state)

    @property
    def features(self) -> list[str]:
        return self.registry.names

    @property
    def kind(self) -> str:
        names = [member.candidate.name for member in self.members]
        return names[0] if len(names) == 1 else "blend"

    def encode(self, frame: pd.DataFrame) -> pd.DataFrame:
        return self.encoder.transform(frame)

    def encode_rows(self, frame: pd.DataFrame) -> EncodedRows:
        """``encode`` as arrays, which the members read as they read the frame (``Member.inputs``)."""
        return self.encoder.encode_rows(frame)

    def margin(self, frame: pd.DataFrame) -> np.ndarray:
        return self.encoded_margin(self.encode(frame))

    def encoded_margin(self, encoded: pd.DataFrame | EncodedRows, inputs: list[np.ndarray] | None = None) -> np.ndarray:
        """The margin of rows already through ``encode`` (training scores many row sets of one encoded frame).
        ``inputs``, each member's ``inputs(encoded)``, spares building them again when the caller has them."""
        inputs = inputs or [None] * len(self.members)
        return np.sum([member.margin(encoded, given) for member, given in zip(self.members, inputs)], axis=0)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of conversion for every row of ``frame``."""
        return self.calibrator.predict(self.margin(frame))

    def raw_input(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The lead id and the model's input columns as a JSON request carries them (numbers as doubles,
        categories as text, missing values as None): the logged model's input example.

        The model reads any dtype a CRM export holds; the example only has to survive MLflow's JSON round trip.
        """
        kinds = {c: float if self.registry[c].kind == "numeric" else object for c in self.features}
        columns = frame[self.features].astype(kinds)
        columns = columns.where(columns.notna(), None).astype({c: float for c, k in kinds.items() if k is float})
        return pd.concat([frame[[self.id_column]].reset_index(drop=True), columns.reset_index(drop=True)], axis=1)
