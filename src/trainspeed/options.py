"""The names each config group accepts, importable without torch.

The single list of names: validation refuses a name that is not here (without importing torch and timm, about ten
seconds), and the building modules (model/, optim/, data/, training/) import the lists from here and trust a
validated config. Only the data set names and timm's optimizer names are known elsewhere too (data/sources.py,
timm), and a test (tests/test_robustness.py) keeps those equal.
"""

from __future__ import annotations

FAMILIES = ("mlp", "cnn", "timm")
ACTIVATIONS = ("relu", "leaky_relu", "elu", "selu", "gelu", "silu", "mish", "tanh", "sigmoid")
NORMALIZATIONS = ("none", "batchnorm", "layernorm", "groupnorm")
DEFAULT = "default"
INITIALIZERS = (
    "default",
    "xavier_uniform",
    "xavier_normal",
    "kaiming_uniform",
    "kaiming_normal",
    "lecun_normal",
    "orthogonal",
    "trunc_normal",
)
SCHEDULERS = ("none", "step", "exponential", "cosine", "onecycle", "plateau")
FINETUNE_STRATEGIES = ("full", "linear_probe", "gradual", "scratch")
# fine-tuning strategies that keep (part of) the backbone as loaded, so they need loaded weights
NEEDS_WEIGHTS = ("linear_probe", "gradual")
DATASETS = ("digits", "synthetic", "mnist", "fashion_mnist", "cifar10", "imagefolder")
# what the LightningModule logs; the target and the plateau scheduler can watch any of them
METRICS = ("val/acc", "val/loss", "val/acc_best", "train/loss", "train/acc")
# Lightning's accepted `precision` values (lightning_fabric.plugins.precision.precision._PRECISION_INPUT)
PRECISIONS = (
    "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true",
    "transformer-engine", "transformer-engine-float16", "64", "32", "16", "bf16", 64, 32, 16,
)  # fmt: skip
# precisions Lightning cannot run on the CPU: it would silently switch 16-mixed to bf16-mixed
GPU_ONLY_PRECISIONS = ("16-mixed", "16", 16, "transformer-engine", "transformer-engine-float16")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
# timm optimizers that torch.compile their update when built (timm/optim/kron.py)
COMPILED_OPTIMIZERS = ("kron", "kronc", "kronw")

# (channels, side) of each data set's images before data.image_size resizes them
NATIVE_IMAGES = {"digits": (1, 8), "mnist": (1, 28), "fashion_mnist": (1, 28), "cifar10": (3, 32)}
NATIVE_CLASSES = {"digits": 10, "mnist": 10, "fashion_mnist": 10, "cifar10": 10}

# timm.optim.list_optimizers() of the timm version below: checked without importing timm (and torch).
TIMM_OPTIMIZERS_VERSION = "1.0.31"
TIMM_OPTIMIZERS = frozenset(
    """
    adabelief adadelta adafactor adafactorbv adafactorbvc adagrad adahessian adam adamax adamc adamp adamuon adamw
    adamwlegacy adan adanw adopt adoptc adoptw bnbadam bnbadam8bit bnbadamw bnbadamw8bit bnbademamix
    bnbademamix8bit bnblion bnblion8bit bnbsgd bnbsgd8bit cadafactor cadafactorbv cadafactorbvc cadamc cadamp
    cadamw cadan cadanw cadopt cadoptc cadoptw clamb clambw claprop clion clionc cmars cnadamc cnadamw crmsproptf
    csgdc csgdp csgdw fusedadam fusedadamw fusedlamb fusednovograd fusedsgd kron kronc kronw lamb lambc lambcd
    lambcw lambw laprop lapropc larc lars lion lionc madgrad madgradw mars momentum muon nadam nadamc nadamlegacy
    nadamuon nadamw nesterov nesterovw nlarc nlars nmuon novograd novogradc novogradw radabelief radam radamlegacy
    radamw rmsprop rmsproptf rmsproptfc rmsproptfw sgd sgdc sgdp sgdw
    """.split()
)


def metric_mode(metric: str, mode: str = "auto") -> str:
    """The target's direction (target.mode): 'max' for accuracy-like metrics, 'min' for losses and errors."""
    if mode != "auto":
        return mode
    return "min" if any(word in metric for word in ("loss", "error", "err")) else "max"
