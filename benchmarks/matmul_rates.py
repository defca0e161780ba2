"""What reduced precision buys on this CPU: one linear layer in float32, bf16 and int8.

    python benchmarks/matmul_rates.py --threads 2 --json results.json

Times ``tokens x dim -> 4*dim`` (default 4,096 x 384 -> 1,536: a Hiera MLP's first layer of
``sam2.1_hiera_small`` at its second stage) as

* ``fp32``: ``torch.nn.functional.linear`` in float32;
* ``bf16``: the same with bf16 input and weights (float32 accumulation: what the CPU fast path's
  recipe uses; emulated, and slow, on CPUs without AVX512-BF16 / AMX);
* ``int8-dynamic``: ``torch.ao`` dynamic quantisation (int8 weights per channel, activations
  quantised per call with one scale; fbgemm / x86), the lever the fast-path docs measured;
* ``int8-int-mm``: ``torch._int_mm`` on int8 operands alone (no quantisation cost), the raw
  int8 matmul torch offers; ``--no-int-mm`` skips it where it is known to be slow.

Each is the median of ``--repeats`` calls after one warm-up call, and is printed with its speed
against float32, the host's ISA and CPU name. The ratios decide what the fast path can gain
here; ``surgsam.engine.precision.measure_bf16_speedup`` is the engine's own (smaller) probe.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from surgsam.bench.paired import describe_cpu, machine_info
from surgsam.io.atomic import atomic_write_json


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def measure(tokens: int, dim: int, repeats: int, int_mm: bool = True) -> dict[str, float]:
    """Median milliseconds per call of each variant (keys as in the module docstring)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(tokens, dim, generator=g)
    lin = torch.nn.Linear(dim, 4 * dim)
    out: dict[str, float] = {}
    with torch.no_grad():
        out["fp32"] = _median_ms(lambda: lin(x), repeats)
        xb, wb, bb = x.bfloat16(), lin.weight.bfloat16(), lin.bias.bfloat16()
        out["bf16"] = _median_ms(lambda: torch.nn.functional.linear(xb, wb, bb), repeats)
        with warnings.catch_warnings():  # torch.ao's deprecation notices
            warnings.simplefilter("ignore")
            q = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear}, torch.qint8)
            out["int8-dynamic"] = _median_ms(lambda: q(x), repeats)
        if int_mm:
            xi = torch.randint(-127, 128, (tokens, dim), dtype=torch.int8, generator=g)
            wi = torch.randint(-127, 128, (dim, 4 * dim), dtype=torch.int8, generator=g)
            out["int8-int-mm"] = _median_ms(lambda: torch._int_mm(xi, wi), repeats)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=4096)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-int-mm", action="store_true", help="skip torch._int_mm")
    p.add_argument("--json", type=Path, help="also write the numbers here")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    ms = measure(a.tokens, a.dim, a.repeats, int_mm=not a.no_int_mm)
    info = machine_info("cpu")
    print(
        f"{a.tokens} x {a.dim} -> {4 * a.dim} linear, {a.threads} threads; {describe_cpu(info)}, torch {info['torch']}\n"
    )
    print("| variant | ms / call (median) | speed vs fp32 |\n|---|---|---|")
    for name, t in ms.items():
        print(f"| {name} | {t:.2f} | {ms['fp32'] / t:.2f}x |")
    if a.json:
        atomic_write_json(a.json, {"config": vars(a) | {"json": str(a.json)}, "machine": info, "ms": ms}, indent=1)


if __name__ == "__main__":
    main()
