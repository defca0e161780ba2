"""segment_video's directions, start frame, max_frames and click modes on the tiny ``nano``
preset (random weights); Meta parity is in test_engine_directions.py."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from surgsam.engine import Prompt, VideoSegmenter, segment_video
from surgsam.memory import MemoryEntry
from synthetic import moving_objects_video

N, MID = 8, 4


@pytest.fixture(scope="module")
def video():
    return moving_objects_video(n=N, h=60, w=80)


class OnlyIterable:
    """Frames that can only be read in order (like a video file): a length, no indexing."""

    def __init__(self, frames):
        self.frames, self.reads = frames, 0

    def __len__(self):
        return len(self.frames)

    def __iter__(self):
        for f in self.frames:
            self.reads += 1
            yield f


def _same(a, b) -> bool:
    return [r.frame_idx for r in a] == [r.frame_idx for r in b] and all(
        x.obj_ids == y.obj_ids and torch.equal(x.low_res_logits, y.low_res_logits) for x, y in zip(a, b)
    )


def test_reverse_is_forward_over_the_reversed_video(model, video):
    frames, gt = video
    rev = list(segment_video(frames, [Prompt(1, MID, mask=gt[1][MID])], model, memory="fifo", direction="reverse"))
    assert [r.frame_idx for r in rev] == [4, 3, 2, 1, 0]  # from the last prompted frame down to 0
    mirrored = frames[::-1].copy()
    fwd = list(
        segment_video(
            mirrored, [Prompt(1, N - 1 - MID, mask=gt[1][MID])], model, memory="fifo", start_frame=N - 1 - MID
        )
    )
    assert [r.frame_idx for r in fwd] == [3, 4, 5, 6, 7]
    for a, b in zip(rev, fwd):
        torch.testing.assert_close(a.low_res_logits, b.low_res_logits, atol=1e-5, rtol=0)
        assert a.masks.any()


def test_both_ways_read_once_from_a_source_without_indexing(model, video):
    frames, gt = video
    prompts = [Prompt(1, MID, mask=gt[1][MID]), Prompt(2, MID, mask=gt[2][MID])]
    indexed = list(segment_video(frames, prompts, model, memory="efp", direction="both"))
    assert [r.frame_idx for r in indexed] == [4, 5, 6, 7, 3, 2, 1, 0]
    src = OnlyIterable(frames)
    assert _same(list(segment_video(src, prompts, model, memory="efp", direction="both")), indexed)
    assert src.reads == N  # one pass over the video; the frames before the start were kept
    # max_frames bounds each direction (Meta's max_frame_num_to_track: start + max_frames)
    short = list(segment_video(frames, prompts, model, memory="efp", direction="both", max_frames=2))
    assert [r.frame_idx for r in short] == [4, 5, 6, 3, 2]
    assert _same(short[:3], indexed[:3])  # (its reverse pass has the memory of frames 5 and 6 only)


def test_both_ways_tracks_a_late_object_backwards_from_its_own_prompt(model, video):
    """``"both"`` used to carry backwards only the objects prompted on the start frame: object 2,
    first prompted on frame 5, had no mask on frames 0..4. Now every frame has both objects;
    each object's outputs are those of a ``"both"`` run with it alone (objects are tracked
    independently; Meta parity in test_engine_directions.py), and a source without indexing is
    still read once."""
    frames, gt = video
    prompts = [Prompt(1, 2, mask=gt[1][2]), Prompt(2, 5, mask=gt[2][5])]
    out = list(segment_video(frames, prompts, model, memory="fifo", direction="both"))
    # forward from frame 5 (frames 2..4 wait for object 2's reverse pass), then in reverse
    assert [r.frame_idx for r in out] == [5, 6, 7, 4, 3, 2, 1, 0]
    assert all(r.obj_ids == [1, 2] for r in out)
    for k, p in enumerate(prompts):
        alone = {r.frame_idx: r for r in segment_video(frames, [p], model, memory="fifo", direction="both")}
        for r in out:
            assert alone[r.frame_idx].obj_ids == [p.obj_id]
            torch.testing.assert_close(
                r.low_res_logits[k : k + 1], alone[r.frame_idx].low_res_logits, atol=1e-4, rtol=0
            )
    src = OnlyIterable(frames)
    assert _same(list(segment_video(src, prompts, model, memory="fifo", direction="both")), out)
    assert src.reads == N
    # max_frames bounds the passes from the start frame as before; object 2 still goes back to frame 0
    short = list(segment_video(frames, prompts, model, memory="fifo", direction="both", max_frames=3))
    assert [r.frame_idx for r in short] == [5, 4, 3, 2, 1, 0] and all(r.obj_ids == [1, 2] for r in short)


def test_both_ways_from_a_prompt_on_the_last_frame(model, video):
    """The forward pass is the prompted frame alone; its memory still seeds the reverse pass (it
    used to be left unencoded, and frames 0..6 got no mask), which then is ``"reverse"``."""
    frames, gt = video
    p = [Prompt(1, N - 1, mask=gt[1][N - 1])]
    both = list(segment_video(frames, p, model, memory="fifo", direction="both"))
    rev = list(segment_video(frames, p, model, memory="fifo", direction="reverse"))
    assert [r.frame_idx for r in both] == [r.frame_idx for r in rev] == list(range(N - 1, -1, -1))
    for a, b in zip(both, rev):
        assert a.obj_ids == b.obj_ids == [1]
        torch.testing.assert_close(a.low_res_logits, b.low_res_logits, atol=1e-5, rtol=0)


def test_reverse_alone_does_not_use_the_forward_memory(model, video):
    """``"both"``'s reverse pass starts with the forward pass's memory, ``"reverse"`` without."""
    frames, gt = video
    prompts = [Prompt(1, MID, mask=gt[1][MID])]
    both = list(segment_video(frames, prompts, model, memory="fifo", direction="both"))
    rev = list(segment_video(frames, prompts, model, memory="fifo", direction="reverse"))
    assert _same(rev[:1], both[:1])  # the prompted frame itself
    assert (rev[1].low_res_logits - both[4].low_res_logits).abs().max() > 1e-3  # frame 3


def test_forward_stays_a_stream(model, video):
    """The default direction reads an endless stream lazily and keeps no frames."""
    frames, gt = video
    endless = itertools.cycle(frames)
    out = list(itertools.islice(segment_video(endless, [Prompt(1, 0, mask=gt[1][0])], model, memory="fifo"), 12))
    assert [r.frame_idx for r in out] == list(range(12))
    late = list(segment_video(frames, [Prompt(1, 2, mask=gt[1][2])], model, memory="fifo", start_frame=2))
    full = list(segment_video(frames, [Prompt(1, 2, mask=gt[1][2])], model, memory="fifo"))
    assert [r.frame_idx for r in full[:2]] == [0, 1] and not full[0].obj_ids  # empty before the prompt
    assert _same(late, full[2:])


@pytest.mark.parametrize(
    "kw,prompt_frames,message",
    [
        (
            {"start_frame": 3},
            [1],
            r"prompts on frames \[1\] are never used: direction='forward' from frame 3 covers "
            r"frames 3\.\.the end",
        ),
        (
            {"direction": "reverse", "start_frame": 3},
            [1, 5],
            r"prompts on frames \[5\] are never used: "
            r"direction='reverse' from frame 3 covers frames 3 down to 0",
        ),
        (
            {"direction": "both", "max_frames": 1},
            [2, 6],
            r"prompts on frames \[6\] are never used: direction='both' "
            r"from frame 2 covers frames 2\.\.3 and frames 1 down to 1",
        ),
        ({"direction": "reverse", "start_frame": N}, [1], r"start_frame 8 is beyond the video's end \(frames 0\.\.7\)"),
        ({"direction": "sideways"}, [0], "direction must be one of forward, reverse, both, got 'sideways'"),
        ({"clicks": "merge"}, [0], "clicks must be 'accumulate' or 'replace', got 'merge'"),
        ({"max_frames": -1}, [0], "max_frames must be >= 0, got -1"),
    ],
)
def test_prompts_a_pass_never_reaches_are_refused_up_front(model, video, kw, prompt_frames, message):
    frames, gt = video
    src = OnlyIterable(frames)
    with pytest.raises(ValueError, match=message):
        next(segment_video(src, [Prompt(1, t, mask=gt[1][t]) for t in prompt_frames], model, **kw))
    assert src.reads == 0  # refused before any frame is read


def test_session_click_mode_and_its_override(model, video):
    frames, _ = video
    a, b = [[60.0, 30.0]], [[20.0, 20.0]]

    def two_sets(mode, clear=None):
        seg = VideoSegmenter(model, clicks=mode)
        seg.add_prompt(frames[0], obj_id=1, points=a, labels=[1])
        r = seg.add_prompt(None, obj_id=1, points=b, labels=[0], clear=clear)
        return seg.objects[1].output.clicks.points.shape[1], r.low_res_logits

    n_acc, acc = two_sets("accumulate")
    n_rep, rep = two_sets("replace")
    assert (n_acc, n_rep) == (2, 1)
    assert not torch.equal(acc, rep)
    assert torch.equal(two_sets("replace", clear=False)[1], acc)
    assert torch.equal(two_sets("accumulate", clear=True)[1], rep)
    with pytest.raises(ValueError, match="clicks must be 'accumulate' or 'replace'"):
        VideoSegmenter(model, clicks="keep")


def test_seed_memory_checks_its_entries(model, video):
    frames, gt = video
    seg = VideoSegmenter(model, memory="fifo")
    seg.add_prompt(frames[0], obj_id=1, mask=gt[1][0])
    seg.step(frames[1])
    entries = [e for o in seg.objects.values() for e in o.bank.entries()]
    other = VideoSegmenter(model, memory="fifo")
    shifted = [MemoryEntry(e.frame_idx - 5, e.features, e.obj_ptr, e.is_cond, e.object_score, e.iou) for e in entries]
    with pytest.raises(ValueError, match="needs a conditioning"):
        other.seed_memory(1, [e for e in shifted if not e.is_cond], seg.memory_pos)
    with pytest.raises(ValueError, match=r"entries on frames \[0, 1\] lie after the current frame -1"):
        other.seed_memory(1, entries, seg.memory_pos)
    other.seed_memory(1, shifted, seg.memory_pos)
    with pytest.raises(ValueError, match="object 1 already exists"):
        other.seed_memory(1, shifted, seg.memory_pos)
    r = other.step(frames[2])
    assert r.obj_ids == [1] and r.masks.any()
    assert np.isfinite(r.low_res_logits.numpy()).all()


def test_segment_cli_both_directions_fill_the_frames_before_the_prompt(model, video, tmp_path):
    from PIL import Image

    from surgsam.cli import main
    from surgsam.io import read_palette_png, write_palette_png

    frames, gt = video
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"frame{i}.png")
    write_palette_png(tmp_path / "m.png", gt[1][MID].astype(np.uint8))
    torch.save({"model": model.state_dict()}, tmp_path / "w.pt")  # the fixture's "present"-biased weights
    common = [
        "segment",
        str(folder),
        "--model",
        "nano",
        "--checkpoint",
        str(tmp_path / "w.pt"),
        "--mask",
        str(tmp_path / "m.png"),
        "--frame",
        str(MID),
        "--memory",
        "fifo",
        "--precision",
        "fp32",
        "--no-progress",
    ]
    assert main([*common, "--out", str(tmp_path / "fwd")]) == 0
    assert main([*common, "--out", str(tmp_path / "both"), "--direction", "both"]) == 0
    names = [f"frame{i}.png" for i in range(N)]
    fwd = [read_palette_png(tmp_path / "fwd" / n) for n in names]
    both = [read_palette_png(tmp_path / "both" / n) for n in names]
    assert not any(m.any() for m in fwd[:MID]) and all(m.any() for m in both)  # forward: empty before the prompt
    assert all(np.array_equal(a, b) for a, b in zip(fwd[MID:], both[MID:]))
    with pytest.raises(ValueError, match="--overlay needs --direction forward"):
        main([*common, "--out", str(tmp_path / "r"), "--direction", "reverse", "--overlay", str(tmp_path / "o.mp4")])
    assert not (tmp_path / "r").exists()  # refused before any work
