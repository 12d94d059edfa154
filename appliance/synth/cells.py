"""Drawing cells: stamps, small patches computed in batches and added into a padded field canvas.

`draw_interphase` draws the interphase cells (outline, nucleus, tubulin network, actin cortex)
and returns their geometry, on which `draw_dots` adds micronuclei and puncta (`_spots`);
`draw_mitotic` draws the round mitotic cells. Numpy only; rendering.py places the cells and adds
the week's illumination and the camera's noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from appliance.synth.phenotypes import Phenotype


def _smooth_bank(rng: np.random.Generator, k: int, size: int, sigma: float) -> np.ndarray:
    """k zero-mean, unit-std random textures (size x size) of correlation length ~sigma px."""
    white = rng.standard_normal((k, size, size), dtype=np.float32)
    f = np.fft.fftfreq(size).astype(np.float32)
    kernel = np.exp(-2 * (np.pi * sigma) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2))
    smooth = np.fft.irfft2(np.fft.rfft2(white) * kernel[:, : size // 2 + 1], s=(size, size)).astype(np.float32)
    smooth -= smooth.mean(axis=(1, 2), keepdims=True)
    smooth /= smooth.std(axis=(1, 2), keepdims=True) + 1e-6
    return smooth


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
    ck, sk = c * c - s * s, 2 * c * s  # cos 2t, sin 2t
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
class Cells:
    """Per-cell geometry of the interphase cells, for the dots drawn on top."""

    x: np.ndarray  # centres, field px
    y: np.ndarray
    r: np.ndarray  # cell radius
    nx: np.ndarray  # nucleus centre
    ny: np.ndarray
    nr: np.ndarray  # nucleus radius


def draw_interphase(p: Phenotype, x, y, rng, canvas, pad) -> Cells:
    """Interphase cells: outline, nucleus, tubulin network and actin cortex; returns their geometry.

    A field draws a set of distinct cells (all of them in a small field; a quarter or fewer in
    a full one, to bound the work) and places each several times, turned by one of the 8
    symmetries of the square and with its own stain gains; the dots drawn later are per cell.
    """
    count = len(x)
    side = 2 * p.cell_r * 1.25 * math.sqrt(p.cell_aspect) + 7  # typical stamp width
    n = min(count, 12 + count // 4, max(12, int(320_000 / side**2)))
    if n == 0:
        empty = np.zeros(0)
        return Cells(empty, empty, empty, empty, empty, empty)
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
        depth = (1 - rho) * Rc  # px inside the edge
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
        rhon = _outline(
            dxn * cn + dyn * sn, dyn * cn - dxn * sn, _col(nr[chunk] * na), _col(nr[chunk] / na), nharm[chunk]
        )
        Rn = _col(nr[chunk])
        nuc = _ramp((1 - rhon) * Rn / 1.4)
        # DAPI: a domed nucleus with chromatin texture; DNA content varies with the cell cycle
        dapi = np.zeros((m, S, S), dtype=np.float32)
        dapi[:, win, win] = (
            _col(dna[chunk])
            * nuc
            * (0.8 + 0.25 * np.clip(1 - rhon * rhon, 0, 1))
            * np.maximum(1 + p.chromatin * tex[:, win, win], 0.2)
        )
        nuc_shade = np.ones((m, S, S), dtype=np.float32)
        nuc_shade[:, win, win] -= 0.6 * nuc

        # tubulin: wavy fibres radiating from around the nucleus, a second sparser crossing set
        Moff = int(np.abs(np.concatenate([ox[chunk], oy[chunk]])).max())
        rbig, tbig = _polar(H, Moff)
        rabs = _windows(rbig, S, oy[chunk], ox[chunk], Moff)
        theta = _windows(tbig, S, oy[chunk], ox[chunk], Moff)
        bend = _col(curl[chunk]) * rabs / Rc + 1.6 * wob
        fib = np.clip(
            (np.cos(_col(kf[chunk]) * theta + bend + _col(tub_phase[0, chunk])) - p.tub_thin) / (1 - p.tub_thin), 0, 1
        )
        fib2 = np.clip(
            (np.cos(_col(kf2[chunk]) * theta - 0.7 * bend + _col(tub_phase[1, chunk])) - p.tub_thin) / (1 - p.tub_thin),
            0,
            1,
        )
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
        region = canvas[:, r0 : r0 + 2 * H + 1, c0 : c0 + 2 * H + 1]
        region += stamp * gains[i][:, None, None]
    return Cells(x, y, R[which], x + nx, y + ny, nr[which])


def draw_mitotic(p: Phenotype, x, y, rng, canvas, pad) -> None:
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
            1
            + _col(spikes[:, 0]) * np.cos(5 * theta + phi)
            + _col(spikes[:, 1]) * np.cos(7 * theta)
            + _col(spikes[:, 2]) * np.sin(9 * theta + 2 * phi)
            + _col(spikes[:, 3]) * np.cos(3 * theta)
        )
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
            plane[iy[i] : iy[i] + S, ix[i] : ix[i] + S] += stamp[i]


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
    w = amp.astype(np.float32)[:, None, None] * gy[:, :, None] * gx[:, None, :]
    W = canvas_c.shape[1]
    rows = (iy + pad)[:, None, None] + np.arange(-h, h + 1)[None, :, None]
    cols = (ix + pad)[:, None, None] + np.arange(-h, h + 1)[None, None, :]
    np.add.at(canvas_c.reshape(-1), (rows * W + cols).ravel(), w.ravel())


def draw_dots(p: Phenotype, c: Cells, rng, canvas, pad) -> None:
    """Dots drawn on the interphase cells: micronuclei, tubulin puncta and aggresomes, actin puncta."""
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
        if p.act_punct_sigma < 2:  # small puncta along the cortex
            idx, sx, sy = around(p.act_puncta, c.r * 0.55, c.r * 0.95, c.x, c.y)
        else:  # a few large aggregates anywhere in the cell
            idx, sx, sy = around(p.act_puncta, c.r * 0.0, c.r * 0.75, c.x, c.y)
        _spots(canvas[2], sx, sy, p.act_punct_amp * rng.uniform(0.5, 1.2, len(idx)), p.act_punct_sigma, pad, rng)
