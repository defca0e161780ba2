"""The fast path, chosen once per session by feature detection and measurement.

On CUDA GPUs with bf16 (sm80+: A100, H100, RTX 30xx/40xx, ...) the session runs eagerly
under bf16 autocast with TF32 matmuls. ``fast=True`` (or ``cuda_graphs=True``) adds a
static-shape memory (every frame attends to a memory of the same size, padded and masked) and
``torch.compile``-d image encoder, memory attention and tracking decoder (one graph serves
every frame); ``"auto"`` leaves that off, because on an H200 it measured
:data:`CUDA_COMPILED_SPEED` times the speed of eager float32. Older GPUs get fp16 autocast only.

On the CPU (:mod:`.cpufast`), where a bf16 matmul measured at least :data:`CPU_BF16_MIN_SPEEDUP`
times faster than float32 (AVX512-BF16 or AMX), the image encoder's trunk (when at least
``BF16_MIN_TRUNK_WIDTH`` channels wide) and the memory attention compute in bf16 with their own
attention kernel, and so do the memory encoder's two widest mask convolutions, while the decoder
and the rest stay float32; elsewhere, and for models narrower than :data:`CPU_BF16_MIN_WIDTH` (the
nano), the CPU runs eager float32. ``torch.compile`` and the cached memory projections are not
switched on by ``"auto"`` on the CPU: they did not pay enough on the machine this was measured
on (docs/fast_path_and_export.md). The choice and the reason are
one line in :attr:`FastPath.notice`.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from ..modeling.sam2 import SAM2Model
from .cpufast import BF16_MIN_TRUNK_WIDTH
from .precision import Precision, ResolvedPrecision, cpu_bf16_speedup, resolve_precision

#: ``fast=``: off, forced on, or ``"auto"`` (on where it helps).
FastMode = bool | Literal["auto"]
FAST_CHOICES = (False, True, "auto")
#: bf16 matmuls must be this many times faster than float32 for the CPU fast path to use them.
CPU_BF16_MIN_SPEEDUP = 1.5
#: Under ``"auto"`` the CPU fast path keeps models narrower than this (the embedded nano) in
#: float32, so that the shipped model's default masks stay the float32 reference (its bf16
#: recipe measured 1.13x at 4 objects on 2 threads, with the same held-out J&F; ask for it with
#: ``precision="bf16"``).
CPU_BF16_MIN_WIDTH = 256
#: ``torch.compile`` + static memory + bf16 autocast over eager float32, measured on an H200
#: (sam2.1_hiera_small at 512 px, 1 object, `surgsam bench`, 2026-12-04): slower, so ``"auto"``
#: on CUDA leaves compilation off (docs/fast_path_and_export.md).
CUDA_COMPILED_SPEED = 0.46


@dataclass(frozen=True)
class FastPath:
    """What a session switches on.

    precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` autocast.
    compile: ``torch.compile`` the per-frame networks (static shapes).
    static_memory: pad the memory to the policy's capacity and mask the padding.
    tf32: TF32 matmuls for what stays in fp32 (CUDA only).
    cuda_graphs: compile with ``mode="reduce-overhead"`` (CUDA graphs replay the step).
    matmul: ``"bf16"``: the CPU recipe of :func:`surgsam.engine.cpufast.fast_model` (bf16
        trunk and memory attention, float32 heads; no autocast); ``"fp32"``: none.
    cached_memory: keep each memory's projections in the memory attention
        (:class:`surgsam.engine.cpufast.ProjectedMemory`; exact, dynamic memory layout only).
    trace: replay the per-frame calls from ``torch.jit.trace`` recordings (:class:`TracedCall`:
        the same operations without Python between them; bit-identical values). Never chosen
        by ``"auto"``: each trace costs as much as tens of frames (docs/fast_path_and_export.md);
        ``VideoSegmenter(trace=True)`` asks for it.
    notice: one line saying what was chosen and why.
    """

    precision: ResolvedPrecision = "fp32"
    compile: bool = False
    static_memory: bool = False
    tf32: bool = False
    cuda_graphs: bool = False
    matmul: str = "fp32"
    cached_memory: bool = False
    trace: bool = False
    notice: str = ""


# appended to the notice when bf16 is asked for by name on a CPU where the probe finds it slower
# than float32 (e.g. AVX2 only: bf16 matmuls emulated, about 0.1x, a frame many times longer)
BF16_SLOWER = " - SLOWER than float32 on this CPU; precision=auto keeps float32"


def resolve_fast_path(
    fast: FastMode,
    precision: Precision,
    device: torch.device,
    cuda_graphs: bool = False,
    *,
    width: int | None = None,
    bf16_speedup: Callable[[], float] = cpu_bf16_speedup,
) -> FastPath:
    """Decide the fast path for ``device``.

    Args:
        fast: False (eager, the given precision; bf16 on a CPU where the probe finds it slower
            than float32 gets a warning notice), ``"auto"`` (everything that helps on this
            device, see the module docstring), True (on any device: compile and static memory
            on CUDA; on the CPU the bf16 recipe whenever ``precision`` allows it, plus compile
            and the static memory, e.g. to test the compiled path on a CPU).
        precision: the requested precision (``"auto"`` picks bf16 / fp16 / fp32 by device,
            :func:`surgsam.engine.precision.resolve_precision`). On the CPU, ``"auto"`` or
            ``"bf16"`` let the fast path use bf16 matmuls; ``"fp32"`` keeps every float32.
        cuda_graphs: also replay the compiled step with CUDA graphs (CUDA only).
        width: the model's width (``d_model``); on the CPU, narrower models than
            :data:`CPU_BF16_MIN_WIDTH` stay float32 under ``"auto"``. None: not checked.
        bf16_speedup: measures how much faster bf16 matmuls are here (injectable for tests).
    """
    if not any(fast is c for c in (False, True)) and fast != "auto":
        raise ValueError(f"fast must be one of {FAST_CHOICES}, got {fast!r}")
    prec = resolve_precision(precision, device)
    if fast is False:
        if device.type == "cpu" and prec == "bf16" and (speedup := bf16_speedup()) < 1.0:
            return FastPath(
                prec,
                notice=f"eager bf16 autocast on cpu: bf16 matmuls measured {speedup:.1f}x fp32 here{BF16_SLOWER}",
            )
        return FastPath(precision=prec)
    cuda = device.type == "cuda"
    if device.type == "cpu":
        return _cpu_fast_path(fast, precision, prec, width, bf16_speedup)
    sm80 = cuda and torch.cuda.get_device_capability(device)[0] >= 8
    graphs = cuda and cuda_graphs
    if fast is True or (sm80 and graphs):  # forced, or CUDA graphs asked for by name: compiled, static shapes
        how = f"fast path forced on {device.type}: {prec}" if fast is True else f"fast path: {prec} autocast, TF32"
        return FastPath(
            prec,
            compile=True,
            static_memory=True,
            tf32=cuda,
            cuda_graphs=graphs,
            notice=f"{how}, torch.compile{' + CUDA graphs' if graphs else ''}, static memory",
        )
    if sm80:
        return FastPath(
            prec,
            tf32=True,
            notice=f"fast path: {prec} autocast, TF32, eager (torch.compile with the static memory measured "
            f"{CUDA_COMPILED_SPEED}x eager fp32 on an H200; fast=True forces it)",
        )
    if cuda:
        sm = "".join(map(str, torch.cuda.get_device_capability(device)))
        return FastPath(
            prec, notice=f"fast path partly off: {prec} autocast; torch.compile needs sm80+ (this GPU is sm{sm})"
        )
    return FastPath(prec, notice=f"fast path off on {device.type}: eager {prec}")


def _cpu_fast_path(
    fast: FastMode, requested: Precision, prec: ResolvedPrecision, width: int | None, bf16_speedup: Callable[[], float]
) -> FastPath:
    """The CPU's fast path: the bf16 recipe where ``requested`` allows bf16 and it pays."""
    if fast is True:  # forced: compiled, static memory, and the bf16 recipe if allowed
        matmul = "bf16" if requested in ("auto", "bf16") else "fp32"
        return FastPath(
            "fp32" if matmul == "bf16" else prec,
            compile=True,
            static_memory=True,
            matmul=matmul,
            notice=f"fast path forced on cpu: {matmul} matmuls, torch.compile, static memory",
        )
    if requested not in ("auto", "bf16"):
        return FastPath(prec, notice=f"fast path off on cpu: eager {prec} (precision={requested} keeps every matmul)")
    if requested == "auto" and width is not None and width < CPU_BF16_MIN_WIDTH:
        return FastPath(
            prec,
            notice=f"fast path off on cpu: eager {prec} (a {width}-wide model keeps float32 under "
            "auto; precision=bf16 runs its bf16 recipe)",
        )
    speedup = bf16_speedup()
    if requested == "auto" and speedup < CPU_BF16_MIN_SPEEDUP:
        return FastPath(
            prec,
            notice=f"fast path off on cpu: eager {prec} (bf16 matmuls measured {speedup:.1f}x "
            f"fp32 here, below {CPU_BF16_MIN_SPEEDUP}x)",
        )
    # asked for by name: given, with a warning where this CPU has no fast bf16
    slower = BF16_SLOWER if speedup < 1.0 else ""
    return FastPath(
        "fp32",
        matmul="bf16",
        notice=f"fast path on cpu: bf16 memory attention, mask convolutions and (if {BF16_MIN_TRUNK_WIDTH}+ "
        f"channels wide) image-encoder trunk, float32 heads (bf16 matmuls measured {speedup:.1f}x fp32 here)" + slower,
    )


@dataclass
class CompiledOps:
    """The per-frame calls a session makes: eager, compiled, or replayed as traces."""

    encode_image: Callable[..., Any]
    attend_memory: Callable[..., Any]
    predict_masks: Callable[..., Any]
    encode_memory: Callable[..., Any]

    NAMES: ClassVar[tuple[str, ...]] = ("encode_image", "attend_memory", "predict_masks", "encode_memory")

    budget: TraceBudget | None = None  # shared by traced calls: one new trace per frame

    @classmethod
    def build(cls, model: SAM2Model, fast: FastPath) -> "CompiledOps":
        ops: list[Callable[..., Any]] = [getattr(model, name) for name in cls.NAMES]
        budget = None
        if fast.compile:
            mode = "reduce-overhead" if fast.cuda_graphs else None
            ops = [torch.compile(op, dynamic=False, mode=mode) for op in ops]
        elif fast.trace:
            budget = TraceBudget()
            ops = [TracedCall(model, name, budget=budget) for name in cls.NAMES]
        encode_image, attend_memory, predict_masks, encode_memory = ops
        return cls(encode_image, attend_memory, predict_masks, encode_memory, budget=budget)

    def next_frame(self) -> None:
        """The session moved to a new frame (a traced call may make one new trace again)."""
        if self.budget is not None:
            self.budget.frame += 1


# ---------------------------------------------------------------------- traced calls
def _flatten(x: Any, leaves: list[torch.Tensor]) -> tuple:
    """The structure of ``x`` (nested tuples, lists, dicts, dataclasses; other values kept as
    they are, and must be hashable) with its tensors appended to ``leaves``; a tensor's entry
    holds its shape, strides, dtype and device, so equal structures replay the same trace."""
    if isinstance(x, torch.Tensor):
        leaves.append(x)
        return ("T", tuple(x.shape), x.stride(), x.dtype, x.device)
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return ("D", type(x), tuple((f.name, _flatten(getattr(x, f.name), leaves)) for f in dataclasses.fields(x)))
    if isinstance(x, (tuple, list)):
        return ("L" if isinstance(x, list) else "U", tuple(_flatten(v, leaves) for v in x))
    if isinstance(x, dict):
        return ("M", tuple((k, _flatten(v, leaves)) for k, v in x.items()))
    return ("V", x)


def _unflatten(spec: tuple, leaves: Iterator[torch.Tensor]) -> Any:
    """Inverse of :func:`_flatten`: the structure ``spec`` rebuilt around ``leaves``."""
    kind, *rest = spec
    if kind == "T":
        return next(leaves)
    if kind == "D":
        cls, fields = rest
        return cls(**{name: _unflatten(f, leaves) for name, f in fields})
    if kind in ("U", "L"):
        items = [_unflatten(v, leaves) for v in rest[0]]
        return items if kind == "L" else tuple(items)
    if kind == "M":
        return {k: _unflatten(v, leaves) for k, v in rest[0]}
    return rest[0]


class _Replay(nn.Module):
    """``model.<name>`` on flat tensors in and out (what ``torch.jit.trace`` records)."""

    def __init__(self, model: nn.Module, name: str, in_spec: tuple) -> None:
        super().__init__()
        self.model, self.name, self.in_spec = model, name, in_spec
        self.out_spec: tuple | None = None

    def forward(self, *leaves: torch.Tensor) -> tuple[torch.Tensor, ...]:
        args, kwargs = _unflatten(self.in_spec, iter(leaves))
        out: list[torch.Tensor] = []
        self.out_spec = _flatten(getattr(self.model, self.name)(*args, **kwargs), out)
        return tuple(out)


@dataclass
class TraceBudget:
    """At most one new trace per frame among the calls sharing this budget: a trace costs as
    much as tens of eager frames, so a stream's first frames pay for one at a time."""

    frame: int = 0
    spent: int = -1

    def take(self) -> bool:
        if self.spent == self.frame:
            return False
        self.spent = self.frame
        return True


class TracedCall:
    """A per-frame call of the model (``encode_image``, ``attend_memory``, ...) replayed from a
    ``torch.jit.trace`` of it: the same ATen operations in the same order, run by TorchScript's
    interpreter instead of Python, so the per-operation Python cost of a small network is gone
    and every value is the eager one.

    One trace per input signature (shapes, strides, dtypes and the non-tensor arguments),
    made the ``min_calls``-th time the signature is seen and when the shared ``budget``
    allows (one new trace per frame: tracing costs as much as tens of eager frames; a stream's
    first frames, whose memory grows, mostly have signatures of their own and run eagerly),
    at most ``capacity`` of them. Each trace's first ``checks`` replays (TorchScript profiles,
    then optimises, its first runs) also run eagerly and must give bit-identical outputs;
    otherwise (or if tracing fails) that signature stays eager. Traces hold values computed
    from the weights at tracing time: they are dropped when any weight changes (storage or
    version counter; checked at the first call of each frame).
    """

    def __init__(
        self,
        model: nn.Module,
        name: str,
        min_calls: int = 3,
        capacity: int = 16,
        checks: int = 2,
        budget: TraceBudget | None = None,
    ) -> None:
        self.model, self.name = model, name
        self.eager: Callable[..., Any] = getattr(model, name)
        self.min_calls, self.capacity, self.checks = min_calls, capacity, checks
        self.budget = budget
        self._params = [*model.parameters(), *model.buffers()]
        self._stamp = self._weights()
        self._checked_at: int | None = None
        self._seen: dict[tuple, int] = {}
        self._traces: dict[tuple, list] = {}  # signature -> [traced, output spec, checks left]
        self._eager_only: set[tuple] = set()
        self.replays = 0  # calls answered by a checked trace alone

    def _weights(self) -> list[tuple[int, int]]:
        return [(p.data_ptr(), 0 if p.is_inference() else p._version) for p in self._params]

    def __len__(self) -> int:
        return len(self._traces)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        leaves: list[torch.Tensor] = []
        try:
            spec = _flatten((args, kwargs), leaves)
            hash(spec)
        except TypeError:  # an argument that cannot be a key: no trace for it
            return self.eager(*args, **kwargs)
        frame = None if self.budget is None else self.budget.frame
        if frame is None or frame != self._checked_at:  # the weights are checked once per frame
            self._checked_at = frame
            stamp = self._weights()
            if stamp != self._stamp:
                self._stamp = stamp
                self._traces.clear()
                self._eager_only.clear()
        entry = self._traces.get(spec)
        if entry is None:
            if len(self._seen) > 256:  # signatures seen once long ago: forgotten
                self._seen.clear()
            seen = self._seen[spec] = self._seen.get(spec, 0) + 1
            if spec in self._eager_only or seen < self.min_calls:
                return self.eager(*args, **kwargs)
            if self.budget is not None and not self.budget.take():
                return self.eager(*args, **kwargs)
            return self._trace(spec, leaves, args, kwargs)
        traced, out_spec, checks = entry
        out = _unflatten(out_spec, iter(traced(*leaves)))
        if not checks:
            self.replays += 1
        else:
            entry[2] -= 1
            ref = self.eager(*args, **kwargs)
            if not _same(ref, out):
                del self._traces[spec]
                self._eager_only.add(spec)
                return ref
        return out

    def _trace(self, spec: tuple, leaves: list[torch.Tensor], args: tuple, kwargs: dict) -> Any:
        replay = _Replay(self.model, self.name, spec)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TorchScript's deprecation and tracer warnings
                traced = torch.jit.trace(replay, tuple(leaves), check_trace=False)
        except Exception:  # noqa: BLE001 - an untraceable call simply stays eager
            self._eager_only.add(spec)
            return self.eager(*args, **kwargs)
        assert replay.out_spec is not None
        while len(self._traces) >= self.capacity:
            del self._traces[next(iter(self._traces))]
        self._traces[spec] = [traced, replay.out_spec, self.checks]
        return self.eager(*args, **kwargs)


def _same(a: Any, b: Any) -> bool:
    """Bit-identical nested outputs (tensors equal in shape, dtype and every value)."""
    la: list[torch.Tensor] = []
    lb: list[torch.Tensor] = []
    try:
        if _structure(_flatten(a, la)) != _structure(_flatten(b, lb)):
            return False
    except TypeError:
        return False
    return all(x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y) for x, y in zip(la, lb))


def _structure(spec: tuple) -> tuple:
    """A flattened structure without the tensors' strides (outputs may differ in layout only)."""
    kind, *rest = spec
    if kind == "T":
        return ("T", rest[0], rest[2])
    if kind == "D":
        return ("D", rest[0], tuple((n, _structure(f)) for n, f in rest[1]))
    if kind in ("U", "L", "M"):
        items = rest[0]
        if kind == "M":
            return ("M", tuple((k, _structure(v)) for k, v in items))
        return (kind, tuple(_structure(v) for v in items))
    return spec


@contextmanager
def tf32_matmuls(enabled: bool) -> Iterator[None]:
    """Allow TF32 for fp32 matmuls inside the block only (restored after)."""
    if not enabled:
        yield
        return
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)
