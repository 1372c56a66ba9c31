"""Small VGG-style convolutional classifier."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn as nn

from trainspeed.model.layers import LayerFactory


class SmallCNN(nn.Module):
    """Stages of 3x3 conv -> norm -> activation, each stage ending in 2x2 pooling while the map is ≥ 2 wide;
    then global average pooling, dropout and a linear head."""

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        channels: Sequence[int],
        convs_per_stage: int,
        pool: str,
        dropout: float,
        act_layer: LayerFactory,
        norm_layer: LayerFactory | None,
    ) -> None:
        super().__init__()
        in_chans, size = input_shape[0], min(input_shape[1:])
        pool_layer = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}[pool]
        layers: list[nn.Module] = []
        for width in channels:
            for _ in range(convs_per_stage):
                # a conv followed by a norm layer needs no bias of its own
                layers.append(nn.Conv2d(in_chans, width, 3, padding=1, bias=norm_layer is None))
                if norm_layer is not None:
                    layers.append(norm_layer(width))
                layers.append(act_layer())
                in_chans = width
            if size >= 2:
                layers.append(pool_layer(2))
                size //= 2
        self.features = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout))
        self.head = nn.Linear(in_chans, num_classes)

    def forward(self, x):
        return self.head(self.pool(self.features(x)))
