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


def _run_all(*args, data) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCHMARKS / "run_all.py"), *map(str, args)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PHYSNETJAX_BENCH_DATA": str(data)})


def test_run_all_without_the_reference_data_runs_nothing(tmp_path):
    """A fresh clone without ../shared/data ran every script, three failed on a missing file after minutes, and the
    README's tables of the failed ones were deleted."""
    readme = tmp_path / "README.md"
    readme.write_text("kept\n")
    process = _run_all("--smoke", "--only", "bench_model", "--out", tmp_path / "out", "--readme", readme,
                       data=tmp_path / "none")
    assert process.returncode != 0
    assert process.stderr.strip() == (
        f"run_all.py: ethanol_gfn2_500K.npz, co2_gfn2_500K.npz, basepairs/at_prod.npz, basepairs/gc_prod.npz "
        f"missing in {tmp_path / 'none'}: the benchmarks read the project's reference data sets (../shared/data next "
        "to the repository); set PHYSNETJAX_BENCH_DATA to the folder that holds them")
    assert not (tmp_path / "out").exists() and readme.read_text() == "kept\n"


@pytest.mark.slow
def test_run_all_rewrites_no_readme_after_a_failure_or_into_another_out(tmp_path):
    """A failed script's tables were removed from the README; a run into another --out rewrote the committed
    benchmarks/README.md with links into that folder."""
    data = stand_in_data(tmp_path / "data")
    committed = (BENCHMARKS / "README.md").read_text()
    readme = tmp_path / "README.md"
    readme.write_text("kept\n")
    (data / "ethanol_gfn2_500K.npz").write_bytes(b"damaged")
    failed = _run_all("--smoke", "--only", "bench_model", "--out", tmp_path / "failed", "--readme", readme, data=data)
    assert failed.returncode != 0 and "bench_model failed: no README rewritten" in failed.stderr
    assert readme.read_text() == "kept\n"
    stand_in_data(tmp_path / "good")
    elsewhere = _run_all("--smoke", "--only", "bench_neighbors", "--out", tmp_path / "out", data=tmp_path / "good")
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert "no README rewritten: pass --readme PATH for one" in elsewhere.stdout
    assert (tmp_path / "out" / "bench_neighbors.json").is_file()
    assert (BENCHMARKS / "README.md").read_text() == committed
