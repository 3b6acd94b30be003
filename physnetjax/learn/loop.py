"""The active-learning loop: train → explore (MD) → select → label → append → retrain, for N rounds.

Run directory ``OUT/``::

    state.json          settings + one summary per finished round (physnetjax.learn.state)
    initial.npz         the starting frames;  test.npz  the test frames (if any)
    round-000/          data.npz (training frames)  train/ (trainer run: best, metrics.json, ...)
    round-001/          explore/ (md-<T>K.xyz + .jsonl per temperature)
                        selected.npz (the labelled new frames)  data.npz = previous data.npz + selected
                        train/ (started --init-from round-000/train/best)
    ...
    report.json, learning_curve.png

Resumption: a round listed in ``state.json`` is finished and never recomputed; a
``round-NNN/`` directory that is not listed was interrupted, and is removed and redone
from its start (its MD, selection and labels are deterministic given the settings and
seeds, so the result equals that of an uninterrupted run). The data files a resumed run
reads again are those the run wrote (their SHA-256 is in ``state.json``), or it is
refused. A run directory in which no round has finished holds nothing that other
settings could not redo (the starting frames and the unfinished round 0 follow from the
settings): given other settings, it is started anew with them (a warning names the
changes), so that a setting round 0 refused can be corrected in the same ``--out``.

One process at a time runs in ``OUT/``: the loop holds ``OUT/.lock`` for its whole run
(:mod:`physnetjax.train.run_lock`; each round's training locks its own ``train/``), so a
second one started there is refused instead of taking the round in progress for an
interrupted one and removing it.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Mapping, Optional

import ase
import numpy as np

from physnetjax.data import Dataset, bundled_dataset_path, concatenate, load_dataset, random_split
from physnetjax.data.split import load_split, save_split
from physnetjax.data.frame_digests import FrameRecord, dataset_digests
from physnetjax.data.generate import XTB_MAX_ATOMIC_NUMBER, check_xtb_elements, unpaired_electrons
from physnetjax.data.key_mapping import parse_key_mapping
from physnetjax.errors import OutputPathError, PhysNetInputError, PhysNetInputWarning, displayed, warn_caller
from physnetjax.learn.config import RESUME_CHANGES, LearnConfig
from physnetjax.learn.evaluate import test_errors
from physnetjax.learn.explore import explore
from physnetjax.learn.frames import labelled_frames, save_frames
from physnetjax.learn.inputs import COMPARED_IN_TESTS, check_labelled, check_labels_against
from physnetjax.learn.labellers import Labeller, checked_labels, xtb_labeller
from physnetjax.learn.report import write_report
from physnetjax.learn.selection import select_uncertain_diverse
from physnetjax.learn.state import (STATE_NAME, check_run_directory, check_run_files, file_record, read_state,
                                    round_dir, write_state)
from physnetjax.validation import check_distinct_files, check_output_directory
from physnetjax.train import TrainConfig, train
from physnetjax.train.run_lock import run_lock

logger = logging.getLogger(__name__)

BUNDLED_INITIAL_FRAMES = 50


def run_learning(config: LearnConfig, labeller: Labeller | None = None, *,
                 on_start: Callable[[Path], None] | None = None,
                 names: Optional[Mapping[str, str]] = None) -> dict:
    """Run (or resume) the loop in ``config.out``; returns the final report (:mod:`physnetjax.learn.report`).

    ``labeller`` (see :mod:`physnetjax.learn.labellers`) defaults to
    ``xtb_labeller(config.labeller, config.charge, config.uhf)``. ``on_start(run_dir)`` is called
    once the run directory holds a checked start (a new run's start frames are read and
    checked before anything is written there; a refused start leaves no directory it created),
    before the first round. The run holds the lock ``config.out/.lock`` throughout
    (:func:`~physnetjax.train.run_lock.run_lock`). ``names``: setting →
    how the messages of the rounds' MD and training name it, as LearnConfig takes it (a command
    line passes its options).

    A new run's starting frames must all carry energy and forces, and before any training
    :data:`~physnetjax.learn.inputs.CHECK_FRAMES` (2) of them are labelled by the labeller and compared
    with the file's labels (:func:`physnetjax.learn.inputs.check_labels_against`: energies within 1e-3
    eV/atom, forces within 1 % RMS), and so are two frames of a ``config.test`` file (its test errors
    measure the models against the labeller); a resumed run's labels are not compared again, but its files are
    (:func:`~physnetjax.learn.state.check_run_files`: the SHA-256 of ``initial.npz``, ``test.npz`` and every finished
    round's ``data.npz`` as the run wrote them).

    Raises:
      PhysNetInputError: ``config.out`` holds a run whose ``state.json`` is damaged or whose data files changed or
        are missing since the run wrote them; or a run with a finished round and other settings
        (only :data:`~physnetjax.learn.config.RESUME_CHANGES` may change), or one that has
        finished more rounds than ``config.rounds`` (its report would lose them); a new run's
        starting frames of another total charge than ``config.charge``, or whose electrons do
        not allow ``config.uhf`` (:func:`check_unpaired_electrons`), that lack energies or forces, or whose
        labels are not the labeller's (other units, the opposite force sign, an energy offset, another
        method: :mod:`physnetjax.learn.inputs`); a test file without energies or forces, whose labels
        are not the labeller's, or that holds starting frames (:func:`check_test_held_out`).
      ValueError: a ``config.valid`` that leaves the starting frames no validation or no
        training frame (checked before the run directory is written).
      OutputPathError: ``config.out`` is a file or not writable, a new one lies below a file or in a directory that
        is not writable (checked before the start frames are read), or the data or test file is the run's ``initial.npz`` or
        ``test.npz`` (writing them replaced the user's file), or a new run's ``config.out`` holds files of the names the
        run writes (:data:`RUN_OUTPUTS`, ``round-NNN``) but no run's state.
      RunLockedError: another process runs the loop in ``config.out`` (an OutputPathError).
    """
    run_dir = Path(config.out)
    check_distinct_files([("the run's initial.npz", run_dir / "initial.npz"),
                          ("the run's test.npz", run_dir / "test.npz")],
                         [(displayed("data", names), config.data), (displayed("test", names), config.test)])
    check_run_directory(run_dir)
    created = [p for p in [run_dir, *run_dir.parents] if not p.exists()]
    check_output_directory(run_dir, what="--out")
    try:
        with run_lock(run_dir, "learning"):
            return _learn_in(run_dir, config, labeller, on_start, names)
    except BaseException:
        for directory in created:  # a new run refused before its start was written leaves no directory behind
            if directory.is_dir() and not any(directory.iterdir()):
                directory.rmdir()
        raise


def _learn_in(run_dir: Path, config: LearnConfig, labeller: Labeller | None,
              on_start: Callable[[Path], None] | None, names: Optional[Mapping[str, str]]) -> dict:
    """:func:`run_learning` in the existing ``run_dir``, its lock held."""
    state = read_state(run_dir)
    changed = [] if state is None else _changed_settings(config, state["settings"], names)
    if changed and not state["rounds"]:
        logger.warning("%s: no round of its run has finished; starting the run anew with the changed settings (%s)",
                       run_dir, "; ".join(changed))
        _discard_unfinished_start(run_dir)
        state = None
    if state is None:
        _refuse_foreign_outputs(run_dir)
        start = _start_data(config)
        # round 0's split of the trainer, here before anything is written: later rounds only add frames
        random_split(len(start["initial.npz"]), config.valid, 0, names=names)
    else:
        if changed:
            raise PhysNetInputError(f"{run_dir} holds a run with other settings ({'; '.join(changed)}); only "
                                    f"{', '.join(displayed(key, names) for key in RESUME_CHANGES)} may change when "
                                    "resuming: pick another --out")
        finished = len(state["rounds"]) - 1  # acquisition rounds done after round 0
        if config.rounds < finished:
            raise PhysNetInputError(
                f"{run_dir} has finished {finished} round(s) after the initial training (rounds 0..{finished}); "
                f"resuming it with rounds = {config.rounds} (--rounds) would leave the last {finished - config.rounds} "
                f"out of its report: pass --rounds {finished} to rewrite the report, or more to add rounds")
    label = labeller if labeller is not None else xtb_labeller(  # tblite present?
        config.labeller, config.charge, config.uhf)
    if state is None:  # once, when the run starts: the files' labels are the labeller's
        unpaired = f" with {config.uhf} unpaired electron(s)" if config.uhf else ""
        name = f"{config.labeller}{unpaired}" if labeller is None else "the labeller"
        # the state's options too: the data.generate command the message suggests labels at the loop's state
        method = (f"{config.labeller}{f' --charge {config.charge:g}' if config.charge else ''}"
                  f"{'' if config.uhf is None else f' --uhf {config.uhf}'}") if labeller is None else None
        if labeller is None:
            for frames in start.values():
                check_frames_xtb_elements(frames, config.labeller)
        check_labels_against(start["initial.npz"], label, _data_name(config), name, method)
        if config.test is not None:
            check_labels_against(start["test.npz"], label, str(config.test), name, method, COMPARED_IN_TESTS)
    if state is not None:
        check_run_files(run_dir, state)
        rounds, files = state["rounds"], state.get("files", {})
        logger.info("resuming %s after %d finished round(s)", run_dir, len(rounds))
    else:
        for name, frames in start.items():
            save_frames(frames, run_dir / name)
        rounds, files = [], file_record(run_dir, start)
        write_state(run_dir, config.to_dict(), rounds, files)
    if on_start is not None:
        on_start(run_dir)
    test = load_dataset(run_dir / "test.npz") if (run_dir / "test.npz").exists() else None
    for index in range(len(rounds), config.rounds + 1):
        directory = round_dir(run_dir, index)
        if directory.exists():
            logger.info("round %d was interrupted: redoing it from its start", index)
            shutil.rmtree(directory)
        rounds.append(_run_round(config, run_dir, index, label, test, names))
        files.update(file_record(run_dir, [(directory / "data.npz").relative_to(run_dir).as_posix()]))
        write_state(run_dir, config.to_dict(), rounds, files)
    return write_report(run_dir, rounds[: config.rounds + 1])


def _changed_settings(config: LearnConfig, recorded: dict, names: Optional[Mapping[str, str]]) -> list[str]:
    """``["--select was 3, now 4", ...]``: the settings of ``config`` that differ from the ``recorded`` ones
    (:meth:`LearnConfig.changed_from`), with both values."""
    mine, defaults = config.to_dict(), LearnConfig().to_dict()

    def text(value) -> str:
        return " ".join(map(str, value)) if isinstance(value, list) else "none" if value is None else str(value)

    return [f"{displayed(key, names)} was {text(recorded.get(key, defaults[key]))}, now {text(mine[key])}"
            for key in config.changed_from(recorded)]


RUN_OUTPUTS = ("initial.npz", "test.npz", "report.json", "learning_curve.png")
"""Files a learning run writes in its directory besides its state, ``config.toml`` and ``round-NNN/``."""


def _refuse_foreign_outputs(run_dir: Path) -> None:
    """Refuse to start a learning run in ``run_dir`` (holding no run's state) where it would replace files it did not
    write: a folder of the user's with a ``test.npz`` or a ``round-001/`` of theirs (a round directory that is not the
    state's is removed and redone).

    Raises:
      OutputPathError: naming the files.
    """
    held = [name for name in RUN_OUTPUTS if os.path.lexists(run_dir / name)]
    held += sorted(path.name for path in run_dir.glob("round-[0-9][0-9][0-9]"))
    if held:
        raise OutputPathError(f"--out {run_dir} holds {', '.join(held)} but no learning run (no {STATE_NAME}): a new "
                              "run writes files of those names there and would replace them; choose another --out, "
                              "or move them out of it")


def _discard_unfinished_start(run_dir: Path) -> None:
    """Remove what a run in which no round finished wrote in ``run_dir`` (``state.json`` last, so that an
    interruption leaves a run that is discarded again)."""
    shutil.rmtree(round_dir(run_dir, 0), ignore_errors=True)
    for name in ("test.npz", "initial.npz", STATE_NAME):
        (run_dir / name).unlink(missing_ok=True)


def _start_data(config: LearnConfig) -> dict:
    """``{"initial.npz": frames[, "test.npz": frames]}`` from the data file or the bundled set (see LearnConfig).

    Raises:
      PhysNetInputError: too few frames, starting frames of another total charge than ``config.charge``, or
        whose electrons do not allow ``config.uhf`` unpaired electrons (:func:`check_unpaired_electrons`), or
        starting or test frames without energy or forces (:func:`physnetjax.learn.inputs.check_labelled`).
    """
    bundled = config.data is None
    source = load_dataset(bundled_dataset_path()) if bundled else read_input_file(config.data, config)
    count = config.initial_frames or (BUNDLED_INITIAL_FRAMES if bundled else len(source))
    test_count = config.test_frames if bundled and config.test is None else 0
    if count + test_count > len(source):
        raise PhysNetInputError(f"{'the bundled set' if bundled else config.data} has {len(source)} frames, fewer "
                                f"than the {count} initial (+ {test_count} test) frames asked for")
    order = np.random.default_rng(config.seed).permutation(len(source))
    initial = source.subset(np.sort(order[:count]))
    check_labelled(initial, _data_name(config))
    charges = sorted(set(np.asarray(initial.Q, np.float64).tolist()) - {float(config.charge)})
    if charges:
        raise PhysNetInputError(f"the starting frames have total charge(s) {', '.join(f'{q:g}' for q in charges)} e "
                                f"but --charge is {config.charge:g} e: the loop runs MD and labels new frames at "
                                "--charge; pass the charge of the starting frames")
    check_unpaired_electrons(initial, config)
    start = {"initial.npz": initial}
    if config.test is not None:
        start["test.npz"] = read_input_file(config.test, config)
        check_labelled(start["test.npz"], config.test, "test frames")
        check_test_held_out(start["test.npz"], initial, config)
    elif test_count:
        start["test.npz"] = source.subset(np.sort(order[count: count + test_count]))
    return start


def read_input_file(path, config: LearnConfig) -> Dataset:
    """The frames of the ``--data`` or ``--test`` file ``path``, read with the run's reading options (units, force
    sign, key mapping: :data:`~physnetjax.learn.config.READING_SETTINGS`)."""
    return load_dataset(path, energy_unit=config.energy_unit, force_unit=config.force_unit,
                        dipole_unit=config.dipole_unit, force_sign=config.force_sign,
                        keys=parse_key_mapping(config.keys))


def check_test_held_out(test: Dataset, initial: Dataset, config: LearnConfig) -> None:
    """Refuse test frames that are also starting frames (same atoms and positions,
    :mod:`physnetjax.data.frame_digests`): every round trains on the starting frames, so its test errors on them
    would be training errors, and the learning curve would look better than the models are."""
    share = FrameRecord.of(dataset_digests(initial)).share_of(dataset_digests(test))
    if share.any:
        raise PhysNetInputError(f"--test {config.test}: {share.describe()} are also starting frames in "
                                f"{_data_name(config)} (same atoms and positions): every round trains on those, so "
                                "their test errors would be training errors; give test frames held out of --data")


def _data_name(config: LearnConfig) -> str:
    """The file the starting frames are read from, as messages name it."""
    return str(bundled_dataset_path()) if config.data is None else str(config.data)


def check_frames_xtb_elements(frames: Dataset, method: str) -> None:
    """Refuse ``frames`` holding an element xTB (tblite) has no parameters for, beyond Z = 86
    (:func:`physnetjax.data.generate.check_xtb_elements`, naming the first such frame): the loop labels its new frames
    with ``method`` (tblite's InputError reached the command line as an internal error)."""
    beyond = (frames.Z > XTB_MAX_ATOMIC_NUMBER).any(axis=1)
    if beyond.any():
        k = int(np.argmax(beyond))
        check_xtb_elements(frames.Z[k, : int(frames.N[k])], method, str(frames.sources[k]))


def check_unpaired_electrons(frames: Dataset, config: LearnConfig) -> None:
    """Refuse starting ``frames`` whose electrons do not allow ``config.uhf`` unpaired electrons at ``config.charge``.

    The check of ``python -m physnetjax.data.generate`` (:func:`physnetjax.data.generate.unpaired_electrons`,
    for the valence shells of ``config.labeller``), made once per composition before any MD or training: an
    odd electron count needs ``uhf`` (None: a closed shell), and ``uhf`` needs the parity of the electrons and
    at most as many as the valence shells hold. MD keeps each molecule's atoms, so every frame to label has a
    composition of a starting frame.

    Raises:
      PhysNetInputError: naming the first frame refused and why.
    """
    checked = set()
    for k in range(len(frames)):
        numbers = frames.Z[k, : int(frames.N[k])]
        composition = tuple(sorted(numbers.tolist()))
        if composition in checked:
            continue
        checked.add(composition)
        try:
            unpaired_electrons(ase.Atoms(numbers=numbers), config.charge, config.uhf, config.labeller)
        except ValueError as error:
            raise PhysNetInputError(f"starting frame {frames.sources[k]}: {error}") from error


def _run_round(config: LearnConfig, run_dir: Path, index: int, label: Labeller, test,
               names: Optional[Mapping[str, str]]) -> dict:
    start = time.monotonic()
    directory = round_dir(run_dir, index)
    directory.mkdir(parents=True)
    summary = {"round": index, "md": [], "selected": 0}
    if index == 0:
        data = load_dataset(run_dir / "initial.npz")
        init_from = None
    else:
        previous = round_dir(run_dir, index - 1)
        data = load_dataset(previous / "data.npz")
        init_from = previous / "train" / "best"
        candidates, summary["md"] = explore(init_from, data, directory / "explore", config, index, names)
        _warn_if_members_agree(candidates.spreads, config, index)
        _warn_if_no_candidates(candidates.spreads, summary["md"], config, index, names)
        summary["unphysical_frames"] = sum(run["unphysical_frames"] for run in summary["md"])
        chosen, labels, failures = select_and_label(candidates, config, label, index)
        summary["label_failures"] = failures
        logger.info("round %d: %d candidates; %d unphysical MD frames cut; %d frames could not be labelled",
                    index, len(candidates.spreads), summary["unphysical_frames"], len(failures))
        if chosen:
            new = labelled_frames([candidates.numbers[j] for j in chosen], [candidates.positions[j] for j in chosen],
                                  labels, config.charge, f"round-{index:03d}/selected",
                                  [candidates.kinds[j] for j in chosen])
            save_frames(new, directory / "selected.npz")
            data = concatenate([data, new])
        summary["selected"] = len(chosen)
        summary["selected_spreads_eV_per_A"] = [float(candidates.spreads[j]) for j in chosen]
        summary.update(_spread_summary(summary["md"]))
    save_frames(data, directory / "data.npz")
    if index > 0:
        save_split(directory / ROUND_SPLIT_NAME, grown_split(load_split(previous / "train" / "split.npz", len(data)
                                                                        - summary["selected"]),
                                                             len(data), config.seed + index))
    trained = train(round_train_config(config, directory, index, init_from), names=names)
    summary["frames"] = len(data)
    counts = trained.get("frames", {})  # absent where a test stands in for the trainer
    summary["train_frames"], summary["valid_frames"] = counts.get("train"), counts.get("valid")
    summary["valid"] = trained["valid"]
    summary["test"] = test_errors(directory / "train" / "best", test) if test is not None else None
    summary["time_s"] = time.monotonic() - start
    logger.info("round %d: %d frames (%d new), test forces MAE %s eV/Å", index, len(data), summary["selected"],
                summary["test"] and summary["test"]["forces_mae"])
    return summary


def _warn_if_members_agree(spreads, config: LearnConfig, round_index: int) -> None:
    """Warn (:class:`PhysNetInputWarning`) when every MD candidate has force spread exactly 0 eV/Å under
    uncertainty-based selection: the members are identical or do not depend on the geometry (an untrained round),
    and the selection falls back to diversity alone."""
    if config.selection != "uncertain-diverse" or not len(spreads) or float(np.max(spreads)) != 0.0:
        return
    warn_caller(f"round {round_index}: the ensemble's members agree exactly on all {len(spreads)} MD frames (force "
                "spread 0 eV/Å): the previous round's members are identical or untrained (see its "
                "train/metrics.csv), so frames are chosen by diversity alone; train longer (--epochs, --max-time)",
                PhysNetInputWarning)


def _warn_if_no_candidates(spreads, runs: list, config: LearnConfig, round_index: int,
                           names: Optional[Mapping[str, str]]) -> None:
    """Warn (:class:`PhysNetInputWarning`) when the round's MD left no candidate frame: the round retrains on the
    previous round's frames alone, which a report row with 0 selected frames did not explain."""
    if len(spreads):
        return
    largest = [run["max_spread_eV_per_A"] for run in runs if run["max_spread_eV_per_A"] is not None]
    threshold = config.uncertainty_threshold
    if threshold is not None and largest and max(largest) <= threshold:
        why = (f"the largest force spread of its MD frames, {max(largest):.3g} eV/Å, is "
               f"{'below' if max(largest) < threshold else 'not past'} "
               f"{displayed('uncertainty_threshold', names)} {threshold:g} eV/Å")
    else:
        why = "every MD frame was cut as unphysical, had no finite spread or fell below the uncertainty threshold"
    warn_caller(f"round {round_index}: no MD frame is a candidate ({why}): the round retrains on the previous "
                "round's frames, with no new one", PhysNetInputWarning)


def select_and_label(candidates, config: LearnConfig, label: Labeller, round_index: int = 0
                     ) -> tuple[list, list, list]:
    """(chosen candidate indices, their labels, failures) for up to ``config.select`` frames.

    ``config.selection`` "uncertain-diverse" chooses by :func:`select_uncertain_diverse`;
    "random" (the baseline of a comparison) takes the candidates in a random order seeded
    by (``config.seed``, ``round_index``), ignoring the spread.
    A frame the labeller cannot label (it raises, e.g. an SCF that does not converge on a
    distorted geometry), or whose largest labelled |F_i| exceeds ``config.max_label_force``
    eV/Å (a geometry far outside the thermal ensemble), is logged, recorded as ``"origin: error"`` and removed from the
    candidates, and the selection is redone without it: frames chosen before it in the
    ranking are unchanged (their labels are kept), and the frames it excluded may now enter.
    A failed frame is never tried again: each failure removes one candidate, so the
    labeller is called at most once per candidate.
    """
    order = np.random.default_rng([config.seed, round_index]).permutation(len(candidates.spreads))

    def pick(remaining: list) -> list:
        if config.selection == "random":
            allowed = set(remaining)
            return [int(j) for j in order if j in allowed][: config.select]
        picked = select_uncertain_diverse(candidates.spreads[remaining], [candidates.positions[j] for j in remaining],
                                          [candidates.numbers[j] for j in remaining], config.select, config.min_rmsd)
        return [remaining[k] for k in picked]

    remaining = list(range(len(candidates.spreads)))
    labelled, failures = {}, []
    while remaining:
        chosen = pick(remaining)
        failed = None
        for j in chosen:
            if j in labelled:
                continue
            try:
                labelled[j] = checked_labels(label(_atoms(candidates, j)), len(candidates.numbers[j]),
                                             f"labeller on {candidates.origins[j]}")
                largest = float(np.linalg.norm(labelled[j]["F"], axis=-1).max())
                if config.max_label_force is not None and largest > config.max_label_force:
                    raise ValueError(f"largest labelled force {largest:.4g} eV/Å > max_label_force "
                                     f"{config.max_label_force:g} eV/Å")
            except Exception as error:
                logger.warning("cannot label %s (%s: %s): skipped", candidates.origins[j], type(error).__name__, error)
                failures.append(f"{candidates.origins[j]}: {type(error).__name__}: {error}")
                failed = j
                break
        if failed is None:
            return chosen, [labelled[j] for j in chosen], failures
        remaining.remove(failed)
    return [], [], failures


def _spread_summary(runs: list) -> dict:
    """Mean (over every saved frame of every temperature) and max of the MD's per-frame spread, eV/Å."""
    saved = [run for run in runs if run["frames"]]
    frames = sum(run["frames"] for run in saved)
    return {
        "md_mean_spread_eV_per_A": (sum(run["mean_spread_eV_per_A"] * run["frames"] for run in saved) / frames
                                    if frames else None),
        "md_max_spread_eV_per_A": float(np.max([run["max_spread_eV_per_A"] for run in saved])) if saved else None,
    }


def _atoms(candidates, j: int) -> ase.Atoms:
    return ase.Atoms(numbers=candidates.numbers[j], positions=candidates.positions[j])


ROUND_SPLIT_NAME = "split.npz"
"""A round's split of its ``data.npz`` (rounds ≥ 1: :func:`grown_split`), given to its training as its split file."""


def grown_split(previous: dict, num_frames: int, seed: int) -> dict:
    """The split of a round's data: the previous round's ``previous`` (train/valid of its first frames) kept, and the
    frames added after them (indices from the previous count to ``num_frames``) cut into train and valid at the
    previous valid share, drawn with ``seed``.

    A round starts from the previous round's weights: a split drawn anew over the grown data put frames that model
    was trained on into the validation set (round 1's valid frames were both round-0 training frames, round 2's all
    three), so the validation errors, the best epoch and the ensemble's calibration scale were optimistic.
    """
    done = len(previous["train"]) + len(previous["valid"]) + len(previous.get("test", ()))
    added = np.arange(done, num_frames)
    share = len(previous["valid"]) / max(1, len(previous["train"]) + len(previous["valid"]))
    order = np.random.default_rng(seed).permutation(added)
    valid = np.sort(order[: int(round(share * len(added)))])
    return {"train": np.union1d(previous["train"], np.setdiff1d(added, valid)),
            "valid": np.union1d(previous["valid"], valid), "test": np.asarray(previous.get("test", []), np.int64)}


def round_train_config(config: LearnConfig, directory: Path, index: int, init_from,
                       names: Optional[Mapping[str, str]] = None) -> TrainConfig:
    """The trainer's settings of round ``index``: ``directory/data.npz`` → ``directory/train``, seed
    ``config.seed + index``, started from the checkpoint ``init_from`` (None: fresh, round 0), with the split
    ``directory/split.npz`` where the round wrote one (:func:`grown_split`; round 0 draws its own). ``names``:
    setting → how the trainer's checks name it (a command line passes its options), as LearnConfig takes it.

    The cosine schedule warms up over one epoch, or over the first tenth of a round of fewer than 10 epochs (a
    warm-up as long as the round would only ever raise the learning rate).

    Public so that a comparison (``benchmarks/bench_active_learning.py``) can train on frames
    chosen another way with exactly the loop's settings.
    """
    epochs = config.epochs if index == 0 or config.retrain_epochs is None else config.retrain_epochs
    split = directory / ROUND_SPLIT_NAME
    return TrainConfig(
        data=[str(directory / "data.npz")], valid=config.valid, test=0, **config.model_settings(), epochs=epochs,
        split_file=str(split) if split.exists() else None,
        batch_size=config.batch_size, learning_rate=config.learning_rate, max_time=config.max_time,
        seed=config.seed + index, ensemble=config.ensemble, warmup_epochs=min(1.0, 0.1 * epochs),
        out=str(directory / "train"),
        init_from=None if init_from is None else str(init_from), progress=config.progress, plots=False, names=names)
