import numpy as np

from appliance.metadata import load_fields
from appliance.normalization import Normalization
from appliance.synth import write_dataset
from training.data import FieldDataset

JITTER = 0.15

SIZE = (128, 256)


def test_augmentation_keeps_geometry_and_only_flips_and_scales(tmp_path):
    write_dataset(tmp_path, plates=1, fields_per_class=1, size=SIZE, seed=2)
    fields = load_fields(tmp_path)
    labels = sorted({f.moa for f in fields})
    identity = Normalization((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    plain = FieldDataset(fields, labels, SIZE, identity)
    augmented = FieldDataset(fields, labels, SIZE, identity, augment=True, gain_jitter=JITTER, seed=0)
    for i in range(len(fields)):
        (x, y), (a, b) = plain[i], augmented[i]
        assert y == b and a.shape == x.shape == (3, *SIZE)
        x, a = x.numpy(), a.numpy()
        # undo whichever flips were drawn, then the only difference is one gain per stain
        match = [f for f in (x, x[:, :, ::-1], x[:, ::-1, :], x[:, ::-1, ::-1])
                 if np.allclose(a / np.maximum(f, 1), (a / np.maximum(f, 1)).mean(axis=(1, 2), keepdims=True),
                                rtol=1e-3)]
        assert match, f"field {i}: augmentation is not a flip and a per-stain gain"
        gain = (a.sum(axis=(1, 2)) / match[0].sum(axis=(1, 2)))
        assert np.all(np.abs(np.log(gain)) <= JITTER + 1e-4)
    augmented.epoch = 1
    assert not np.array_equal(augmented[0][0].numpy(), FieldDataset(
        fields, labels, SIZE, identity, augment=True, gain_jitter=JITTER, seed=0)[0][0].numpy())  # new draws each epoch
