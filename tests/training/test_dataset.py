import numpy as np
import pytest

from appliance.layouts.bbbc021 import load_fields
from appliance.normalization import Normalization
from appliance.synth import write_dataset
from training.dataset import EpochSampler, FieldDataset

JITTER = 0.15
SIZE = (128, 128)
IDENTITY = Normalization((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


@pytest.fixture(scope="module")
def fields(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    write_dataset(out, plates=1, fields_per_class=1, size=SIZE, seed=2)
    return load_fields(out)


def test_augmentation_keeps_geometry_and_only_flips_and_scales(fields):
    labels = sorted({f.moa for f in fields})
    plain = FieldDataset(fields, labels, SIZE, IDENTITY)
    augmented = FieldDataset(fields, labels, SIZE, IDENTITY, augment=True, gain_jitter=JITTER, seed=0)
    for i in range(len(fields)):
        (x, y), (a, b) = plain[i], augmented[i]
        assert y == b == labels.index(fields[i].moa) and a.shape == x.shape == (3, *SIZE)
        x, a = x.numpy(), a.numpy()
        # undo whichever flips were drawn, then the only difference is one gain per stain
        match = [
            f
            for f in (x, x[:, :, ::-1], x[:, ::-1, :], x[:, ::-1, ::-1])
            if np.allclose(a / np.maximum(f, 1), (a / np.maximum(f, 1)).mean(axis=(1, 2), keepdims=True), rtol=1e-3)
        ]
        assert match, f"field {i}: augmentation is not a flip and a per-stain gain"
        gain = a.sum(axis=(1, 2)) / match[0].sum(axis=(1, 2))
        assert np.all(np.abs(np.log(gain)) <= JITTER + 1e-4)
    augmented.epoch = 1
    assert not np.array_equal(
        augmented[0][0].numpy(),
        FieldDataset(fields, labels, SIZE, IDENTITY, augment=True, gain_jitter=JITTER, seed=0)[0][0].numpy(),
    )  # new draws each epoch


def test_the_draws_depend_on_epoch_and_field_not_on_the_order_they_are_read(fields):
    labels = sorted({f.moa for f in fields})
    dataset = FieldDataset(fields, labels, SIZE, IDENTITY, augment=True, gain_jitter=JITTER, seed=0)
    first = dataset[(3, 5)][0]
    for i in range(4):  # other reads in between, as another worker process or a resumed run would
        dataset[(3, i)]
    assert np.array_equal(dataset[(3, 5)][0].numpy(), first.numpy())


def test_each_rank_reads_its_own_share_and_a_resumed_epoch_the_rest_of_the_same_order(fields):
    dataset = FieldDataset(fields, [], SIZE, IDENTITY)
    ranks = [EpochSampler(dataset, ranks=2, rank=r, seed=7) for r in range(2)]
    for sampler in ranks:
        sampler.set_epoch(3)
    shares = [list(s) for s in ranks]
    assert all(epoch == 3 for share in shares for epoch, _ in share)
    indices = [i for share in shares for _, i in share]
    assert sorted(set(indices)) == list(range(len(fields))) and len(indices) == 14  # 13 fields, one padded
    resumed = EpochSampler(dataset, ranks=2, rank=0, seed=7)
    resumed.set_epoch(3)
    resumed.skip = 4
    assert list(resumed) == shares[0][4:] and len(resumed) == len(shares[0]) - 4
    ranks[0].set_epoch(4)
    assert list(ranks[0]) != shares[0]  # every epoch its own shuffle
