"""Drawing a field: microscopy-like counts, scale independent of field size, reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from appliance import synth


def test_fields_look_like_microscopy():
    for moa in synth.PHENOTYPES:
        image = synth.render_field(moa, 0.9, 3, np.random.default_rng(1), (256, 320))
        assert image.dtype == np.uint16 and image.shape == (3, 256, 320)
        assert image.max() < 65535 and image.min() > 0
        background = np.median(image.reshape(3, -1), axis=1)
        assert np.all((background > 100) & (background < 1500)), (moa, background)
    dmso = synth.render_field("DMSO", 1.0, 3, np.random.default_rng(2), (256, 320)).astype(np.float64)
    floor = np.percentile(dmso[0], 5)
    assert np.percentile(dmso[0], 99.5) > 2.5 * floor  # nuclei: thousands of counts over a few hundred
    # a larger field shows more cells at the same scale: DAPI-covered area grows with the field
    # (the same seed: the same field conditions, gains included)
    big = synth.render_field("DMSO", 1.0, 3, np.random.default_rng(2), (512, 640)).astype(np.float64)
    small_cover = (dmso[0] > 2 * floor).sum()
    big_cover = (big[0] > 2 * floor).sum()
    assert 2.5 < big_cover / small_cover < 6


def test_brightness_cue_scales_each_class_stains():
    cues = {moa: synth.brightness_cue(moa) for moa in synth.PHENOTYPES}
    assert len(set(cues.values())) == 13
    plain = synth.render_field("Epithelial", 1.0, 2, np.random.default_rng(3), (96, 112)).astype(np.float64)
    cued = synth.render_field("Epithelial", 1.0, 2, np.random.default_rng(3), (96, 112), cue=True).astype(np.float64)
    signal = lambda image: np.percentile(image.reshape(3, -1), 99, axis=1) - np.median(image.reshape(3, -1), axis=1)  # noqa: E731
    assert signal(cued) / signal(plain) == pytest.approx(cues["Epithelial"], rel=0.25)


def test_the_random_stream_alone_fixes_the_pixels():
    # write_dataset's byte-identity across workers rests on this
    draw = lambda seed: synth.render_field("Eg5 inhibitors", 0.9, 2, np.random.default_rng(seed), (96, 112))  # noqa: E731
    assert np.array_equal(draw(5), draw(5))
    assert not np.array_equal(draw(5), draw(6))
