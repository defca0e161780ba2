"""surgsam.eval.compare: paired J&F differences with a video-level bootstrap interval."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from surgsam.eval import EvalResult, ObjectScore
from surgsam.eval.compare import compare_results, load_result, main, object_scores, paired_difference


def _objects(values: dict[tuple[str, int], float]) -> list[ObjectScore]:
    # J = F = the wanted J&F, so ObjectScore.JF is exactly it
    return [ObjectScore(v, k, "cat", 10, x, x, x) for (v, k), x in sorted(values.items())]


def test_identical_runs_differ_by_exactly_zero():
    rng = np.random.default_rng(1)
    s = {(f"v{i}", k): float(rng.uniform(0, 100)) for i in range(6) for k in (1, 2, 3)}
    d = paired_difference(s, dict(s))
    assert (d.mean, d.low, d.high) == (0.0, 0.0, 0.0)
    assert not d.significant and d.videos_better == d.videos_worse == 0
    assert (d.n_objects, d.n_videos) == (18, 6)


def test_mean_is_the_difference_of_the_summaries_and_a_constant_shift_is_exact():
    rng = np.random.default_rng(2)
    old = {(f"v{i}", k): float(rng.uniform(20, 80)) for i in range(5) for k in range(1, 2 + i)}
    new = {key: x + 3.0 for key, x in old.items()}
    d = paired_difference(new, old)
    assert d.mean == pytest.approx(3.0) and d.low == pytest.approx(3.0) and d.high == pytest.approx(3.0)
    assert d.new - d.old == pytest.approx(d.mean)
    assert d.old == pytest.approx(np.mean(list(old.values())))  # object mean, as EvalResult.summary
    assert d.significant and d.videos_better == 5


def test_interval_is_a_video_bootstrap():
    """One video gains 20 points on each of its 4 objects, the other nine are unchanged: the
    mean is 80/40 objects = 2 points, and the interval is what resampling videos gives
    (whole videos drawn, so about one resample in three draws the changed video 0 times)."""
    old = {(f"v{i}", k): 50.0 for i in range(10) for k in range(4)}
    new = dict(old)
    for k in range(4):
        new[("v0", k)] = 70.0
    d = paired_difference(new, old, resamples=4000, seed=3)
    assert d.mean == pytest.approx(2.0)
    assert d.low == 0.0 and d.high > 2.0  # 0.9^10 = 35 % of resamples miss v0: lower bound exactly 0
    assert not d.significant and (d.videos_better, d.videos_worse) == (1, 0)
    # the same numbers again with the same seed; a different seed moves only the interval
    assert paired_difference(new, old, resamples=4000, seed=3) == d
    other = paired_difference(new, old, resamples=4000, seed=4)
    assert other.mean == d.mean


def test_noise_larger_than_the_effect_is_not_significant_and_a_clear_effect_is():
    rng = np.random.default_rng(5)
    old = {(f"v{i}", k): float(rng.uniform(30, 90)) for i in range(16) for k in range(5)}
    noisy = {key: x + float(rng.normal(0.5, 8.0)) for key, x in old.items()}
    clear = {key: x + float(rng.normal(4.0, 1.0)) for key, x in old.items()}
    assert not paired_difference(noisy, old).significant
    d = paired_difference(clear, old)
    assert d.significant and d.low > 3.0 and d.high < 5.0


def test_nan_objects_are_left_out_of_both_runs():
    old = {("a", 1): 10.0, ("a", 2): float("nan"), ("b", 1): 30.0}
    new = {("a", 1): 20.0, ("a", 2): 90.0, ("b", 1): 30.0}
    d = paired_difference(new, old)
    assert d.n_objects == 2 and d.mean == pytest.approx(5.0)


def test_refuses_runs_over_different_objects_and_bad_settings():
    a = {("v1", 1): 1.0, ("v1", 2): 2.0}
    with pytest.raises(ValueError, match=r"different objects.*only in new: \[\('v1', 2\)\]"):
        paired_difference(a, {("v1", 1): 1.0})
    with pytest.raises(ValueError, match="level"):
        paired_difference(a, a, level=1.5)
    with pytest.raises(ValueError, match="resamples"):
        paired_difference(a, a, resamples=0)
    with pytest.raises(ValueError, match="no object"):
        paired_difference({("v", 1): math.nan}, {("v", 1): 3.0})
    with pytest.raises(ValueError, match="scored twice"):
        object_scores(_objects({("v", 1): 1.0}) * 2)


def _result(values, protocol="resurgsam2") -> EvalResult:
    return EvalResult(protocol=protocol, objects=_objects(values), group_defs={"instruments": (1, 2)})


def test_groups_protocols_and_the_command(tmp_path, capsys):
    old = {(f"v{i}", k): 40.0 + i + k for i in range(4) for k in (1, 2, 11)}
    new = {key: x + (5.0 if key[1] == 11 else -1.0) for key, x in old.items()}
    rn, ro = _result(new), _result(old)
    assert compare_results(rn, ro, "instruments").mean == pytest.approx(-1.0)
    assert compare_results(rn, ro, "all").mean == pytest.approx((5.0 - 2.0) / 3)
    with pytest.raises(ValueError, match="group 'tissue'"):
        compare_results(rn, ro, "tissue")
    with pytest.raises(ValueError, match="different protocols"):
        compare_results(rn, _result(old, "surgsam2"))
    for name, r in (("new", rn), ("old", ro)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(r.to_dict()))
    assert load_result(tmp_path / "new").objects == rn.objects
    assert main([str(tmp_path / "new"), str(tmp_path / "old" / "results.json")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("all: J&F ") and "+1.00" in out[0] and "4 videos better" in out[0]
    assert out[1].startswith("instruments: ") and "-1.00" in out[1] and "4 worse" in out[1]
    assert main([str(tmp_path / "new"), str(tmp_path / "missing")]) == 2
    assert "no results.json" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{}")
    assert main([str(tmp_path / "bad.json"), str(tmp_path / "old")]) == 2
    assert "not an evaluation result" in capsys.readouterr().err
