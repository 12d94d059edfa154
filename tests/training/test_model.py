import pytest
import torch

from training.model import MCNN, MCNNConfig, count_parameters


def test_full_resolution_shapes_and_parameter_count():
    config = MCNNConfig()  # 3 x 1024 x 1280, 13 classes
    assert config.grid == (16, 20)
    assert sum(config.column_widths) == 208
    assert config.flat_features == 81_920
    model = MCNN(config)
    assert count_parameters(model) == 42_577_261  # "about 42.6 M"
    pools = [[m.kernel_size for m in column.body if isinstance(m, torch.nn.MaxPool2d)] for column in model.columns]
    assert pools[0] == [64] and pools[3] == [8, 8] and pools[6] == [64]  # in by 2**k, out to the 16x20 grid
    assert model.fuse[4].in_features == 81_920 and model.head.out_features == 13


def test_small_input_forward_features_and_head():
    config = MCNNConfig(height=128, width=256, num_classes=5)
    model = MCNN(config).eval()
    x = torch.randn(2, 3, 128, 256)
    with torch.no_grad():
        features = model.forward_features(x)
        logits = model(x)
    assert features.shape == (2, 512) and logits.shape == (2, 5)
    assert torch.allclose(model.forward_head(features), logits)
    assert config.grid == (2, 4) and config.flat_features == 1024 * 1 * 2


def test_input_size_must_fit_the_scales():
    with pytest.raises(ValueError, match="divisible by 128"):
        MCNNConfig(height=1000, width=1280)


def test_xavier_initialisation_and_zero_bias():
    model = MCNN(MCNNConfig(height=128, width=128))
    conv = model.columns[0].body[0]
    fan_in, fan_out = 3 * 25, 16 * 25
    bound = (6 / (fan_in + fan_out)) ** 0.5
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.9 * bound
    assert torch.count_nonzero(conv.bias) == 0
