"""Smoke test of the benchmark suite: ``benchmarks/run_all.py --smoke`` on tiny sizes.

Runs every benchmark script (two at a time) into a temporary folder, never into the
committed ``benchmarks/results``, and checks that each wrote its JSON in the common
shape, that the plots exist and that the README block was generated from them. The
numbers themselves are not checked (tiny sizes on a shared machine mean nothing).
Skipped when the shared benchmark data (../shared/data) is absent.
"""

import json
import pathlib
import subprocess
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
SHARED_DATA = BENCHMARKS.parents[1] / "shared" / "data"
SCRIPTS = ("bench_model", "bench_profile", "bench_neighbors", "bench_batching", "bench_md", "bench_train")
MACHINE_KEYS = {"cpu", "cores", "jax", "backend", "devices", "python", "dtype"}


@pytest.mark.skipif(not (SHARED_DATA / "basepairs").exists(), reason="benchmark data ../shared/data not present")
def test_run_all_smoke(tmp_path):
    readme = tmp_path / "README.md"
    before = {p: p.stat().st_mtime_ns for p in (BENCHMARKS / "results").glob("*")}
    process = subprocess.run(
        [sys.executable, str(BENCHMARKS / "run_all.py"), "--smoke", "--jobs", "2", "--out", str(tmp_path),
         "--readme", str(readme)],
        capture_output=True, text=True, timeout=600,
    )
    assert process.returncode == 0, process.stdout + process.stderr

    summary = json.loads((tmp_path / "run_all.json").read_text())
    assert [run["script"] for run in summary["runs"]] == list(SCRIPTS)
    assert all(run["mode"] == "smoke" and run["returncode"] == 0 for run in summary["runs"])
    text = readme.read_text()
    assert "<!-- BEGIN GENERATED -->" in text and "<!-- END GENERATED -->" in text
    for name in SCRIPTS:
        result = json.loads((tmp_path / f"{name}.json").read_text())
        assert {"benchmark", "mode", "date", "machine", "tables", "plots", "data"} <= set(result)
        assert result["benchmark"] == name and result["mode"] == "smoke"
        assert MACHINE_KEYS <= set(result["machine"])
        assert result["tables"], name
        for spec in result["tables"]:
            assert {"title", "timed", "columns", "rows"} <= set(spec)
            assert spec["rows"] and all(len(row) == len(spec["columns"]) for row in spec["rows"])
            assert spec["title"] in text
        for plot in result["plots"]:
            assert (tmp_path / plot).stat().st_size > 0
    assert {p: p.stat().st_mtime_ns for p in (BENCHMARKS / "results").glob("*")} == before
