"""Which fields a run trains on and which it holds out: pure functions of the fields (no torch).

Three splits (`TrainConfig.split`), as in the BBBC021 literature:

    stratified  a random fraction of every class's fields held out (seeded)
    nsc         not-same-compound (Ljosa et al. 2013): one compound's fields held out, the rest trained on
    nscb        not-same-compound-or-batch (Ando et al. 2017): as nsc, and training also leaves out every
                field of the weeks (batches) the held-out compound was imaged in

NSC/NSCB fold K holds out `holdout_compounds(fields)[K]`: every compound present except the control
(DMSO), sorted by name ignoring case. DMSO is trained on and never held out (its class has one
compound). A compound whose class would be absent from training cannot be held out; `folds` says
why (on the real BBBC021: none under nsc; under nscb the two cholesterol-lowering compounds and the
three kinase inhibitors, each class imaged in one week, and taxol, imaged in every week).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from appliance.fieldsets import SPLIT_COLUMNS  # the one definition: export and benchmark read what this writes
from appliance.layouts.base import Field
from training.tables import write_csv


def stratified_split(fields: list[Field], val_fraction: float, seed: int) -> tuple[list[Field], list[Field]]:
    """Hold out a fraction of every class's fields (at least one where a class has two or more)."""
    by_class: dict[str, list[Field]] = defaultdict(list)
    for f in fields:
        by_class[f.moa].append(f)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for moa in sorted(by_class):
        members = by_class[moa]
        order = rng.permutation(len(members))
        n_val = 0 if val_fraction <= 0 or len(members) < 2 else max(1, round(len(members) * val_fraction))
        val += [members[i] for i in order[:n_val]]
        train += [members[i] for i in order[n_val:]]
    return train, val


CONTROL = "DMSO"  # the negative control's class: trained on, never held out
SPLITS = ("stratified", "nsc", "nscb")


class SplitError(ValueError):
    """A split or fold that cannot be made; the message says why."""


@dataclass(frozen=True)
class Fold:
    """One NSC/NSCB fold: the compound held out, and why it cannot be (None when it can)."""

    index: int
    compound: str
    classes: tuple[str, ...]  # the held-out compound's MoA(s)
    excluded_weeks: tuple[str, ...]  # nscb: weeks left out of training; nsc: none
    problem: str | None = None


def holdout_compounds(fields: list[Field]) -> list[str]:
    """The compounds NSC/NSCB folds index, in fold order: all but the control, by name ignoring case."""
    return sorted({f.compound for f in fields if f.moa != CONTROL}, key=lambda c: (c.lower(), c))


def compound_split(fields: list[Field], compound: str, exclude_batch: bool) -> tuple[list[Field], list[Field]]:
    """(train, val) holding out `compound`; with exclude_batch (NSCB) training also loses the compound's weeks.

    Raises SplitError when the held-out compound's class would have no training field.
    """
    val = [f for f in fields if f.compound == compound]
    if not val:
        raise SplitError(f"no labelled field of compound {compound!r}")
    weeks = {f.week for f in val} if exclude_batch else set()
    train = [f for f in fields if f.compound != compound and f.week not in weeks]
    missing = sorted({f.moa for f in val} - {f.moa for f in train})
    if missing:
        where = f" outside week(s) {', '.join(sorted(weeks))}" if weeks else ""
        raise SplitError(
            f"holding out {compound!r} leaves no training field of its class {', '.join(missing)}"
            f"{where}: no other compound of that class is imaged there"
        )
    return train, val


def folds(fields: list[Field], split: str) -> list[Fold]:
    """Every NSC/NSCB fold in index order, with the reason a fold cannot be trained."""
    if split not in ("nsc", "nscb"):
        raise SplitError(f"folds are for the nsc and nscb splits, not {split!r}")
    out = []
    for index, compound in enumerate(holdout_compounds(fields)):
        held = [f for f in fields if f.compound == compound]
        weeks = tuple(sorted({f.week for f in held})) if split == "nscb" else ()
        try:
            compound_split(fields, compound, exclude_batch=split == "nscb")
            problem = None
        except SplitError as exc:
            problem = str(exc)
        out.append(Fold(index, compound, tuple(sorted({str(f.moa) for f in held})), weeks, problem))
    return out


def check_val_data(split: str, fold) -> None:
    """`train --val-data` validates on other plates: a split of the training data beside it is refused."""
    if split != "stratified" or fold is not None:
        raise SplitError(f"--val-data validates on other plates: it replaces the {split} split, give one or the other")


def select_split(
    fields: list[Field], split: str = "stratified", fold: int | None = None, val_fraction: float = 0.2, seed: int = 0
) -> tuple[list[Field], list[Field]]:
    """(train, val) of the split a run's config names; the one call the training loop makes."""
    if split == "stratified":
        return stratified_split(fields, val_fraction, seed)
    if split not in SPLITS:
        raise SplitError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    compounds = holdout_compounds(fields)
    if not compounds:
        raise SplitError(f"the {split} split needs a compound besides the control ({CONTROL}) to hold out")
    if fold is None or not 0 <= fold < len(compounds):
        raise SplitError(
            f"the {split} split needs a fold from 0 to {len(compounds) - 1} "
            f"(one per compound, DMSO excluded), got {fold}"
        )
    return compound_split(fields, compounds[fold], exclude_batch=split == "nscb")


def chosen_folds(load, split: str, fold: str | None) -> tuple[list[Fold | None], list[Fold]]:
    """What `train --split S --fold F` trains: ([Fold, or None for stratified], [Fold skipped]).

    F is an index or "all" (every fold whose compound can be held out; the others are skipped).
    `load()` gives the labelled fields, read only for nsc/nscb.
    """
    if split not in SPLITS:
        raise SplitError(f"--split must be one of {', '.join(SPLITS)}, not {split!r}")
    if split == "stratified":
        if fold is not None:
            raise SplitError("--fold is for --split nsc or nscb")
        return [None], []
    all_folds = folds(load(), split)
    if not any(f.problem is None for f in all_folds):
        raise SplitError(
            f"no {split} fold can be trained: "
            + ("; ".join(f.problem for f in all_folds) or "no compound but the control")
        )
    if fold == "all":
        return [f for f in all_folds if not f.problem], [f for f in all_folds if f.problem]
    try:
        index = int(fold)
    except (TypeError, ValueError):
        raise SplitError(
            f"--split {split} needs --fold K (0 to {len(all_folds) - 1}) or --fold all, not {fold}"
        ) from None
    if not 0 <= index < len(all_folds):
        raise SplitError(f"--fold {index}: the {split} folds are 0 to {len(all_folds) - 1}")
    if all_folds[index].problem:
        raise SplitError(f"--fold {index}: {all_folds[index].problem}")
    return [all_folds[index]], []


def write_split(path: Path, train: list[Field], val: list[Field]) -> None:
    # absolute paths: export and benchmark read these fields from any working directory
    write_csv(
        path,
        SPLIT_COLUMNS,
        (
            [f.plate, f.well, f.site, f.moa, name, *(str(p.resolve()) for p in f.paths)]
            for name, part in (("train", train), ("val", val))
            for f in part
        ),
    )


def spread_sample(fields: list[Field], n: int) -> list[Field]:
    """Up to n fields spread evenly over the list (which is grouped by class)."""
    if len(fields) <= n:
        return list(fields)
    return [fields[i] for i in np.linspace(0, len(fields) - 1, n).round().astype(int)]
