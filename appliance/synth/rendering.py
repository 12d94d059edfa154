"""Drawing one field: `render_field` turns a phenotype and a week into a uint16 (3, H, W) image.

Rendering is numpy only (the runtime never imports torch). Cell centres come from `_positions`;
the cells themselves, interphase and mitotic, and the dots on them are drawn as stamps (cells.py);
the week's illumination, shot and read noise come last.
"""

from __future__ import annotations

import math
from functools import lru_cache
from statistics import NormalDist

import numpy as np

from appliance.synth.cells import draw_dots, draw_interphase, draw_mitotic
from appliance.synth.phenotypes import Phenotype, phenotype, week_effects

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


def render_field(
    moa: str, strength: float, week: int, rng: np.random.Generator, size: tuple[int, int] = FULL_SIZE
) -> np.ndarray:
    """One field of a treatment: uint16 (3, H, W), channels DAPI, Tubulin, Actin.

    `strength` (0..1) scales the deviation from DMSO; `week` fixes the batch effects (stain
    gains, camera offset, illumination); `rng` draws the cells and the noise. A smaller size
    shows the same cells at the same pixel scale, fewer of them.
    """
    h, w = int(size[0]), int(size[1])
    p = phenotype(moa, strength)
    wk = week_effects(week)

    x, y = _positions(p, (h, w), rng)
    mitotic = np.zeros(len(x), dtype=bool)  # a fixed share of the cells, as for the density
    mitotic[rng.choice(len(x), int(round(p.mitotic * len(x))), replace=False)] = True
    pad = int(math.ceil(5.0 * max(p.cell_r, 16.0) + 24))  # > margin + largest stamp half-width
    canvas = np.zeros((3, h + 2 * pad, w + 2 * pad), dtype=np.float32)
    c = draw_interphase(p, x[~mitotic], y[~mitotic], rng, canvas, pad)
    if mitotic.any():
        draw_mitotic(p, x[mitotic], y[mitotic], rng, canvas, pad)
    draw_dots(p, c, rng, canvas, pad)  # micronuclei and puncta on the interphase cells

    canvas *= np.asarray(p.stain, dtype=np.float32)[:, None, None]
    # illumination: the week's tilt and vignetting over the field, on signal and background
    X = np.linspace(-1, 1, w, dtype=np.float32)
    Y = np.linspace(-1, 1, h, dtype=np.float32)
    illum = (1 + wk.tilt[0] * X - wk.vignette * X * X)[None, :] + (wk.tilt[1] * Y - wk.vignette * Y * Y)[:, None]
    gain = np.asarray(wk.gain, dtype=np.float32) * np.exp(rng.normal(0, 0.03, 3)).astype(np.float32)
    bg = np.asarray(wk.background, dtype=np.float32) * np.exp(rng.normal(0, 0.04, 3)).astype(np.float32)
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
