"""What each mechanism of action looks like: the biology behind the synthetic fields.

A `Phenotype` holds the numbers that draw one treatment's cells (density, cell and nucleus shape,
mitosis, tubulin and actin structure, stain levels). `PHENOTYPES` gives each of the 13 classes its
strength-1 deviation from DMSO; `phenotype(moa, strength)` moves DMSO part of the way there, and
`compound_strength` fixes that part per compound. `week_effects` are a week's batch effects.
"""

from __future__ import annotations

import hashlib
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
    # overall stain level per cell (DAPI, Tubulin, Actin), relative to DMSO: more or less DNA,
    # polymerised tubulin or F-actin in every cell, as intensity features of real screens show
    stain: tuple[float, float, float] = (1.0, 1.0, 1.0)


DMSO = Phenotype()

# Strength-1 deviations from DMSO; a compound of strength s moves each number s of the way.
# fmt: off
PHENOTYPES: dict[str, Phenotype] = {
    "DMSO": DMSO,
    # rounded cells in C-mitosis: bright condensed scattered chromosomes, tubulin diffuse
    "Microtubule destabilizers": replace(
        DMSO, stain=(2.0, 1.0, 2.0), cell_r=15.0, cell_aspect=1.08, cell_irregular=0.06, nuc_r=9.0, mitotic=0.7,
        mitotic_kind="clump", mito_dna=3.2, mito_tub=0.0, mito_tub_diffuse=1600.0, tub=1600.0, tub_fibre=0.0,
        tub_peri=0.1, act_rim=2600.0, act_fibres=50.0, act_cyto=450.0, cluster=0.3),
    # thick bright bundles wrapping the nucleus, fragmented nuclei / micronuclei
    "Microtubule stabilizers": replace(
        DMSO, stain=(1.0, 2.0, 0.5), count=0.85, cell_r=24.0, tub=3000.0, tub_fibre=0.95, tub_fibres=11.0, tub_thin=0.7,
        tub_curl=3.0, tub_ring=1.0, tub_peri=0.3, nuc_lobes=0.3, micronuclei=2.5, mitotic=0.12, mitotic_kind="clump",
        mito_dna=2.2, mito_tub=0.0, mito_tub_diffuse=1500.0, act_rim=500.0, act_fibres=100.0, act_cyto=200.0),
    # mitotic arrest with monoastral spindles: ring of DNA round a bright tubulin star
    "Eg5 inhibitors": replace(
        DMSO, stain=(2.0, 2.0, 1.0), cell_r=14.5, cell_aspect=1.05, cell_irregular=0.05, mitotic=0.8,
        mitotic_kind="ring", mito_dna=1.6, mito_tub=5000.0, mito_tub_diffuse=200.0, tub=500.0, act_rim=1600.0,
        act_fibres=50.0, cluster=0.3),
    # very large polyploid, lobed nuclei in very large, flat cells
    "Aurora kinase inhibitors": replace(
        DMSO, stain=(2.0, 0.5, 1.0), count=0.6, cell_r=38.0, cell_irregular=0.24, nuc_r=22.0, nuc_lobes=0.22,
        nuc_aspect=1.15, dapi=2300.0, chromatin=0.3, micronuclei=0.8, tub=600.0, tub_fibres=40.0, act_rim=900.0,
        act_fibres=350.0, act_cyto=200.0),
    # actin gone from the rim and fibres, collapsed into a few bright aggregates; arborised cells
    "Actin disruptors": replace(
        DMSO, stain=(1.0, 1.0, 2.0), cell_r=20.0, cell_irregular=0.38, act_rim=100.0, act_fibres=0.0, act_cyto=100.0,
        act_puncta=4.5, act_punct_amp=7500.0, act_punct_sigma=2.6, tub=1300.0),
    # enlarged, bright nuclei with micronuclei; flattened cells rich in tubulin and F-actin
    "DNA damage": replace(
        DMSO, stain=(2.0, 2.0, 2.0), count=0.75, cell_r=26.0, nuc_r=14.0, dapi=4400.0, chromatin=0.45, micronuclei=4.0,
        tub=850.0),
    # enlarged but dim nuclei (stalled S phase); fewer, larger cells
    "DNA replication": replace(
        DMSO, stain=(0.5, 1.0, 1.0), count=0.5, cell_r=30.0, nuc_r=15.0, dapi=1100.0, chromatin=0.08, tub=1400.0,
        act_fibres=600.0),
    # smaller cells, tubulin in bright puncta and a perinuclear aggresome
    "Protein degradation": replace(
        DMSO, stain=(1.0, 2.0, 1.0), count=1.1, cell_r=16.0, nuc_r=8.5, tub=350.0, tub_fibre=0.2, tub_puncta=12.0,
        tub_punct_amp=3000.0, tub_aggresome=8000.0, act_rim=1300.0, act_fibres=200.0),
    # fewer, smaller cells, every stain dim
    "Protein synthesis": replace(
        DMSO, stain=(0.5, 0.5, 0.5), count=0.45, cell_r=15.5, nuc_r=7.8, dapi=1300.0, mitotic=0.0, tub=330.0,
        act_rim=450.0, act_fibres=100.0, act_cyto=130.0, cluster=0.3),
    # spread, flat cells with strong stress fibres
    "Kinase inhibitors": replace(
        DMSO, stain=(1.0, 0.5, 2.0), count=0.65, cell_r=34.0, cell_aspect=1.55, act_fibres=3000.0, act_fibre_gap=7.0,
        act_rim=2000.0, act_cyto=700.0, tub=550.0, tub_fibres=34.0),
    # rounded compact cells, bright condensed nuclei, actin in puncta along the rim
    "Cholesterol-lowering": replace(
        DMSO, stain=(2.0, 1.0, 0.5), count=0.9, cell_r=17.0, cell_aspect=1.05, cell_irregular=0.05, nuc_r=8.3,
        dapi=4600.0, act_puncta=18.0, act_punct_amp=3200.0, act_punct_sigma=1.2, act_rim=150.0, act_fibres=0.0,
        act_cyto=200.0, tub=700.0, tub_fibre=0.5),
    # cells packed in tight islands with strong cortical actin at the junctions
    "Epithelial": replace(
        DMSO, stain=(0.5, 0.5, 2.0), islands=1.0, count=1.2, cell_r=16.5, cell_aspect=1.1, cell_irregular=0.07,
        nuc_r=8.8, act_rim=3300.0, act_rim_w=1.8, act_fibres=80.0, tub=700.0),
}
# fmt: on


def phenotype(moa: str, strength: float) -> Phenotype:
    """DMSO moved `strength` of the way towards the class's phenotype (0.8..1.0 for a compound)."""
    try:
        target = PHENOTYPES[moa]
    except KeyError:
        raise ValueError(f"unknown mechanism of action {moa!r}; known: {sorted(PHENOTYPES)}") from None
    values = {}
    for f in dc_fields(Phenotype):
        a, b = getattr(DMSO, f.name), getattr(target, f.name)
        if isinstance(b, str):
            values[f.name] = b
        elif isinstance(b, tuple):
            values[f.name] = tuple(u + strength * (v - u) for u, v in zip(a, b))
        else:
            values[f.name] = a + strength * (b - a)
    return Phenotype(**values)


def compound_strength(compound: str) -> float:
    """How far a compound moves the cells from DMSO: 0.8..1.0, fixed by its name."""
    if compound == "DMSO":
        return 1.0
    digest = hashlib.sha256(compound.encode("utf-8")).digest()
    return 0.8 + 0.2 * int.from_bytes(digest[:4], "big") / 2**32


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
    gain = 1.0 + rng.uniform(-0.1, 0.1, 3)
    return Week(
        gain=tuple(float(g) for g in gain),
        offset=float(rng.uniform(100, 200)),
        background=tuple(float(b) for b in rng.uniform(0.85, 1.15, 3) * (140.0, 260.0, 200.0)),
        tilt=tuple(float(t) for t in rng.uniform(-0.08, 0.08, 2)),
        vignette=float(rng.uniform(0.04, 0.14)),
    )
