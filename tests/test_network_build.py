"""The built networks really contain the chosen layers, initialized as the formulas say."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
from timm.layers import get_act_layer

from trainspeed.errors import ConfigError, TrainspeedError
from trainspeed.model import build_network
from trainspeed.optim.optimizers import TORCH_OPTIMIZERS, build_optimizer, optimizer_kwargs
from trainspeed.validation import validate

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


RELU_GAIN = math.sqrt(2)


def _xavier(gain: float):
    return lambda fan_in, fan_out: gain * math.sqrt(2 / (fan_in + fan_out))


def _fan_in(gain: float):
    return lambda fan_in, fan_out: gain / math.sqrt(fan_in)


def _orthogonal(gain: float):
    return lambda fan_in, fan_out: gain / math.sqrt(max(fan_in, fan_out))


# (initializer, activation, extra overrides, std the paper's formula gives), checked on 512 x 512 hidden layers and the
# 512 -> 10 head (where fan_in and fan_out differ): a name must mean its paper, whatever the activation.
PAPER_STD = [
    ("xavier_uniform", "relu", (), _xavier(1.0)),  # Glorot & Bengio 2010: gain 1
    ("xavier_normal", "relu", (), _xavier(1.0)),
    ("xavier_normal", "tanh", (), _xavier(1.0)),
    ("kaiming_normal", "relu", (), _fan_in(RELU_GAIN)),  # He et al. 2015: the activation's gain
    ("kaiming_uniform", "relu", (), _fan_in(RELU_GAIN)),
    ("kaiming_normal", "tanh", (), _fan_in(5 / 3)),
    ("kaiming_normal", "leaky_relu", (), _fan_in(math.sqrt(2 / (1 + 0.01**2)))),
    ("kaiming_normal", "selu", (), _fan_in(1.0)),  # LeCun scaling for SELU
    ("lecun_normal", "relu", (), _fan_in(1.0)),  # LeCun 1998: gain 1
    ("lecun_normal", "selu", (), _fan_in(1.0)),
    ("orthogonal", "relu", (), _orthogonal(1.0)),  # Saxe et al. 2014: gain 1
    ("trunc_normal", "relu", (), lambda fan_in, fan_out: 0.02 * 0.8796),  # std of N(0, s) cut at ±2s
    # the gain-matched variants, by explicit choice
    ("xavier_uniform", "relu", ("initializer.gain=auto",), _xavier(RELU_GAIN)),
    ("xavier_normal", "tanh", ("initializer.gain=auto",), _xavier(5 / 3)),
    ("orthogonal", "relu", ("initializer.gain=auto",), _orthogonal(RELU_GAIN)),
    ("lecun_normal", "relu", ("initializer.gain=auto",), _fan_in(RELU_GAIN)),
    ("kaiming_normal", "relu", ("initializer.gain=auto",), _fan_in(RELU_GAIN)),
    ("xavier_normal", "relu", ("initializer.gain=3",), _xavier(3.0)),
    ("kaiming_uniform", "relu", ("initializer.gain=0.5",), _fan_in(0.5)),
]


def _hidden_layers(network: nn.Module) -> list[nn.Linear]:
    return [m for m in network.body if isinstance(m, nn.Linear)][1:]  # the first takes the 64 pixels


@pytest.mark.parametrize(("initializer", "activation", "extra", "expected_std"), PAPER_STD)
def test_initializer_std_matches_the_paper_formula(make_config, initializer, activation, extra, expected_std):
    torch.manual_seed(0)
    cfg = make_config(
        "model=mlp",
        "model.width=512",
        "model.depth=3",
        f"initializer={initializer}",
        f"activation={activation}",
        *extra,
    )
    network, _ = build_network(cfg, IMAGE, 10)
    layers = _hidden_layers(network)
    assert len(layers) == 2
    for layer in layers:  # every layer: 512 x 512 ...
        fan_out, fan_in = layer.weight.shape
        assert float(layer.weight.std()) == pytest.approx(expected_std(fan_in, fan_out), rel=0.03)
        assert float(layer.weight.mean()) == pytest.approx(0.0, abs=0.003)
    head = network.head if hasattr(network, "head") else None
    if isinstance(head, nn.Linear):  # ... and the 512 -> 10 classifier, where fan_in and fan_out differ
        fan_out, fan_in = head.weight.shape
        assert float(head.weight.std()) == pytest.approx(expected_std(fan_in, fan_out), rel=0.05)
    for module in network.modules():
        if isinstance(module, nn.Linear):
            assert torch.count_nonzero(module.bias) == 0


def _gain_matched(weight: torch.Tensor, name: str, activation: str) -> None:
    """The gain-matched initialization as torch spells it: every scheme at the activation's gain."""
    gain = nn.init.calculate_gain(activation)
    if name == "xavier_uniform":
        nn.init.xavier_uniform_(weight, gain=gain)
    elif name == "xavier_normal":
        nn.init.xavier_normal_(weight, gain=gain)
    elif name == "orthogonal":
        nn.init.orthogonal_(weight, gain=gain)
    else:
        fn = nn.init.kaiming_uniform_ if name == "kaiming_uniform" else nn.init.kaiming_normal_
        fn(weight, a=0.0, mode="fan_in", nonlinearity=activation)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize(
    "name", ["xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "orthogonal"]
)
def test_gain_auto_reproduces_the_gain_matched_init_exactly(make_config, name, activation):
    torch.manual_seed(0)
    overrides = ("model.width=64", "model.depth=3", f"initializer={name}", f"activation={activation}")
    network, _ = build_network(make_config(*overrides, "initializer.gain=auto"), IMAGE, 10)
    torch.manual_seed(0)
    reference, _ = build_network(make_config(*overrides, "initializer=default"), IMAGE, 10)
    with torch.no_grad():  # the same draws, in the same order, as the auto gain must make
        for module in reference.modules():
            if isinstance(module, nn.Linear):
                _gain_matched(module.weight, name, activation)
                nn.init.zeros_(module.bias)
    for ours, theirs in zip(network.parameters(), reference.parameters(), strict=True):
        assert torch.equal(ours, theirs)


def test_a_bad_gain_is_refused_naming_the_key(make_config):
    validate(make_config("initializer=xavier_normal", "initializer.gain=auto"))
    validate(make_config("initializer=xavier_normal", "initializer.gain=2.5"))
    for bad, shown in (("-1", "-1"), ("relu", "'relu'")):
        with pytest.raises(TrainspeedError, match=f"initializer.gain={shown} .*the activation's gain"):
            validate(make_config("initializer=xavier_normal", f"initializer.gain={bad}"))


def test_initializer_resets_norm_layers_and_conv_biases(make_config):
    network, _ = build_network(
        make_config("model=cnn", "normalization=batchnorm", "initializer=xavier_uniform"), IMAGE, 10
    )
    for module in network.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0)
    conv = next(m for m in network.modules() if isinstance(m, nn.Conv2d))
    fan_in, fan_out = conv.in_channels * 9, conv.out_channels * 9
    bound = math.sqrt(6 / (fan_in + fan_out))  # Glorot's, gain 1
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


@pytest.mark.parametrize("name", ["adam", "adamw", "rmsprop", "nadam", "radam"])
def test_cpu_optimizer_steps_do_not_probe_for_an_accelerator(make_config, monkeypatch, name):
    # torch asks "is an accelerator available?" on every step of these optimizers; with Lightning imported that
    # loads the NVIDIA management library each time (0.2 ms a step on a CPU-only machine, not paid by SGD)
    probes = []
    current_accelerator = torch.accelerator.current_accelerator

    def counted(*args, **kwargs):
        probes.append(1)
        return current_accelerator(*args, **kwargs)

    monkeypatch.setattr(torch.accelerator, "current_accelerator", counted)
    network, _ = build_network(make_config(), IMAGE, 10)
    cfg = make_config(f"optimizer={name}").optimizer
    for optimizer, probed in (
        (torch.optim.Adam(network.parameters()), True),
        (build_optimizer(cfg, network), False),
    ):
        probes.clear()
        for _ in range(3):
            network(torch.randn(4, 64)).sum().backward()
            optimizer.step()
        assert bool(probes) == probed, type(optimizer).__name__


def _same_groups(ours: torch.optim.Optimizer, timms: torch.optim.Optimizer) -> None:
    assert type(ours) is type(timms)
    assert ours.defaults == timms.defaults
    assert len(ours.param_groups) == len(timms.param_groups)
    for a, b in zip(ours.param_groups, timms.param_groups, strict=True):
        assert [id(p) for p in a["params"]] == [id(p) for p in b["params"]]
        assert {k: v for k, v in a.items() if k != "params"} == {k: v for k, v in b.items() if k != "params"}


@pytest.mark.parametrize("name", sorted(TORCH_OPTIMIZERS))
@pytest.mark.parametrize(
    "extra",
    [[], ["optimizer.weight_decay=0.1"], ["optimizer.weight_decay=0.1", "optimizer.decay_norm_and_bias=true"],
     ["++optimizer.eps=1e-6", "++optimizer.momentum=0.5", "++optimizer.betas=[0.8,0.99]"]],
    ids=["defaults", "weight decay", "decay on norms and biases", "eps momentum betas"],
)  # fmt: skip
def test_torch_optimizers_are_built_as_timms_factory_builds_them(make_config, name, extra):
    from timm.optim import create_optimizer_v2

    network, _ = build_network(make_config("normalization=batchnorm"), IMAGE, 10)
    cfg = make_config(f"optimizer.name={name}", *extra).optimizer
    info = TORCH_OPTIMIZERS[name]
    lacking = [
        k
        for k in ("eps", "momentum", "betas")
        if f"++optimizer.{k}" in str(extra) and not getattr(info, f"has_{k}")
    ]
    if (
        lacking
    ):  # typed on the command line for an optimizer without it: refused, not dropped as timm drops it
        with pytest.raises(ConfigError, match=f"optimizer.name={name} has no {lacking[0]}\\)"):
            optimizer_kwargs(cfg)
        return
    kwargs = optimizer_kwargs(cfg)
    _same_groups(build_optimizer(cfg, network), create_optimizer_v2(network, **kwargs))
    groups = [
        {"params": list(network.parameters())[:2], "lr": 0.5},
        {"params": list(network.parameters())[2:]},
    ]
    _same_groups(build_optimizer(cfg, groups), create_optimizer_v2(groups, **kwargs))
