"""The built networks really contain the chosen layers, initialized as the formulas say."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
from timm.layers import get_act_layer

from trainspeed.model import build_network
from trainspeed.optim.optimizers import build_optimizer

IMAGE = (1, 8, 8)


def _classes(network: nn.Module) -> set[type]:
    return {type(m) for m in network.modules()}


@pytest.mark.parametrize(
    "activation", ["relu", "leaky_relu", "elu", "selu", "gelu", "silu", "mish", "tanh", "sigmoid"]
)
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_network_holds_the_chosen_activation(make_config, model, activation):
    cfg = make_config(f"model={model}", f"activation={activation}")
    network, _ = build_network(cfg, IMAGE, 10)
    expected = get_act_layer(activation)
    assert expected in _classes(network)
    assert nn.ReLU not in _classes(network) or activation == "relu"


@pytest.mark.parametrize(
    ("model", "normalization", "layer"),
    [
        ("mlp", "batchnorm", nn.BatchNorm1d),
        ("mlp", "layernorm", nn.LayerNorm),
        ("mlp", "groupnorm", nn.GroupNorm),
        ("cnn", "batchnorm", nn.BatchNorm2d),
        ("cnn", "groupnorm", nn.GroupNorm),
    ],
)
def test_network_holds_the_chosen_normalization(make_config, model, normalization, layer):
    network, _ = build_network(make_config(f"model={model}", f"normalization={normalization}"), IMAGE, 10)
    assert any(isinstance(m, layer) for m in network.modules())


def test_cnn_layernorm_normalizes_channels(make_config):
    from timm.layers import LayerNorm2d

    network, _ = build_network(make_config("model=cnn", "normalization=layernorm"), IMAGE, 10)
    assert any(isinstance(m, LayerNorm2d) for m in network.modules())


def test_normalization_none_leaves_no_norm_layer(make_config):
    for model in ("mlp", "cnn"):
        network, _ = build_network(make_config(f"model={model}", "normalization=none"), IMAGE, 10)
        assert not any(
            isinstance(m, nn.modules.batchnorm._NormBase | nn.GroupNorm | nn.LayerNorm)
            for m in network.modules()
        )


def test_timm_backbone_takes_activation_and_normalization(make_config):
    cfg = make_config(
        "model=timm",
        "model.name=resnet18",
        "activation=gelu",
        "normalization=groupnorm",
        "data.image_size=32",
    )
    network, _ = build_network(cfg, (1, 32, 32), 10)
    classes = _classes(network)
    assert get_act_layer("gelu") in classes and nn.ReLU not in classes
    assert any(isinstance(m, nn.GroupNorm) for m in network.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in network.modules())
    assert network.conv1.in_channels == 1 and network.get_classifier().out_features == 10


def test_timm_transformer_takes_layernorm_on_tokens(make_config):
    cfg = make_config(
        "model=timm",
        "model.name=vit_tiny_patch16_224",
        "normalization=layernorm",
        "+model.kwargs.img_size=16",
        "+model.kwargs.patch_size=8",
        "+model.kwargs.depth=1",
    )
    network, _ = build_network(cfg, (1, 16, 16), 10)
    assert network(torch.zeros(2, 1, 16, 16)).shape == (2, 10)


@pytest.mark.parametrize(
    ("initializer", "activation", "expected_std"),
    [
        ("kaiming_normal", "relu", lambda fan_in, fan_out: math.sqrt(2 / fan_in)),
        ("kaiming_normal", "tanh", lambda fan_in, fan_out: (5 / 3) / math.sqrt(fan_in)),
        ("kaiming_uniform", "relu", lambda fan_in, fan_out: math.sqrt(2 / fan_in)),
        ("kaiming_normal", "leaky_relu", lambda fan_in, fan_out: math.sqrt(2 / (1 + 0.01**2) / fan_in)),
        ("xavier_normal", "tanh", lambda fan_in, fan_out: (5 / 3) * math.sqrt(2 / (fan_in + fan_out))),
        ("xavier_uniform", "relu", lambda fan_in, fan_out: math.sqrt(2) * math.sqrt(2 / (fan_in + fan_out))),
        ("lecun_normal", "selu", lambda fan_in, fan_out: 1 / math.sqrt(fan_in)),
        ("kaiming_normal", "selu", lambda fan_in, fan_out: 1 / math.sqrt(fan_in)),  # LeCun scaling for SELU
        ("orthogonal", "relu", lambda fan_in, fan_out: math.sqrt(2) / math.sqrt(max(fan_in, fan_out))),
        ("trunc_normal", "relu", lambda fan_in, fan_out: 0.02 * 0.8796),  # std of N(0, s) cut at ±2s
    ],
)
def test_initializer_std_matches_formula(make_config, initializer, activation, expected_std):
    torch.manual_seed(0)
    cfg = make_config(
        "model=mlp",
        "model.width=512",
        "model.depth=2",
        f"initializer={initializer}",
        f"activation={activation}",
    )
    network, _ = build_network(cfg, IMAGE, 10)
    layer = network.body[3] if isinstance(network.body[3], nn.Linear) else network.body[4]
    assert isinstance(layer, nn.Linear) and layer.weight.shape == (512, 512)
    fan_out, fan_in = layer.weight.shape
    assert float(layer.weight.std()) == pytest.approx(expected_std(fan_in, fan_out), rel=0.03)
    assert float(layer.weight.mean()) == pytest.approx(0.0, abs=0.003)
    for module in network.modules():
        if isinstance(module, nn.Linear):
            assert torch.count_nonzero(module.bias) == 0


def test_initializer_resets_norm_layers_and_conv_biases(make_config):
    network, _ = build_network(
        make_config("model=cnn", "normalization=batchnorm", "initializer=xavier_uniform"), IMAGE, 10
    )
    for module in network.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0)
    conv = next(m for m in network.modules() if isinstance(m, nn.Conv2d))
    fan_in, fan_out = conv.in_channels * 9, conv.out_channels * 9
    bound = math.sqrt(2) * math.sqrt(6 / (fan_in + fan_out))
    assert float(conv.weight.abs().max()) <= bound + 1e-6


def test_default_initializer_leaves_framework_init(make_config):
    torch.manual_seed(0)
    a, _ = build_network(make_config("initializer=default"), IMAGE, 10)
    torch.manual_seed(0)
    b = nn.Linear(64, 256)
    assert torch.equal(a.body[1].weight, b.weight)


def test_plain_sgd_has_no_momentum_and_nesterov_has_nesterov(make_config):
    network, _ = build_network(make_config(), IMAGE, 10)
    sgd = build_optimizer(make_config("optimizer=sgd").optimizer, network)
    assert isinstance(sgd, torch.optim.SGD)
    assert all(g["momentum"] == 0 and not g["nesterov"] for g in sgd.param_groups)
    momentum = build_optimizer(make_config("optimizer=momentum").optimizer, network)
    assert all(g["momentum"] == 0.9 and not g["nesterov"] for g in momentum.param_groups)
    nesterov = build_optimizer(make_config("optimizer=nesterov").optimizer, network)
    assert all(g["momentum"] == 0.9 and g["nesterov"] for g in nesterov.param_groups)
    rmsprop = build_optimizer(make_config("optimizer=rmsprop").optimizer, network)
    assert all(g["momentum"] == 0 and g["alpha"] == 0.9 for g in rmsprop.param_groups)


def test_weight_decay_skips_biases_and_norm_weights_unless_asked(make_config):
    network, _ = build_network(make_config("normalization=batchnorm"), IMAGE, 10)
    one_d = {id(p) for p in network.parameters() if p.ndim <= 1}
    optimizer = build_optimizer(
        make_config("optimizer=adamw", "optimizer.weight_decay=0.1").optimizer, network
    )
    for group in optimizer.param_groups:
        ids = {id(p) for p in group["params"]}
        if ids & one_d:
            assert ids <= one_d and group["weight_decay"] == 0
        else:
            assert group["weight_decay"] == 0.1
    everything = build_optimizer(
        make_config(
            "optimizer=adamw", "optimizer.weight_decay=0.1", "optimizer.decay_norm_and_bias=true"
        ).optimizer,
        network,
    )
    assert all(g["weight_decay"] == 0.1 for g in everything.param_groups)


def test_timm_optimizer_option_takes_any_timm_name(make_config):
    network, _ = build_network(make_config(), IMAGE, 10)
    optimizer = build_optimizer(make_config("optimizer=timm", "optimizer.name=adabelief").optimizer, network)
    assert type(optimizer).__name__ == "AdaBelief"
