"""Model cards of the embedded models: one per model, linked from `surgsam presets`,
`surgsam download --list` and the README, and every held-out number in their tables is the rounded value of the results file the
card names."""

from __future__ import annotations

import json
import re
from pathlib import Path

from surgsam.modeling.embedded import EMBEDDED_MODELS

ROOT = Path(__file__).resolve().parents[1]


def _table(card: str, header_start: str) -> list[list[str]]:
    """The rows (cells) of the markdown table whose header line starts with ``header_start``."""
    lines = card.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[i + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def test_each_embedded_model_has_a_card_linked_from_presets_and_readme(monkeypatch, capsys):
    import surgsam.modeling
    from surgsam.cli import main

    monkeypatch.setattr(surgsam.modeling, "list_presets", lambda: ["nano"])  # the preset table is not tested here
    assert main(["presets"]) == 0
    listed = capsys.readouterr().out
    assert main(["download", "--list"]) == 0
    downloads = capsys.readouterr().out
    readme = (ROOT / "README.md").read_text()
    assert len(EMBEDDED_MODELS) == 2
    for name, model in EMBEDDED_MODELS.items():
        card = model.card
        assert card == f"docs/models/{name}.md" and (ROOT / card).is_file()
        text = (ROOT / card).read_text()
        assert text.startswith(f"# Model card: `{name}`")
        for section in ("## Data", "## Training", "## Held-out numbers", "## Limits and known failure modes"):
            assert section in text
        assert f"{name}: " in listed and f"model card: {card}" in listed
        assert f"model card: {card}" in downloads.split(name, 1)[1]
        assert f"({card})" in readme
        for link in re.findall(r"\]\(([^)#]+\.md)", text):  # relative links resolve
            assert (ROOT / card).parent.joinpath(link).resolve().is_file(), link


def test_nano_card_numbers_are_the_results_files():
    card = (ROOT / "docs/models/surgsam-nano-synth.md").read_text()
    res = json.loads((ROOT / "benchmarks/results_2026-12-05_embedded_eval.json").read_text())
    before = json.loads((ROOT / "benchmarks/results_2026-12-02_embedded_eval.json").read_text())
    assert "benchmarks/results_2026-12-05_embedded_eval.json" in card
    assert "benchmarks/results_2026-12-02_embedded_eval.json" in card  # the model shipped before
    runs = {r["run"]: r for r in res["rows"]}
    old = {r["run"]: r for r in before["rows"]}
    order = [
        "efp, mask prompt",
        "fifo, mask prompt",
        "dlm, mask prompt",
        "efp, one positive click",
        "box prompt (efp)",
        "copy first mask (baseline)",
    ]
    rows = _table(card, "| run | J&F")
    assert len(rows) == len(order)
    for cells, run in zip(rows, order):
        assert [float(c) for c in cells[1:4]] == [round(runs[run][k], 1) for k in ("J&F", "J", "F")], run
        assert float(cells[4]) == round(old[run]["J&F"], 1), run


def test_referring_card_numbers_are_the_results_files():
    card = (ROOT / "docs/models/surgsam-ref-nano-synth.md").read_text()
    res = json.loads((ROOT / "benchmarks/results_2026-12-06_referring_ablation_detections.json").read_text())
    empty = json.loads((ROOT / "benchmarks/results_2026-12-02_referring_ablation.json").read_text())  # run c only
    assert res["checkpoint"] == empty["checkpoint"] == "surgsam-ref-nano-synth"
    rows = _table(card, "| variant | J&F")
    assert [r["variant"] for r in res["rows"]] == ["cifs+dlm", "cifs+fifo", "nocifs+dlm", "nocifs+fifo"]
    assert len(rows) == 4
    for cells, r in zip(rows, res["rows"]):
        want = [round(r[k], 1) for k in ("J&F", "J", "F", "inst J&F", "tissue J&F")]
        assert [float(c) for c in cells[1:6]] == want and cells[6] == r["found"], r["variant"]
    e = {r["variant"]: r for r in empty["rows"]}
    assert (
        f"CIFS + dlm {round(e['cifs+dlm']['J&F'], 1)} (instruments {round(e['cifs+dlm']['inst J&F'], 1)},"
        in " ".join(card.split())
    )
    assert f"no CIFS + dlm {round(e['nocifs+dlm']['J&F'], 1)}" in " ".join(card.split())


def test_second_heldout_set_numbers_are_the_results_file():
    """Both cards' "second held-out set" tables (issue 19) are benchmarks/heldout_both.py's output."""
    res = json.loads((ROOT / "benchmarks/results_2026-12-05_heldout_both.json").read_text())  # the tracking model's
    refer = json.loads((ROOT / "benchmarks/results_2026-12-06_heldout_both.json").read_text())  # run e (session 21)
    assert res["checkpoint"] == "surgsam-nano-synth" and res["ref_checkpoint"] == "surgsam-ref-nano-synth"
    assert refer["checkpoint"] == "surgsam-nano-synth" and refer["ref_checkpoint"] == "surgsam-ref-nano-synth"
    assert res["sets"]["B"]["synth_config"]["style"] == "alt"
    assert res["sets"]["B"]["synth_config"]["phrasing"] == "paraphrase"
    r = res["results"]
    nano = (ROOT / "docs/models/surgsam-nano-synth.md").read_text()
    rows = _table(nano, "| held-out set | mask prompt J&F")
    assert len(rows) == 2
    for cells, s in zip(rows, "AB"):
        want = [round(r[s][run][k], 1) for run in ("mask", "box") for k in ("J&F", "J", "F")]
        assert [float(c) for c in cells[1:7]] == want, s
    ref = (ROOT / "docs/models/surgsam-ref-nano-synth.md").read_text()
    rows = _table(ref, "| held-out set | J&F")
    assert len(rows) == 2
    for cells, s in zip(rows, "AB"):
        x = refer["results"][s]["refer"]
        want = [round(x[k], 1) for k in ("J&F", "J", "F", "instruments J&F", "tissue J&F")]
        assert [float(c) for c in cells[1:6]] == want, s
        assert cells[6:8] == [
            f"{x['all found']}/{x['all targets']}",
            f"{x['instruments found']}/{x['instruments targets']}",
        ]
    assert "benchmarks/results_2026-12-05_heldout_both.json" in nano and "benchmarks/heldout_both.py" in ref
    assert "benchmarks/results_2026-12-06_heldout_both.json" in ref


def _paired_cell(d: dict) -> str:
    """How the training tables print a paired change: mean (low, high), bold when the interval excludes 0."""
    text = f"{d['mean']:+.1f} ({d['low']:+.1f}, {d['high']:+.1f})"
    return f"**{text}**" if d["low"] > 0 or d["high"] < 0 else text


def test_training_session13_table_is_the_results_file():
    """docs/training.md's session-13 table (issue 19): every paired change, its interval and its
    bold (interval without 0) are benchmarks/results_2026-12-03_nano_session13.json's."""
    res = json.loads((ROOT / "benchmarks/results_2026-12-03_nano_session13.json").read_text())
    rows = _table((ROOT / "docs/training.md").read_text(), "| checkpoint | validation | set A, mask")
    names = {
        "`nano-photo3` step 2500 (session 11)": "nano-photo3 step 2500",
        "step 3500": "nano-photo3 step 3500",
        "step 4500": "nano-photo3 step 4500",
        "step 5000": "nano-photo3 step 5000",
        "step 5500 (best on validation)": "nano-photo3 step 5500",
        "average of steps 3500, 4000, 4500": "average of nano-photo3 steps 3500, 4000, 4500",
    }
    checked = 0
    for cells in rows:
        key = names.get(cells[0])
        if key is None:
            continue
        paired = res["heldout"][key]["paired_vs_shipped"]
        for cell, (s, run) in zip(cells[2:6], [("A", "mask"), ("A", "box"), ("B", "mask"), ("B", "box")]):
            assert cell == _paired_cell(paired[s][run]), (key, s, run)
            checked += 1
    assert checked == 24
    valid = {(r["checkpoint"].rsplit("/", 1)[-1], r["prompt"]): r["J&F"] for r in res["validation"]}
    for cells in rows:
        if cells[0].startswith("step "):
            step = int(cells[0].split()[1])
            want = f"{valid[(f'step_{step:07d}.pt', 'mask')]:.1f} / {valid[(f'step_{step:07d}.pt', 'box')]:.1f}"
            assert cells[1].strip("*").replace("** / **", " / ") == want, cells[0]


def _check_training_table(heading: str, results: str, rows_expected: int, heldout_expected: int) -> None:
    """The table under ``heading`` in docs/training.md is ``results``'s: every validation J&F
    (mask / box) by run and step, every paired change with its interval and bold, and the row
    marked "best on validation" is each run's best mask J&F there."""
    res = json.loads((ROOT / results).read_text())
    doc = (ROOT / "docs/training.md").read_text()
    rows = _table(doc[doc.index(heading) :], "| checkpoint | validation | set A, mask")
    valid = {(r["checkpoint"], r["prompt"]): r["J&F"] for r in res["validation"]}
    run, seen, held = None, [], 0
    for cells in rows[1:]:
        label = cells[0]
        if label.startswith("`"):
            run, label = label[1:].split("` ")
        step = int(label.split()[1])
        ckpt = f"/work/runs/{run}/checkpoints/step_{step:07d}.pt"
        assert cells[1] == f"{valid[(ckpt, 'mask')]:.1f} / {valid[(ckpt, 'box')]:.1f}", cells[0]
        seen.append((run, step, "best on validation" in label))
        if not cells[2]:
            continue
        paired = res["heldout"][f"{run} step {step}"]["paired_vs_shipped"]
        for cell, (s, prompt) in zip(cells[2:6], [("A", "mask"), ("A", "box"), ("B", "mask"), ("B", "box")]):
            assert cell == _paired_cell(paired[s][prompt]), (run, step, s, prompt)
            held += 1
    assert len(seen) == rows_expected and held == heldout_expected
    for name in {r for r, _, _ in seen}:
        steps = [step for r, step, _ in seen if r == name]
        best = max(steps, key=lambda k: valid[(f"/work/runs/{name}/checkpoints/step_{k:07d}.pt", "mask")])
        assert [step for r, step, b in seen if r == name and b] == [best], name


def test_training_session14_table_is_the_results_file():
    """docs/training.md's session-14 table (issue 19: the colour run's second seed and its last
    phase with fewer colour changes)."""
    _check_training_table("### Session 14", "benchmarks/results_2026-12-04_nano_session14.json", 14, 16)


def test_training_session15_table_is_the_results_file():
    """docs/training.md's session-15 table (issue 19: the longer last phase, colour 0.3 from the
    start, the H200 runs)."""
    _check_training_table("### Session 15", "benchmarks/results_2026-12-04_nano_session15.json", 23, 8)


def test_training_session17_table_is_the_results_file():
    """docs/training.md's session-17 table (issue 19: more box-prompted clips; the model shipped in session 18)."""
    _check_training_table("### Session 17", "benchmarks/results_2026-12-05_nano_session17.json", 6, 4)


def test_training_session19_table_is_the_results_file():
    """docs/training.md's session-19 tables: exit clips on the shipped model (not shipped), and the
    presence-threshold check (validation J&F and absent / present counts of each shifted copy)."""
    _check_training_table("### Session 19", "benchmarks/results_2026-12-05_nano_session19.json", 5, 4)
    res = json.loads((ROOT / "benchmarks/results_2026-12-05_nano_session19.json").read_text())
    doc = (ROOT / "docs/training.md").read_text()
    rows = _table(doc[doc.index("### Session 19") :], "| threshold | validation mask / box J&F")
    sweep = {(Path(r["checkpoint"]).name, r["prompt"]): r["J&F"] for r in res["score_shift_valid_sweep"]}
    assert [r[0].split()[0] for r in rows] == ["0", "1", "2", "4"]
    for cells in rows:
        name = f"step_{10 * int(cells[0].split()[0]):07d}.pt"
        assert cells[1] == f"{sweep[name, 'mask']:.1f} / {sweep[name, 'box']:.1f}", cells[0]
    said = " ".join(res["absent_objects_valid"].values())
    for cells in rows:
        for cell in cells[2:]:
            assert not cell or cell in said, cell


def test_training_session20_table_is_the_results_file():
    """docs/training.md's session-20 table (12-frame exit clips; not shipped) and its absent counts."""
    _check_training_table("### Session 20", "benchmarks/results_2026-12-06_nano_session20.json", 4, 0)
    res = json.loads((ROOT / "benchmarks/results_2026-12-06_nano_session20.json").read_text())
    doc = " ".join((ROOT / "docs/training.md").read_text().split())
    doc = doc[doc.index("### Session 20") :]
    c, w = res["absent_objects_valid"]["nano-exit12 step 1500"], res["absent_objects_valid"]["shipped"]
    assert f"writes a mask on {c['absent_with_mask']} of the {c['absent']} absent object-frames" in doc
    assert f"({c['absent_with_mask_pct']:.1f} %, the same count as the shipped model" in doc
    assert c["absent_with_mask"] == w["absent_with_mask"] and c["absent"] == w["absent"]
    where = c["where"]
    assert f"{where['same_category']} / {where['other_category']} / {where['background']} by where" in doc
    assert f"misses {c['present_missed']} of {c['present']} present ones ({c['present_missed_pct']:.1f} %;" in doc
    assert f"shipped {w['present_missed']}, {w['present_missed_pct']:.1f} %)" in doc
    ww = w["where"]
    assert (
        f"lie on an instrument of the same category ({ww['same_category']}), of another category "
        f"({ww['other_category']}) or on background ({ww['background']}), and {ww['frames_since_seen']['6+']} of them"
        in doc
    )


def test_nano_card_absent_object_breakdown_is_the_results_file():
    """Where the shipped model's masks on absent objects lie, as the card says it."""
    card = " ".join((ROOT / "docs/models/surgsam-nano-synth.md").read_text().split())
    res = json.loads((ROOT / "benchmarks/results_2026-12-06_absent_where.json").read_text())
    assert "benchmarks/results_2026-12-06_absent_where.json" in card
    a, v = res["heldout_a"], res["valid"]
    assert f"writes a mask on {a['absent_with_mask']} ({a['absent_with_mask_pct']:.1f} %;" in card
    w = a["where"]
    assert (
        f"{w['same_category']} on one of the same category, {w['other_category']} on one of another category, "
        f"{w['background']} on background; {w['frames_since_seen']['6+']} of them come 6 or more frames" in card
    )
    w = v["where"]
    said = f"({v['absent_with_mask']} masks: {w['same_category']} / {w['other_category']} / {w['background']}, "
    assert said + f"{w['frames_since_seen']['6+']} at 6 or more frames)" in card


def test_training_session21_tables_are_the_results_file():
    """docs/training.md's session-21 tables (--absent-weight 4 and 2; not shipped): validation
    J&F by checkpoint, and each checkpoint's absent / present counts from absent_objects.py."""
    res_path = "benchmarks/results_2026-12-06_nano_session21.json"
    _check_training_table("### Session 21", res_path, 6, 0)
    res = json.loads((ROOT / res_path).read_text())
    doc = (ROOT / "docs/training.md").read_text()
    doc = doc[doc.index("### Session 21") :]
    rows = _table(doc, "| checkpoint | absent object-frames with a mask")
    counts = res["absent_objects_valid"]
    keys = ["shipped"] + [f"{r} step {s}" for r in ("nano-absent4s", "nano-absent2") for s in (500, 1000, 1500)]
    assert len(rows) == len(keys)
    for cells, key in zip(rows, keys):
        c, w = counts[key], counts[key]["where"]
        assert cells[1] == f"{c['absent_with_mask']} ({c['absent_with_mask_pct']:.1f} %)", key
        assert cells[2] == f"{c['present_missed']} ({c['present_missed_pct']:.1f} %)", key
        assert cells[3] == f"{w['same_category']} / {w['other_category']} / {w['background']}", key
    ship = {r["prompt"]: r["J&F"] for r in res["shipped_validation"]}
    assert f"| {ship['mask']:.1f} / {ship['box']:.1f} |" in doc.split("\n| `nano-absent4s`")[0]
    assert all(r["J&F"] < ship["mask"] for r in res["validation"] if r["prompt"] == "mask")
    first = counts["nano-absent4 step 500 (session 20)"]
    flat = " ".join(doc.split())
    assert f"({first['absent_with_mask']} absent, {first['present_missed']} missed at its step 500" in flat
    w4 = [counts[f"nano-absent4s step {s}"] for s in (500, 1000, 1500)]
    lo, hi = min(c["absent_with_mask"] for c in w4), max(c["absent_with_mask"] for c in w4)
    assert f"masks {lo}-{hi} absent object-frames instead of {counts['shipped']['absent_with_mask']}" in flat
    lo, hi = min(c["present_missed"] for c in w4), max(c["present_missed"] for c in w4)
    assert f"misses {lo}-{hi} present ones instead of {counts['shipped']['present_missed']}" in flat


def test_training_run_e_tables_are_the_results_file():
    """docs/training.md's run-e section (session 21: the referring branch rebased on the
    session-18 nano, the shipped file): validation rows and the held-out paired changes."""
    res = json.loads((ROOT / "benchmarks/results_2026-12-06_ref_rebase.json").read_text())
    doc = (ROOT / "docs/training.md").read_text()
    doc = doc[doc.index("#### Run e (session 21)") :]
    rows = _table(doc, "| checkpoint | J&F | instruments J&F")
    assert len(rows) == len(res["validation"]) == 4
    for cells, r in zip(rows, res["validation"]):
        want = [f"{r[k]:.1f}" for k in ("J&F", "instruments J&F", "tissue J&F")] + [f"{r['found']}/{r['targets']}"]
        assert cells[1:] == want, cells[0]
    assert "(shipped)" in rows[-1][0] and res["validation"][-1]["checkpoint"].endswith("step_0001000.pt")
    assert max(r["J&F"] for r in res["validation"]) == res["validation"][-1]["J&F"]
    rows = _table(doc, "| held-out set | run c | run e | change")
    assert len(rows) == 2
    for cells, s in zip(rows, "AB"):
        x, p = res["heldout"]["results"][s]["refer"], res["heldout"]["paired"][s]["refer"]
        assert cells[1:4] == [f"{p['old']:.1f}", f"{x['J&F']:.1f}", _paired_cell(p)], s
        assert cells[4:] == [
            f"{x['instruments J&F']:.1f}",
            f"{x['tissue J&F']:.1f}",
            f"{x['all found']}/{x['all targets']}",
        ], s
        assert p["new"] > p["old"] and abs(p["new"] - x["J&F"]) < 1e-9
    assert res["heldout"]["against"] == "benchmarks/results_2026-12-05_heldout_both.json"


def test_referring_card_run_e_validation_and_set_b_controls_are_the_results_files():
    card = (ROOT / "docs/models/surgsam-ref-nano-synth.md").read_text()
    v = json.loads((ROOT / "benchmarks/results_2026-12-06_ref_rebase.json").read_text())["validation"]
    assert f"{v[-1]['J&F']:.1f} against run c's {v[0]['J&F']:.1f}" in " ".join(card.split())
    ctl = json.loads((ROOT / "benchmarks/results_2026-12-06_heldout_b_controls_refer.json").read_text())
    old = json.loads((ROOT / "benchmarks/results_2026-12-02_heldout_b_controls.json").read_text())
    both = json.loads((ROOT / "benchmarks/results_2026-12-06_heldout_both.json").read_text())
    new = {c["name"]: c["results"]["refer"] for c in ctl["controls"]}
    was = {c["name"]: c["results"]["refer"]["J&F"] for c in old["controls"]}
    new["set B"], was["set B"] = both["results"]["B"]["refer"], both["paired"]["B"]["refer"]["old"]
    order = ["default look, standard sentences", "default look, paraphrases", "alt look, standard sentences", "set B"]
    rows = _table(card, "| set B's scenes (seed 2) | J&F")
    assert len(rows) == len(order)
    for cells, name in zip(rows, order):
        x = new[name]
        assert cells[1:] == [
            f"{x['J&F']:.1f}",
            f"{x['instruments J&F']:.1f}",
            f"{x['tissue J&F']:.1f}",
            f"{x['all found']}/{x['all targets']}",
            f"{x['instruments found']}/{x['instruments targets']}",
            f"{was[name]:.1f}",
        ], name


def test_training_referring_summary_cites_run_e_ablation():
    abl = json.loads((ROOT / "benchmarks/results_2026-12-06_referring_ablation_detections.json").read_text())
    rows = {r["variant"]: r["J&F"] for r in abl["rows"]}
    doc = " ".join((ROOT / "docs/training.md").read_text().split())
    assert f"CIFS {rows['cifs+dlm']:.1f} against {rows['nocifs+dlm']:.1f} without it" in doc
