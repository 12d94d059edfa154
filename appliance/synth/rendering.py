"""Drawing one field: `render_field` turns a phenotype and a week into a uint16 (3, H, W) image.

Rendering is numpy only (the runtime never imports torch). Each field first draws its own
conditions (nuisances.py: stain gains, background, density, defects); cell centres come from
`_positions`; the cells themselves, interphase and mitotic, and the dots on them are drawn as
stamps (cells.py); debris and defocus next; the week's and the field's illumination, shot and
read noise come last.
"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import lru_cache
from statistics import NormalDist

import numpy as np

from appliance.synth.cells import draw_dots, draw_interphase, draw_mitotic
from appliance.synth.nuisances import STATE_TRAITS, FieldConditions, apply_artefacts, draw_conditions
from appliance.synth.phenotypes import DMSO, Phenotype, brightness_cue, phenotype, week_effects

FULL_SIZE = (1024, 1280)  # height, width of a BBBC021 field
DMSO_CELLS_PER_PIXEL = 200 / (FULL_SIZE[0] * FULL_SIZE[1])  # about 200 cells in a DMSO field


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


def _positions(p: Phenotype, size, rng, conditions: FieldConditions) -> tuple[np.ndarray, np.ndarray]:
    """Cell centres (integer px): a jittered hexagonal lattice thinned to the phenotype's density,
    times the field's own seeding density, falling along the field's seeding gradient."""
    h, w = size
    spacing = (1.75 if p.islands >= 0.3 else 2.05) * p.cell_r
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
    target = DMSO_CELLS_PER_PIXEL * p.count * conditions.density
    if p.islands >= 0.3:
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
        gx, gy = conditions.gradient
        weight = np.clip(
            1 + p.cluster * conditions.clumping * 0.5 * patch + gx * (2 * xx / w - 1) + gy * (2 * yy / h - 1),
            0.05,
            None,
        )
        # a fixed share of the lattice (not a coin per site): small fields keep their density
        take = min(len(xx), int(round(fill * len(xx))))
        keep = rng.choice(len(xx), take, replace=False, p=weight / weight.sum())
    return np.rint(xx[keep]).astype(np.int64), np.rint(yy[keep]).astype(np.int64)


def field_state(p: Phenotype, conditions: FieldConditions) -> dict[str, float]:
    """The field's cell state (STATE_TRAITS, nuisances.py) applied to a phenotype; fractions stay below 1,
    aspect ratios at or above 1."""
    out = {}
    for trait, factor in zip(STATE_TRAITS, conditions.state):
        value = getattr(p, trait) * factor
        if trait in ("tub_fibre", "tub_peri"):
            value = min(value, 0.98)
        if trait.endswith("aspect"):
            value = 1.0 + (getattr(p, trait) - 1.0) * factor
        out[trait] = value
    return out


def render_field(
    moa: str,
    strength: float,
    week: int,
    rng: np.random.Generator,
    size: tuple[int, int] = FULL_SIZE,
    compound: str | None = None,
    cue: bool = False,
) -> np.ndarray:
    """One field of a treatment: uint16 (3, H, W), channels DAPI, Tubulin, Actin.

    `strength` (0..1) scales the deviation from DMSO, as `compound`'s variant of the class;
    `week` fixes the batch effects (stain gains, camera offset, vignetting); `rng` draws the
    field's own conditions, the cells and the noise. A smaller size shows the same cells at the
    same pixel scale, fewer of them. `cue` gives each class its own stain brightness
    (`brightness_cue`): a set that brightness alone classifies, to check a classifier can see it.
    """
    h, w = int(size[0]), int(size[1])
    wk = week_effects(week)
    conditions = draw_conditions(rng)
    p, control = (
        replace(q, cell_r=q.cell_r * conditions.scale, nuc_r=q.nuc_r * conditions.scale, **field_state(q, conditions))
        for q in (phenotype(moa, strength, compound), DMSO)
    )

    x, y = _positions(p, (h, w), rng, conditions)
    # a fixed share of the cells respond, a fixed share of those are in mitosis (as for the density)
    responds = np.zeros(len(x), dtype=bool)
    responds[rng.choice(len(x), int(round(conditions.penetrance * len(x))), replace=False)] = True
    mitotic = np.zeros(len(x), dtype=bool)
    mitotic[rng.choice(len(x), int(round(p.mitotic * len(x))), replace=False)] = True
    mitotic &= responds
    pad = int(math.ceil(5.0 * max(p.cell_r, control.cell_r, 16.0) + 24))  # > margin + largest stamp half-width
    canvas = np.zeros((3, h + 2 * pad, w + 2 * pad), dtype=np.float32)
    for q, who in ((p, responds & ~mitotic), (control, ~responds)):
        c = draw_interphase(q, x[who], y[who], rng, canvas, pad)
        draw_dots(q, c, rng, canvas, pad)  # micronuclei and puncta on the interphase cells
    if mitotic.any():
        draw_mitotic(p, x[mitotic], y[mitotic], rng, canvas, pad)
    apply_artefacts(canvas, conditions, rng, pad)
    if cue:
        canvas *= np.asarray(brightness_cue(moa), dtype=np.float32)[:, None, None]

    # illumination: the week's and the field's tilt, the week's vignetting, on signal and background
    X = np.linspace(-1, 1, w, dtype=np.float32)
    Y = np.linspace(-1, 1, h, dtype=np.float32)
    tx, ty = wk.tilt[0] + conditions.tilt[0], wk.tilt[1] + conditions.tilt[1]
    illum = (1 + tx * X - wk.vignette * X * X)[None, :] + (ty * Y - wk.vignette * Y * Y)[:, None]
    gain = np.asarray(wk.gain, dtype=np.float32) * conditions.gain
    bg = np.asarray(wk.background, dtype=np.float32) * conditions.background
    light = np.empty((3, h, w), dtype=np.float32)
    for ch in range(3):
        np.maximum(canvas[ch, pad : pad + h, pad : pad + w], 0, out=light[ch])
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
