"""benchmarks/absent_objects.py: counts of masks on absent objects, and where those masks lie."""

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from surgsam.data.palette import write_mask

ROOT = Path(__file__).resolve().parents[1]
H = W = 8


def _module():
    spec = importlib.util.spec_from_file_location("absent_objects", ROOT / "benchmarks" / "absent_objects.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _box(label: np.ndarray, obj: int, x: int) -> None:
    label[2:5, x : x + 2] = obj


def _dataset(root: Path) -> tuple[Path, Path, Path]:
    """One 7-frame video: graspers 1 and 2 and scissors 3. Object 1 is present on frames 0-1 and
    gone after; object 3 on frames 0-6 except 4. Predictions on its absent frames put object 1 on
    grasper 2 (frame 2), on scissors 3 (frame 3), on background (frame 4), nowhere (frame 5) and
    on grasper 2 again (frame 6); object 3 absent on frame 4 gets an empty mask."""
    data, pred, out = root / "data", root / "pred", root / "eval"
    for d in ("JPEGImages/v", "Annotations/v", "Meta"):
        (data / "valid" / d).mkdir(parents=True)
    (pred / "v").mkdir(parents=True)
    out.mkdir()
    cats = {"1": "grasper", "2": "grasper", "3": "scissors"}
    (data / "valid" / "Meta" / "v.json").write_text(json.dumps({"info": {"category": cats}}))
    where_obj1 = {2: 2, 3: 3, 4: None, 6: 2}  # frame -> the object whose pixels object 1's mask takes
    rows = []
    for t in range(7):
        Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(data / "valid" / "JPEGImages" / "v" / f"{t:05d}.jpg")
        gt = np.zeros((H, W), np.uint8)
        if t <= 1:
            _box(gt, 1, 0)
        _box(gt, 2, 3)
        if t != 4:
            _box(gt, 3, 6)
        write_mask(data / "valid" / "Annotations" / "v" / f"{t:05d}.png", gt)
        p = gt.copy()
        if t in where_obj1:
            other = where_obj1[t]
            if other is None:
                p[6:8, 0:3] = 1  # background only
            else:
                p[gt == other] = 1
        write_mask(pred / "v" / f"{t:05d}.png", p)
        if t >= 1:  # prompted on frame 0, scored after (J as written; not read by the counts of where)
            for obj in (1, 2, 3):
                absent = not (gt == obj).any()
                has_mask = (p == obj).any()
                j = (100.0 if not has_mask else 0.0) if absent else (100.0 if has_mask else 0.0)
                rows.append({"video": "v", "frame": t, "obj_id": obj, "J": j, "F": j, "Dice": j})
    with open(out / "frames.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return data, pred, out


def test_counts_and_where_the_wrong_masks_lie(tmp_path):
    mod = _module()
    data, pred, out = _dataset(tmp_path)
    c = mod.count(out, data)
    # object 1 absent on frames 2-6 (5), object 3 on frame 4; masks on 4 of object 1's
    assert (c["absent"], c["absent_with_mask"]) == (6, 4)
    # one id per pixel: where object 1 took a neighbour's pixels, that neighbour has no mask left
    assert (c["present"], c["present_missed"]) == (12, 3)
    w = mod.where(out, pred, data)
    assert (w["same_category"], w["other_category"], w["background"]) == (2, 1, 1)
    assert w["frames_since_seen"] == {"1": 1, "2": 1, "3": 1, "5": 1}


def test_cli_writes_the_breakdown_and_refuses_a_missing_prediction(tmp_path):
    data, pred, out = _dataset(tmp_path)
    script = str(ROOT / "benchmarks" / "absent_objects.py")
    js = tmp_path / "c.json"
    run = subprocess.run(
        [sys.executable, script, str(out), "--data", str(data), "--pred", str(pred), "--json", str(js)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "same category: 2, of another category: 1, on background: 1" in run.stdout
    assert json.loads(js.read_text())["where"]["same_category"] == 2
    (pred / "v" / "00003.png").unlink()
    bad = subprocess.run(
        [sys.executable, script, str(out), "--data", str(data), "--pred", str(pred)], capture_output=True, text=True
    )
    assert bad.returncode != 0 and "00003.png: no prediction" in bad.stderr
