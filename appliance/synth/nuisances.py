"""What goes wrong on a real plate, at realistic rates: drawn per field, on top of the cells.

`FieldConditions` are one field's draws: its own stain gains, background and illumination tilt
(wider than any class's effect on mean intensity, so brightness alone never tells a class),
its seeding density and gradient, the share of cells that respond to the treatment (a
response is never uniform), and whether it is out of focus, holds debris or saturated
spots. `apply_artefacts` draws the last three onto the field's canvas. Numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GAIN_SPREAD = 0.55  # each stain's gain x exp(U(-s, s)) per field: about threefold, min to max
BACKGROUND_SPREAD = 0.4
OUT_OF_FOCUS_RATE = 0.06  # autofocus misses
DEBRIS_RATE = 0.12  # dust, fibres, precipitate
SATURATED_RATE = 0.04  # a few pixels at the camera's ceiling
# Cells differ from well to well in more than size (confluence, passage, time since seeding): each field
# scales these traits of all its cells, treated or not, by exp(N(0, STATE_SPREAD)). Field averages of
# them then vary within a class about as much as between classes; a phenotype's own structures remain.
STATE_TRAITS = ("tub_fibre", "tub_peri", "act_rim", "act_fibres", "act_cyto", "chromatin", "cell_aspect", "nuc_aspect")
STATE_SPREAD = 0.4
GRADIENT_RATE = 0.3  # uneven seeding: density falls across the field


@dataclass(frozen=True)
class FieldConditions:
    gain: np.ndarray  # (3,) stain gains
    background: np.ndarray  # (3,) factors on the week's background
    tilt: tuple[float, float]  # illumination slope across x and y
    density: float  # cells, times the phenotype's density
    penetrance: float  # share of the cells that respond to the treatment; the others look like DMSO
    scale: float  # cell and nucleus size, times the phenotype's (cells spread more or less from well to well)
    state: tuple[float, ...]  # STATE_TRAITS of every cell, times the phenotype's
    gradient: tuple[float, float]  # seeding density slope across x and y
    clumping: float  # patchiness of the monolayer, times the phenotype's (MCF-7 grow in clumps, unevenly)
    blur: float  # Gaussian sigma (px): a little in every field (focus varies), 2-5 px out of focus
    debris: int  # pieces of debris
    saturated: int  # saturated spots


def draw_conditions(rng: np.random.Generator) -> FieldConditions:
    gradient = rng.uniform(-0.7, 0.7, 2) if rng.random() < GRADIENT_RATE else np.zeros(2)
    return FieldConditions(
        gain=np.exp(rng.uniform(-GAIN_SPREAD, GAIN_SPREAD, 3)).astype(np.float32),
        background=np.exp(rng.uniform(-BACKGROUND_SPREAD, BACKGROUND_SPREAD, 3)).astype(np.float32),
        tilt=(float(rng.uniform(-0.1, 0.1)), float(rng.uniform(-0.1, 0.1))),
        density=float(np.exp(rng.normal(0.0, 0.25))),
        penetrance=float(rng.uniform(0.15, 0.6)),
        scale=float(np.exp(rng.normal(0.0, 0.12))),
        state=tuple(float(v) for v in np.exp(rng.normal(0.0, STATE_SPREAD, len(STATE_TRAITS)))),
        gradient=(float(gradient[0]), float(gradient[1])),
        clumping=float(np.exp(rng.uniform(-0.7, 1.1))),
        blur=float(rng.uniform(2.0, 5.0)) if rng.random() < OUT_OF_FOCUS_RATE else float(rng.uniform(0.0, 1.0)),
        debris=int(rng.integers(1, 5)) if rng.random() < DEBRIS_RATE else 0,
        saturated=int(rng.integers(1, 4)) if rng.random() < SATURATED_RATE else 0,
    )


def blur(canvas: np.ndarray, sigma: float) -> None:
    """Gaussian blur of every channel in place (by FFT; the canvas's padding absorbs the wrap)."""
    h, w = canvas.shape[-2:]
    fy, fx = np.fft.fftfreq(h).astype(np.float32), np.fft.rfftfreq(w).astype(np.float32)
    kernel = np.exp(-2 * (np.pi * sigma) ** 2 * (fy[:, None] ** 2 + fx[None, :] ** 2))
    for channel in canvas:
        channel[:] = np.fft.irfft2(np.fft.rfft2(channel) * kernel, s=(h, w))


def _blob(rng: np.random.Generator, radius: float) -> np.ndarray:
    """An irregular, bright-edged speck: a lumpy disc with a random outline, (S, S) in 0..1."""
    half = int(np.ceil(radius * 1.6)) + 2
    g = np.arange(-half, half + 1, dtype=np.float32)
    r, t = np.hypot(g[None, :], g[:, None]), np.arctan2(g[:, None], g[None, :])
    edge = radius * (1 + sum(rng.normal(0, 0.18) * np.cos(k * t + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5)))
    return np.clip(edge - r + 0.5, 0, 1) * (0.6 + 0.4 * np.clip(r / radius, 0, 1))


def apply_artefacts(canvas: np.ndarray, conditions: FieldConditions, rng: np.random.Generator, pad: int) -> None:
    """Debris (bright in one to three channels), saturated spots, then defocus, into the canvas."""
    _, H, W = canvas.shape
    h, w = H - 2 * pad, W - 2 * pad
    for _ in range(conditions.debris):
        stamp = _blob(rng, float(rng.uniform(4, 25)))
        s = stamp.shape[0]
        y, x = pad + int(rng.integers(0, h)) - s // 2, pad + int(rng.integers(0, w)) - s // 2
        levels = rng.uniform(500, 6000, 3) * (rng.random(3) < 0.6)  # autofluorescent in some stains
        canvas[:, y : y + s, x : x + s] += levels.astype(np.float32)[:, None, None] * stamp
    for _ in range(conditions.saturated):
        stamp = _blob(rng, float(rng.uniform(2, 6)))
        s = stamp.shape[0]
        y, x = pad + int(rng.integers(0, h)) - s // 2, pad + int(rng.integers(0, w)) - s // 2
        canvas[int(rng.integers(0, 3)), y : y + s, x : x + s] += 2e5 * stamp  # clipped at the camera's ceiling
    if conditions.blur > 0.3:
        blur(canvas, conditions.blur)
