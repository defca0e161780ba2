"""End-to-end referring evaluation (``surgsam eval --e2e --segmenter referring``) on tiny synthetic
Ref-EndoVis data: an oracle session with the real CIFS logic, the CLI with the untrained network,
the ablation script, and the EndoVis18 instrument / tissue split."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

from surgsam.data import open_dataset
from surgsam.data.synth import SynthConfig, generate
from surgsam.engine.state import FrameResult
from surgsam.eval.cli import register
from surgsam.eval.distributed import DistEnv, gather_payloads
from surgsam.eval.referring import (
    NEVER_FOUND,
    ReferringEvalSegmenter,
    ReferringRun,
    expression_passes,
    merge_same_text,
    run_referring,
)
from surgsam.referring.cifs import CIFS, CIFSConfig
from surgsam.referring.segmenter import ReferringStatus

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*argv: str) -> int:
    p = argparse.ArgumentParser(prog="surgsam")
    register(p.add_subparsers(dest="cmd", required=True))
    args = p.parse_args(list(argv))
    return args.func(args)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Two EndoVis18-style valid videos with exactly one tissue object each."""
    root = tmp_path_factory.mktemp("ref_eval")
    generate(
        root,
        SynthConfig(
            width=96, height=80, frames=8, version=18, tissue_objects=(1, 1), min_instruments=2, max_instruments=3
        ),
        videos=2,
        seed=5,
        valid=2,
        overwrite=True,
        progress=False,
    )
    return root


class OracleSession:
    """A referring session with ReferringSegmenter's verbs: each expression is 'detected' as its
    ground-truth mask with object score and IoU 1, fed to the REAL :class:`CIFS`; from the
    hand-over frame on it emits the ground truth, before it (and forever, for texts in
    ``never``) an empty mask."""

    def __init__(self, video, expressions, cifs: CIFSConfig, never: set[str], merged=None):
        self.video, self.exprs, self.cfg, self.never = video, expressions, cifs, never
        self.merged = merged or {}  # {obj_id: other ids its text also names}: the GT is their union
        self.t = -1
        self._status: dict[int, ReferringStatus] = {}
        self._cifs: dict[int, CIFS] = {}
        self._obj: dict[int, int] = {}

    def add_texts(self, texts):
        by_text = {}
        for e in self.exprs:
            by_text.setdefault(e.text, []).append(e)
        for i, text in texts.items():
            e = by_text[text].pop(0)  # session ids follow the expressions' order
            self._obj[i] = e.obj_id
            self._status[i] = ReferringStatus(i, text, added_frame=self.t + 1)
            self._cifs[i] = CIFS(self.cfg)

    def statuses(self):
        return list(self._status.values())

    def step(self, frame):
        self.t += 1
        lab = self.video.labels(self.t)
        masks, searching = [], []
        for i, s in self._status.items():
            gt = np.isin(lab, (self._obj[i], *self.merged.get(self._obj[i], ())))
            if s.found_frame is None and s.text not in self.never and gt.any():
                chosen = self._cifs[i].update(self.t, 20.0, 1.0)
                if chosen is not None:
                    s.stage, s.credible_frame, s.found_frame = "tracking", chosen.frame_idx, self.t
            if s.found_frame is None:
                searching.append(i)
                masks.append(np.zeros_like(gt))
            else:
                masks.append(gt)
        n = len(masks)
        return FrameResult(
            self.t,
            list(self._status),
            np.stack(masks),
            np.ones(n, np.float32),
            np.ones(n, np.float32),
            None,
            latency_ms=1.0,
            searching=searching,
        )


def oracle_factory(cifs: CIFSConfig, never: set[str] = frozenset(), merge: bool = True):
    """Sessions over the passes ``run_referring`` makes (shared texts merged unless ``merge``
    is False); each emits the ground truth of its expression's target."""
    passes: dict[str, list] = {}
    merged: dict[str, dict] = {}

    def factory(video):
        if video.name not in passes:
            exps, merged[video.name] = merge_same_text(video.expressions()) if merge else (video.expressions(), {})
            passes[video.name] = expression_passes(exps)
        return OracleSession(video, passes[video.name].pop(0), cifs, set(never), merged[video.name])

    return factory


def target(video, t: int, e) -> np.ndarray:
    """The ground truth of record ``e`` in frame ``t``: its object, or the union of the objects its text names."""
    return np.isin(video.labels(t), (e.obj_id, *e.merged_ids))


def never_found_expected(video, e) -> float:
    """J = F = Dice (x100) of an all-empty prediction: the share of frames where the GT is empty."""
    empty = [not target(video, t, e).any() for t in range(len(video))]
    return 100.0 * sum(empty) / len(empty)


def test_oracle_found_scores_100_and_never_found_scores_empty(data):
    ds = list(open_dataset(data, "valid"))
    tissue = {e.text for v in ds for e in v.expressions() if e.obj_id in (11, 12, 17)}
    assert len(tissue) >= 1
    cfg = CIFSConfig(object_score_threshold=0.0, iou_threshold=0.0, window=1)
    seg = ReferringEvalSegmenter(session_factory=oracle_factory(cfg, never=tissue), untrained=False)
    run = run_referring(ds, seg, "resurgsam2", progress=False)
    assert len(run.expressions) == sum(len(merge_same_text(v.expressions())[0]) for v in ds)
    vids = {v.name: v for v in ds}
    for e in run.expressions:
        v = vids[e.video]
        first = next(t for t in range(len(v)) if target(v, t, e).any())
        assert e.n_frames == len(v)  # resurgsam2: every frame, first and last kept
        if e.text in tissue:
            assert e.tracking_from is None and e.started == NEVER_FOUND and e.found_frame is None
            x = never_found_expected(v, e)
            assert e.J == pytest.approx(x) and e.F == pytest.approx(x) and e.Dice == pytest.approx(x)
        else:
            assert e.found_frame == e.credible_frame == first and e.tracking_from == first + 1
            assert e.J == pytest.approx(100.0) and e.F == pytest.approx(100.0) and e.JF == pytest.approx(100.0)
    s = run.result.summary()
    assert s["instruments"]["J&F"] == pytest.approx(100.0)
    assert s["tissue"]["n_objects"] == len(ds)  # never-found expressions are scored, not skipped
    assert s["tissue"]["J&F"] < 100.0
    assert "never found" in run.table()
    t = run.timing()
    assert t["frames"] == sum(len(v) for v in ds) and t["detection_frames"] + t["tracking_frames"] == t["frames"]
    assert t["detection_frames"] >= len(ds)  # the tissue expressions search through every frame


def test_cifs_window_delays_the_hand_over_and_empty_frames_count(data):
    ds = list(open_dataset(data, "valid"))
    v = ds[0]
    cfg = CIFSConfig(object_score_threshold=0.0, iou_threshold=0.0, window=3)
    run = run_referring([v], ReferringEvalSegmenter(session_factory=oracle_factory(cfg)), progress=False)
    checked = 0
    for e in run.expressions:
        present = [t for t in range(len(v)) if target(v, t, e).any()]
        if present[:3] != list(range(present[0], present[0] + 3)):
            continue  # this object's first visible frames are not consecutive: skip the exact check
        assert e.found_frame == present[0] + 2 and e.credible_frame == present[0] + 2
        # frames before the hand-over are emitted empty: exact J from the ground truth
        js = []
        for t in range(len(v)):
            g = target(v, t, e)
            if t < e.found_frame:
                js.append(1.0 if not g.any() else 0.0)
            else:
                js.append(1.0)
        assert e.J == pytest.approx(100.0 * np.mean(js))
        assert e.J < 100.0 if any(target(v, t, e).any() for t in range(e.found_frame)) else True
        checked += 1
    assert checked >= 1


def test_repeated_object_expressions_get_their_own_pass(data, tmp_path):
    ds = list(open_dataset(data, "valid"))
    v = ds[0]
    e0 = v.expressions()[0]
    extra = type(e0)("99", e0.text + " again", e0.obj_id, e0.first_frame)
    v._expressions = list(v.expressions()) + [extra]
    try:
        cfg = CIFSConfig(object_score_threshold=0.0, iou_threshold=0.0, window=1)
        run = run_referring(
            [v], ReferringEvalSegmenter(session_factory=oracle_factory(cfg)), progress=False, save_dir=tmp_path / "pred"
        )
    finally:
        v._expressions = v._expressions[:-1]
    rec = [e for e in run.expressions if e.exp_id == "99"]
    assert len(rec) == 1 and rec[0].video == f"{v.name}#1" and rec[0].JF == pytest.approx(100.0)
    assert (tmp_path / "pred" / f"{v.name}#1").is_dir()


def test_a_text_naming_several_objects_is_one_target(data, tmp_path):
    ds = list(open_dataset(data, "valid"))
    shared = [(v, e) for v in ds for e in v.expressions() if merge_same_text(v.expressions())[1].get(e.obj_id)]
    assert shared, "the fixture needs two instruments of one type and action in one video"
    v, e = shared[0]
    others = merge_same_text(v.expressions())[1][e.obj_id]
    assert all(x.text == e.text for x in v.expressions() if x.obj_id in others)
    cfg = CIFSConfig(object_score_threshold=0.0, iou_threshold=0.0, window=1)
    run = run_referring([v], ReferringEvalSegmenter(session_factory=oracle_factory(cfg)), progress=False)
    rec = next(r for r in run.expressions if r.obj_id == e.obj_id)
    assert rec.merged_ids == list(others) and rec.objects == "+".join(map(str, (e.obj_id, *others)))
    assert rec.JF == pytest.approx(100.0)  # the union was predicted and the union is the ground truth
    assert not any(r.obj_id in others for r in run.expressions)  # no separate rows for the merged objects
    assert run.settings["merge_same_text"] is True
    run.write(tmp_path)
    assert f",{rec.objects}," in (tmp_path / "expressions.csv").read_text()
    # without merging, every object of the text is its own expression against its own mask
    apart = run_referring(
        [v], ReferringEvalSegmenter(session_factory=oracle_factory(cfg, merge=False)), progress=False, merge_texts=False
    )
    assert len(apart.expressions) == len(v.expressions())
    mine = next(r for r in apart.expressions if r.obj_id == e.obj_id)
    assert mine.merged_ids == [] and mine.JF == pytest.approx(100.0)  # the per-object oracle is exact


def test_merge_same_text_keeps_objects_with_texts_of_their_own():
    from surgsam.data.refendovis import Expression

    exps = [
        Expression("0", "suction is idle", 1, 0),
        Expression("1", "suction is idle", 2, 0),
        Expression("2", "clip applier is idle", 3, 0),
        Expression("3", "clip applier is idle", 4, 0),
        Expression("4", "the clip applier on the left", 4, 0),
    ]
    kept, extra = merge_same_text(exps)
    assert [e.exp_id for e in kept] == ["0", "2", "3", "4"] and extra == {1: (2,)}


def test_run_roundtrip_merge_and_gather(data):
    ds = list(open_dataset(data, "valid"))
    cfg = CIFSConfig(object_score_threshold=0.0, iou_threshold=0.0, window=1)
    parts = [
        run_referring([v], ReferringEvalSegmenter(session_factory=oracle_factory(cfg)), progress=False) for v in ds
    ]
    merged = ReferringRun.merge([ReferringRun.from_dict(json.loads(json.dumps(p.to_dict()))) for p in parts])
    whole = run_referring(ds, ReferringEvalSegmenter(session_factory=oracle_factory(cfg)), progress=False)
    assert merged.result.summary()["all"]["J&F"] == pytest.approx(whole.result.summary()["all"]["J&F"])
    assert merged.frames == whole.frames and len(merged.expressions) == len(whole.expressions)
    assert gather_payloads({"a": 1}, DistEnv()) == [{"a": 1}]


def test_cli_referring_untrained_writes_tables(data, tmp_path, capsys):
    out = tmp_path / "out"
    assert (
        run_cli(
            "eval",
            "--e2e",
            "--segmenter",
            "referring",
            "--data",
            str(data),
            "--split",
            "valid",
            "--image-size",
            "64",
            "--memory",
            "fifo",
            "--no-cifs",
            "--no-progress",
            "--out",
            str(out),
        )
        == 0
    )
    cap = capsys.readouterr()
    assert "UNTRAINED" in cap.out and "untrained" in cap.err
    assert "protocol resurgsam2" in cap.out and "instruments" in cap.out and "tissue" in cap.out
    for f in ("objects.csv", "videos.csv", "summary.csv", "results.json", "expressions.csv", "referring.json"):
        assert (out / f).is_file(), f
    doc = json.loads((out / "referring.json").read_text())
    assert doc["settings"]["untrained"] is True and doc["settings"]["memory"] == "fifo"
    assert doc["settings"]["cifs"] is False and doc["settings"]["image_size"] == 64
    assert doc["expressions_total"] == len(doc["expressions"]) > 0
    assert all(e["started"] == NEVER_FOUND or int(e["started"]) >= 1 for e in doc["expressions"])
    lines = (out / "expressions.csv").read_text().splitlines()
    assert lines[0].startswith("video,exp_id,obj_id,expression,group,credible_frame,found_frame,tracking_from")
    assert len(lines) == 1 + doc["expressions_total"]
    assert doc["timing"]["frames"] == 16 and doc["timing"]["fps"] > 0


def test_cli_referring_needs_ref_layout(tmp_path, capsys):
    root = tmp_path / "vos"
    generate(
        root, SynthConfig(width=64, height=64, frames=3), videos=1, seed=1, layout="vos", overwrite=True, progress=False
    )
    assert (
        run_cli("eval", "--e2e", "--segmenter", "referring", "--data", str(root), "--image-size", "64", "--no-progress")
        == 2
    )
    assert "Ref-EndoVis" in capsys.readouterr().err


def test_ablation_script_prints_four_rows(data, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("referring_ablation", ROOT / "benchmarks" / "referring_ablation.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert (
        mod.main(
            [
                "--data",
                str(data),
                "--split",
                "valid",
                "--image-size",
                "64",
                "--videos",
                "seq_1",
                "--no-progress",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    rows = [ln for ln in out.splitlines() if ln.startswith("| ") and "variant" not in ln]
    assert [r.split("|")[1].strip() for r in rows] == ["cifs+dlm", "cifs+fifo", "nocifs+dlm", "nocifs+fifo"]
    assert "UNTRAINED" in out
    doc = json.loads((tmp_path / "ablation.json").read_text())
    assert doc["untrained"] is True and len(doc["rows"]) == 4
    for r in doc["rows"]:
        assert r["J&F"] is not None and not math.isnan(r["J&F"]) and r["FPS"] > 0
    assert (tmp_path / "ablation.csv").read_text().count("\n") == 5
    assert (tmp_path / "nocifs+fifo" / "expressions.csv").is_file()


class OverlappingSession:
    """Every expression is found on frame 0 and emits its object's ground truth with logit 5;
    the expression of the lowest object id also claims every other object's pixels, with logit
    1. The masks overlap; resolved by the logits (SAM 2's rule) each pixel goes back to its own
    object."""

    def __init__(self, video):
        self.video, self.t, self._obj, self._status = video, -1, {}, {}

    def add_texts(self, texts):
        by_text = {}
        for e in self.video.expressions():
            by_text.setdefault(e.text, []).append(e)
        for i, text in texts.items():
            self._obj[i] = by_text[text].pop(0).obj_id
            self._status[i] = ReferringStatus(i, text, added_frame=0)

    def statuses(self):
        return list(self._status.values())

    def step(self, frame):
        import torch

        self.t += 1
        lab = self.video.labels(self.t)
        greedy = min(self._status, key=lambda i: self._obj[i])
        masks, logits = [], []
        for i, s in self._status.items():
            s.stage, s.credible_frame, s.found_frame = "tracking", 0, 0
            own = lab == self._obj[i]
            m = own | ((lab > 0) & ~own) if i == greedy else own
            masks.append(m)
            logits.append(np.where(own, 5.0, np.where(m, 1.0, -10.0)).astype(np.float32))
        n = len(masks)
        low = torch.from_numpy(np.stack(logits))[:, None]  # at the frame's size: upsampling is the identity
        return FrameResult(
            self.t,
            list(self._status),
            np.stack(masks),
            np.ones(n, np.float32),
            np.ones(n, np.float32),
            low,
            latency_ms=1.0,
        )


def test_overlapping_expressions_are_resolved_by_logit_and_scored_as_written(data, tmp_path):
    """The referring evaluation scores the one-id-per-pixel map it writes: overlapping
    expressions are resolved with their logits, so every expression here scores 100, and the
    saved PNGs re-scored give the same numbers (the old code scored the greedy expression's own
    mask, overlaps included, and wrote the lowest id where masks overlapped)."""
    from surgsam.data import read_mask
    from surgsam.eval import evaluate_video

    v = next(v for v in open_dataset(data, "valid") if len({e.obj_id for e in v.expressions()}) >= 2)
    seg = ReferringEvalSegmenter(session_factory=lambda video: OverlappingSession(video), untrained=False)
    run = run_referring([v], seg, "resurgsam2", save_dir=tmp_path, progress=False, merge_texts=False)
    first = [r for r in run.expressions if r.video == v.name]
    assert len(first) >= 2 and all(r.JF == pytest.approx(100.0) for r in first)
    written = [read_mask(tmp_path / v.name / f"{name}.png") for name in v.frame_names]
    ids = [r.obj_id for r in first]
    again = evaluate_video(v, written, "resurgsam2", object_ids=ids)
    assert {o.obj_id: o.JF for o in again.objects} == {o.obj_id: o.JF for o in run.result.objects if o.video == v.name}
    for t, w in enumerate(written):
        lab = v.labels(t)
        np.testing.assert_array_equal(w, np.where(np.isin(lab, ids), lab, 0))
