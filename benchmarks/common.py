"""Shared helpers for the benchmark scripts: arguments, machine description, timing, JSON output.

Every script takes ``--quick`` (≤ about a minute each on 2 CPU cores), ``--smoke`` (tiny
sizes, a few seconds, for the CI smoke test) and ``--out DIR`` (default
``benchmarks/results``), and writes ``DIR/<name>.json`` in one shape::

    {"benchmark": name, "mode": "full" | "quick" | "smoke", "date": UTC ISO time,
     "machine": {cpu, cores, jax, backend, devices, python, dtype},
     "tables": [{"title", "timed", "columns", "rows"}, ...],   # what README shows
     "plots": ["file.png", ...],                                # beside the JSON
     "data": {...}}                                             # raw numbers

``benchmarks/run_all.py`` renders the ``tables`` into ``benchmarks/README.md``.
Unless a table says otherwise, a time is the median of repeats of a jitted call
blocked until its result is ready, after warm-up calls (the first compiles; compile
time excluded, steady state), reported with the min and max of the repeats.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import pathlib
import platform
import statistics
import time

import jax

from physnetjax import compilation

BENCHMARKS = pathlib.Path(__file__).parent
RESULTS = BENCHMARKS / "results"
SHARED_DATA = pathlib.Path(os.environ.get("PHYSNETJAX_BENCH_DATA", BENCHMARKS.resolve().parents[1] / "shared" / "data"))
"""Reference data sets (../shared/data next to the repository, or $PHYSNETJAX_BENCH_DATA)."""
RUN_ALL_DATA = ("ethanol_gfn2_500K.npz", "co2_gfn2_500K.npz", "basepairs/at_prod.npz", "basepairs/gc_prod.npz")
"""The files of :data:`SHARED_DATA` that the scripts of ``run_all.py`` read."""


def missing_shared_data(names=RUN_ALL_DATA) -> str | None:
    """Why the reference data sets ``names`` cannot be read (which are missing and how to point at them), or None."""
    missing = [name for name in names if not (SHARED_DATA / name).is_file()]
    if not missing:
        return None
    return (f"{', '.join(missing)} missing in {SHARED_DATA}: the benchmarks read the project's reference data sets "
            "(../shared/data next to the repository); set PHYSNETJAX_BENCH_DATA to the folder that holds them")


def parse_args(doc: str, extra=None) -> argparse.Namespace:
    """Parse ``--quick``, ``--smoke`` and ``--out`` (plus options added by ``extra(parser)``)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats")
    mode.add_argument("--smoke", action="store_true", help="tiny sizes, seconds (CI smoke test)")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS, help="folder for JSON and PNG output")
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    args.mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    return args


def machine_info(dtype: str = "float32") -> dict:
    """CPU model, core count, JAX version/backend/devices, Python version and compute dtype."""
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
        "dtype": dtype,
    }


def summarise(times) -> dict:
    """Median, min and max of a list of durations in seconds."""
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "repeats": len(times)}


def time_call(fn, repeats: int = 7, warmup: int = 3) -> dict:
    """Time ``fn()`` (which must block until done): median/min/max seconds over repeats, after warm-up.

    Three warm-up calls by default: the first compiles, and the next few calls after a
    compile were seen to be up to several times slower on XLA:CPU (bench_model quick pass).
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return summarise(times)


def interleaved_times(calls: dict, rounds: int, warmup: int = 2) -> dict:
    """Time ``calls[name]()`` (each must block until done) round robin, so a change of load hits all alike.

    Every call is first made ``warmup`` times untimed (the first compiles). Returns, per
    name, the lists ``cpu_s`` (process CPU seconds: both cores' work, steadier than wall
    time on a shared machine) and ``wall_s`` over ``rounds`` rounds.
    """
    for call in calls.values():
        for _ in range(warmup):
            call()
    times = {name: {"cpu_s": [], "wall_s": []} for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            cpu_start, wall_start = time.process_time(), time.perf_counter()
            call()
            times[name]["cpu_s"].append(time.process_time() - cpu_start)
            times[name]["wall_s"].append(time.perf_counter() - wall_start)
    return times


@contextlib.contextmanager
def compiled_with(options):
    """Functions compiled by :func:`physnetjax.compilation.jit` inside the block get XLA ``options`` (None: plain
    ``jax.jit``, XLA's defaults) instead of the library's; for side-by-side runs against XLA's defaults."""
    shipped = compilation.compiler_options
    compilation.compiler_options = lambda: options
    try:
        yield
    finally:
        compilation.compiler_options = shipped


def ms(timing: dict) -> str:
    """``median (min–max)`` of a :func:`time_call` result, in milliseconds."""
    return f"{timing['median_s'] * 1e3:.3g} ({timing['min_s'] * 1e3:.3g}–{timing['max_s'] * 1e3:.3g})"


def table(title: str, timed: str, columns: list, rows: list) -> dict:
    """A table for README: ``rows`` are lists of cells (numbers or strings) under ``columns``."""
    return {"title": title, "timed": timed, "columns": columns, "rows": rows}


def publish(name: str, args, tables: list, data: dict, *, plots: dict | None = None,
            dtype: str = "float32") -> pathlib.Path:
    """Print ``tables``, draw ``plots`` and write ``args.out/<name>.json`` in the common shape.

    ``plots`` maps a file name in ``args.out`` to a function ``draw(path)`` that writes it.
    Returns the JSON path (also printed).
    """
    for spec in tables:
        print_table(spec)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for filename, draw in (plots or {}).items():
        draw(out / filename)
    path = out / f"{name}.json"
    payload = {"benchmark": name, "mode": args.mode, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds"), "machine": machine_info(dtype), "tables": tables,
               "plots": list(plots or {}), "data": data}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def medians_per_call(times: dict, calls: int, unit: float) -> dict:
    """{name: {"wall_s": ..., "cpu_s": ...}}: the medians of :func:`interleaved_times`' samples of ``calls`` calls
    each, per call, multiplied by ``unit`` (1e3 for ms, 1e6 for µs)."""
    return {name: {kind: statistics.median(values) / calls * unit for kind, values in kinds.items()}
            for name, kinds in times.items()}


def publish_timed_table(name: str, args, title: str, timed: str, columns: list, rows: list, data: dict,
                        load_before: tuple) -> pathlib.Path:
    """:func:`publish` one :func:`table` whose title ends with the load average before and after the timing (both
    also in ``data``); ``load_before``: ``os.getloadavg()`` at its start."""
    load_after = os.getloadavg()
    data.update(load_average_before=load_before, load_average_after=load_after)
    title = f"{title}; load average {load_before[0]:.1f} → {load_after[0]:.1f})"
    return publish(name, args, [table(title, timed, columns, rows)], data)


def print_table(spec: dict) -> None:
    """Print a :func:`table` as aligned text."""
    cells = [[format_cell(c) for c in row] for row in spec["rows"]]
    widths = [max(len(str(h)), *(len(r[k]) for r in cells)) for k, h in enumerate(spec["columns"])]
    print(f"\n{spec['title']}  [{spec['timed']}]")
    print("  ".join(str(h).rjust(w) for h, w in zip(spec["columns"], widths)))
    for row in cells:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)), flush=True)


def format_cell(value) -> str:
    """Numbers to 3–4 significant digits, None to an en dash, everything else as str."""
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-2):
        return f"{value:.3g}"
    return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"
