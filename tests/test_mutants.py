"""The curated mutants of tests/mutation still apply to the code (each snippet occurs exactly once)."""

import dataclasses
import os
import pathlib
import signal
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "mutation"))

from mutants import EXPLAINED, MUTANTS  # noqa: E402
from run import apply, check_copied, run_tests  # noqa: E402
from sweep import mutants, survivors_only  # noqa: E402


def test_every_mutant_applies_once_and_names_existing_tests():
    names = [m.name for m in MUTANTS]
    assert len(names) == len(set(names))
    for mutant in MUTANTS:
        check_copied(mutant)
        text = (ROOT / mutant.path).read_text()
        assert apply(text, mutant) != text, mutant.name
        for test in mutant.tests:
            assert (ROOT / test.split("::")[0]).is_file(), f"{mutant.name}: {test}"
    assert set(EXPLAINED) <= set(names)


def test_a_mutant_outside_the_copy_is_refused_before_any_worker_starts():
    """A mutant of benchmarks/ (not copied then) failed inside its worker thread, which never gave its copy back: the
    remaining mutants waited forever."""
    outside = dataclasses.replace(MUTANTS[0], path="docs/example.py")
    with pytest.raises(ValueError, match="docs/example.py is outside the copied"):
        check_copied(outside)


def _alive(pid: int) -> bool:
    try:
        state = pathlib.Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in state


def test_a_timeout_kills_the_processes_the_tests_started(tmp_path):
    """On a timeout only pytest was killed: the processes its tests had started (benchmark scripts) ran on beside
    the next mutants."""
    pid_file = tmp_path / "sleeper.pid"
    (tmp_path / "test_hangs.py").write_text(
        "import pathlib, subprocess, sys, time\n"
        "def test_hangs_beside_a_sleeper():\n"
        "    sleeper = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        f"    pathlib.Path({str(pid_file)!r}).write_text(str(sleeper.pid))\n"
        "    time.sleep(120)\n")
    code, seconds, _ = run_tests(tmp_path, ["test_hangs.py"], timeout=8)
    assert code is None and seconds < 60
    pid = int(pid_file.read_text())
    for _ in range(50):
        if not _alive(pid):
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
        raise AssertionError("the process started by the timed-out tests is still running")


def test_the_sweep_changes_operators_comparisons_booleans_and_numbers_of_the_chosen_lines_only():
    source = 'x = a < b and not c\ny = 3 + 0.5 * max(u)\nz = "a < b"  # x < y\nw = a == b\n'
    found = {(line, change): text for line, change, text in mutants(source, 1, 3)}
    assert sorted(found) == [(1, "< -> <="), (1, "and -> or"), (1, "drop not"), (2, "* -> /"), (2, "+ -> -"),
                             (2, "0.5 -> 0.55"), (2, "3 -> 4"), (2, "max -> min")]
    assert found[(1, "drop not")].startswith("x = a < b and c\n")
    assert found[(2, "0.5 -> 0.55")].splitlines()[1] == "y = 3 + 0.55 * max(u)"
    assert found[(1, "< -> <=")].splitlines()[2:] == source.splitlines()[2:]  # strings and comments unchanged
    assert [change for _, change, _ in mutants(source, 4, 4)] == ["== -> !="]


def test_a_sweep_can_judge_again_only_the_changes_that_survived_an_earlier_one():
    source = "x = a < b\ny = a < b\nz = c + d\n"
    generated = mutants(source, 1, 3)
    earlier = [{"line": 1, "change": "< -> <=", "outcome": "killed"},
               {"line": 2, "change": "< -> <=", "outcome": "survived"},
               {"line": 3, "change": "+ -> -", "outcome": "timeout"}]
    assert [mutant[:2] for mutant in survivors_only(generated, earlier)] == [(2, "< -> <=")]
