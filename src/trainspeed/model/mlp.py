"""Fully connected classifier."""

from __future__ import annotations

import math

import torch.nn as nn

from trainspeed.model.layers import LayerFactory


class MLP(nn.Module):
    """Flatten, then `depth` blocks of Linear -> norm -> activation -> dropout, then a linear head."""

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        depth: int,
        width: int,
        dropout: float,
        act_layer: LayerFactory,
        norm_layer: LayerFactory | None,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        features = math.prod(input_shape)
        for _ in range(depth):
            layers.append(nn.Linear(features, width))
            if norm_layer is not None:
                layers.append(norm_layer(width))
            layers.append(act_layer())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            features = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(features, num_classes)

    def forward(self, x):
        return self.head(self.body(x))
