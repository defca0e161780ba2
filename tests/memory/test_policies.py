"""Memory policies against hand-computed cases from SPEC §1-§3."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from surgsam.memory import DLMPolicy, EFPPolicy, FifoPolicy, MemoryBank, MemoryEntry, make_policy, position_cosine


def feat(*angles_deg: float) -> torch.Tensor:
    """A 1 x 2 x 1 x P memory whose position p holds the unit vector at angle angles_deg[p]."""
    a = torch.tensor([math.radians(x) for x in angles_deg])
    return torch.stack([a.cos(), a.sin()]).reshape(1, 2, 1, -1)


def entry(f: int, features=None, cond=False, iou=0.5) -> MemoryEntry:
    return MemoryEntry(
        f, feat(0.0, 0.0) if features is None else features, torch.full((1, 4), float(f)), cond, 1.0, iou
    )


def slots(sel):
    return [(slot, e.frame_idx) for slot, e in sel.spatial]


def test_position_cosine_is_summed_over_positions():
    # positions: cos 0 = 1 and cos 90 = 0 -> sum 1
    assert position_cosine(feat(0, 90), feat(0, 0)).item() == pytest.approx(1.0, abs=1e-6)
    assert position_cosine(feat(60, 60), feat(0, 0)).item() == pytest.approx(1.0, abs=1e-6)


def test_fifo_slots_and_pointers():
    p, bank = FifoPolicy(), MemoryBank()
    p.commit(bank, entry(0, cond=True))
    for f in range(1, 10):
        p.commit(bank, entry(f))
    sel = p.select(bank, 10)
    # cond in slot 0, then frames 4..9 in slots 1..6 (slot = 7 - distance)
    assert slots(sel) == [(0, 0), (1, 4), (2, 5), (3, 6), (4, 7), (5, 8), (6, 9)]
    # pointers: cond (distance 10), then distances 1..9
    assert [(d, e.frame_idx) for d, e in sel.pointers] == [(10, 0)] + [(d, 10 - d) for d in range(1, 10)]


def test_fifo_skips_missing_frames_and_future_cond_pointers():
    p, bank = FifoPolicy(), MemoryBank()
    p.commit(bank, entry(5, cond=True))
    p.commit(bank, entry(7))
    sel = p.select(bank, 8)
    assert slots(sel) == [(0, 5), (6, 7)]
    bank.cond[12] = entry(12, cond=True)  # a conditioning frame "in the future"
    sel = p.select(bank, 8)
    assert (0, 12) in slots(sel) and all(e.frame_idx != 12 for _, e in sel.pointers)


def test_fifo_bank_is_bounded():
    p, bank = FifoPolicy(), MemoryBank()
    p.commit(bank, entry(0, cond=True))
    for f in range(1, 500):
        p.commit(bank, entry(f))
    assert len(bank.recent) == 16  # pointers reach 15 back from the newest, plus the newest
    assert bank.num_tensors() == 1 + 7  # cond + the 7 newest feature maps (6 back + newest)
    # everything the next frame selects is still there
    sel = p.select(bank, 500)
    assert len(sel.spatial) == 7 and len(sel.pointers) == 16


def _efp_bank(cands: dict[int, float]) -> MemoryBank:
    """cond at 0, newest at frame 9 (angle 0), candidates at given frames with given angle."""
    p, bank = FifoPolicy(), MemoryBank()
    p.commit(bank, entry(0, feat(0, 0), cond=True))
    for f, ang in cands.items():
        p.commit(bank, entry(f, feat(ang, ang)))
    p.commit(bank, entry(9, feat(0, 0)))
    return bank


def test_efp_drops_the_two_most_similar_when_full():
    # candidates 4..8 with angles to the newest: cos(10)>cos(20)>... -> 4 and 7 most similar
    bank = _efp_bank({4: 10, 5: 50, 6: 80, 7: 20, 8: 60})
    sel = EFPPolicy().select(bank, 10)
    assert slots(sel) == [(0, 0), (2, 5), (3, 6), (5, 8), (6, 9)]  # kept entries keep their slots
    assert len(sel.pointers) == 7  # pointers are not pruned


def test_efp_k_follows_bank_size():
    # cond + 5 memories: k = 6 + 2 - 7 = 1 -> only the most similar candidate goes
    bank = _efp_bank({5: 40, 6: 5, 7: 30, 8: 70})
    assert slots(EFPPolicy().select(bank, 10)) == [(0, 0), (2, 5), (4, 7), (5, 8), (6, 9)]
    # cond + 4: k = 0 -> nothing pruned
    bank = _efp_bank({6: 5, 7: 30, 8: 70})
    assert len(EFPPolicy().select(bank, 10).spatial) == 5


def test_efp_keeps_cond_and_newest_even_if_identical():
    bank = _efp_bank({4: 0, 5: 0, 6: 0, 7: 0, 8: 0})  # all identical to the newest
    sel = EFPPolicy().select(bank, 10)
    frames = [f for _, f in slots(sel)]
    assert frames[0] == 0 and frames[-1] == 9 and len(frames) == 5
    assert frames == [0, 6, 7, 8, 9]  # ties: the older ones go first


def test_efp_configurable_and_validated():
    bank = _efp_bank({4: 10, 5: 50, 6: 80, 7: 20, 8: 60})
    assert len(EFPPolicy(frames_to_prune=0).select(bank, 10).spatial) == 7
    assert slots(EFPPolicy(frames_to_prune=3).select(bank, 10)) == [(0, 0), (3, 6), (5, 8), (6, 9)]
    with pytest.raises(ValueError):
        EFPPolicy(frames_to_prune=6)


def test_dlm_pool_and_long_term_bank():
    p, bank = DLMPolicy(similarity="channel"), MemoryBank()
    p.commit(bank, entry(0, feat(0, 0), cond=True))
    # frames 1..5 credible; 3 is least similar (90 deg) to the cond frame -> long-term
    angles = {1: 10, 2: 30, 3: 90, 4: 20, 5: 0}
    for f, a in angles.items():
        p.commit(bank, entry(f, feat(a, a), iou=0.97))
    assert [e.frame_idx for e in DLMPolicy.state(bank).long_term] == [3] and DLMPolicy.state(bank).pool == []
    # non-credible frames never enter the pool
    p.commit(bank, entry(6, iou=0.95))
    assert DLMPolicy.state(bank).pool == []
    # next round: compared to the newest long-term memory (angle 90): 8 (angle 0) least similar
    for f, a in {7: 80, 8: 0, 9: 90, 10: 60, 11: 100}.items():
        p.commit(bank, entry(f, feat(a, a), iou=0.99))
    assert [e.frame_idx for e in DLMPolicy.state(bank).long_term] == [3, 8]


def test_dlm_bank_is_fifo_with_three_slots_and_window_skip():
    p, bank = DLMPolicy(pool_size=1, bank_size=3), MemoryBank()
    p.commit(bank, entry(0, cond=True))
    for f in range(1, 30):
        p.commit(bank, entry(f, iou=0.99))
    assert [e.frame_idx for e in DLMPolicy.state(bank).long_term] == [27, 28, 29]
    DLMPolicy.state(bank).long_term = [entry(2), entry(20), entry(28)]
    sel = p.select(bank, 30)
    # 28 is inside the 6-frame window (24..29): not duplicated; the others follow the short
    # window (as ReSurgSAM2's predictor lays them out) with slot 0
    assert slots(sel) == [(0, 0), (1, 24), (2, 25), (3, 26), (4, 27), (5, 28), (6, 29), (0, 2), (0, 20)]


def test_dlm_keeps_long_term_features_after_window_trim():
    p, bank = DLMPolicy(pool_size=1), MemoryBank()
    p.commit(bank, entry(0, cond=True))
    p.commit(bank, entry(1, iou=0.99))
    for f in range(2, 40):
        p.commit(bank, entry(f, iou=0.1))
    lt = DLMPolicy.state(bank).long_term
    assert lt[0].frame_idx == 1 and lt[0].features is not None
    assert 1 not in bank.recent


def test_make_policy():
    assert isinstance(make_policy("efp"), EFPPolicy)
    with pytest.raises(ValueError, match="unknown memory policy 'lru'; choose one of fifo, efp, dlm"):
        make_policy("lru")
    with pytest.raises(ValueError, match="num_maskmem"):
        make_policy(FifoPolicy(num_maskmem=5), num_maskmem=7)
    with pytest.raises(TypeError):
        make_policy(42)


# ---------------------------------------------------------------- released rules (issue 16)
def _bf16_memory(sum_target: float, hw: int = 1024) -> torch.Tensor:
    """A 1 x 2 x 32 x 32 bf16 memory whose channel cosine with the all-(1, 0) memory sums to
    about ``sum_target`` over the ``hw`` positions (angle chosen per position)."""
    cos = torch.full((hw,), sum_target / hw, dtype=torch.float64).clamp(-1, 1)
    sin = (1 - cos**2).sqrt()
    return torch.stack([cos, sin]).reshape(1, 2, 32, 32).to(torch.bfloat16)


def _bank_of(memories: dict[int, torch.Tensor], conds: tuple[int, ...] = (0,)) -> MemoryBank:
    p, bank = FifoPolicy(), MemoryBank()
    for f, m in sorted(memories.items()):
        p.commit(bank, entry(f, m, cond=f in conds))
    return bank


def test_efp_release_ranks_rounded_bf16_sums_and_ties_drop_the_older_frame():
    newest = torch.stack([torch.ones(1024), torch.zeros(1024)]).reshape(1, 2, 32, 32).to(torch.bfloat16)
    # float32 sums 999.0 < 1000.9 < 1001.6, but in bf16 (spacing 4 near 1000) all three round to
    # 1000: the release drops the two OLDEST of the equal top scores
    cands = {f: _bf16_memory(s) for f, s in zip(range(4, 9), [999.0, 1000.9, 1001.6, 985.0, 990.0])}
    bank = _bank_of({0: newest, **cands, 9: newest})
    fp32 = [float(position_cosine(cands[f], newest)) for f in range(4, 9)]
    assert fp32[2] > fp32[1] > fp32[0]  # the paper rule (float32) keeps frame 4, drops 5 and 6
    assert [f for _, f in slots(EFPPolicy(rule="paper").select(bank, 10))] == [0, 4, 7, 8, 9]
    assert [f for _, f in slots(EFPPolicy().select(bank, 10))] == [0, 6, 7, 8, 9]
    # the same memories stored in float32 are ranked in float32 by the release rule too
    bank32 = _bank_of({f: m.float() for f, m in {0: newest, **cands, 9: newest}.items()})
    assert [f for _, f in slots(EFPPolicy().select(bank32, 10))] == [0, 4, 7, 8, 9]


def test_efp_release_protects_only_the_first_entry_and_the_last():
    same = feat(0, 0)
    far = feat(80, 80)
    # conditioning frames 0 and 3 (3 identical to the newest), tracked 5..9
    bank = _bank_of({0: far, 3: same, 5: far, 6: feat(70, 70), 7: feat(60, 60), 8: feat(50, 50), 9: same}, conds=(0, 3))
    # 7 entries: cond 0, cond 3, 5, 6, 7, 8, newest 9 -> k = 2
    assert [f for _, f in slots(EFPPolicy().select(bank, 10))] == [0, 5, 6, 7, 9]  # cond 3 and 8 pruned
    assert [f for _, f in slots(EFPPolicy(rule="paper").select(bank, 10))] == [0, 3, 5, 6, 9]


def test_dlm_release_similarity_is_along_the_width_axis():
    from surgsam.memory.dlm import width_cosine

    g = torch.Generator().manual_seed(4)
    ref = torch.randn(1, 4, 3, 5, generator=g)
    pool = [torch.randn(1, 4, 3, 5, generator=g) for _ in range(5)]

    def np_width(a, b):  # independent float64 computation: cosine over the last axis, summed
        a, b = a.double().numpy(), b.double().numpy()
        return float((a * b).sum(-1).__truediv__(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)).sum())

    for c in pool:
        assert float(width_cosine(ref, c)) == pytest.approx(np_width(ref, c), abs=1e-4)
    width_pick = min(range(5), key=lambda i: np_width(ref, pool[i]))
    channel_pick = min(range(5), key=lambda i: float(position_cosine(ref, pool[i])))
    assert width_pick != channel_pick  # this draw tells the two rules apart

    def run(similarity):
        p, bank = DLMPolicy(similarity=similarity), MemoryBank()
        p.commit(bank, entry(0, ref, cond=True))
        for f, m in enumerate(pool, start=1):
            p.commit(bank, entry(f, m, iou=0.99))
        return DLMPolicy.state(bank).long_term[0].frame_idx

    assert run("release") == width_pick + 1
    assert run("channel") == channel_pick + 1
    with pytest.raises(ValueError, match="similarity"):
        DLMPolicy(similarity="cosine")
