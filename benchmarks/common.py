"""Shared helpers for the benchmark scripts: machine description, timing, JSON output."""

from __future__ import annotations

import json
import os
import pathlib
import platform
import statistics
import time

import jax

RESULTS = pathlib.Path(__file__).parent / "results"
SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


def machine_info() -> dict:
    """CPU model, core count, JAX version/backend/devices."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "python": platform.python_version(),
    }


def time_call(fn, repeats: int = 7, warmup: int = 1) -> dict:
    """Time ``fn()`` (which must block until done): median/min/max seconds over repeats, after warm-up."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "repeats": repeats}


def write_json(name: str, payload: dict) -> pathlib.Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine_info(), **payload}, indent=2))
    return path
