"""Speed of `leadscore export` at a million scores: Salesforce Bulk API 2.0 CSV and HubSpot batch-update JSON,
a first export of every score, then a second one after 5 % of the scores changed.

A temporary SQLite CRM gets 1,000,000 leads and as many lead_scores rows with the values the nightly job writes
(most probabilities low, tiers by threshold, one to three reason sentences a line or "Nothing stands out").
Each export runs with push against the in-repo fakes (tests/fakes), in-process through httpx's MockTransport:
the time is leadscore's own work (reading and comparing, writing the files, matching results, recording every
row in crm_exports) plus the fakes' processing, reported apart. Real APIs add their network and processing time
(see the README's figures for what to expect).

    python benchmarks/export_speed.py                 # 1,000,000 scores
    python benchmarks/export_speed.py --scores 50000  # a quick look
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from leadscore.crm import hubspot, salesforce, schema
from leadscore.crm.bulk import write_frame
from leadscore.crm.database import WriteMode, connect, prepare
from leadscore.crm.export_keys import key_mapping
from leadscore.crm.remote import Waits, open_client
from leadscore.pipelines.export import ExportOptions, export_scores

TESTS = Path(__file__).resolve().parent.parent / "tests"  # where the fakes live
TOKEN = "benchmark-token-0123456789"
REASONS = (
    "Requested a demo.", "Viewed the pricing page 4 times in the last 30 days.", "Works in Financial services.",
    "Attended a webinar.", "Director or above.", "Uses a company e-mail address.",
    "Downloaded a case study 2 times.", "Company of 201-1000 employees.", "Came in through Paid search.",
)
NOTHING = "Nothing stands out: no single field moves this lead's score by 0.5 pts or more."


def synthetic_scores(count: int, seed: int = 42) -> pd.DataFrame:
    """lead_scores rows as the nightly job writes them, for ``count`` leads."""
    rng = np.random.default_rng(seed)
    probability = np.clip(rng.beta(0.6, 40, count), 0.0005, 0.999)
    tier = np.where(probability >= 0.20, "sql", np.where(probability >= 0.05, "mql", "none"))
    reasons = np.array([NOTHING, *("\n".join(rng.choice(REASONS, size, replace=False))
                                   for size in (1, 2, 3) for _ in range(200))], dtype=object)
    # A third of the leads have something that stands out: one to three sentences.
    picks = np.where(rng.random(count) < 0.33, rng.integers(1, len(reasons), count), 0)
    return pd.DataFrame({
        "lead_id": np.arange(1, count + 1), "probability": probability.round(6), "tier": tier,
        "fit_score": rng.integers(0, 101, count).astype(float), "engagement_score": rng.integers(0, 101, count).astype(float),
        "reason_text": reasons[picks], "model_name": "leadscore", "model_version": "3",
        "scored_at": pd.Timestamp("2026-11-27 02:00:00") + pd.to_timedelta(np.arange(count) // 10_000, unit="s"),
    })


def build_crm(path: Path, count: int) -> dict:
    began = time.perf_counter()
    engine = connect(f"sqlite:///{path}", writable=True)
    scores = synthetic_scores(count)
    with engine.begin() as connection:
        prepare(connection, WriteMode.REFUSE, empty_schema_is_fine=True, command="benchmark")
        write_frame(connection, schema.leads, pd.DataFrame({"id": scores["lead_id"], "channel": "webinar",
                                                            "created_at": pd.Timestamp("2026-01-05")}))
        write_frame(connection, schema.lead_scores, scores)
    engine.dispose()
    return {"seconds": round(time.perf_counter() - began, 1), "tiers": scores["tier"].value_counts().to_dict()}


def change_a_twentieth(path: Path) -> int:
    """A later night: 5 % of the scores move by a point, as a rescoring that changed them would write them."""
    engine = connect(f"sqlite:///{path}", writable=True)
    with engine.begin() as connection:
        changed = connection.exec_driver_sql(
            "UPDATE lead_scores SET probability = min(0.999, probability + 0.01), scored_at = '2026-11-28T02:00:00' "
            "WHERE (lead_id * 7919) % 20 = 3").rowcount
    engine.dispose()
    return changed


class Timed:
    """A fake's handler, with the time spent inside it."""

    def __init__(self, handle) -> None:
        self.handle, self.seconds = handle, 0.0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        began = time.perf_counter()
        try:
            return self.handle(request)
        finally:
            self.seconds += time.perf_counter() - began


def export_once(path: Path, out: Path, crm: str, fake) -> dict:
    engine = connect(f"sqlite:///{path}", writable=True)
    timed = Timed(fake.handle)
    if crm == "salesforce":
        client = open_client("https://bench.my.salesforce.com", TOKEN, transport=httpx.MockTransport(timed))
        target = salesforce.SalesforceTarget(key_mapping(salesforce.KEY_FIELD, salesforce.RECORD_IDS,
                                                         salesforce.key_field_problem))
        sender = salesforce.BulkIngest(client, poll=salesforce.Poll(sleep=lambda seconds: None))
    else:
        client = open_client("https://api.hubapi.com", TOKEN, transport=httpx.MockTransport(timed))
        target = hubspot.HubSpotTarget(key_mapping("hs_object_id", hubspot.RECORD_IDS, hubspot.key_property_problem))
        sender = hubspot.BatchUpdate(client, Waits(sleep=lambda seconds: None))
    began = time.perf_counter()
    result = export_scores(engine, target, ExportOptions(out, push=True), sender)
    seconds = time.perf_counter() - began
    engine.dispose()
    return {
        "crm": crm, "seconds": round(seconds, 1), "fake_seconds": round(timed.seconds, 1),
        "leadscore_seconds": round(seconds - timed.seconds, 1), "phases": {k: round(v, 1) for k, v in result.phases.items()},
        "sent": result.sent, "accepted": result.tally.accepted, "requests": sum(file.requests for file in result.files),
        "files": [{"name": file.path.name, "rows": file.rows, "mb": round(file.bytes / 1e6, 1)} for file in result.files],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scores", type=int, default=1_000_000)
    parser.add_argument("--json", type=Path, help="Also write the figures to this file.")
    args = parser.parse_args()
    figures = {"scores": args.scores, "machine": f"{platform.processor() or platform.machine()}, Python "
                                                  f"{platform.python_version()}", "runs": []}
    with tempfile.TemporaryDirectory() as folder:
        crm, out = Path(folder) / "crm.db", Path(folder) / "out"
        out.mkdir()
        figures["build"] = build_crm(crm, args.scores)
        print(f"CRM with {args.scores:,} scores built in {figures['build']['seconds']} s", flush=True)
        sys.path.insert(0, str(TESTS))
        from fakes import FakeHubSpot, FakeSalesforce

        fakes = {"salesforce": FakeSalesforce(TOKEN, polls_before_done=0), "hubspot": FakeHubSpot(TOKEN)}
        fakes["salesforce"].add_leads(range(1, args.scores + 1))
        fakes["hubspot"].add_contacts(range(1, args.scores + 1))
        for run in ("first", "second"):
            if run == "second":
                figures["changed"] = change_a_twentieth(crm)
                print(f"{figures['changed']:,} scores changed", flush=True)
            for name, fake in fakes.items():
                # The fakes' millions of records and kept requests would otherwise be walked by every collection
                # of the garbage collector, slowing leadscore's work as no real export, whose CRM is elsewhere, is.
                gc.collect()
                gc.freeze()
                figure = {"run": run, **export_once(crm, out, name, fake)}
                figures["runs"].append(figure)
                files = ", ".join(f"{file['name']} ({file['rows']:,} rows, {file['mb']} MB)" for file in figure["files"])
                print(f"{run} export to {name}: {figure['seconds']} s ({figure['leadscore_seconds']} s leadscore, "
                      f"{figure['fake_seconds']} s the fake; phases {figure['phases']}), {figure['sent']:,} rows sent "
                      f"in {figure['requests']:,} requests/jobs, {figure['accepted']:,} accepted; files: {files}",
                      flush=True)
    figures["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2, 2)
    print(f"Peak memory: {figures['peak_rss_gb']} GB")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
