import pytest
import torch

from training.model import MCNN, MCNNConfig, count_parameters, pyramid


def test_full_resolution_shapes_and_parameter_count():
    config = MCNNConfig()  # 3 x 1024 x 1280, 13 classes
    assert config.grid == (16, 20)
    assert sum(config.column_widths) == 208
    assert config.flat_features == 81_920
    with torch.device("meta"):  # shapes only: no 42 M weights to initialise
        model = MCNN(config)
    assert count_parameters(model) == 42_577_261  # "about 42.6 M"
    pools = [[m.kernel_size for m in column.body if isinstance(m, torch.nn.MaxPool2d)] for column in model.columns]
    assert pools[0] == [64] and pools[3] == [8] and pools[6] == []  # column k's 2**k pooling is the pyramid's
    x = torch.zeros(1, 3, 1024, 1280, device="meta")
    assert [level.shape[-2:] for level in pyramid(x, 7)][6] == (16, 20)  # out to the 16x20 grid
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


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_pyramid_is_max_pooling_by_each_power_of_two(dtype):
    x = torch.randn(2, 3, 256, 384).to(dtype).contiguous(memory_format=torch.channels_last)
    for k, level in enumerate(pyramid(x, 7)):
        assert torch.equal(level, torch.nn.functional.max_pool2d(x, 2**k) if k else x), k


def test_a_column_pools_before_its_last_relu_with_the_same_values_and_gradients():
    torch.manual_seed(0)
    column = MCNN(MCNNConfig(height=128, width=128)).columns[1]  # 3 convolutions, then a pool by 32
    conv1, relu1, conv2, relu2, conv3, pool, relu3 = column.body
    x = torch.randn(2, 3, 64, 64)
    ours = column(x)
    conventional = pool(torch.relu(conv3(relu2(conv2(relu1(conv1(x)))))))
    assert torch.equal(ours, conventional)
    grads = [torch.autograd.grad(out.square().sum(), conv1.weight)[0] for out in (ours, conventional)]
    assert torch.equal(*grads)


def test_field_norm_makes_the_network_blind_to_each_fields_stain_gains():
    torch.manual_seed(0)
    config = MCNNConfig(height=128, width=128)
    assert config.field_norm  # the network as trained
    model = MCNN(config).eval()
    x = torch.randn(2, 3, 128, 128)  # normalised fields: unit variance, where eps (1e-3) is negligible
    gains, offsets = torch.tensor([3.0, 1.2, 1.7]).view(1, 3, 1, 1), torch.tensor([0.5, -0.2, 0.1]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x * gains + offsets), model(x), atol=1e-3, rtol=1e-3)
        plain = MCNN(MCNNConfig(height=128, width=128, field_norm=False)).eval()
        assert not torch.allclose(plain(x * gains), plain(x), atol=1e-4)


def test_a_config_saved_before_field_norm_loads_without_it():
    saved = MCNNConfig(height=128, width=128).to_dict()
    del saved["field_norm"]
    assert MCNNConfig.from_dict(saved).field_norm is False


def test_global_pool_averages_the_grid_into_one_vector():
    flat, pooled = MCNNConfig(height=256, width=256), MCNNConfig(height=256, width=256, global_pool=True)
    assert pooled.flat_features == pooled.fused_channels and flat.flat_features == pooled.fused_channels * 2 * 2
    model = MCNN(pooled).eval()
    with torch.no_grad():
        assert model.forward_features(torch.randn(2, 3, 256, 256)).shape == (2, pooled.hidden)
    saved = MCNNConfig(height=256, width=256).to_dict()
    del saved["global_pool"]
    assert MCNNConfig.from_dict(saved).global_pool is False  # runs saved before it: the paper's flatten
