"""What each mechanism of action looks like: the biology behind the synthetic fields.

A `Phenotype` holds the numbers that draw one treatment's cells (density, cell and nucleus shape,
mitosis, tubulin and actin structure, stain levels). `PHENOTYPES` gives each of the 13 classes its
strength-1 deviation from DMSO; `phenotype(moa, strength, compound)` moves DMSO part of the way
there, as that compound's own variant; `dose_strength` fixes that part per compound and
concentration. `week_effects` are a week's batch effects (rendering.py adds each field's own).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from dataclasses import fields as dc_fields

import numpy as np


@dataclass(frozen=True)
class Phenotype:
    """What a field of one treatment looks like. Intensities are counts above background."""

    # population
    count: float = 1.0  # cells per field, relative to DMSO
    cluster: float = 0.4  # patchiness of the monolayer (0: even)
    islands: float = 0.0  # 1: cells packed in tight islands, nothing between them
    # cell body
    cell_r: float = 22.0  # mean radius, px
    cell_aspect: float = 1.35
    cell_irregular: float = 0.16  # amplitude of the outline's low harmonics
    # nucleus
    nuc_r: float = 10.0
    nuc_aspect: float = 1.25
    nuc_lobes: float = 0.04
    dapi: float = 2600.0
    chromatin: float = 0.22  # texture contrast
    micronuclei: float = 0.05  # per cell
    # mitosis: fraction of cells and what they look like
    mitotic: float = 0.03
    mitotic_kind: str = "metaphase"  # metaphase | clump (C-mitosis) | ring (monoastral)
    mito_dna: float = 2.0  # condensed DNA, times `dapi`
    mito_tub: float = 1000.0  # spindle poles / aster
    mito_tub_diffuse: float = 300.0
    # tubulin
    tub: float = 800.0
    tub_fibre: float = 0.6  # 0 diffuse .. 1 all in fibres
    tub_fibres: float = 26.0  # radial fibres per cell
    tub_thin: float = 0.45  # 0 broad .. 0.9 thin fibres
    tub_curl: float = 0.8
    tub_peri: float = 0.5  # perinuclear enrichment
    tub_ring: float = 0.0  # bundle ring around the nucleus
    tub_puncta: float = 0.0  # bright dots per cell
    tub_punct_amp: float = 0.0
    tub_aggresome: float = 0.0  # amplitude of one large perinuclear aggregate
    # actin
    act_rim: float = 1100.0
    act_rim_w: float = 2.5
    act_fibres: float = 450.0  # stress fibres
    act_fibre_gap: float = 6.0  # px between fibres
    act_cyto: float = 300.0
    act_puncta: float = 0.0
    act_punct_amp: float = 0.0
    act_punct_sigma: float = 1.5


DMSO = Phenotype()

# Strength-1 deviations from DMSO; a treatment of strength s moves each number s of the way.
# Per-cell stain levels differ from DMSO by at most a third: every field's stain gains vary
# threefold (rendering.py), so a class shows in shape, texture and arrangement, not brightness.
# fmt: off
PHENOTYPES: dict[str, Phenotype] = {
    "DMSO": DMSO,
    # rounded cells in C-mitosis: condensed chromosomes scattered in a clump, tubulin diffuse
    "Microtubule destabilizers": replace(
        DMSO, cell_r=15.0, cell_aspect=1.08, cell_irregular=0.06, nuc_r=9.0, mitotic=0.35, mitotic_kind="clump",
        mito_dna=1.7, mito_tub=0.0, mito_tub_diffuse=1000.0, tub=950.0, tub_fibre=0.0, tub_peri=0.1, act_rim=1400.0,
        act_fibres=50.0, cluster=0.3),
    # thick curled bundles wrapping the nucleus, fragmented nuclei / micronuclei; some arrested mitoses
    "Microtubule stabilizers": replace(
        DMSO, count=0.9, cell_r=24.0, tub=1000.0, tub_fibre=0.95, tub_fibres=11.0, tub_thin=0.7, tub_curl=3.0,
        tub_ring=1.0, tub_peri=0.3, nuc_lobes=0.3, micronuclei=2.5, mitotic=0.2, mitotic_kind="clump", mito_dna=2.0,
        mito_tub=0.0, mito_tub_diffuse=1000.0, act_rim=800.0, act_fibres=100.0, act_cyto=250.0),
    # mitotic arrest with monoastral spindles: rosettes of DNA round a tubulin star
    "Eg5 inhibitors": replace(
        DMSO, cell_r=15.0, cell_aspect=1.05, cell_irregular=0.05, mitotic=0.4, mitotic_kind="ring", mito_dna=1.5,
        mito_tub=3000.0, mito_tub_diffuse=200.0, tub=700.0, act_rim=1400.0, act_fibres=50.0, cluster=0.3),
    # large polyploid, lobed (multinucleate-looking) nuclei in large, flat cells
    "Aurora kinase inhibitors": replace(
        DMSO, count=0.8, cell_r=28.0, cell_irregular=0.24, nuc_r=14.0, nuc_lobes=0.4, nuc_aspect=1.15,
        dapi=2300.0, chromatin=0.3, micronuclei=0.8, tub=700.0, tub_fibres=40.0, act_rim=900.0, act_fibres=350.0),
    # actin gone from the rim and fibres, collapsed into a few large aggregates; arborised cells
    "Actin disruptors": replace(
        DMSO, cell_r=20.0, cell_irregular=0.38, act_rim=150.0, act_fibres=0.0, act_cyto=150.0, act_puncta=4.5,
        act_punct_amp=3500.0, act_punct_sigma=2.6, tub=900.0),
    # enlarged nuclei with coarse chromatin and micronuclei; flattened cells
    "DNA damage": replace(
        DMSO, count=0.8, cell_r=25.0, nuc_r=13.0, dapi=3000.0, chromatin=0.45, micronuclei=3.0),
    # enlarged, smooth nuclei (stalled S phase); fewer, larger cells
    "DNA replication": replace(
        DMSO, count=0.75, cell_r=27.0, nuc_r=12.5, dapi=2000.0, chromatin=0.08, tub=950.0, act_fibres=600.0),
    # subtle: tubulin in puncta and a perinuclear aggresome, a sparser network
    "Protein degradation": replace(
        DMSO, cell_r=19.0, nuc_r=9.0, tub=650.0, tub_fibre=0.4, tub_puncta=8.0, tub_punct_amp=1500.0,
        tub_aggresome=4000.0, act_fibres=300.0),
    # subtle: fewer, smaller cells, few mitoses, thin cortex and few stress fibres
    "Protein synthesis": replace(
        DMSO, count=0.7, cell_r=17.5, nuc_r=8.8, mitotic=0.0, tub=650.0, tub_fibres=18.0, act_rim=800.0,
        act_fibres=120.0, act_cyto=220.0, cluster=0.3),
    # spread, flat, elongated cells with strong stress fibres
    "Kinase inhibitors": replace(
        DMSO, count=0.8, cell_r=30.0, cell_aspect=1.55, act_fibres=1000.0, act_fibre_gap=7.0, act_rim=1300.0,
        act_cyto=400.0, tub=700.0, tub_fibres=34.0),
    # rounded compact cells, condensed nuclei, actin in small puncta along the rim
    "Cholesterol-lowering": replace(
        DMSO, cell_r=17.0, cell_aspect=1.05, cell_irregular=0.05, nuc_r=8.5, dapi=3200.0, act_puncta=18.0,
        act_punct_amp=2000.0, act_punct_sigma=1.2, act_rim=300.0, act_fibres=0.0, act_cyto=250.0, tub_fibre=0.5),
    # cells packed in tight islands with strong cortical actin at the junctions
    "Epithelial": replace(
        DMSO, islands=1.0, count=1.15, cell_r=16.5, cell_aspect=1.1, cell_irregular=0.07, nuc_r=8.8, act_rim=1600.0,
        act_rim_w=1.8, act_fibres=80.0),
}
# fmt: on

# The brightness-cue set (write_dataset(brightness_cue=True), a sanity check of the baseline only):
# each class's stains scaled by its own triple of these levels, wider apart than the field-to-field gains.
CUE_LEVELS = (0.25, 1.0, 4.0)


def brightness_cue(moa: str) -> tuple[float, float, float]:
    """Stain factors (DAPI, Tubulin, Actin) that give each class its own brightness."""
    i = list(PHENOTYPES).index(moa)
    code = (5 * i + 1) % 27  # 13 distinct triples of the 27
    return tuple(CUE_LEVELS[code // 3**k % 3] for k in range(3))


def _unit(*key: str) -> float:
    """A number in [0, 1) fixed by the key (a digest, the same in every process and on every machine)."""
    digest = hashlib.sha256("/".join(key).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


def phenotype(moa: str, strength: float, compound: str | None = None) -> Phenotype:
    """DMSO moved `strength` of the way towards the class's phenotype, as `compound` shows it.

    Each compound of a class is its own variant: every feature's deviation from DMSO is scaled by
    a factor of 0.6..1.4 fixed by the compound's name, capped at the class's own deviation
    (vincristine and colchicine both destabilise microtubules, not identically). Without a
    compound, the class's own phenotype.
    """
    try:
        target = PHENOTYPES[moa]
    except KeyError:
        raise ValueError(f"unknown mechanism of action {moa!r}; known: {sorted(PHENOTYPES)}") from None
    values = {}
    for f in dc_fields(Phenotype):
        a, b = getattr(DMSO, f.name), getattr(target, f.name)
        if isinstance(b, str):
            values[f.name] = b
            continue
        variant = 1.0 if compound is None or a == b else 0.6 + 0.8 * _unit(compound, f.name)
        values[f.name] = a + min(strength * variant, 1.0) * (b - a)  # never past the class's extreme
    return Phenotype(**values)


def compound_strength(compound: str) -> float:
    """How far a compound's highest dose moves the cells from DMSO: 0.75..1.0, fixed by its name."""
    if compound == "DMSO":
        return 1.0
    return 0.75 + 0.25 * _unit(compound)


def dose_strength(compound: str, concentration: float, concentrations: list[float]) -> float:
    """Strength of a compound at one of its concentrations: its strength at the highest, falling
    in log concentration to 0.6 of it at the lowest (low doses approach DMSO)."""
    top = compound_strength(compound)
    doses = [c for c in concentrations if c > 0]
    if compound == "DMSO" or concentration <= 0 or len(set(doses)) < 2:
        return top
    low, high = math.log10(min(doses)), math.log10(max(doses))
    position = (math.log10(concentration) - low) / (high - low)
    return top * (0.6 + 0.4 * min(max(position, 0.0), 1.0))


@dataclass(frozen=True)
class Week:
    """Batch effects of one week: stain gains, camera offset, illumination gradient."""

    gain: tuple[float, float, float]
    offset: float
    background: tuple[float, float, float]
    tilt: tuple[float, float]
    vignette: float


def week_effects(week: int) -> Week:
    rng = np.random.default_rng(np.random.SeedSequence([int(week), 0x5EED]))
    gain = 1.0 + rng.uniform(-0.15, 0.15, 3)
    return Week(
        gain=tuple(float(g) for g in gain),
        offset=float(rng.uniform(100, 200)),
        background=tuple(float(b) for b in rng.uniform(0.85, 1.15, 3) * (140.0, 260.0, 200.0)),
        tilt=tuple(float(t) for t in rng.uniform(-0.08, 0.08, 2)),
        vignette=float(rng.uniform(0.05, 0.3)),  # each week's lamp and alignment
    )
