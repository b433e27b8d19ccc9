"""Speed of `leadscore serve` on loopback: one lead with reasons per request, as a form handler sends it.

A model is trained on a 20,000-lead simulated CRM and served by `leadscore serve` in its own process. The
requests carry real open leads of another simulated CRM (profile and activities). First a warm-up, then
sequential requests (latency p50, p95, p99), then the same requests from 4 concurrent clients (throughput),
the server's resident memory sampled before and after each phase, and every error counted.

    python benchmarks/api_speed.py                 # 2,000 sequential requests, then 2,000 from 4 clients
    python benchmarks/api_speed.py --requests 300  # a quick look

Target (issue 13): p95 under 20 ms for one lead with reasons on this 2-core machine, memory flat, no error.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import numpy as np

AS_OF = datetime(2025, 11, 20, 9, 30)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def payloads(count: int) -> list[dict]:
    """``count`` requests of one open lead each, profile and activities as a webhook has them."""
    from leadscore.crm.simulator import SimulationConfig, simulate
    from leadscore.features import open_leads_at
    from leadscore.serve.api import request_leads

    history = simulate(SimulationConfig(leads=5_000, seed=12)).history().before(AS_OF)
    ids = open_leads_at(history, AS_OF)["lead_id"].to_numpy()
    return [{"as_of": AS_OF.isoformat(), "leads": [lead]} for lead in request_leads(history, np.resize(ids, count))]


def measure(url: str, bodies: list[dict], clients: int) -> dict:
    import httpx

    def send(client, body) -> tuple[float, int]:
        began = time.perf_counter()
        response = client.post(f"{url}/score", json=body)
        return time.perf_counter() - began, response.status_code

    began = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        shares = [bodies[start::clients] for start in range(clients)]

        def worker(share):
            with httpx.Client(timeout=30) as client:
                return [send(client, body) for body in share]

        results = [result for part in pool.map(worker, shares) for result in part]
    seconds = time.perf_counter() - began
    latency = np.array([r[0] for r in results]) * 1000
    errors = sum(status != 200 for _, status in results)
    return {"clients": clients, "requests": len(results), "errors": errors, "seconds": round(seconds, 2),
            "leads_per_second": round(len(results) / seconds, 1),
            **{f"p{q}_ms": round(float(np.percentile(latency, q)), 2) for q in (50, 95, 99)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "api_speed.json")
    arguments = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from scoring_job import train_model

    with tempfile.TemporaryDirectory() as folder:
        print(f"training the model on 20,000 simulated leads ({platform.machine()}, {os.cpu_count()} cores)", flush=True)
        store = train_model(Path(folder))
        bodies = payloads(arguments.requests)
        port = _free_port()
        server = subprocess.Popen([str(Path(sys.executable).parent / "leadscore"), "serve", "--tracking-uri", store,
                                   "--port", str(port)], stdout=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            import httpx

            for _ in range(600):
                try:
                    if httpx.get(f"{url}/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            measure(url, bodies[:100], 1)  # warm-up: first calls compile and fill caches
            memory = [_rss_mb(server.pid)]
            sequential = measure(url, bodies, 1)
            memory.append(_rss_mb(server.pid))
            concurrent = measure(url, bodies, 4)
            memory.append(_rss_mb(server.pid))
        finally:
            server.terminate()
            server.wait(timeout=30)
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "sequential": sequential,
              "concurrency_4": concurrent, "server_rss_mb": [round(m, 1) for m in memory]}
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
