"""Generated mutants of one source file, to find what its tests leave unchecked (curated mutants: ``run.py``).

Every operator, comparison, boolean, ``min``/``max``/``any``/``all`` and number token of the chosen lines is changed
in turn (``<`` → ``<=``, ``+`` → ``-``, ``and`` → ``or``, ``not x`` → ``x``, 3 → 4, 0.5 → 0.55, ``True`` →
``False``, ...); each change that still compiles runs the given tests (``python -m pytest -x``) in a copy of the
repository, as ``run.py`` judges a curated mutant. A survivor is a change no test noticed: an equivalent change
(a tolerance, a boundary no data reaches), or a gap worth a test, and then a curated mutant. Strings and comments
are never changed.

Usage (from the repository root)::

    python tests/mutation/sweep.py physnetjax/learn/inputs.py tests/test_learn_inputs.py --lines 60-145 --jobs 2

Prints one line per mutant (outcome, line, change, seconds, the line's text) and writes them to ``--out`` (JSON).
``--survivors-of REPORT`` judges only the changes that survived in an earlier report of the same file (by line and
change): after tests were added, or with more test files, without rerunning the mutants already killed.
"""

from __future__ import annotations

import argparse
import io
import json
import pathlib
import sys
import tempfile
import threading
import tokenize
from concurrent.futures import ThreadPoolExecutor

from run import ROOT, outcome, run_tests, worker_copies

SWAPS = {"<": "<=", "<=": "<", ">": ">=", ">=": ">", "==": "!=", "!=": "==", "+": "-", "-": "+", "*": "/",
         "/": "*", "//": "/", "**": "*", "and": "or", "or": "and", "True": "False", "False": "True", "min": "max",
         "max": "min", "any": "all", "all": "any", "in": "not in", "&": "|", "|": "&"}
"""Token → its replacement (operators and names)."""


def changed_number(text: str) -> str | None:
    """A number token changed: an int + 1, a float × 1.1 (0 → 0.1); None for what is no plain number."""
    try:
        value = int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            return None
        return repr(value * 1.1 if value else 0.1)
    return str(value + 1)


def mutants(source: str, first: int, last: int) -> list[tuple[int, str, str]]:
    """(line, change, mutated source) for every token of lines ``first``..``last`` that :data:`SWAPS` or
    :func:`changed_number` change, and every ``not`` dropped."""
    starts = [0]
    for line in source.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))

    def offset(position):
        return starts[position[0] - 1] + position[1]

    found = []
    for k, token in enumerate(tokens):
        line = token.start[0]
        if not first <= line <= last or token.type not in (tokenize.OP, tokenize.NAME, tokenize.NUMBER):
            continue
        begin, end = offset(token.start), offset(token.end)
        if token.string == "not":
            following = offset(tokens[k + 1].start)
            found.append((line, "drop not", source[:begin] + source[following:]))
            continue
        replacement = changed_number(token.string) if token.type == tokenize.NUMBER else SWAPS.get(token.string)
        if replacement is not None:
            found.append((line, f"{token.string} -> {replacement}", source[:begin] + replacement + source[end:]))
    return [(line, change, text) for line, change, text in found if _compiles(text)]


def survivors_only(generated: list, earlier: list) -> list:
    """The mutants of ``generated`` (:func:`mutants`) whose line and change survived in ``earlier``, the records of
    an earlier report (``--out``) of the same, unchanged file. Two equal changes of one line are both kept when one
    survived."""
    survived = {(record["line"], record["change"]) for record in earlier if record["outcome"] == "survived"}
    return [mutant for mutant in generated if mutant[:2] in survived]


def _compiles(text: str) -> bool:
    try:
        compile(text, "<mutant>", "exec")
    except SyntaxError:
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="the source file, relative to the repository root")
    parser.add_argument("tests", help="comma-separated test files/ids to run for each mutant")
    parser.add_argument("--lines", default="1-1000000", help="first-last line to mutate (default: all)")
    parser.add_argument("--jobs", type=int, default=1, help="mutants judged at once, each in its own copy")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per pytest run")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("sweep.json"), help="JSON report")
    parser.add_argument("--survivors-of", type=pathlib.Path, metavar="REPORT",
                        help="judge only the changes that survived in this earlier report of the same file")
    args = parser.parse_args()
    first, last = (int(bound) for bound in args.lines.split("-"))
    original = (ROOT / args.path).read_text()
    lines = original.splitlines()
    generated = mutants(original, first, last)
    if args.survivors_of is not None:
        generated = survivors_only(generated, json.loads(args.survivors_of.read_text()))
    tests = [test for test in args.tests.split(",") if test]
    print(f"{len(generated)} mutants of {args.path} lines {first}-{min(last, len(lines))}", flush=True)
    results, lock = [], threading.Lock()
    with tempfile.TemporaryDirectory(prefix="physnetjax-sweep-") as tmp:
        workdirs = worker_copies(pathlib.Path(tmp), args.jobs)

        def judge(mutant):
            line, change, text = mutant
            workdir = workdirs.get()
            try:
                target = workdir / args.path
                target.write_text(text)
                try:
                    code, seconds, _ = run_tests(workdir, tests, args.timeout)
                finally:
                    target.write_text(original)
            finally:
                workdirs.put(workdir)
            result = {"line": line, "change": change, "outcome": outcome(code), "seconds": round(seconds, 1),
                      "text": lines[line - 1].strip()}
            print(f"{result['outcome']:9s} L{line:<5d} {change:24s} {seconds:5.0f} s  {result['text'][:90]}",
                  flush=True)
            with lock:
                results.append(result)
                args.out.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(judge, generated))
    survivors = [r for r in results if r["outcome"] == "survived"]
    print(f"{len(survivors)} of {len(results)} survived")
    return 0


if __name__ == "__main__":
    sys.exit(main())
