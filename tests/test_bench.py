"""``surgsam bench``: runs end to end (tiny model, few frames), reports ratios from its clock,
mask agreement and session memory; Meta's and transformers' predictors hold our weights and
give our masks. No timing assertions: clocks are injected where ratios are checked."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from surgsam.bench.paired import (
    BenchConfig,
    BenchResult,
    OursRunner,
    held_bytes,
    parse_variant,
    reference_of,
    run_bench,
)
from surgsam.engine import fastpath
from surgsam.cli import main
from surgsam.modeling import build_model


def test_bench_command_on_the_nano(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = main(
        [
            "bench",
            "--model",
            "nano",
            "--image-size",
            "64",
            "--frames",
            "2",
            "--warmup",
            "0",
            "--objects",
            "1",
            "2",
            "--variants",
            "fifo",
            "fifo-fast",
            "fifo-bf16",
            "fifo-static",
            "efp",
            "meta",
            "hf",
            "--threads",
            "1",
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "| variant | objects | ms/frame (median)" in text and "| fifo-fast | 2 |" in text
    assert "meta: skipped (Meta ships no config for nano)" in text and "hf: skipped" in text
    doc = json.loads(out.read_text())
    assert doc["baseline"] == "fifo" and set(doc["skipped"]) == {"meta", "hf"}
    rows = {(r["variant"], r["objects"]): r for r in doc["results"]}
    assert set(rows) == {(v, k) for v in ("fifo", "fifo-fast", "fifo-bf16", "fifo-static", "efp") for k in (1, 2)}
    for r in rows.values():
        assert len(r["latencies_ms"]) == 2 and r["session_mib"] > 0
    # the nano keeps float32 under auto: the fast variant is the float32 engine
    assert rows[("fifo-fast", 2)]["iou_mean"] == rows[("fifo-fast", 2)]["iou_min"] == 1.0
    assert "64-wide" in rows[("fifo-fast", 1)]["notice"]
    # eager bf16 autocast: compared with the float32 engine, close but not bit-equal
    bf16 = rows[("fifo-bf16", 2)]
    assert bf16["agreement_ref"] == "fifo" and 0.95 <= bf16["iou_min"] <= 1.0  # 0.99 here
    # per object: one mean per prompted object, whose mean over objects is the overall mean
    assert len(bf16["iou_per_object"]) == 2 and min(bf16["iou_per_object"]) >= bf16["iou_min"]
    assert sum(bf16["iou_per_object"]) / 2 == pytest.approx(bf16["iou_mean"])
    assert len(rows[("fifo-bf16", 1)]["iou_per_object"]) == 1 and rows[("fifo", 2)]["iou_per_object"] == []
    assert "- fifo-bf16, 2 objects: mask IoU vs fp32 per object " in text
    assert rows[("efp", 1)]["agreement_ref"] == "efp" and rows[("efp", 1)]["iou_mean"] is None
    # the static-shape memory alone: padded and masked, the float32 engine's masks
    static = rows[("fifo-static", 2)]
    assert static["agreement_ref"] == "fifo" and static["iou_min"] >= 0.999
    nano = build_model("nano", image_size=64)
    assert OursRunner(nano, "fifo", "static", 4).seg.static_memory
    compiled32 = OursRunner(nano, "fifo", "compiled-fp32", 4).seg
    assert compiled32.static_memory and compiled32.fast_path.compile and compiled32.fast_path.precision == "fp32"
    assert OursRunner(nano, "fifo", "trace", 4).seg.fast_path.trace
    recipe = OursRunner(nano, "fifo", "fast-bf16-trace", 4).seg.fast_path
    assert recipe.trace and (recipe.matmul == "bf16" or recipe.precision == "bf16")  # the recipe, or bf16 autocast


def test_bench_in_blocks_keeps_frames_paired(monkeypatch):
    """``block=N``: each variant runs N frames in a row (turns rotating by block); every
    variant still sees every frame once, in order, and the masks are compared frame by frame
    (the traced float32 engine gives exactly the float32 masks)."""
    calls: list[str] = []
    steps: list[tuple[bool, int]] = []  # (traced?, frame index) of every step, in call order
    ticks = itertools.count()
    step = OursRunner.step

    def recorded(self, frame):
        out = step(self, frame)
        steps.append((self.seg.fast_path.trace, self.seg.frame_idx))
        return out

    monkeypatch.setattr(OursRunner, "step", recorded)
    cfg = BenchConfig(
        model="nano", image_size=64, frames=7, warmup=0, objects=(2,), variants=("fifo", "fifo-trace"), block=3
    )
    res = run_bench(cfg, clock=lambda: float(next(ticks)), log=calls.append)
    # frames 0-2, 3-5, 6-7 (frame 0 is the prompt, not a step); the first turn rotates by block
    assert steps == [(False, 1), (False, 2), (True, 1), (True, 2)] + [(True, t) for t in (3, 4, 5)] + [
        (False, t) for t in (3, 4, 5)
    ] + [(False, 6), (False, 7), (True, 6), (True, 7)]
    by = {r.variant: r for r in res.results}
    assert [len(by[v].latencies_ms) for v in ("fifo", "fifo-trace")] == [7, 7]
    assert by["fifo-trace"].iou_min == 1.0 and by["fifo-trace"].agreement_ref == "fifo"
    assert len(calls) == 7 and calls[0].startswith("objects=2 frame 1:")
    assert "in turns of 3 frames" in res.table()
    with pytest.raises(ValueError, match="block"):
        BenchConfig(block=0)


def test_ratios_come_from_the_clock_and_meta_hf_give_our_masks():
    pytest.importorskip("sam2")
    pytest.importorskip("transformers")
    ticks = itertools.count()
    cfg = BenchConfig(
        model="sam2.1_hiera_tiny", image_size=128, frames=2, warmup=0, objects=(2,), variants=("fifo", "meta", "hf")
    )
    res = run_bench(cfg, clock=lambda: float(next(ticks)))
    assert res.baseline == "meta" and not res.skipped
    by = {r.variant: r for r in res.results}
    for v in ("fifo", "meta", "hf"):
        assert by[v].latencies_ms == [1000.0, 1000.0] and by[v].vs_baseline == 1.0  # one tick per step
    for v in ("meta", "hf"):
        assert by[v].agreement_ref == "fifo" and by[v].iou_min is not None and by[v].iou_min >= 0.99, by[v]
    # Meta's state holds the preloaded clip (3 frames x 3 x 128 x 128 float32 at least)
    assert by["meta"].session_mib * 2**20 > 3 * 3 * 128 * 128 * 4 > 0 < by["fifo"].session_mib
    assert "meta" in res.table() and "reference" in res.table()


def test_variant_names_and_config_checks():
    assert parse_variant("efp-fast") == ("efp", "fast") and parse_variant("meta") == ("meta", "")
    assert parse_variant("fifo-bf16") == ("fifo", "bf16") and parse_variant("dlm-compiled") == ("dlm", "compiled")
    assert parse_variant("efp-static") == ("efp", "static")
    assert parse_variant("fifo-compiled-fp32") == ("fifo", "compiled-fp32")
    assert (
        parse_variant("efp-fast-bf16-trace") == ("efp", "fast-bf16-trace") and parse_variant("dlm-trace")[1] == "trace"
    )
    assert reference_of("dlm-fast") == "dlm" and reference_of("hf") == "fifo"
    with pytest.raises(ValueError, match="unknown variant"):
        parse_variant("fifo-turbo")
    with pytest.raises(ValueError, match="objects"):
        BenchConfig(objects=(0,))
    with pytest.raises(ValueError, match="repeat"):
        BenchConfig(variants=("fifo", "fifo"))


def test_held_bytes_counts_each_storage_once():
    import torch

    t = torch.zeros(10, 10)
    state = {"a": t, "b": [t, t[2:]], "c": (torch.ones(4, dtype=torch.uint8),), "m": torch.nn.Linear(100, 100)}
    assert held_bytes(state) == 400 + 4


def test_hf_config_sub_configs_are_built_as_their_own_classes():
    """transformers 5.17 turned a dict ``mask_decoder_config`` into a prompt-encoder config (the
    GPU machine's bench crashed building the decoder); config objects are taken as given."""
    pytest.importorskip("transformers")
    from transformers.models.sam2_video.configuration_sam2_video import (
        Sam2VideoMaskDecoderConfig,
        Sam2VideoPromptEncoderConfig,
    )

    from surgsam.bench.hf import hf_config
    from surgsam.modeling import get_preset

    cfg = get_preset("sam2.1_hiera_tiny")
    hf = hf_config(cfg)
    assert isinstance(hf.mask_decoder_config, Sam2VideoMaskDecoderConfig)
    assert isinstance(hf.prompt_encoder_config, Sam2VideoPromptEncoderConfig)
    assert hf.mask_decoder_config.num_hidden_layers == cfg.decoder_depth
    assert hf.mask_decoder_config.attention_downsample_rate == 2
    assert hf.prompt_encoder_config.patch_size == cfg.backbone_stride


def test_readme_gpu_tables_are_the_saved_runs():
    """The README's H200 tables are the saved `surgsam bench --json` files, row for row."""
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    for name in ("fp32", "fast"):
        data = json.loads((root / f"benchmarks/results_2026-12-04_gpu_h200_bench_{name}.json").read_text())
        res = BenchResult.from_json(data)
        assert res.machine["gpu"] == "NVIDIA H200" and res.config.device == "cuda"
        rows = [ln for ln in res.table().splitlines() if ln.startswith("| ") and ln[2:9] != "variant"]
        assert len(rows) == len(data["results"]) >= 8
        for row in rows:
            assert row in readme, row
    fast = [r for r in res.results if r.variant.endswith("-fast")]
    slowest = max(r.vs_baseline for r in fast)
    assert f"{slowest:.2f}x" in readme and fastpath.CUDA_COMPILED_SPEED == round(slowest, 2)


def test_docs_nano_lever_table_is_the_saved_run():
    """docs/fast_path_and_export.md's table of the nano on the AMD EPYC is the saved
    `benchmarks/cpu_levers.py --json` file, row for row, as the script prints it."""
    root = Path(__file__).resolve().parents[1]
    doc = (root / "docs/fast_path_and_export.md").read_text()
    data = json.loads((root / "benchmarks/results_2026-12-04_cpu_levers_nano_amd.json").read_text())
    rows = data["rows"]
    assert len(rows) == 10 and {r["objects"] for r in rows} == {1, 4}
    for r in rows:
        ref = next(x for x in rows if x["objects"] == r["objects"] and x["variant"] == "fp32")
        up = f"{ref['wall_ms'] / r['wall_ms']:.2f}x / {ref['cpu_ms'] / r['cpu_ms']:.2f}x"
        iou = "exact" if r["exact_vs_fp32"] else f"{r['iou_mean']:.4f} / {r['iou_min']:.4f}"
        meds = r["run_medians_wall_ms"]
        line = (
            f"| {r['objects']} | {r['variant']} | {r['wall_ms']:.1f} | {1000 / r['wall_ms']:.1f} | {r['cpu_ms']:.1f} | "
            f"{up} | {min(meds):.1f}-{max(meds):.1f} | {iou} |"
        )
        assert line in doc, line
    fps = {r["variant"]: r["fps"] for r in rows if r["objects"] == 4}
    assert f"runs **{fps['fp32']:.0f} FPS here, {fps['trace']:.0f} with traces**" in doc
    parts = data["breakdown"]["4/fp32"]
    said = ", ".join(f"{name} {parts[name]:.1f}" for name in ("memory attention", "memory encoder", "image encoder"))
    assert said in doc.replace("\n", " "), said


def test_nano_bench_table_is_the_saved_run():
    """The README's and docs' `surgsam bench --block 20` table of the nano on the AMD EPYC is
    the saved JSON, row for row, and the FPS the text states are that run's."""
    root = Path(__file__).resolve().parents[1]
    data = json.loads((root / "benchmarks/results_2026-12-05_bench_nano_amd.json").read_text())
    res = BenchResult.from_json(data)
    assert res.config.block == 20 and res.config.checkpoint == "surgsam-nano-synth" and res.machine["cpu"] == "AMD EPYC"
    rows = [ln for ln in res.table().splitlines() if ln.startswith("| ") and ln[2:9] != "variant"]
    assert len(rows) == len(data["results"]) == 8
    readme = (root / "README.md").read_text()
    doc = (root / "docs/fast_path_and_export.md").read_text()
    for row in rows:
        assert row in readme and row in doc, row
    fps = {r.variant: r.fps for r in res.results if r.objects == 4}
    said = f"{fps['fifo']:.1f} FPS by default, {fps['fifo-trace']:.1f} FPS with `trace=True`"
    assert said in readme.replace("\n", " "), said
    assert f"**{fps['fifo-fast-bf16-trace']:.0f} FPS with the bf16 recipe and traces**" in readme.replace("\n", " ")
    assert fps["fifo-fast-bf16-trace"] >= 40 > fps["fifo"]


def test_readme_hiera_small_rerun_ratios_are_the_saved_runs():
    """The README's session-17 rerun of the hiera_small CPU table (bf16 at about 2x float32):
    the fast path's ratios against Meta it quotes are the saved JSON files'."""
    root = Path(__file__).resolve().parents[1]
    readme = " ".join((root / "README.md").read_text().split())
    got = {}
    for k in (1, 2):
        res = BenchResult.from_json(
            json.loads((root / f"benchmarks/results_2026-12-05_bench_small_amd_{k}obj.json").read_text())
        )
        assert res.baseline == "meta" and res.config.objects == (k,) and "2.0x fp32" in res.results[1].notice
        got[k] = {r.variant: r.vs_baseline for r in res.results}
    said = (
        f"`fifo-fast` {got[1]['fifo-fast']:.2f}x and `efp-fast` {got[1]['efp-fast']:.2f}x Meta with one object, "
        f"{got[2]['fifo-fast']:.2f}x and {got[2]['efp-fast']:.2f}x with two"
    )
    assert said in readme, said


def test_zen3_figures_are_the_saved_runs():
    """The README's and docs' figures for the AVX2-only EPYC (Zen 3): the hiera_small ratios,
    the nano's FPS and the per-layer matmul table are the saved JSON files', and those runs
    record the host they describe (no bf16 instructions, AVX2)."""
    root = Path(__file__).resolve().parents[1]
    readme = " ".join((root / "README.md").read_text().split())
    doc = (root / "docs/fast_path_and_export.md").read_text()
    small = BenchResult.from_json(
        json.loads((root / "benchmarks/results_2026-12-05_bench_small_zen3_1obj.json").read_text())
    )
    nano = BenchResult.from_json(json.loads((root / "benchmarks/results_2026-12-05_bench_nano_zen3.json").read_text()))
    for res in (small, nano):
        m = res.machine
        assert m["cpu_isa"] == "AVX2" and not m["cpu_bf16_instructions"] and m["cpu_family_model"] == "25/1"
        assert "(family/model 25/1, AVX2, no bf16 instructions)" in res.table().splitlines()[0]
    r = {x.variant: x for x in small.results}
    assert "0.1x fp32" in r["fifo-fast"].notice and "SLOWER than float32" in r["fifo-fast-bf16"].notice
    said = (
        f"`fifo-fast` {r['fifo-fast'].vs_baseline:.2f}x Meta, the float32 engine {r['fifo'].vs_baseline:.2f}x), "
        f"and the recipe asked for by name (`fifo-fast-bf16`) runs at {r['fifo-fast-bf16'].vs_baseline:.2f}x Meta"
    )
    assert said in readme, said
    assert (
        f"runs a frame in {r['fifo-fast-bf16'].median_ms / 1000:.1f} s instead of {r['fifo'].median_ms / 1000:.2f} s"
        in (" ".join(doc.split()))
    )
    fps = {(x.variant, x.objects): x.fps for x in nano.results}
    said = (
        f"the nano runs {fps['fifo', 4]:.1f} FPS with 4 objects by default and {fps['fifo-trace', 4]:.1f} with traces "
        f"({fps['fifo', 1]:.1f} / {fps['fifo-trace', 1]:.1f} with one object"
    )
    assert said in readme, said
    rates = json.loads((root / "benchmarks/results_2026-12-05_matmul_rates_zen3.json").read_text())
    assert rates["machine"]["cpu_isa"] == "AVX2"
    for name, ms in rates["ms"].items():
        row = f"| {name} | {ms:.2f} | {rates['ms']['fp32'] / ms:.2f}x |"
        assert row in doc, row
