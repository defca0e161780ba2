"""Small building blocks shared by several components (MLP, LayerNorm2d, DropPath, the
inference cache of values derived from weights)."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import torch
from torch import nn

_T = TypeVar("_T")
_PLAIN: ContextVar[bool] = ContextVar("surgsam_plain_inference", default=False)


def inference_fast_ops() -> bool:
    """True where the inference shortcuts may run: under ``torch.inference_mode`` (no autograd),
    outside :func:`plain_inference`, and not while ``torch.compile`` or an ONNX export captures
    a graph (which must see the plain computation; a ``torch.jit.trace`` made at inference, as
    the engine's :class:`~surgsam.engine.fastpath.TracedCall` makes them, records the shortcuts
    with the values of the weights they hold). The shortcuts (values of the weights computed
    once, one frame's rows computed once for all its objects, arithmetic done in place) give
    exactly the plain computation's values."""
    if torch.compiler.is_compiling():  # first: a constant to torch.compile, so no graph break
        return False
    return torch.is_inference_mode_enabled() and not _PLAIN.get() and not torch.onnx.is_in_onnx_export()


@contextmanager
def plain_inference() -> Iterator[None]:
    """Inside this block the networks run without the inference shortcuts (the computation the
    shortcuts must equal: for tests and before/after measurements)."""
    token = _PLAIN.set(True)
    try:
        yield
    finally:
        _PLAIN.reset(token)


class InferenceCache:
    """Tensors computed from weights alone (position encodings, constant prompt tokens), kept
    between calls while those weights are unchanged (the same tensors, storage and version
    counter; an inference tensor has no version counter) and the autocast state is the same. Used only where :func:`inference_fast_ops` holds; elsewhere
    every call computes afresh, so training and graph capture see the plain computation. At
    most ``capacity`` values are kept (the oldest is dropped first)."""

    def __init__(self, capacity: int = 32) -> None:
        self.capacity = capacity
        self._store: dict[Any, tuple[tuple, list[weakref.ref], Any]] = {}

    def get(self, key: Any, weights: Sequence[torch.Tensor], compute: Callable[[], _T]) -> _T:
        if not inference_fast_ops():
            return compute()
        stamp = (
            tuple((w.data_ptr(), -1 if w.is_inference() else w._version, w.device) for w in weights),
            torch.is_autocast_enabled("cpu"),
            torch.is_autocast_enabled("cuda"),
        )
        hit = self._store.get(key)
        # the very tensors of the stamp (a freed tensor's storage may be reused by another)
        if hit is not None and hit[0] == stamp and all(r() is w for r, w in zip(hit[1], weights)):
            return hit[2]
        value = compute()
        self._store.pop(key, None)
        while len(self._store) >= self.capacity:  # the oldest entry goes first
            del self._store[next(iter(self._store))]
        self._store[key] = (stamp, [weakref.ref(w) for w in weights], value)
        return value

    def clear(self) -> None:
        self._store.clear()


class MLP(nn.Module):
    """``num_layers`` linear layers with an activation between them.

    Parameter names (``layers.{i}.weight``) match Meta's SAM 2 checkpoints.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        output_dim: int,
        num_layers: int,
        activation: type[nn.Module] = nn.ReLU,
        sigmoid_output: bool = False,
    ) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.act = activation()
        self.sigmoid_output = sigmoid_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        in_place = inference_fast_ops()
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = activate_(self.act, x) if in_place else self.act(x)
        return torch.sigmoid(x) if self.sigmoid_output else x


def activate_(act: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``act(x)`` written into ``x`` for ReLU and exact GELU (the same kernels in place); other
    activations as they are. For tensors nothing else holds, at inference."""
    if isinstance(act, nn.ReLU):
        return torch.relu_(x)
    if isinstance(act, nn.GELU) and act.approximate == "none":
        return torch.ops.aten.gelu_(x)
    return act(x)


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of a ``B x C x H x W`` tensor."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        if x.dtype == self.weight.dtype and inference_fast_ops():
            # the same arithmetic, ``x - mean`` computed once and the rest in place
            d = x - mean
            var = d.pow(2).mean(1, keepdim=True)
            d.div_(torch.sqrt(var.add_(self.eps)))
            return d.mul_(self.weight[:, None, None]).add_(self.bias[:, None, None])
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample while training."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


def activation(name: str) -> type[nn.Module]:
    """The activation class for a config name ("relu" | "gelu")."""
    table = {"relu": nn.ReLU, "gelu": nn.GELU}
    if name not in table:
        raise ValueError(f"unknown activation {name!r}")
    return table[name]


def get_1d_sine_pe(pos: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Sine/cosine encoding of scalar positions: ``(...,)`` -> ``(..., dim)``."""
    half = dim // 2
    idx = torch.arange(half, dtype=torch.float32, device=pos.device)
    freqs = temperature ** (2 * (idx // 2) / half)
    angles = pos.unsqueeze(-1) / freqs
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


__all__ = [
    "MLP",
    "LayerNorm2d",
    "DropPath",
    "InferenceCache",
    "activate_",
    "activation",
    "get_1d_sine_pe",
    "inference_fast_ops",
    "plain_inference",
]
