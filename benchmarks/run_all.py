"""Run every benchmark script, collect their JSON, and regenerate the tables in benchmarks/README.md.

Each script runs in its own subprocess with the same mode flag (``--quick``, ``--smoke``
or none for the full pass) and ``--out DIR``; its JSON (common shape, see
``common.py``) lands in DIR. ``run_all.json`` in DIR records the machine and the mode,
wall time and exit status of every script (with ``--only``, merged into the previous
record); a failing script's output is kept in
``DIR/<name>.log`` (removed when the script next succeeds). Then the part of the README between
``<!-- BEGIN GENERATED -->`` and ``<!-- END GENERATED -->`` is replaced by the tables
and plots of every JSON found in DIR (a README without the markers gets them
appended; a missing one is created), when every script succeeded: benchmarks/README.md for
the default DIR (benchmarks/results), another README only when ``--readme`` names it.
The scripts read reference data sets from ../shared/data (or ``$PHYSNETJAX_BENCH_DATA``);
without them nothing runs.

Scripts run one at a time by default so that they do not disturb each other's
timings; ``--jobs N`` runs N at once (only sensible for ``--smoke``, whose numbers
mean nothing).

Usage: python benchmarks/run_all.py [--quick | --smoke] [--out DIR] [--readme PATH]
       [--only bench_model,bench_md] [--jobs N]
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from common import BENCHMARKS, RESULTS, format_cell, machine_info, missing_shared_data, parse_args

SCRIPTS = ("bench_model", "bench_profile", "bench_neighbors", "bench_batching", "bench_md", "bench_train")
BEGIN, END = "<!-- BEGIN GENERATED -->", "<!-- END GENERATED -->"


def run_script(name: str, mode: str, out: pathlib.Path) -> dict:
    flags = {"full": [], "quick": ["--quick"], "smoke": ["--smoke"]}[mode]
    start = time.perf_counter()
    process = subprocess.run([sys.executable, str(BENCHMARKS / f"{name}.py"), *flags, "--out", str(out)],
                             cwd=BENCHMARKS, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    status = "ok" if process.returncode == 0 else f"FAILED (exit {process.returncode}), log in {name}.log"
    print(f"{name:16s} {status:20s} {seconds:7.1f} s", flush=True)
    log = out / f"{name}.log"
    if process.returncode != 0:
        log.write_text(process.stdout + process.stderr)
        print(process.stderr[-3000:], file=sys.stderr)
    else:
        log.unlink(missing_ok=True)  # a log left by an earlier failed run would now be stale
    return {"script": name, "returncode": process.returncode, "wall_s": seconds}


def markdown_table(spec: dict) -> str:
    lines = [f"**{spec['title']}**", "", f"Timed: {spec['timed']}.", "",
             "| " + " | ".join(map(str, spec["columns"])) + " |",
             "|" + "---|" * len(spec["columns"])]
    lines += ["| " + " | ".join(format_cell(cell) for cell in row) + " |" for row in spec["rows"]]
    return "\n".join(lines)


def render(out: pathlib.Path, readme: pathlib.Path) -> str:
    """Markdown of every benchmark JSON in ``out``, in :data:`SCRIPTS` order."""
    parts = []
    for name in SCRIPTS:
        path = out / f"{name}.json"
        if not path.exists():
            continue
        result = json.loads(path.read_text())
        machine = result["machine"]
        parts.append(f"### {name} ({result['mode']} run, {result.get('date', 'date not recorded')})\n\n"
                     f"Machine: {machine['cpu']}, {machine['cores']} cores, JAX {machine['jax']} "
                     f"({machine['backend']}), dtype {machine['dtype']}. Raw numbers: "
                     f"[`{path.name}`]({os.path.relpath(path, readme.parent)}).")
        parts += [markdown_table(spec) for spec in result["tables"]]
        parts += [f"![{plot}]({os.path.relpath(out / plot, readme.parent)})" for plot in result["plots"]]
    return "\n\n".join(parts)


def update_readme(readme: pathlib.Path, generated: str) -> None:
    block = f"{BEGIN}\n\n{generated}\n\n{END}"
    text = readme.read_text() if readme.exists() else "# Benchmarks\n\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    readme.write_text(text)


def main():
    def extra(parser):
        parser.add_argument("--readme", type=pathlib.Path,
                            help="README whose generated block is rewritten (default: benchmarks/README.md when "
                                 "--out is benchmarks/results, else none)")
        parser.add_argument("--only", help="comma-separated subset of " + ",".join(SCRIPTS))
        parser.add_argument("--jobs", type=int, default=1, help="scripts run at once (timings interfere)")

    args = parse_args(__doc__, extra)
    args.out = args.out.resolve()
    if args.readme is None and args.out == RESULTS.resolve():
        args.readme = BENCHMARKS / "README.md"
    names = SCRIPTS if args.only is None else tuple(args.only.split(","))
    unknown = sorted(set(names) - set(SCRIPTS))
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; choose from {list(SCRIPTS)}")
    missing = missing_shared_data()
    if missing is not None:
        raise SystemExit(f"run_all.py: {missing}")
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        runs = list(pool.map(lambda name: run_script(name, args.mode, args.out), names))
    total = time.perf_counter() - start
    record = args.out / "run_all.json"
    previous = json.loads(record.read_text())["runs"] if record.exists() and args.only else []
    merged = {run["script"]: run for run in previous + [dict(run, mode=args.mode) for run in runs]}
    record.write_text(json.dumps(
        {"machine": machine_info(), "jobs": args.jobs, "last_wall_s": total,
         "runs": [merged[name] for name in SCRIPTS if name in merged]}, indent=2) + "\n")
    failed = [run["script"] for run in runs if run["returncode"] != 0]
    if failed:
        raise SystemExit(f"total {total:.1f} s; {', '.join(failed)} failed: no README rewritten (its tables stay as "
                         "they were)")
    if args.readme is None:
        print(f"total {total:.1f} s; results in {args.out} (no README rewritten: pass --readme PATH for one)")
        return
    update_readme(args.readme.resolve(), render(args.out, args.readme.resolve()))
    print(f"total {total:.1f} s; tables written to {args.readme}")


if __name__ == "__main__":
    main()
