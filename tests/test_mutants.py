"""The curated mutants of tests/mutation still apply to the code (each snippet occurs exactly once)."""

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "mutation"))

from mutants import EXPLAINED, MUTANTS  # noqa: E402
from run import apply  # noqa: E402


def test_every_mutant_applies_once_and_names_existing_tests():
    names = [m.name for m in MUTANTS]
    assert len(names) == len(set(names))
    for mutant in MUTANTS:
        text = (ROOT / mutant.path).read_text()
        assert apply(text, mutant) != text, mutant.name
        for test in mutant.tests:
            assert (ROOT / test.split("::")[0]).is_file(), f"{mutant.name}: {test}"
    assert set(EXPLAINED) <= set(names)
