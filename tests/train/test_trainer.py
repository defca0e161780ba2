"""The training loop: exact resume, logs and checkpoints, the CLI, 2-process DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import torch

from conftest import FRAMES, SIZE
from surgsam.modeling import build_model, get_preset
from surgsam.modeling.sam2 import SAM2Model
from surgsam.train import PromptConfig, Trainer, make_config

SRC = Path(__file__).resolve().parents[2] / "src"


def _cfg(out, data, steps=4, **kw):
    cfg = make_config(
        "nano-synth",
        data=(str(data),),
        out=str(out),
        steps=steps,
        image_size=SIZE,
        image_every=2,
        image_batch_size=2,
        ckpt_every=2,
        progress=False,
        **kw,
    )
    return replace(
        cfg, clip=replace(cfg.clip, num_frames=FRAMES, max_objects=2), prompts=PromptConfig(num_correction_clicks=2)
    )


def _model():
    torch.manual_seed(0)
    return SAM2Model(get_preset("nano", image_size=SIZE))


def test_resume_reproduces_an_uninterrupted_run(tmp_path, synth_root, sampler):
    full = Trainer(_cfg(tmp_path / "a", synth_root), model=_model(), sampler=sampler)
    res = full.train()
    assert res.step == 4 and (tmp_path / "a" / "model.pt").is_file()
    first = Trainer(_cfg(tmp_path / "b", synth_root), model=_model(), sampler=sampler)
    first.train(until=2)
    assert not (tmp_path / "b" / "model.pt").exists()
    # a run killed after its last checkpoint logged steps that the resumed run does again
    with (tmp_path / "b" / "log.jsonl").open("a") as f:
        f.write(json.dumps({"step": 3, "loss": -1.0}) + "\n")
    resumed = Trainer(_cfg(tmp_path / "b", synth_root), model=_model(), sampler=sampler, resume=True)
    assert resumed.step == 2
    resumed.train()
    for (n, p), q in zip(full.model.named_parameters(), resumed.model.parameters()):
        assert torch.equal(p, q), n
    sa, sb = full.optimizer.state_dict(), resumed.optimizer.state_dict()
    assert sa["state"].keys() == sb["state"].keys()
    for k in sa["state"]:
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(sa["state"][k][name], sb["state"][k][name]), (k, name)
    assert [g["lr"] for g in full.optimizer.param_groups] == [g["lr"] for g in resumed.optimizer.param_groups]
    # the logs agree step by step (the resumed run drops the stale lines, then appends)
    la = [json.loads(x) for x in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lb] == [1, 2, 3, 4]
    assert [r["loss"] for r in la] == [r["loss"] for r in lb]
    assert [r["batch"] for r in la] == ["video", "image", "video", "image"]
    assert {"step", "loss", "loss_mask", "loss_dice", "loss_iou", "loss_class", "lr", "step_time"} <= set(la[0])
    # checkpoints are ordinary surgsam checkpoints
    m = build_model(checkpoint=tmp_path / "a" / "model.pt")
    assert m.cfg.name == "nano" and torch.equal(m.no_mem_embed, full.model.no_mem_embed.cpu())
    m = build_model(checkpoint=tmp_path / "a" / "checkpoints" / "step_0000004.pt")
    assert torch.equal(m.no_mem_embed, full.model.no_mem_embed.cpu())


def test_cli_train(tmp_path, synth_root, capsys):
    from surgsam.cli import main

    out = tmp_path / "cli"
    rc = main(
        [
            "train",
            "--recipe",
            "nano-synth",
            "--data",
            str(synth_root),
            "--out",
            str(out),
            "--steps",
            "1",
            "--image-size",
            str(SIZE),
            "--frames",
            str(FRAMES),
            "--max-objects",
            "1",
            "--freeze",
            "image_encoder",
            "--point-prob",
            "0.25",
            "--iou-loss",
            "mse",
            "--exit-prob",
            "0.2",
            "--absent-weight",
            "4",
            "--no-progress",
        ]
    )
    assert rc == 0
    # the 1-step run never leaves the recipe's 300-step warm-up: one line says so (issue 18)
    warned = [x for x in capsys.readouterr().err.splitlines() if "warm-up" in x]
    assert len(warned) == 1 and "whole 1-step run falls inside the 300-step" in warned[0]
    assert (out / "model.pt").is_file() and (out / "checkpoints" / "latest.json").is_file()
    rec = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    assert rec["step"] == 1 and rec["objects"] == 1
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["optim"]["freeze"] == ["image_encoder"] and saved["recipe"] == "nano-synth"
    assert saved["clip"]["entry_prob"] == 0.3 and saved["clip"]["exit_prob"] == 0.2  # recipe's, ours
    assert saved["prompts"]["prob_point_input"] == 0.25 and saved["loss"]["iou_use_l1"] is False
    assert saved["loss"]["weight_absent"] == 4.0
    bad = ["train", "--recipe", "nano-synth", "--data", str(synth_root), "--out", str(out / "x")]
    assert main(bad + ["--absent-weight", "-1"]) == 2
    assert "weight_absent must be >= 0, got -1.0" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "--recipe",
                "nano-synth",
                "--data",
                str(synth_root),
                "--out",
                str(out / "x"),
                "--point-prob",
                "1.5",
            ]
        )
        == 2
    )
    assert (
        main(
            [
                "train",
                "--recipe",
                "nano-synth",
                "--data",
                str(synth_root),
                "--out",
                str(out / "x"),
                "--entry-prob",
                "1.5",
            ]
        )
        == 2
    )
    assert (
        main(
            [
                "train",
                "--recipe",
                "nano-synth",
                "--data",
                str(synth_root),
                "--out",
                str(out / "x"),
                "--entry-prob",
                "0.6",
                "--exit-prob",
                "0.5",
            ]
        )
        == 2
    )


def test_ddp_two_processes_keep_identical_parameters(tmp_path, synth_root):
    script = tmp_path / "ddp_run.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(SRC)!r})
        from dataclasses import replace
        from surgsam.train import make_config, Trainer, PromptConfig
        cfg = make_config("nano-synth", data=({str(synth_root)!r},), out={str(tmp_path / "ddp")!r}, steps=2,
                          image_size={SIZE}, image_every=2, image_batch_size=1, progress=False, threads=1,
                          ckpt_every=100)
        cfg = replace(cfg, clip=replace(cfg.clip, num_frames={FRAMES}, max_objects=1),
                      prompts=PromptConfig(num_correction_clicks=1))
        t = Trainer(cfg)
        assert t.world == 2
        t.train()
        torch.save({{k: v.detach().cpu() for k, v in t.model.state_dict().items()}},
                   {str(tmp_path)!r} + f"/rank{{t.rank}}.pt")
        torch.distributed.destroy_process_group()
    """)
    )
    env = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    init = _model().state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert any(not torch.equal(a[k], init[k]) for k in a), "the run did not update the model"
    logs = [json.loads(x) for x in (tmp_path / "ddp" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs] == [1, 2]


def test_process_device_gives_cuda_an_index(monkeypatch):
    """``--device cuda`` crashed on a GPU machine: torch.cuda.set_device rejects a CUDA device
    without an index. A bare "cuda" is this process's GPU (its local rank under torchrun), for
    training and evaluation alike."""
    from surgsam.runtime import process_device

    assert process_device("cuda", 0) == torch.device("cuda", 0)
    assert process_device("cuda", 3) == torch.device("cuda", 3)
    assert process_device("cuda:1", 0) == torch.device("cuda", 1)
    assert process_device("cpu", 2) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert process_device(None, 2) == torch.device("cuda", 2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert process_device(None, 2) == torch.device("cpu")
