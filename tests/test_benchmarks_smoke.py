"""Smoke test of the benchmark suite: ``benchmarks/run_all.py --smoke`` on tiny sizes.

Runs every benchmark script (two at a time) into a temporary folder, never into the
committed ``benchmarks/results``, and checks that each wrote its JSON in the common
shape, that the plots exist and that the README block was generated from them. The
numbers themselves are not checked (tiny sizes on a shared machine mean nothing).
The scripts read their molecules from ``$PHYSNETJAX_BENCH_DATA``, pointed here at a
stand-in for ../shared/data built from the repository's own files, so the test never
reads ../shared.
"""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

REPOSITORY = pathlib.Path(__file__).resolve().parents[1]
BENCHMARKS = REPOSITORY / "benchmarks"
SCRIPTS = ("bench_model", "bench_profile", "bench_neighbors", "bench_batching", "bench_md", "bench_train")
MACHINE_KEYS = {"cpu", "cores", "jax", "backend", "devices", "python", "dtype"}


def tiled(arrays: dict, frames: int) -> dict:
    """The first frame(s) of ``arrays`` repeated to ``frames`` frames."""
    return {key: np.resize(value, (frames,) + value.shape[1:]) for key, value in arrays.items()}


def stand_in_data(root: pathlib.Path) -> pathlib.Path:
    """Files named as in ../shared/data, filled from the bundled ethanol set and test data."""
    (root / "basepairs").mkdir(parents=True)
    with np.load(REPOSITORY / "physnetjax" / "data" / "ethanol_gfn2.npz") as ethanol:
        np.savez(root / "ethanol_gfn2_500K.npz", **{k: ethanol[k][:100] for k in ("R", "Z", "N", "E", "F", "D", "Q")})
    with np.load(REPOSITORY / "tests" / "data" / "molecules.npz") as molecules:
        z, r = molecules["co2_Z"], molecules["co2_R"]
    np.savez(root / "co2_gfn2_500K.npz", **tiled(dict(Z=z[None], R=r[None], N=np.array([3]), E=np.zeros(1),
                                                      F=np.zeros((1, 3, 3)), Q=np.zeros(1)), 100))
    with np.load(REPOSITORY / "tests" / "data" / "legacy" / "A" / "geometries.npz") as base:
        frames = dict(Z=base["Z"], R=base["R"], N=base["N"], E=base["E_data_eV"], F=base["F_data_eV_per_A"],
                      Q=np.zeros(len(base["N"])))
    for name in ("at_prod", "gc_prod"):
        np.savez(root / "basepairs" / f"{name}.npz", **tiled(frames, 100))
    return root


@pytest.mark.slow
def test_run_all_smoke(tmp_path):
    readme = tmp_path / "README.md"
    before = {p: p.stat().st_mtime_ns for p in (BENCHMARKS / "results").glob("*")}
    process = subprocess.run(
        [sys.executable, str(BENCHMARKS / "run_all.py"), "--smoke", "--jobs", "2", "--out", str(tmp_path),
         "--readme", str(readme)],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "PHYSNETJAX_BENCH_DATA": str(stand_in_data(tmp_path / "data"))},
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
