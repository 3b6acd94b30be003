"""Regenerate the measured figures the README quotes, with the machine and its load.

    python benchmarks/readme_figures.py [--only md_nve,check_example,check_legacy] [--out DIR]

Runs each command exactly as README.md shows it, in a scratch directory that links the
repository's ``physnetjax/`` and ``tests/`` (outputs such as ``runs/ethanol_nve.xyz``
stay there), and records its output, wall time and exit status together with the
machine (CPU, cores, JAX backend and devices) and the 1-minute load average before and
after it. Speeds (MD steps/s) depend on the machine and on everything else it runs:
on a shared machine compare the load, not only the numbers. The check values
(finite-difference errors, NVE energy change) depend on the machine only through
float64 round-off and the CPU's instruction set.

Writes ``DIR/readme_figures.json`` (default ``benchmarks/results``) and prints each
command's output as the README shows it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import RESULTS, machine_info  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
COMMANDS = {
    "md_nve": ["-m", "physnetjax.md", "--geometry", "physnetjax/pretrained/ethanol/ethanol.xyz", "--ensemble", "nve",
               "--temperature", "300", "--timestep", "0.5", "--steps", "4000", "--out", "runs/ethanol_nve.xyz"],
    "check_example": ["-m", "physnetjax.check"],
    "check_legacy": ["-m", "physnetjax.check", "tests/data/legacy/C_synthD/epoch-30", "--frames", "1"],
}
"""Name → arguments of ``python`` for every README figure this script measures."""


def run(name: str, work: pathlib.Path) -> dict:
    """Run one command in ``work``; its output, exit status, wall time and the load around it."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200")
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *COMMANDS[name]], cwd=work, env=env, capture_output=True, text=True)
    return {"command": "python " + " ".join(COMMANDS[name]), "exit_status": done.returncode,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_info(),
            "wall_s": round(time.perf_counter() - start, 1), "load_1min_before": load_before,
            "load_1min_after": os.getloadavg()[0], "stdout": done.stdout, "stderr_tail": done.stderr[-2000:]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated subset of " + ",".join(COMMANDS))
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS, help="folder for readme_figures.json")
    args = parser.parse_args()
    names = list(COMMANDS) if args.only is None else args.only.split(",")
    unknown = sorted(set(names) - set(COMMANDS))
    if unknown:
        parser.error(f"unknown figure(s) {unknown}; choose from {list(COMMANDS)}")
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        work = pathlib.Path(scratch)
        for link in ("physnetjax", "tests"):
            (work / link).symlink_to(ROOT / link)
        (work / "runs").mkdir()
        for name in names:
            results[name] = run(name, work)
            entry = results[name]
            print(f"== {name}: {entry['command']}  (exit {entry['exit_status']}, {entry['wall_s']} s, "
                  f"load {entry['load_1min_before']:.1f} → {entry['load_1min_after']:.1f})")
            print(entry["stdout"])
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / "readme_figures.json"
    figures = json.loads(target.read_text())["figures"] if target.exists() else {}
    figures.update(results)
    target.write_text(json.dumps({"figures": figures}, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
