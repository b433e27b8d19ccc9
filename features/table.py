"""A feature table: features, labels and the registry that explains them, from a CRM or a flat file."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from leadscore.errors import LeadscoreError
from leadscore.files import atomic_path, check_table_suffix, write_table
from leadscore.features.parsing import ReadingRule
from leadscore.features.registry import FeatureRegistry

METADATA_KEY = b"leadscore"


@dataclass(frozen=True)
class FeatureTable:
    """One row per (lead, moment): an id, an optional time, the registered features and the target.

    ``notes`` are what a person should know about how the table was built
    (columns dropped, types inferred, labels not yet final). ``reading`` is
    how a flat file's text became these values; scoring reads new rows with it.
    """

    frame: pd.DataFrame
    registry: FeatureRegistry
    id_column: str
    target_column: str
    time_column: str | None = None
    source: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)
    reading: ReadingRule = field(default_factory=ReadingRule)
    name_columns: tuple[str, ...] = ()  # columns a person knows a lead by (company, job title), for the report

    @property
    def features(self) -> pd.DataFrame:
        return self.frame[self.registry.names]

    @property
    def target(self) -> pd.Series:
        return self.frame[self.target_column]

    def write(self, path: str | Path) -> Path:
        """Parquet (with the registry, readable by ``train --table``) or CSV (the frame only), by extension."""
        path = Path(path)
        check_table_suffix(path)
        if path.suffix.lower() == ".csv":
            return write_table(self.frame, path)
        return self.to_parquet(path)

    def to_parquet(self, path: str | Path) -> Path:
        path = Path(path)
        table = pa.Table.from_pandas(self.frame, preserve_index=False)
        about = {
            "registry": json.loads(self.registry.to_json()),
            "id_column": self.id_column,
            "target_column": self.target_column,
            "time_column": self.time_column,
            "source": self.source,
            "notes": list(self.notes),
            "reading": self.reading.to_json(),
            "name_columns": list(self.name_columns),
        }
        metadata = {**(table.schema.metadata or {}), METADATA_KEY: json.dumps(about).encode()}
        with atomic_path(path) as temporary:
            pq.write_table(table.replace_schema_metadata(metadata), temporary)
        return path

    @classmethod
    def read_parquet(cls, path: str | Path) -> FeatureTable:
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowInvalid) as error:
            raise LeadscoreError(f"Cannot read the feature table {path}: {error}") from error
        raw = (table.schema.metadata or {}).get(METADATA_KEY)
        if raw is None:
            raise LeadscoreError(
                f"{path} is a Parquet file but not a leadscore feature table (no registry in its metadata). "
                "Write it with `leadscore features`, or pass it as a flat table with --data."
            )
        about = json.loads(raw)
        frame = table.to_pandas()
        # Parquet has no one-second unit; leadscore's times are datetime64[s] everywhere.
        times = [c for c in frame.columns if pd.api.types.is_datetime64_any_dtype(frame[c])]
        frame = frame.astype({c: "datetime64[s]" for c in times})
        return cls(
            frame=frame,
            registry=FeatureRegistry.from_json(json.dumps(about["registry"])),
            id_column=about["id_column"],
            target_column=about["target_column"],
            time_column=about["time_column"],
            source=about["source"],
            notes=tuple(about["notes"]),
            # Tables written before the reading rule kept only the missing-value markers.
            reading=ReadingRule.from_json(about.get("reading", {"na_values": about.get("na_values", ())})),
            name_columns=tuple(about.get("name_columns", ())),
        )
