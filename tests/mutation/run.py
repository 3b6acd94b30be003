"""Run the curated mutants of ``tests/mutation/mutants.py`` and report which ones the tests kill.

Usage (from the repository root)::

    python tests/mutation/run.py                 # every mutant, results → tests/mutation/results.json
    python tests/mutation/run.py --only dipole_sign,force_sign
    python tests/mutation/run.py --list
    python tests/mutation/run.py --only dipole_sign --tests tests/test_goldens.py --skip-baseline

The repository's ``physnetjax/``, ``tests/`` and ``pyproject.toml`` are copied once into a
temporary folder; for each mutant its snippet is replaced there, its test files run with
``python -m pytest -x`` (default, non-slow selection) from that folder, and the file is
restored. The working tree is never touched. Bytecode is not written
(``PYTHONDONTWRITEBYTECODE``), so an edit of the same length in the same second cannot
be masked by a stale ``.pyc``.

The union of the mutants' test files also runs once unmutated (the *baseline*, queued
after the mutants): a failing baseline would make every mutant look killed, so the run is
then reported invalid (exit 2). Results are written after each mutant (``"partial": true``
until the run ends). ``--jobs N`` judges N mutants at
once, each worker in its own copy of the repository.

Outcome per mutant: ``killed`` (pytest exit 1: a test failed), ``error`` (any other
non-zero exit, e.g. the mutant broke the import: counted as killed, but worth a look),
``survived`` (exit 0), ``timeout``. Score = (killed + error) / all. Exit status 0 when
every survivor is listed in ``EXPLAINED``, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

from mutants import EXPLAINED, MUTANTS  # noqa: E402


def apply(text: str, mutant) -> str:
    """``text`` with the mutant's snippet replaced; ValueError unless it occurs exactly once."""
    count = text.count(mutant.old)
    if count != 1:
        raise ValueError(f"mutant {mutant.name}: snippet occurs {count} times in {mutant.path}, expected once")
    return text.replace(mutant.old, mutant.new)


COPIED = ("physnetjax", "tests", "benchmarks", "pyproject.toml", "README.md", "CHANGELOG.md")
"""What each worker's copy holds: the package, the tests and what the tests read (the benchmark scripts run by
test_benchmarks_smoke.py, the documents test_readme.py checks)."""


def copy_repository(target: pathlib.Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in COPIED:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, target / name, ignore=ignore)
        else:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)


def check_copied(mutant) -> None:
    """ValueError unless the mutant's file lies in what :func:`copy_repository` copies (a mutant of an uncopied file
    failed inside its worker thread, which never returned its copy, and the remaining mutants waited forever)."""
    if pathlib.PurePosixPath(mutant.path).parts[0] not in COPIED:
        raise ValueError(f"mutant {mutant.name}: {mutant.path} is outside the copied {', '.join(COPIED)}")


def worker_copies(folder: pathlib.Path, jobs: int) -> queue.Queue:
    """A queue of ``jobs`` copies of the repository (:func:`copy_repository`) in ``folder``: one per mutant judged
    at once, taken from the queue for a run and put back after it."""
    workdirs = queue.Queue()
    for k in range(jobs):
        workdir = folder / f"worker-{k}"
        copy_repository(workdir)
        workdirs.put(workdir)
    return workdirs


def run_tests(workdir: pathlib.Path, tests, timeout: float) -> tuple[int | None, float, str]:
    """(pytest exit code or None on timeout, seconds, last lines of output).

    pytest runs in its own session with its output in a file, and the whole session is killed when it ends: a
    process the tests started and left running (a benchmark script's worker) keeps no pipe open, so it cannot make
    the runner wait for it.
    """
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    start = time.perf_counter()
    with tempfile.TemporaryFile(mode="w+") as log:
        process = subprocess.Popen([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                                   cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
                                   start_new_session=True)
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
        seconds = time.perf_counter() - start
        log.seek(0)
        tail = "" if code is None else "\n".join(log.read().strip().splitlines()[-6:])
    return code, seconds, tail


def outcome(code: int | None) -> str:
    if code is None:
        return "timeout"
    return {0: "survived", 1: "killed"}.get(code, "error")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated mutant names (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--tests", default="", help="comma-separated test files/ids to run instead of each "
                        "mutant's own (e.g. to check that one new test kills a mutant)")
    parser.add_argument("--update", action="store_true", help="with --only: replace those mutants' entries in "
                        "the existing results file and recompute its score")
    parser.add_argument("--skip-baseline", action="store_true", help="do not run the unmutated tests first")
    parser.add_argument("--jobs", type=int, default=1, help="mutants judged at once, each in its own copy")
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds per pytest run")
    parser.add_argument("--out", type=pathlib.Path, default=HERE / "results.json", help="JSON report")
    args = parser.parse_args(argv)
    if args.list:
        for mutant in MUTANTS:
            print(f"{mutant.name:34s} {mutant.path:42s} {mutant.what}")
        return 0
    names = [n for n in args.only.split(",") if n]
    unknown = sorted(set(names) - {m.name for m in MUTANTS})
    if unknown:
        print(f"error: unknown mutant(s) {unknown}; see --list", file=sys.stderr)
        return 2
    selected = [m for m in MUTANTS if not names or m.name in names]

    override = [t for t in args.tests.split(",") if t]
    baseline_tests = override or sorted({t for m in selected for t in m.tests})
    with tempfile.TemporaryDirectory(prefix="physnetjax-mutation-") as tmp:
        workdirs = worker_copies(pathlib.Path(tmp), args.jobs)
        for mutant in selected:
            check_copied(mutant)
            apply((ROOT / mutant.path).read_text(), mutant)

        lock, done = threading.Lock(), []

        def baseline():
            workdir = workdirs.get()
            try:
                code, seconds, tail = run_tests(workdir, baseline_tests, args.timeout * 3)
            finally:
                workdirs.put(workdir)
            print(f"baseline ({len(baseline_tests)} files): exit {code} in {seconds:.0f} s", flush=True)
            return {"exit_code": code, "seconds": round(seconds, 1), "tests": baseline_tests, "pytest_tail": tail}

        def judge(mutant):
            workdir = workdirs.get()
            try:
                path = workdir / mutant.path
                original = path.read_text()
                try:
                    path.write_text(apply(original, mutant))
                    code, seconds, tail = run_tests(workdir, override or mutant.tests, args.timeout)
                finally:
                    path.write_text(original)
            finally:
                workdirs.put(workdir)
            result = {"name": mutant.name, "path": mutant.path, "what": mutant.what,
                      "tests": list(override or mutant.tests), "outcome": outcome(code), "exit_code": code,
                      "seconds": round(seconds, 1), "pytest_tail": tail}
            print(f"{result['outcome']:9s} {mutant.name:34s} {seconds:6.0f} s", flush=True)
            with lock:
                done.append(result)
                if not names and not override:
                    args.out.write_text(json.dumps({"partial": True, "results": done}, indent=2,
                                                   ensure_ascii=False) + "\n")
            return result

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = [pool.submit(judge, mutant) for mutant in selected]
            baseline_future = None if args.skip_baseline else pool.submit(baseline)
            results = [future.result() for future in futures]
            baseline_result = None if baseline_future is None else baseline_future.result()

    if baseline_result is not None and baseline_result["exit_code"] != 0:
        print(f"error: the unmutated tests do not pass, so the mutants cannot be judged:\n"
              f"{baseline_result['pytest_tail']}", file=sys.stderr)
        return 2
    if args.update and names and not override and args.out.is_file():
        previous = json.loads(args.out.read_text())
        rerun = {r["name"]: r for r in results}
        defined = {m.name for m in MUTANTS}  # a mutant taken out of mutants.py leaves the results too
        results = [rerun.get(r["name"], r) for r in previous["results"] if r["name"] in defined]
        results += [r for r in rerun.values() if r["name"] not in {p["name"] for p in previous["results"]}]
        baseline_result = previous.get("baseline") if baseline_result is None else baseline_result
        names = []
    for r in results:
        if r["outcome"] not in ("killed", "error"):
            r["explained"] = EXPLAINED.get(r["name"])
    killed = sum(r["outcome"] in ("killed", "error") for r in results)
    survivors = [r for r in results if r["outcome"] != "killed" and r["outcome"] != "error"]
    unexplained = [r["name"] for r in survivors if not r.get("explained")]
    summary = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "jobs": args.jobs,
               "baseline": baseline_result, "mutants": len(results),
               "killed": killed, "score": f"{killed}/{len(results)}", "survivors": [r["name"] for r in survivors],
               "unexplained_survivors": unexplained, "results": results}
    if not names and not override:
        args.out.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    print(f"score {killed}/{len(results)} killed; survivors {summary['survivors']}; unexplained {unexplained}")
    return 0 if not unexplained else 1


if __name__ == "__main__":
    sys.exit(main())
