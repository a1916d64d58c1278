"""Shared bench helpers: timing, percentiles, the results file and a printed table."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results.json"


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def machine() -> dict:
    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine()}


def record(section: str, rows: list[dict]) -> None:
    """Merge one section's rows into bench/results.json and print them as a table."""
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data["machine"] = machine()
    data[section] = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": rows}
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\n== {section} ==")
    width = max(len(r["metric"]) for r in rows)
    print(f"{'metric':<{width}}  {'ours':>12}  {'baseline':>12}  {'ratio':>7}  {'target':>8}  ok")
    for r in rows:
        ours, base = r.get("ours"), r.get("baseline")
        ratio = r.get("ratio")
        seconds = r.get("unit", "s") == "s"  # a row in other units (MB, a share) says so
        print(f"{r['metric']:<{width}}  {fmt(ours, seconds):>12}  {fmt(base, seconds):>12}  "
              f"{(f'{ratio:.2f}' if ratio is not None else '-'):>7}  {r.get('target', '-'):>8}  "
              f"{'yes' if r.get('ok') else 'NO' if 'ok' in r else '-'}")


def fmt(value, seconds: bool = True) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if not seconds:
        return f"{value:.3g}"
    if value < 0.001:
        return f"{value * 1e6:.1f}us"
    return f"{value * 1000:.3f}ms" if value < 10 else f"{value:.2f}s"


def median(values: list[float]) -> float:
    return statistics.median(values)
