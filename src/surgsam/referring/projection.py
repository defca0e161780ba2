"""Text-side projections of ReSurgSAM2: CLIP width -> SAM width, and the sentence prompt token."""

from __future__ import annotations

import torch
from torch import nn


class DropoutMLP(nn.Module):
    """``num_layers`` linear layers, ReLU and dropout after every hidden layer.

    Parameter names (``layers.{i}.weight``) are those of SAM's plain MLP, which is how
    ReSurgSAM2 stores ``token_projection``, ``language_fusion_mlp`` and the fusion MLPs.
    """

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int, dropout: float = 0.0) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError("num_layers must be >= 1")
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        linears = [nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:])]
        self.layers = nn.ModuleList(linears)
        self.act = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        for layer in linears:
            nn.init.trunc_normal_(layer.weight, std=0.02)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``... x input_dim`` -> ``... x output_dim``."""
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = self.dropout(self.act(x))
        return x


__all__ = ["DropoutMLP"]
