"""Clip sampler over a synthetic Ref-EndoVis-layout dataset."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import FRAMES, SIZE
from surgsam.train import ClipConfig, ClipSampler, collate, open_datasets, swap_left_right
from surgsam.train.clips import epoch_index


def test_clip_shapes_objects_and_normalisation(sampler, nano):
    assert sampler.num_clips > 0 and sampler.num_images > 0
    for i in range(min(6, sampler.num_clips)):
        c = sampler.clip(i, np.random.default_rng(i))
        k = len(c.obj_ids)
        assert c.frames.shape == (FRAMES, 3, SIZE, SIZE) and c.frames.dtype == torch.float32
        assert c.masks.shape == (FRAMES, k, SIZE, SIZE) and c.masks.dtype == torch.bool
        assert 1 <= k <= 2 and len(c.texts) == k and all(isinstance(t, str) for t in c.texts)
        assert (c.masks[0].flatten(1).sum(1) >= 4).all(), "objects must be visible in the first frame"
    # frames are resized and normalised exactly like the engine's SAM2Model.preprocess
    c = sampler.clip(0, np.random.default_rng(0))
    video = sampler.videos[sampler.windows[0][0]]
    raw = torch.from_numpy(np.stack([video.frames[t] for t in c.frame_indices])).permute(0, 3, 1, 2)
    if c.flipped:
        raw = raw.flip(-1)
    assert sampler.cfg.frame_resize == "pil"
    torch.testing.assert_close(c.frames, nano.preprocess(raw, resize="pil"), rtol=0, atol=1e-6)
    old = ClipSampler([sampler.videos], replace(sampler.cfg, frame_resize="antialias")).clip(
        0, np.random.default_rng(0)
    )
    torch.testing.assert_close(old.frames, nano.preprocess(raw, resize="antialias"), rtol=0, atol=1e-6)
    assert (old.frames - c.frames).abs().max() > 1e-2, "the two resizes must differ on these frames"


def test_flip_reversal_and_determinism(synth_root):
    ds = open_datasets([str(synth_root)])
    fixed = ClipSampler(ds, ClipConfig(num_frames=FRAMES, image_size=SIZE, hflip_prob=0.0, reverse_prob=0.0))
    flip = ClipSampler(ds, ClipConfig(num_frames=FRAMES, image_size=SIZE, hflip_prob=1.0, reverse_prob=1.0))
    a = fixed.clip(0, np.random.default_rng(3))
    b = flip.clip(0, np.random.default_rng(3))
    assert b.flipped and not a.flipped
    if b.reversed:
        assert b.frame_indices == a.frame_indices[::-1]
        common = [k for k in b.obj_ids if k in a.obj_ids]
        for k in common:  # the same masks, mirrored (up to resize rounding at the 0.5 threshold)
            diff = b.masks[:, b.obj_ids.index(k)] ^ a.masks.flip(0)[:, a.obj_ids.index(k)].flip(-1)
            assert diff.float().mean() < 0.01
    c = flip.clip(0, np.random.default_rng(3))
    assert torch.equal(b.frames, c.frames) and torch.equal(b.masks, c.masks) and b.obj_ids == c.obj_ids


def test_left_right_swap():
    assert swap_left_right("bipolar forceps are idle on the left") == "bipolar forceps are idle on the right"
    assert swap_left_right("Right tool, bottom left") == "Left tool, bottom right"
    assert swap_left_right("leftover brightness") == "leftover brightness"


def test_images_and_collate(sampler):
    imgs = [sampler.image(i, np.random.default_rng(i)) for i in range(3)]
    assert all(x.frames.shape == (1, 3, SIZE, SIZE) for x in imgs)
    b = collate(imgs)
    n = sum(len(x.obj_ids) for x in imgs)
    assert b.is_image and b.frames.shape == (3, 1, 3, SIZE, SIZE) and b.masks.shape == (1, n, SIZE, SIZE)
    assert b.obj_to_clip.tolist() == [i for i, x in enumerate(imgs) for _ in x.obj_ids]


def test_epoch_index_splits_ranks_disjointly():
    n, world = 10, 2
    for epoch in range(2):
        seen = {r: [epoch_index((epoch * n) + 2 * s + r, n, 7) for s in range(n // world)] for r in range(world)}
        assert sorted(seen[0] + seen[1]) == list(range(n))


def test_a_shared_text_is_one_target_when_merging(tmp_path):
    """Two instruments of one type and action share their sentence: with ``merge_same_text``
    the clip draws that sentence once and its target is the union of both objects' masks."""
    from surgsam.data.refendovis import shared_texts
    from surgsam.data.synth import SynthConfig, generate

    root = tmp_path / "dup"
    generate(
        root,
        SynthConfig(
            width=96,
            height=64,
            frames=4,
            smoke=0.0,
            motion_blur=False,
            duplicate_type_prob=1.0,
            min_instruments=2,
            max_instruments=2,
            late_entry_prob=0.0,
            exit_prob=0.0,
        ),
        videos=2,
        seed=0,
        progress=False,
    )
    ds = open_datasets([str(root)])
    cfg = ClipConfig(num_frames=2, max_objects=5, image_size=96, hflip_prob=0.0, reverse_prob=0.0, min_pixels=1)
    plain = ClipSampler(ds, cfg)
    merged = ClipSampler(ds, ClipConfig(**{**cfg.__dict__, "merge_same_text": True}))
    checked = 0
    for i in range(merged.num_clips):
        video = merged.videos[merged.windows[i][0]]
        shared = shared_texts(video.expressions())
        a, b = plain.clip(i, np.random.default_rng(i)), merged.clip(i, np.random.default_rng(i))
        assert len(set(b.texts)) == len(b.texts)  # every sentence once
        for text, ids in shared.items():
            both = [k for k in ids if k in a.obj_ids]
            if len(both) < 2:
                continue
            assert a.texts.count(text) == len(both)  # without merging: contradictory targets
            j = b.texts.index(text)
            union = torch.stack([a.masks[:, a.obj_ids.index(k)] for k in both]).any(0)
            assert torch.equal(b.masks[:, j], union)
            checked += 1
    assert checked > 0


def _event_sampler(root, option: str, **synth) -> tuple[list, ClipConfig, ClipSampler]:
    """Three 14-frame synthetic videos (``synth``: entry/exit settings) and a one-object sampler
    with ``option`` (``entry_prob`` or ``exit_prob``) at 1: (datasets, base config, sampler)."""
    from surgsam.data.synth import SynthConfig, generate

    generate(
        root,
        SynthConfig(width=96, height=64, frames=14, smoke=0.0, motion_blur=False, **synth),
        videos=3,
        seed=0,
        progress=False,
    )
    ds = open_datasets([str(root)])
    base = ClipConfig(num_frames=FRAMES, image_size=SIZE, max_objects=1, min_pixels=1)
    return ds, base, ClipSampler(ds, replace(base, **{option: 1.0}))


def test_entry_clips_start_where_an_object_enters(tmp_path):
    ds, base, s = _event_sampler(tmp_path / "late", "entry_prob", late_entry_prob=1.0, reentry_prob=1.0)
    assert s.entries, "the fixture needs an object that enters after the first frame"
    for vi, j, k in s.entries:
        ids = s.videos[vi].scan()
        t = s._annotated[vi][j]
        assert k in ids[t] and k not in ids[s._annotated[vi][j - 1]]
    starts = {(s.videos[vi].name, s._annotated[vi][j]): k for vi, j, k in s.entries}
    hits = 0
    for i in range(12):
        c = s.clip(i, np.random.default_rng(i))
        k = starts.get((c.video, c.frame_indices[0]))
        if k is not None and c.obj_ids == [k]:
            hits += 1
            assert not c.reversed and c.frame_indices == sorted(c.frame_indices)
    assert hits >= 6  # the rest: an entering sliver too small at S (drawn as a random window instead)
    # entry_prob 0 draws exactly the clips it drew before the option existed
    a = ClipSampler(ds, base).clip(0, np.random.default_rng(5))
    b = ClipSampler(ds, base).clip(0, np.random.default_rng(5))
    assert torch.equal(a.masks, b.masks) and a.obj_ids == b.obj_ids


def test_exit_clips_track_an_object_out_of_view(tmp_path):
    _, _, s = _event_sampler(tmp_path / "exit", "exit_prob", exit_prob=1.0, reentry_prob=0.0)
    assert s.exits, "the fixture needs an object that leaves the view"
    for vi, j, k in s.exits:
        ids = s.videos[vi].scan()
        assert k in ids[s._annotated[vi][j - 1]] and k not in (ids[s._annotated[vi][j]] or ())
    exits = {(s.videos[vi].name, s._annotated[vi][j], k) for vi, j, k in s.exits}
    hits = 0
    for i in range(12):
        c = s.clip(i, np.random.default_rng(i))
        assert len(c.frame_indices) == FRAMES
        k = c.obj_ids[0]
        gone = [t for t in c.frame_indices[1:] if (c.video, t, k) in exits]
        if gone:  # the clip starts with the object and loses it inside the clip, forward
            hits += 1
            assert not c.reversed and c.frame_indices == sorted(c.frame_indices)
            assert bool(c.masks[0, 0].any()) and not bool(c.masks[c.frame_indices.index(gone[0]), 0].any())
    assert hits >= 6
    with pytest.raises(ValueError, match="entry_prob \\+ exit_prob"):
        ClipConfig(entry_prob=0.6, exit_prob=0.5)


def test_paraphrase_prob_rewords_expressions_with_training_wordings_only(synth_root):
    """``paraphrase_prob``: clip texts are reworded (never with held-out-only wording); the
    objects' masks and the rest of the clip are what the plain sampler draws from the same
    seed, except for the extra draws; 0 keeps the dataset's sentences."""
    from surgsam.data import paraphrase as P

    ds = open_datasets([str(synth_root)])
    cfg = ClipConfig(num_frames=FRAMES, max_objects=3, image_size=SIZE)
    assert cfg.paraphrase_prob == 0.0
    with pytest.raises(ValueError, match="paraphrase_prob"):
        ClipConfig(paraphrase_prob=1.5)
    plain, para = ClipSampler(ds, cfg), ClipSampler(ds, replace(cfg, paraphrase_prob=1.0))
    heldout = [w for t in (P.INSTRUMENT_NAMES, P.TISSUE_NAMES, P.ACTION_PHRASES) for c in t.values() for w in c.heldout]
    standard = changed = 0
    for i in range(min(plain.num_clips, 12)):
        a, b = plain.clip(i, np.random.default_rng(i)), para.clip(i, np.random.default_rng(i))
        assert a.obj_ids == b.obj_ids and torch.equal(a.masks, b.masks) and a.flipped == b.flipped
        for x, y in zip(a.texts, b.texts):
            assert x is not None and y is not None
            assert P.parse_expression(x) is not None  # the dataset's standard sentence
            standard += 1
            changed += x != y
            assert not any(w in y for w in heldout), y
    assert standard > 0 and changed > standard / 2


def test_paraphrase_prob_option_is_for_referring_recipes(tmp_path):
    from surgsam.cli import build_parser
    from surgsam.train.cli import config_from_args

    base = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--paraphrase-prob", "0.5"]
    args = build_parser().parse_args([*base, "--recipe", "ref-nano-synth"])
    assert config_from_args(args).clip.paraphrase_prob == 0.5
    with pytest.raises(ValueError, match="referring recipes"):
        config_from_args(build_parser().parse_args([*base, "--recipe", "nano-synth"]))


def test_photometric_prob_changes_colour_and_light_only(synth_root):
    """``photometric_prob``: the frames of a clip change (one draw for all of them), masks, ids
    and flips are what the plain sampler draws from the same seed; 0 draws nothing."""
    from surgsam.train.photometric import Photometric, draw_photometric

    ds = open_datasets([str(synth_root)])
    cfg = ClipConfig(num_frames=FRAMES, max_objects=3, image_size=SIZE)
    assert cfg.photometric_prob == 0.0
    with pytest.raises(ValueError, match="photometric_prob"):
        ClipConfig(photometric_prob=-0.1)
    plain, photo = ClipSampler(ds, cfg), ClipSampler(ds, replace(cfg, photometric_prob=1.0))
    for i in range(min(plain.num_clips, 6)):
        a, b = plain.clip(i, np.random.default_rng(i)), photo.clip(i, np.random.default_rng(i))
        assert a.obj_ids == b.obj_ids and torch.equal(a.masks, b.masks) and a.flipped == b.flipped
        assert not torch.allclose(a.frames, b.frames, atol=0.05)
    # one draw is one colour map for every frame: the same pixel value maps alike in all frames
    frames = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8)
    frames[1] = frames[0]
    out = draw_photometric(np.random.default_rng(0)).apply(frames)
    assert torch.equal(out[0], out[1]) and out.dtype == torch.uint8
    identity = Photometric((1.0, 1.0, 1.0), 1.0, 1.0, 1.0, 1.0)
    assert torch.equal(identity.apply(frames), frames)


def test_photometric_prob_option(tmp_path):
    from surgsam.cli import build_parser
    from surgsam.train.cli import config_from_args

    base = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--recipe", "nano-synth"]
    assert (
        config_from_args(build_parser().parse_args([*base, "--photometric-prob", "0.8"])).clip.photometric_prob == 0.8
    )
    assert config_from_args(build_parser().parse_args(base)).clip.photometric_prob == 0.0
