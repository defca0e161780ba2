"""Numerical parity of the whole SAM 2 / SAM 2.1 network with Meta's reference (sam2==1.1.0).

Meta's model is built with random weights (every tensor randomised, see ``oracle.randomize_``),
saved in Meta's checkpoint format, and loaded STRICTLY into ours through our loader. Both then
see identical inputs; every output must agree to 1e-4 (float32).
"""

from __future__ import annotations

import pytest
import torch

from oracle import build_reference, needs_oracle
from surgsam.modeling import build_model
from surgsam.modeling.sam2 import SpatialMemory

pytestmark = [needs_oracle, pytest.mark.oracle]
TOL = 1e-4
CASES = [("sam2.1_hiera_tiny", 512), ("sam2.1_hiera_tiny", 1024), ("sam2_hiera_tiny", 512), ("sam2_hiera_tiny", 1024)]
MAX_DIFFS: dict[str, float] = {}


def close(name: str, ours: torch.Tensor, ref: torch.Tensor, tol: float = TOL) -> None:
    assert ours.shape == ref.shape, f"{name}: shape {tuple(ours.shape)} vs {tuple(ref.shape)}"
    d = (ours.float() - ref.float()).abs().max().item() if ours.numel() else 0.0
    MAX_DIFFS[name] = max(MAX_DIFFS.get(name, 0.0), d)
    assert d <= tol, f"{name}: max abs diff {d:.3g} > {tol}"


@pytest.fixture(scope="module", params=CASES, ids=[f"{n}@{s}" for n, s in CASES])
def pair(request, tmp_path_factory):
    name, size = request.param
    ref = build_reference(name, size)
    path = tmp_path_factory.mktemp("ckpt") / f"{name}.pt"
    torch.save({"model": ref.state_dict()}, path)  # Meta's official layout
    ours = build_model(name, image_size=size, checkpoint=path)
    torch.manual_seed(1)
    images = torch.randn(2, 3, size, size)
    with torch.no_grad():
        ref_bb = ref.forward_image(images[:1])
        ours_feats = ours.encode_image(images[:1])
    return name, size, ref, ours, images, ref_bb, ours_feats


def ref_flat(ref, bb):
    _, feats, pos, sizes = ref._prepare_backbone_features(bb)
    return feats, pos, sizes


def ref_high_res(feats, sizes):
    return [x.permute(1, 2, 0).reshape(x.size(1), x.size(2), *s) for x, s in zip(feats[:-1], sizes[:-1])]


def test_image_features(pair):
    name, size, ref, ours, images, ref_bb, f = pair
    close("vision_features", f.features, ref_bb["vision_features"])
    close("backbone_fpn[2]", f.features, ref_bb["backbone_fpn"][2])
    close("high_res s0", f.high_res[0], ref_bb["backbone_fpn"][0])
    close("high_res s1", f.high_res[1], ref_bb["backbone_fpn"][1])
    close("vision_pos_enc", f.pos, ref_bb["vision_pos_enc"][2])
    assert f.features.shape[-1] == size // 16


def _prompts(size: int):
    g = torch.Generator().manual_seed(3)
    pts = torch.rand(1, 3, 2, generator=g) * size
    lab = torch.tensor([[1, 0, 1]], dtype=torch.int32)
    box = torch.tensor([[0.2 * size, 0.25 * size, 0.7 * size, 0.8 * size]]).reshape(1, 2, 2)
    box_lab = torch.tensor([[2, 3]], dtype=torch.int32)
    mask = (torch.rand(1, 1, size // 4, size // 4, generator=g) > 0.5).float() * 8 - 4
    return {
        "one_click": dict(points=pts[:, :1], labels=lab[:, :1]),
        "clicks": dict(points=pts, labels=lab),
        "box": dict(points=box, labels=box_lab),
        "box+click": dict(points=torch.cat([box, pts[:, :1]], 1), labels=torch.cat([box_lab, lab[:, :1]], 1)),
        "mask": dict(mask=mask),
        "mask+click": dict(points=pts[:, :1], labels=lab[:, :1], mask=mask),
    }


@pytest.mark.parametrize("prompt", ["one_click", "clicks", "box", "box+click", "mask", "mask+click"])
@pytest.mark.parametrize("multimask", [True, False])
def test_decoder(pair, prompt, multimask):
    """Raw decoder outputs and the full SAM heads (masks, IoU, object score, pointer)."""
    name, size, ref, ours, images, ref_bb, f = pair
    feats, pos, sizes = ref_flat(ref, ref_bb)
    hw = sizes[-1]
    top = (feats[-1] + ref.no_mem_embed).permute(1, 2, 0).reshape(1, -1, *hw)
    high = ref_high_res(feats, sizes)
    p = _prompts(size)[prompt]
    with torch.no_grad():
        pts = (p["points"], p["labels"]) if "points" in p else None
        r_sparse, r_dense = ref.sam_prompt_encoder(points=pts, boxes=None, masks=p.get("mask"))
        o_sparse, o_dense = ours.sam_prompt_encoder(points=pts, boxes=None, masks=p.get("mask"))
        close("prompt sparse", o_sparse, r_sparse)
        close("prompt dense", o_dense, r_dense)
        pe = ref.sam_prompt_encoder.get_dense_pe()
        close("dense pe", ours.sam_prompt_encoder.get_dense_pe(), pe)
        rm, ri, rt, ro = ref.sam_mask_decoder(top, pe, r_sparse, r_dense, multimask, False, high)
        od = ours.sam_mask_decoder(top, pe, o_sparse, o_dense, multimask, False, tuple(high))
        close("decoder masks", od.masks, rm)
        close("decoder iou", od.iou_pred, ri)
        close("decoder tokens", od.sam_tokens, rt)
        close("decoder object score", od.object_score_logits, ro)

        point_inputs = {"point_coords": p["points"], "point_labels": p["labels"]} if "points" in p else None
        r = ref._forward_sam_heads(top, point_inputs, p.get("mask"), high, multimask)
        o = ours.predict_masks(top, tuple(high), p.get("points"), p.get("labels"), p.get("mask"), multimask)
    close("heads low_res_multimasks", o.multimask_logits, r[0])
    close("heads ious", o.ious, r[2])
    close("heads low_res_masks", o.low_res_masks, r[3])
    close("heads high_res_masks", o.high_res_masks, r[4], tol=2e-4)
    close("heads obj_ptr", o.obj_ptr, r[5])
    close("heads object_score", o.object_score_logits, r[6])


def test_tracking_with_memory(pair):
    """Frame 0: mask prompt (conditioning frame); frames 1-3 tracked with a memory bank.

    Checks the memory encoder output, the memory-attention output (memory-conditioned
    features), masks, object pointers and scores at every step.
    """
    name, size, ref, ours, images, ref_bb, f0 = pair
    num_frames = 4
    g = torch.Generator().manual_seed(5)
    frames = [images[:1]] + [images[:1] + 0.3 * torch.randn(1, 3, size, size, generator=g) for _ in range(3)]
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    mask0 = (((yy - size * 0.45) ** 2 + (xx - size * 0.5) ** 2) < (size * 0.2) ** 2).float()[None, None]
    output_dict = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    our_mems: dict[int, tuple[SpatialMemory, torch.Tensor]] = {}
    with torch.no_grad():
        for t, img in enumerate(frames):
            bb = ref_bb if t == 0 else ref.forward_image(img)  # frame 0: the fixture's encodings
            feats, pos, sizes = ref_flat(ref, bb)
            fr = f0 if t == 0 else ours.encode_image(img)
            cond = t == 0
            r_out = ref.track_step(
                frame_idx=t,
                is_init_cond_frame=cond,
                current_vision_feats=feats,
                current_vision_pos_embeds=pos,
                feat_sizes=sizes,
                point_inputs=None,
                mask_inputs=mask0 if cond else None,
                output_dict=output_dict,
                num_frames=num_frames,
            )
            if cond:
                o = ours.mask_as_output(fr.features, fr.high_res, mask0)
            else:
                r_pix = ref._prepare_memory_conditioned_features(
                    t, False, feats[-1:], pos[-1:], sizes[-1:], output_dict, num_frames
                )
                # our bank: conditioning frame in slot 0, the last frames in slots 6, 5, ...
                spatial = [(0, our_mems[0][0])]
                spatial += [
                    (ours.num_maskmem - (t - k), our_mems[k][0])
                    for k in sorted(our_mems)
                    if k > 0 and t - k < ours.num_maskmem
                ]
                pointers = [(t - 0, our_mems[0][1])] + [
                    (t - k, our_mems[k][1]) for k in sorted(our_mems, reverse=True) if k > 0
                ]
                pix = ours.condition_on_memory(fr, spatial, pointers, ptr_tpos_max=min(num_frames, 16) - 1)
                close("memory attention output", pix, r_pix, tol=2e-4)
                o = ours.predict_masks(pix, fr.high_res, multimask_output=True)
            close("track low_res_masks", o.low_res_masks, r_out["pred_masks"], tol=2e-4)
            close("track obj_ptr", o.obj_ptr, r_out["obj_ptr"])
            close("track object_score", o.object_score_logits, r_out["object_score_logits"])
            mem = ours.encode_memory(fr.features, o.high_res_masks, o.object_score_logits)
            close("memory encoder features", mem.features, r_out["maskmem_features"], tol=2e-4)
            close("memory encoder pos", mem.pos, r_out["maskmem_pos_enc"][-1])
            our_mems[t] = (mem, o.obj_ptr)
            key = "cond_frame_outputs" if cond else "non_cond_frame_outputs"
            output_dict[key][t] = r_out


def test_report_max_diffs():
    """Prints the largest differences seen (run with -s); fails if any test recorded none."""
    assert MAX_DIFFS, "parity tests did not run"
    for k, v in sorted(MAX_DIFFS.items()):
        print(f"max|diff| {k:28s} {v:.2e}")


@pytest.mark.parametrize("name", sorted(__import__("oracle").CONFIGS))
def test_every_preset_state_dict_matches_reference(name):
    """Every official preset: same keys and shapes as Meta's model, so its files load strictly."""
    import sam2  # noqa: F401
    from sam2.build_sam import build_sam2

    from oracle import CONFIGS

    ref = build_sam2(
        CONFIGS[name], None, device="cpu", apply_postprocessing=False, hydra_overrides_extra=["++model.image_size=512"]
    )
    with torch.device("meta"):  # shapes only
        ours = build_model(name, image_size=512, device="meta")
    a = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    b = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert a == b
