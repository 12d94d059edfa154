"""Synthetic BBBC021-like screening plates: MCF-7 cells in three stains, under the real layout.

The real images (40 GB) cannot be fetched on these machines, so training, the demo and the
tests use plates drawn here. They follow the published set in everything the appliance reads:

- `out/WeekN/WeekN_PLATE/{well}_s{site}_w{1,2,4}{UUID}.tif`: one 16-bit grayscale, uncompressed
  TIFF per stain (w1 DAPI, w2 Tubulin, w4 Actin), 1024 high x 1280 wide by default;
- `out/BBBC021_v1_image.csv` with the published columns, order and quoting, and
  `out/BBBC021_v1_moa.csv`, a copy of the real MoA table (12 mechanisms + DMSO).

Each plate is one week (its own stain gains and illumination), holds all 13 classes in wells of
up to four sites, and each well is one treatment of the real MoA table. The 13 phenotypes are
drawn as cells a biologist would recognise (see `PHENOTYPES`) and differ from one another in
several ways at once, coarse ones included (cell density, nucleus size, stain intensity and its
spatial distribution), so that a small CNN trained briefly on one set of weeks classifies
plates of another week.

Rendering is numpy only (the runtime never imports torch): cells are drawn as stamps, small
patches computed in batches and added into the field. Every field's random stream comes from
(seed, plate, well, site), so output is byte-identical whatever the number of workers.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, fields as dc_fields, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from statistics import NormalDist

import numpy as np
import tifffile

from .metadata import CHANNELS, IMAGE_COLUMNS, IMAGE_CSV, MOA_CSV, WAVELENGTHS

FULL_SIZE = (1024, 1280)  # height, width of a BBBC021 field
ROWS = "ABCDEFGH"
# BBBC021 uses the 60 inner wells (B02..G11); the outer ring only if a plate needs more.
INNER_WELLS = [f"{r}{c:02d}" for r in ROWS[1:7] for c in range(2, 12)]
OUTER_WELLS = [f"{r}{c:02d}" for r in ROWS for c in range(1, 13) if f"{r}{c:02d}" not in INNER_WELLS]
SITES_PER_WELL = 4
DMSO_CELLS_PER_PIXEL = 200 / (FULL_SIZE[0] * FULL_SIZE[1])  # about 200 cells in a DMSO field


# --------------------------------------------------------------------------- phenotypes

@dataclass(frozen=True)
class Phenotype:
    """What a field of one treatment looks like. Intensities are counts above background."""

    # population
    count: float = 1.0            # cells per field, relative to DMSO
    cluster: float = 0.4          # patchiness of the monolayer (0: even)
    islands: float = 0.0          # 1: cells packed in tight islands, nothing between them
    # cell body
    cell_r: float = 22.0          # mean radius, px
    cell_aspect: float = 1.35
    cell_irregular: float = 0.16  # amplitude of the outline's low harmonics
    # nucleus
    nuc_r: float = 10.0
    nuc_aspect: float = 1.25
    nuc_lobes: float = 0.04
    dapi: float = 2600.0
    chromatin: float = 0.22       # texture contrast
    micronuclei: float = 0.05     # per cell
    # mitosis: fraction of cells and what they look like
    mitotic: float = 0.03
    mitotic_kind: str = "metaphase"  # metaphase | clump (C-mitosis) | ring (monoastral)
    mito_dna: float = 2.0         # condensed DNA, times `dapi`
    mito_tub: float = 1000.0      # spindle poles / aster
    mito_tub_diffuse: float = 300.0
    # tubulin
    tub: float = 800.0
    tub_fibre: float = 0.6        # 0 diffuse .. 1 all in fibres
    tub_fibres: float = 26.0      # radial fibres per cell
    tub_thin: float = 0.45        # 0 broad .. 0.9 thin fibres
    tub_curl: float = 0.8
    tub_peri: float = 0.5         # perinuclear enrichment
    tub_ring: float = 0.0         # bundle ring around the nucleus
    tub_puncta: float = 0.0       # bright dots per cell
    tub_punct_amp: float = 0.0
    tub_aggresome: float = 0.0    # amplitude of one large perinuclear aggregate
    # actin
    act_rim: float = 1100.0
    act_rim_w: float = 2.5
    act_fibres: float = 450.0     # stress fibres
    act_fibre_gap: float = 6.0    # px between fibres
    act_cyto: float = 300.0
    act_puncta: float = 0.0
    act_punct_amp: float = 0.0
    act_punct_sigma: float = 1.5
    # overall stain level per cell (DAPI, Tubulin, Actin), relative to DMSO: more or less DNA,
    # polymerised tubulin or F-actin in every cell, as intensity features of real screens show
    stain: tuple[float, float, float] = (1.0, 1.0, 1.0)


DMSO = Phenotype()

# Strength-1 deviations from DMSO; a compound of strength s moves each number s of the way.
PHENOTYPES: dict[str, Phenotype] = {
    "DMSO": DMSO,
    # rounded cells in C-mitosis: bright condensed scattered chromosomes, tubulin diffuse
    "Microtubule destabilizers": replace(
        DMSO, stain=(2.0, 1.0, 2.0), cell_r=15.0, cell_aspect=1.08, cell_irregular=0.06, nuc_r=9.0, mitotic=0.7, mitotic_kind="clump",
        mito_dna=3.2, mito_tub=0.0, mito_tub_diffuse=1600.0, tub=1600.0, tub_fibre=0.0, tub_peri=0.1,
        act_rim=2600.0, act_fibres=50.0, act_cyto=450.0, cluster=0.3),
    # thick bright bundles wrapping the nucleus, fragmented nuclei / micronuclei
    "Microtubule stabilizers": replace(
        DMSO, stain=(1.0, 2.0, 0.5), count=0.85, cell_r=24.0, tub=3000.0, tub_fibre=0.95, tub_fibres=11.0, tub_thin=0.7, tub_curl=3.0,
        tub_ring=1.0, tub_peri=0.3, nuc_lobes=0.3, micronuclei=2.5, mitotic=0.12, mitotic_kind="clump",
        mito_dna=2.2, mito_tub=0.0, mito_tub_diffuse=1500.0, act_rim=500.0, act_fibres=100.0, act_cyto=200.0),
    # mitotic arrest with monoastral spindles: ring of DNA round a bright tubulin star
    "Eg5 inhibitors": replace(
        DMSO, stain=(2.0, 2.0, 1.0), cell_r=14.5, cell_aspect=1.05, cell_irregular=0.05, mitotic=0.8, mitotic_kind="ring",
        mito_dna=1.6, mito_tub=5000.0, mito_tub_diffuse=200.0, tub=500.0, act_rim=1600.0, act_fibres=50.0,
        cluster=0.3),
    # very large polyploid, lobed nuclei in very large, flat cells
    "Aurora kinase inhibitors": replace(
        DMSO, stain=(2.0, 0.5, 1.0), count=0.6, cell_r=38.0, cell_irregular=0.24, nuc_r=22.0, nuc_lobes=0.22, nuc_aspect=1.15,
        dapi=2300.0, chromatin=0.3, micronuclei=0.8, tub=600.0, tub_fibres=40.0, act_rim=900.0,
        act_fibres=350.0, act_cyto=200.0),
    # actin gone from the rim and fibres, collapsed into a few bright aggregates; arborised cells
    "Actin disruptors": replace(
        DMSO, stain=(1.0, 1.0, 2.0), cell_r=20.0, cell_irregular=0.38, act_rim=100.0, act_fibres=0.0, act_cyto=100.0, act_puncta=4.5,
        act_punct_amp=7500.0, act_punct_sigma=2.6, tub=1300.0),
    # enlarged, bright nuclei with micronuclei; flattened cells rich in tubulin and F-actin
    "DNA damage": replace(
        DMSO, stain=(2.0, 2.0, 2.0), count=0.75, cell_r=26.0, nuc_r=14.0, dapi=4400.0, chromatin=0.45, micronuclei=4.0, tub=850.0),
    # enlarged but dim nuclei (stalled S phase); fewer, larger cells
    "DNA replication": replace(
        DMSO, stain=(0.5, 1.0, 1.0), count=0.5, cell_r=30.0, nuc_r=15.0, dapi=1100.0, chromatin=0.08, tub=1400.0, act_fibres=600.0),
    # smaller cells, tubulin in bright puncta and a perinuclear aggresome
    "Protein degradation": replace(
        DMSO, stain=(1.0, 2.0, 1.0), count=1.1, cell_r=16.0, nuc_r=8.5, tub=350.0, tub_fibre=0.2, tub_puncta=12.0,
        tub_punct_amp=3000.0, tub_aggresome=8000.0, act_rim=1300.0, act_fibres=200.0),
    # fewer, smaller cells, every stain dim
    "Protein synthesis": replace(
        DMSO, stain=(0.5, 0.5, 0.5), count=0.45, cell_r=15.5, nuc_r=7.8, dapi=1300.0, mitotic=0.0, tub=330.0, act_rim=450.0,
        act_fibres=100.0, act_cyto=130.0, cluster=0.3),
    # spread, flat cells with strong stress fibres
    "Kinase inhibitors": replace(
        DMSO, stain=(1.0, 0.5, 2.0), count=0.65, cell_r=34.0, cell_aspect=1.55, act_fibres=3000.0, act_fibre_gap=7.0,
        act_rim=2000.0, act_cyto=700.0, tub=550.0, tub_fibres=34.0),
    # rounded compact cells, bright condensed nuclei, actin in puncta along the rim
    "Cholesterol-lowering": replace(
        DMSO, stain=(2.0, 1.0, 0.5), count=0.9, cell_r=17.0, cell_aspect=1.05, cell_irregular=0.05, nuc_r=8.3, dapi=4600.0,
        act_puncta=18.0, act_punct_amp=3200.0, act_punct_sigma=1.2, act_rim=150.0, act_fibres=0.0,
        act_cyto=200.0, tub=700.0, tub_fibre=0.5),
    # cells packed in tight islands with strong cortical actin at the junctions
    "Epithelial": replace(
        DMSO, stain=(0.5, 0.5, 2.0), islands=1.0, count=1.2, cell_r=16.5, cell_aspect=1.1, cell_irregular=0.07, nuc_r=8.8,
        act_rim=3300.0, act_rim_w=1.8, act_fibres=80.0, tub=700.0),
}


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


# --------------------------------------------------------------------------- drawing

def _smooth_bank(rng: np.random.Generator, k: int, size: int, sigma: float) -> np.ndarray:
    """k zero-mean, unit-std random textures (size x size) of correlation length ~sigma px."""
    white = rng.standard_normal((k, size, size), dtype=np.float32)
    f = np.fft.fftfreq(size).astype(np.float32)
    kernel = np.exp(-2 * (np.pi * sigma) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2))
    smooth = np.fft.irfft2(np.fft.rfft2(white) * kernel[:, : size // 2 + 1], s=(size, size)).astype(np.float32)
    smooth -= smooth.mean(axis=(1, 2), keepdims=True)
    smooth /= smooth.std(axis=(1, 2), keepdims=True) + 1e-6
    return smooth


@lru_cache(maxsize=1)
def _gauss_table() -> np.ndarray:
    """Standard normal quantiles at 65,536 levels: fast Gaussian noise from random uint16."""
    q = (np.arange(65536) + 0.5) / 65536
    nd = NormalDist()
    return np.array([nd.inv_cdf(v) for v in q], dtype=np.float32)


def _gaussian_noise(rng: np.random.Generator, shape) -> np.ndarray:
    count = int(np.prod(shape))
    index = np.frombuffer(rng.bytes(2 * count), dtype=np.uint16)
    return _gauss_table()[index].reshape(shape)


def _ramp(x: np.ndarray) -> np.ndarray:
    """Soft 0..1 edge, linear over one unit around 0."""
    return np.clip(x + 0.5, 0.0, 1.0)


def _outline(u, v, a, b, coef):
    """Normalised radius of a star-shaped outline, 1 on the edge: an ellipse (semi-axes a, b)
    whose radius is modulated by harmonics 2..K+1 of the angle; coef: (n, K, 2) cos/sin weights."""
    U, V = u / a, v / b
    r = np.sqrt(U * U + V * V)
    r += 1e-6
    c, s = U / r, V / r
    ck, sk = c * c - s * s, 2 * c * s          # cos 2t, sin 2t
    m = 1 + _col(coef[:, 0, 0]) * ck + _col(coef[:, 0, 1]) * sk
    for k in range(1, coef.shape[1]):
        ck, sk = c * ck - s * sk, s * ck + c * sk
        m += _col(coef[:, k, 0]) * ck + _col(coef[:, k, 1]) * sk
    np.maximum(m, 0.3, out=m)
    return r / m


def _max_modulation(coef: np.ndarray) -> np.ndarray:
    """Largest radius factor of `_outline`'s harmonics, per cell (sampled at 90 angles)."""
    t = np.linspace(0, 2 * np.pi, 90, endpoint=False)
    k = np.arange(2, coef.shape[1] + 2)[:, None] * t[None, :]
    m = 1 + np.einsum("nk,kt->nt", coef[:, :, 0], np.cos(k)) + np.einsum("nk,kt->nt", coef[:, :, 1], np.sin(k))
    return m.max(axis=1) * 1.03


def _col(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)[:, None, None]


def _polar(H: int, M: int = 0):
    """Radius and angle on a (2H+2M+1)^2 grid centred on its middle pixel."""
    g = np.arange(-H - M, H + M + 1, dtype=np.float32)
    return np.hypot(g[None, :], g[:, None]), np.arctan2(g[:, None], g[None, :])


def _windows(big: np.ndarray, S: int, oy: np.ndarray, ox: np.ndarray, M: int) -> np.ndarray:
    """(n, S, S) windows of a precomputed map, each centred (ox, oy) px off the middle."""
    view = np.lib.stride_tricks.sliding_window_view(big, (S, S))
    return view[M - oy, M - ox]


@dataclass
class _Cells:
    """Per-cell geometry of the interphase cells, for the dots drawn on top."""

    x: np.ndarray       # centres, field px
    y: np.ndarray
    r: np.ndarray       # cell radius
    nx: np.ndarray      # nucleus centre
    ny: np.ndarray
    nr: np.ndarray      # nucleus radius


def _interphase(p: Phenotype, x, y, rng, canvas, pad) -> _Cells:
    """Interphase cells: outline, nucleus, tubulin network and actin cortex.

    A field draws a set of distinct cells (all of them in a small field; a quarter or fewer in
    a full one, to bound the work) and places each several times, turned by one of the 8
    symmetries of the square and with its own stain gains; the dots drawn later are per cell.
    """
    count = len(x)
    side = 2 * p.cell_r * 1.25 * math.sqrt(p.cell_aspect) + 7   # typical stamp width
    n = min(count, 12 + count // 4, max(12, int(320_000 / side**2)))
    if n == 0:
        empty = np.zeros(0)
        return _Cells(empty, empty, empty, empty, empty, empty)
    lognormal = lambda sd: np.exp(rng.normal(0, sd, n))  # noqa: E731
    R = p.cell_r * np.clip(lognormal(0.13), 0.6, 1.5)
    asp = 1 + (p.cell_aspect - 1) * rng.uniform(0.4, 1.6, n)
    phi = rng.uniform(0, np.pi, n)
    harm = rng.normal(0, 1, (n, 3, 2)) * (p.cell_irregular / np.array([1.5, 2.2, 3.0]))[None, :, None]
    harm *= np.minimum(1.0, 0.6 / np.maximum(_max_modulation(harm) - 1, 1e-6))[:, None, None]  # outline <= 1.6 R
    reach = R * np.sqrt(asp) * _max_modulation(harm) + 3
    nr = np.minimum(np.maximum(p.nuc_r * lognormal(0.12), 4.0), 0.8 * R)
    off = rng.uniform(0, 0.22, n) * (R - nr).clip(0)
    ang = rng.uniform(0, 2 * np.pi, n)
    ox, oy = np.rint(off * np.cos(ang)).astype(np.int64), np.rint(off * np.sin(ang)).astype(np.int64)
    psi = rng.uniform(0, np.pi, n)
    nasp = 1 + (p.nuc_aspect - 1) * rng.uniform(0.5, 1.5, n)
    nharm = rng.normal(0, 1, (n, 2, 2)) * (p.nuc_lobes / np.array([1.0, 1.4]))[None, :, None]
    nreach = nr * np.sqrt(nasp) * _max_modulation(nharm) + np.maximum(np.abs(ox), np.abs(oy)) + 3
    dna = p.dapi * lognormal(0.15)
    tub_amp = p.tub * lognormal(0.15)
    kf = np.round(p.tub_fibres * rng.uniform(0.8, 1.2, n))
    kf2 = np.round(p.tub_fibres * rng.uniform(0.5, 0.8, n))
    curl = p.tub_curl * rng.choice([-1.0, 1.0], n)
    tub_phase = rng.uniform(0, 2 * np.pi, (2, n))
    rim_amp = p.act_rim * lognormal(0.15)
    omega = phi + rng.normal(0, 0.3, n)
    fib_freq = 2 * np.pi / (p.act_fibre_gap * rng.uniform(0.85, 1.15, n))
    fib_phase = rng.uniform(0, 2 * np.pi, n)
    fib_amp = p.act_fibres * lognormal(0.2)

    templates: list[np.ndarray | None] = [None] * n
    order = np.argsort(reach, kind="stable")
    for chunk in np.array_split(order, max(1, -(-n // 40))):
        if len(chunk) == 0:
            continue
        m = len(chunk)
        H = int(math.ceil(reach[chunk].max()))
        S = 2 * H + 1
        g = np.arange(-H, H + 1, dtype=np.float32)
        dx, dy = g[None, None, :], g[None, :, None]
        # cell outline
        c, s = _col(np.cos(phi[chunk])), _col(np.sin(phi[chunk]))
        a, b = _col(R[chunk] * np.sqrt(asp[chunk])), _col(R[chunk] / np.sqrt(asp[chunk]))
        rho = _outline(dx * c + dy * s, dy * c - dx * s, a, b, harm[chunk])
        Rc = _col(R[chunk])
        depth = (1 - rho) * Rc                      # px inside the edge
        cell = _ramp(depth / 2.0)
        tex = _smooth_bank(rng, 4, S, 1.2)[rng.integers(0, 4, m)]
        wob = _smooth_bank(rng, 4, S, 5.0)[rng.integers(0, 4, m)]
        # nucleus, off centre, computed in a central window of the stamp
        Hn = min(H, int(math.ceil(nreach[chunk].max())))
        win = slice(H - Hn, H + Hn + 1)
        gn = g[win]
        dxn, dyn = gn[None, None, :] - _col(ox[chunk]), gn[None, :, None] - _col(oy[chunk])
        cn, sn = _col(np.cos(psi[chunk])), _col(np.sin(psi[chunk]))
        na = np.sqrt(nasp[chunk])
        rhon = _outline(dxn * cn + dyn * sn, dyn * cn - dxn * sn, _col(nr[chunk] * na), _col(nr[chunk] / na),
                        nharm[chunk])
        Rn = _col(nr[chunk])
        nuc = _ramp((1 - rhon) * Rn / 1.4)
        # DAPI: a domed nucleus with chromatin texture; DNA content varies with the cell cycle
        dapi = np.zeros((m, S, S), dtype=np.float32)
        dapi[:, win, win] = _col(dna[chunk]) * nuc * (0.8 + 0.25 * np.clip(1 - rhon * rhon, 0, 1)) * np.maximum(
            1 + p.chromatin * tex[:, win, win], 0.2)
        nuc_shade = np.ones((m, S, S), dtype=np.float32)
        nuc_shade[:, win, win] -= 0.6 * nuc

        # tubulin: wavy fibres radiating from around the nucleus, a second sparser crossing set
        Moff = int(np.abs(np.concatenate([ox[chunk], oy[chunk]])).max())
        rbig, tbig = _polar(H, Moff)
        rabs = _windows(rbig, S, oy[chunk], ox[chunk], Moff)
        theta = _windows(tbig, S, oy[chunk], ox[chunk], Moff)
        bend = _col(curl[chunk]) * rabs / Rc + 1.6 * wob
        fib = np.clip((np.cos(_col(kf[chunk]) * theta + bend + _col(tub_phase[0, chunk])) - p.tub_thin)
                      / (1 - p.tub_thin), 0, 1)
        fib2 = np.clip((np.cos(_col(kf2[chunk]) * theta - 0.7 * bend + _col(tub_phase[1, chunk])) - p.tub_thin)
                       / (1 - p.tub_thin), 0, 1)
        fib = np.maximum(fib, 0.7 * fib2) * np.clip(0.75 + 0.35 * tex, 0, 1.5)
        peri = 1 + p.tub_peri * np.exp(-rabs / (0.45 * Rc))
        tamp = _col(tub_amp[chunk])
        tub = tamp * cell * nuc_shade * peri * ((1 - p.tub_fibre) + p.tub_fibre * 2.2 * fib)
        if p.tub_ring > 0:
            ring = np.exp(-(((rabs - 1.35 * Rn - 2) / 2.2) ** 2))
            tub += tamp * (1.3 * p.tub_ring) * ring * cell * (0.6 + 0.4 * fib)

        # actin: cortical rim, stress fibres across the cell, diffuse cytoplasm
        rim = np.exp(-(((depth - p.act_rim_w) / p.act_rim_w) ** 2))
        actin = _col(rim_amp[chunk]) * rim * (1 + 0.25 * wob) + p.act_cyto * cell * nuc_shade
        if p.act_fibres > 0:
            t = dx * _col(np.cos(omega[chunk])) + dy * _col(np.sin(omega[chunk]))
            lines = np.cos(t * _col(fib_freq[chunk]) + 0.8 * wob + _col(fib_phase[chunk]))
            lines = np.clip((lines - 0.55) / 0.45, 0, 1) * np.clip(0.6 + 0.6 * tex, 0, 1)
            actin += _col(fib_amp[chunk]) * lines * _ramp((depth - 1.5) / 2.0)
        stamps = np.stack([dapi, tub, actin], axis=1)
        for i, t in enumerate(chunk):
            templates[t] = stamps[i]

    # place: template, symmetry (bit 0 transpose, 1 flip rows, 2 flip columns), stain gains
    which = rng.permutation(np.resize(np.arange(n), count))
    sym = rng.integers(0, 8, count)
    gains = np.exp(rng.normal(0, 0.1, (count, 3))).astype(np.float32)
    nx, ny = ox[which].copy(), oy[which].copy()
    for i in range(count):
        stamp = templates[which[i]]
        if sym[i] & 1:
            stamp = stamp.swapaxes(1, 2)
            nx[i], ny[i] = ny[i], nx[i]
        if sym[i] & 2:
            stamp = stamp[:, ::-1, :]
            ny[i] = -ny[i]
        if sym[i] & 4:
            stamp = stamp[:, :, ::-1]
            nx[i] = -nx[i]
        H = stamp.shape[-1] // 2
        r0, c0 = y[i] + pad - H, x[i] + pad - H
        region = canvas[:, r0: r0 + 2 * H + 1, c0: c0 + 2 * H + 1]
        region += stamp * gains[i][:, None, None]
    return _Cells(x, y, R[which], x + nx, y + ny, nr[which])


def _mitotic(p: Phenotype, x, y, rng, canvas, pad) -> None:
    """Round mitotic cells: metaphase plates, C-mitotic clumps or monoastral rings."""
    n = len(x)
    R = np.minimum(p.cell_r, 16.0) * np.exp(rng.normal(0, 0.08, n))
    H = int(math.ceil(R.max() * 1.15 + 4))
    S = 2 * H + 1
    g = np.arange(-H, H + 1, dtype=np.float32)
    dx, dy = g[None, None, :], g[None, :, None]
    r, theta = _polar(H)
    Rc = _col(R)
    harm = rng.normal(0, 0.04, (n, 2))
    rho = r / Rc / (1 + _col(harm[:, 0]) * np.cos(2 * theta) + _col(harm[:, 1]) * np.sin(3 * theta))
    depth = (1 - rho) * Rc
    cell = _ramp(depth / 2.0)
    tex = _smooth_bank(rng, 4, S, 1.2)[rng.integers(0, 4, n)]
    dna = _col(p.dapi * p.mito_dna * np.exp(rng.normal(0, 0.12, n)))
    tub_var = _col(np.exp(rng.normal(0, 0.15, n)))
    tub_struct, tub_diffuse = p.mito_tub * tub_var, p.mito_tub_diffuse * tub_var
    phi = _col(rng.uniform(0, np.pi, n))
    kind = p.mitotic_kind
    if kind == "metaphase":
        u = dx * np.cos(phi) + dy * np.sin(phi)
        v = dy * np.cos(phi) - dx * np.sin(phi)
        plate = _ramp((1 - np.sqrt((u / 3.0) ** 2 + (v / 8.5) ** 2)) * 3.0)
        dapi = dna * plate * (1 + 0.3 * tex)
        poles = np.exp(-((np.abs(u) - 8.0) ** 2 + v * v) / 12.0)
        spindle = np.exp(-(v * v) / 30.0) * (np.abs(u) < 8.5)
        tub = tub_diffuse * cell + tub_struct * (poles + 0.5 * spindle * cell)
    elif kind == "clump":
        spikes = rng.normal(0, 0.35, (n, 4))
        rr = _col(rng.uniform(5.5, 7.5, n)) * (
            1 + _col(spikes[:, 0]) * np.cos(5 * theta + phi) + _col(spikes[:, 1]) * np.cos(7 * theta)
            + _col(spikes[:, 2]) * np.sin(9 * theta + 2 * phi) + _col(spikes[:, 3]) * np.cos(3 * theta))
        blob = _ramp((np.abs(rr) + 0.5 - r) / 1.2)
        dapi = dna * blob * np.maximum(1 + 0.35 * tex, 0.3)
        tub = tub_diffuse * cell * (1 + 0.1 * tex)
    elif kind == "ring":
        r0 = _col(rng.uniform(6.0, 8.0, n))
        ring = np.exp(-(((r - r0) / 2.0) ** 2)) * (1 + 0.35 * np.cos(8 * theta + phi))
        dapi = dna * ring * np.maximum(1 + 0.35 * tex, 0.3)
        spokes = np.clip((np.cos(12 * theta + 0.3 * r + phi) - 0.3) / 0.7, 0, 1)
        aster = np.exp(-r / 2.5) + 0.4 * spokes * np.exp(-r / 7.0)
        tub = tub_struct * aster + tub_diffuse * cell
    else:
        raise ValueError(f"unknown mitotic kind {kind!r}")
    rim = np.exp(-(((depth - 1.8) / 1.8) ** 2))
    actin = _col(max(p.act_rim, 900.0) * 1.2 * np.exp(rng.normal(0, 0.15, n))) * rim + 300.0 * cell
    _paste(canvas, (dapi, tub, actin), x, y, pad)


def _paste(canvas: np.ndarray, stamps, x, y, pad: int) -> None:
    """Add per-channel (n, S, S) stamps centred on (x, y) (integers) into a padded canvas."""
    S = stamps[0].shape[-1]
    H = S // 2
    ix = np.asarray(x, dtype=np.int64) + pad - H
    iy = np.asarray(y, dtype=np.int64) + pad - H
    for channel, stamp in enumerate(stamps):
        plane = canvas[channel]
        stamp = np.broadcast_to(stamp, (len(ix), S, S))
        for i in range(len(ix)):
            plane[iy[i]: iy[i] + S, ix[i]: ix[i] + S] += stamp[i]


def _spots(canvas_c: np.ndarray, x, y, amp, sigma: float, pad: int, rng) -> None:
    """Gaussian dots (field px coordinates) added into one padded canvas channel."""
    if len(x) == 0:
        return
    h = int(math.ceil(3 * sigma))
    g = np.arange(-h, h + 1, dtype=np.float32)
    ix, iy = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = (x - ix).astype(np.float32), (y - iy).astype(np.float32)
    sig = (sigma * rng.uniform(0.8, 1.25, len(x))).astype(np.float32)
    gx = np.exp(-((g[None, :] - fx[:, None]) ** 2) / (2 * sig[:, None] ** 2))
    gy = np.exp(-((g[None, :] - fy[:, None]) ** 2) / (2 * sig[:, None] ** 2))
    w = (amp.astype(np.float32)[:, None, None] * gy[:, :, None] * gx[:, None, :])
    W = canvas_c.shape[1]
    rows = (iy + pad)[:, None, None] + np.arange(-h, h + 1)[None, :, None]
    cols = (ix + pad)[:, None, None] + np.arange(-h, h + 1)[None, None, :]
    np.add.at(canvas_c.reshape(-1), (rows * W + cols).ravel(), w.ravel())


def _positions(p: Phenotype, size, rng) -> tuple[np.ndarray, np.ndarray]:
    """Cell centres (integer px): a jittered hexagonal lattice thinned to the phenotype's density."""
    h, w = size
    spacing = (1.75 if p.islands >= 0.5 else 2.05) * p.cell_r
    margin = p.cell_r
    rows = np.arange(-margin, h + margin, spacing * 0.866)
    cols = np.arange(-margin - spacing, w + margin + spacing, spacing)
    yy, xx = np.meshgrid(rows, cols, indexing="ij")
    xx = xx + (np.arange(len(rows)) % 2)[:, None] * spacing / 2
    xx = (xx + rng.uniform(-0.22, 0.22, xx.shape) * spacing).ravel()
    yy = (yy + rng.uniform(-0.22, 0.22, yy.shape) * spacing).ravel()
    inside = (xx >= -margin) & (xx <= w + margin) & (yy >= -margin) & (yy <= h + margin)
    xx, yy = xx[inside], yy[inside]
    lattice_density = 1.0 / (0.866 * spacing * spacing)
    target = DMSO_CELLS_PER_PIXEL * p.count
    if p.islands >= 0.5:
        # islands of tightly packed cells, spread over the field on a jittered grid (so a small
        # field always holds about one whole island)
        n_isl = max(1, int(round(h * w / 300.0**2)))
        grid_rows = max(1, int(round(math.sqrt(n_isl * h / w))))
        grid_cols = max(1, -(-n_isl // grid_rows))
        slots = rng.permutation(grid_rows * grid_cols)[:n_isl]
        cy = (slots // grid_cols + 0.5 + rng.uniform(-0.3, 0.3, n_isl)) * h / grid_rows
        cx = (slots % grid_cols + 0.5 + rng.uniform(-0.3, 0.3, n_isl)) * w / grid_cols
        # island radius so that islands hold the target number of cells
        area = target / lattice_density * h * w / n_isl
        rad = math.sqrt(area / math.pi) * rng.uniform(0.9, 1.1, n_isl)
        d = np.min(np.hypot(xx[:, None] - cx, yy[:, None] - cy) / rad, axis=1)
        keep = d + rng.normal(0, 0.08, d.shape) < 1.0
    else:
        fill = min(target / lattice_density, 0.95)
        # a smooth random field makes the monolayer patchy
        patch = np.zeros_like(xx)
        for _ in range(4):
            wl = rng.uniform(250, 600)
            a = rng.uniform(0, 2 * np.pi)
            patch += np.cos((xx * np.cos(a) + yy * np.sin(a)) * 2 * np.pi / wl + rng.uniform(0, 2 * np.pi))
        weight = np.clip(1 + p.cluster * 0.5 * patch, 0.05, None)
        # a fixed share of the lattice (not a coin per site): small fields keep their density
        take = min(len(xx), int(round(fill * len(xx))))
        keep = rng.choice(len(xx), take, replace=False, p=weight / weight.sum())
    return np.rint(xx[keep]).astype(np.int64), np.rint(yy[keep]).astype(np.int64)


def render_field(moa: str, strength: float, week: int, rng: np.random.Generator,
                 size: tuple[int, int] = FULL_SIZE) -> np.ndarray:
    """One field of a treatment: uint16 (3, H, W), channels DAPI, Tubulin, Actin.

    `strength` (0..1) scales the deviation from DMSO; `week` fixes the batch effects (stain
    gains, camera offset, illumination); `rng` draws the cells and the noise. A smaller size
    shows the same cells at the same pixel scale, fewer of them.
    """
    h, w = int(size[0]), int(size[1])
    p = phenotype(moa, strength)
    wk = week_effects(week)

    x, y = _positions(p, (h, w), rng)
    mitotic = np.zeros(len(x), dtype=bool)   # a fixed share of the cells, as for the density
    mitotic[rng.choice(len(x), int(round(p.mitotic * len(x))), replace=False)] = True
    pad = int(math.ceil(5.0 * max(p.cell_r, 16.0) + 24))  # > margin + largest stamp half-width
    canvas = np.zeros((3, h + 2 * pad, w + 2 * pad), dtype=np.float32)
    c = _interphase(p, x[~mitotic], y[~mitotic], rng, canvas, pad)
    if mitotic.any():
        _mitotic(p, x[mitotic], y[mitotic], rng, canvas, pad)

    # dots drawn on interphase cells: micronuclei, tubulin puncta / aggresomes, actin puncta
    n = len(c.x)

    def around(count_mean, r_from, r_to, cx, cy):
        counts = rng.poisson(count_mean, n)
        idx = np.repeat(np.arange(n), counts)
        ang = rng.uniform(0, 2 * np.pi, len(idx))
        rad = rng.uniform(r_from[idx], r_to[idx])
        return idx, cx[idx] + rad * np.cos(ang), cy[idx] + rad * np.sin(ang)

    if n and p.micronuclei > 0:
        idx, sx, sy = around(p.micronuclei, c.nr + 2.5, c.nr + 9, c.nx, c.ny)
        _spots(canvas[0], sx, sy, p.dapi * rng.uniform(0.5, 1.0, len(idx)), 1.7, pad, rng)
    if n and p.tub_puncta > 0:
        idx, sx, sy = around(p.tub_puncta, c.nr * 0.9, c.r * 0.8, c.nx, c.ny)
        _spots(canvas[1], sx, sy, p.tub_punct_amp * rng.uniform(0.5, 1.2, len(idx)), 1.4, pad, rng)
    if n and p.tub_aggresome > 0:
        ang = rng.uniform(0, 2 * np.pi, n)
        sx, sy = c.nx + (c.nr + 2.5) * np.cos(ang), c.ny + (c.nr + 2.5) * np.sin(ang)
        _spots(canvas[1], sx, sy, p.tub_aggresome * rng.uniform(0.6, 1.2, n), 3.2, pad, rng)
    if n and p.act_puncta > 0:
        if p.act_punct_sigma < 2:   # small puncta along the cortex
            idx, sx, sy = around(p.act_puncta, c.r * 0.55, c.r * 0.95, c.x, c.y)
        else:                        # a few large aggregates anywhere in the cell
            idx, sx, sy = around(p.act_puncta, c.r * 0.0, c.r * 0.75, c.x, c.y)
        _spots(canvas[2], sx, sy, p.act_punct_amp * rng.uniform(0.5, 1.2, len(idx)), p.act_punct_sigma, pad, rng)

    canvas *= np.asarray(p.stain, dtype=np.float32)[:, None, None]
    # illumination: the week's tilt and vignetting over the field, on signal and background
    X = np.linspace(-1, 1, w, dtype=np.float32)
    Y = np.linspace(-1, 1, h, dtype=np.float32)
    illum = (1 + wk.tilt[0] * X - wk.vignette * X * X)[None, :] + (wk.tilt[1] * Y - wk.vignette * Y * Y)[:, None]
    gain = np.asarray(wk.gain, dtype=np.float32) * np.exp(rng.normal(0, 0.03, 3)).astype(np.float32)
    bg = np.asarray(wk.background, dtype=np.float32) * np.exp(rng.normal(0, 0.04, 3)).astype(np.float32)
    light = np.empty((3, h, w), dtype=np.float32)
    for ch in range(3):
        np.maximum(canvas[ch, pad: pad + h, pad: pad + w], 0, out=light[ch])
        light[ch] += bg[ch]
        light[ch] *= illum
        light[ch] *= gain[ch]
    # shot noise (~1 count per photo-electron) and read noise (6 counts) on the camera offset
    spread = np.sqrt(light + 36.0)
    spread *= _gaussian_noise(rng, light.shape)
    light += spread
    light += wk.offset
    np.clip(light, 0, 65000, out=light)
    return np.rint(light, out=light).astype(np.uint16)


# --------------------------------------------------------------------------- plates

def moa_table() -> bytes:
    """The embedded, published BBBC021 MoA table, byte for byte."""
    return resources.files("appliance").joinpath("data", MOA_CSV).read_bytes()


def treatments_by_class() -> dict[str, list[tuple[str, str]]]:
    """moa -> sorted [(compound, concentration as written)], from the embedded table."""
    text = moa_table().decode("utf-8-sig")
    out: dict[str, list[tuple[str, str]]] = {}
    for row in csv.DictReader(io.StringIO(text, newline="")):
        out.setdefault(row["moa"].strip(), []).append((row["compound"].strip(), row["concentration"].strip()))
    for moa in out:
        out[moa].sort(key=lambda t: (t[0].lower(), float(t[1])))
    return dict(sorted(out.items()))


def plate_name(seed: int, plate: int) -> tuple[int, str]:
    """(week, 'WeekN_PPPPP') of plate index `plate`: week plate+1, a 5-digit number from the seed."""
    week = plate + 1
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(plate), 0x91A7E]))
    return week, f"Week{week}_{int(rng.integers(10000, 100000))}"


def _well_seed(seed: int, plate: int, well: str, site: int) -> list[int]:
    return [int(seed), int(plate), ord(well[0]) - ord("A"), int(well[1:]), int(site)]


def _uuids(seed: int, plate: int, well: str, site: int) -> list[str]:
    rng = np.random.default_rng(np.random.SeedSequence(_well_seed(seed, plate, well, site) + [0x01D]))
    raw = rng.bytes(16 * len(CHANNELS))
    return [str(uuid.UUID(bytes=raw[16 * i: 16 * i + 16], version=4)).upper() for i in range(len(CHANNELS))]


def _layout(seed: int, plate: int, fields_per_class: int) -> list[tuple[str, int, str, str, str]]:
    """(well, site, moa, compound, concentration) for every field of a plate, in well order."""
    classes = treatments_by_class()
    wells_per_class = -(-fields_per_class // SITES_PER_WELL)
    wells = INNER_WELLS + OUTER_WELLS
    if wells_per_class * len(classes) > len(wells):
        raise ValueError(f"fields_per_class={fields_per_class} needs {wells_per_class * len(classes)} wells; "
                         f"a 96-well plate has {len(wells)} (at most "
                         f"{len(wells) // len(classes) * SITES_PER_WELL} fields per class)")
    used = wells[: wells_per_class * len(classes)]
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(plate), 0x1A70]))
    used = [used[i] for i in rng.permutation(len(used))]
    fields = []
    for ci, (moa, treatments) in enumerate(classes.items()):
        compounds = sorted({c for c, _ in treatments}, key=str.lower)
        for j in range(wells_per_class):
            well = used[ci * wells_per_class + j]
            compound = compounds[(plate * wells_per_class + j) % len(compounds)]
            concs = [conc for c, conc in treatments if c == compound]
            conc = concs[(plate + j // len(compounds)) % len(concs)]
            sites = min(SITES_PER_WELL, fields_per_class - j * SITES_PER_WELL)
            for site in range(1, sites + 1):
                fields.append((well, site, moa, compound, conc))
    fields.sort(key=lambda f: (f[0], f[1]))
    return fields


def _write_field(job: tuple) -> list[str]:
    out, seed, plate, week, name, well, site, moa, compound, size = job
    rng = np.random.default_rng(np.random.SeedSequence(_well_seed(seed, plate, well, site)))
    image = render_field(moa, compound_strength(compound), week, rng, size)
    folder = Path(out) / f"Week{week}" / name
    names = []
    for channel, ident, plane in zip(CHANNELS, _uuids(seed, plate, well, site), image):
        file_name = f"{well}_s{site}_w{WAVELENGTHS[channel]}{ident}.tif"
        tifffile.imwrite(folder / file_name, plane, photometric="minisblack", metadata=None)
        names.append(file_name)
    return names


def _quoted(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def write_dataset(out: Path, plates: int = 3, fields_per_class: int = 8, size: tuple[int, int] = FULL_SIZE,
                  seed: int = 0, workers: int = 1, first_plate: int = 0) -> dict:
    """Write `plates` synthetic plates (plate indices first_plate.., week = index + 1) under `out`.

    Returns {"fields": n, "plates": [names], "classes": 13, "seconds": t}. Same arguments give
    byte-identical files whatever `workers` is.
    """
    start = time.perf_counter()
    if plates < 1 or fields_per_class < 1 or first_plate < 0:
        raise ValueError("plates and fields_per_class must be >= 1 and first_plate >= 0")
    out = Path(out)
    size = (int(size[0]), int(size[1]))
    jobs, meta, names = [], [], []
    layouts = {plate: _layout(seed, plate, fields_per_class) for plate in range(first_plate, first_plate + plates)}
    for plate, layout in layouts.items():
        week, name = plate_name(seed, plate)
        names.append(name)
        (out / f"Week{week}" / name).mkdir(parents=True, exist_ok=True)
        for well, site, moa, compound, conc in layout:
            jobs.append((str(out), seed, plate, week, name, well, site, moa, compound, size))
            meta.append((plate, week, name, well, compound, conc))
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            files = list(pool.map(_write_field, jobs, chunksize=max(1, len(jobs) // (8 * workers))))
    else:
        files = [_write_field(job) for job in jobs]

    lines = [",".join(c if c in ("TableNumber", "ImageNumber", "Replicate", "Image_Metadata_Concentration")
                      else _quoted(c) for c in IMAGE_COLUMNS)]
    image_numbers: dict[int, int] = {}
    for (plate, week, name, well, compound, conc), triple in zip(meta, files):
        table = week % 10
        image_numbers[table] = image_numbers.get(table, 0) + 1
        path = _quoted(f"Week{week}/{name}")
        row = [str(table), str(image_numbers[table])]
        for file_name in triple:
            row += [_quoted(file_name), path]
        row += [_quoted(name), _quoted(well), str(1 + plate % 3), _quoted(compound), f"{float(conc):.6f}"]
        lines.append(",".join(row))
    (out / IMAGE_CSV).write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    (out / MOA_CSV).write_bytes(moa_table())
    return {"fields": len(jobs), "plates": names, "classes": len(treatments_by_class()),
            "seconds": time.perf_counter() - start}
