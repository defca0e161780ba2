"""Our SAM 2.1 weights in transformers' ``Sam2VideoModel`` (for the paired benchmark).

Parameter names differ between Meta's layout (which :class:`SAM2Model` keeps) and
transformers'; :func:`hf_state_dict` renames (and, for the point embeddings, stacks) them so
that the same weights run in both. Only SAM 2.1 presets map (transformers has no SAM 2.0
video flags); :func:`hf_config` builds the matching config at any image size.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from ..modeling.presets import SAM2Config
from ..modeling.sam2 import SAM2Model

# (our pattern, transformers' replacement), applied in order to every name
_RENAMES: list[tuple[str, str]] = [
    (r"^maskmem_tpos_enc$", "memory_temporal_positional_encoding"),
    (r"^no_mem_embed$", "no_memory_embedding"),
    (r"^no_mem_pos_enc$", "no_memory_positional_encoding"),
    (r"^no_obj_ptr$", "no_object_pointer"),
    (r"^no_obj_embed_spatial$", "occlusion_spatial_embedding_parameter"),
    (r"^obj_ptr_tpos_proj\.", "temporal_positional_encoding_projection_layer."),
    (r"^obj_ptr_proj\.", "object_pointer_proj."),
    (r"^image_encoder\.trunk\.", "vision_encoder.backbone."),
    (r"^image_encoder\.neck\.convs\.(\d+)\.conv\.", r"vision_encoder.neck.convs.\1."),
    (r"patch_embed\.proj\.", "patch_embed.projection."),
    (r"^sam_prompt_encoder\.", "prompt_encoder."),
    (r"^prompt_encoder\.mask_downscaling\.0\.", "prompt_encoder.mask_embed.conv1."),
    (r"^prompt_encoder\.mask_downscaling\.1\.", "prompt_encoder.mask_embed.layer_norm1."),
    (r"^prompt_encoder\.mask_downscaling\.3\.", "prompt_encoder.mask_embed.conv2."),
    (r"^prompt_encoder\.mask_downscaling\.4\.", "prompt_encoder.mask_embed.layer_norm2."),
    (r"^prompt_encoder\.mask_downscaling\.6\.", "prompt_encoder.mask_embed.conv3."),
    (r"^sam_mask_decoder\.", "mask_decoder."),
    (r"^mask_decoder\.output_upscaling\.0\.", "mask_decoder.upscale_conv1."),
    (r"^mask_decoder\.output_upscaling\.1\.", "mask_decoder.upscale_layer_norm."),
    (r"^mask_decoder\.output_upscaling\.3\.", "mask_decoder.upscale_conv2."),
    (r"norm_final_attn\.", "layer_norm_final_attn."),
    (r"^memory_attention\.norm\.", "memory_attention.layer_norm."),
    (r"^memory_encoder\.out_proj\.", "memory_encoder.projection."),
    (r"\.out_proj\.", ".o_proj."),
    (r"\.norm([1-4])\.", r".layer_norm\1."),
    (r"^memory_encoder\.pix_feat_proj\.", "memory_encoder.feature_projection."),
    (r"^memory_encoder\.fuser\.", "memory_encoder.memory_fuser."),
    (r"\.gamma$", ".scale"),
    (r"\.dwconv\.", ".depthwise_conv."),
    (r"\.pwconv([12])\.", r".pointwise_conv\1."),
    (r"(memory_fuser\.layers\.\d+)\.norm\.", r"\1.layer_norm."),
]
# Meta's mask downsampler is one Sequential (conv, LayerNorm2d, GELU) x 4 + a final conv
_DOWNSAMPLER = re.compile(r"^memory_encoder\.mask_downsampler\.encoder\.(\d+)\.(.*)$")
# an MLP of n layers: layers.0 -> proj_in, layers.1..n-2 -> layers.0..n-3, layers.n-1 -> proj_out
_MLP = re.compile(r"^(.*?(?:mlp|mlps\.\d+|_head|object_pointer_proj))\.layers\.(\d+)\.(weight|bias)$")


def _plain(name: str) -> str:
    """Every rename but the MLP layer indices."""
    m = _DOWNSAMPLER.match(name)
    if m:
        i, rest = int(m.group(1)), m.group(2)
        if i % 3 == 0 and i < 12:
            return f"memory_encoder.mask_downsampler.layers.{i // 3}.conv.{rest}"
        if i % 3 == 1:
            return f"memory_encoder.mask_downsampler.layers.{i // 3}.layer_norm.{rest}"
        return f"memory_encoder.mask_downsampler.final_conv.{rest}"
    for pat, rep in _RENAMES:
        name = re.sub(pat, rep, name)
    return name


def hf_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our (Meta-named) SAM 2.1 state dict -> transformers' ``Sam2VideoModel`` names."""
    points = sorted(
        (k for k in state if k.startswith("sam_prompt_encoder.point_embeddings.")), key=lambda k: int(k.split(".")[2])
    )
    plain = {_plain(k): v for k, v in state.items() if k not in points}
    depth: dict[str, int] = {}
    for n in plain:
        m = _MLP.match(n)
        if m:
            depth[m.group(1)] = max(depth.get(m.group(1), 0), int(m.group(2)) + 1)
    out: dict[str, torch.Tensor] = {}
    for n, v in plain.items():
        m = _MLP.match(n)
        if m:
            prefix, i, kind = m.group(1), int(m.group(2)), m.group(3)
            last = depth[prefix] - 1
            n = (
                f"{prefix}.proj_in.{kind}"
                if i == 0
                else f"{prefix}.proj_out.{kind}"
                if i == last
                else f"{prefix}.layers.{i - 1}.{kind}"
            )
        out[n] = v
    gauss = out.pop("prompt_encoder.pe_layer.positional_encoding_gaussian_matrix", None)
    if gauss is not None:
        out["prompt_encoder.shared_embedding.positional_embedding"] = gauss
        out["shared_image_embedding.positional_embedding"] = gauss
    if points:
        out["prompt_encoder.point_embed.weight"] = torch.cat([state[k] for k in points])
    return out


def hf_config(cfg: SAM2Config) -> Any:
    """transformers' ``Sam2VideoConfig`` equal to a SAM 2.1 :class:`SAM2Config`."""
    from transformers import Sam2VideoConfig
    from transformers.models.sam2.configuration_sam2 import Sam2HieraDetConfig, Sam2VisionConfig
    from transformers.models.sam2_video.configuration_sam2_video import (
        Sam2VideoMaskDecoderConfig,
        Sam2VideoPromptEncoderConfig,
    )

    if cfg.version != "2.1":
        raise ValueError(f"transformers' video model implements SAM 2.1; {cfg.name} is SAM {cfg.version}")
    h, s = cfg.hiera, cfg.image_size
    dims = list(h.stage_dims)
    heads = [int(h.num_heads * h.head_mul**i) for i in range(len(h.stages))]
    backbone = Sam2HieraDetConfig(
        hidden_size=h.embed_dim,
        num_attention_heads=h.num_heads,
        image_size=[s, s],
        window_positional_embedding_background_size=list(h.window_pos_embed_bkg_spatial_size),
        num_query_pool_stages=h.q_pool,
        query_stride=list(h.q_stride),
        blocks_per_stage=list(h.stages),
        embed_dim_per_stage=dims,
        num_attention_heads_per_stage=heads,
        window_size_per_stage=list(h.window_spec),
        global_attention_blocks=list(h.global_att_blocks),
        mlp_ratio=4.0,
    )
    sizes = [[s // 4, s // 4], [s // 8, s // 8], [s // 16, s // 16]]
    vision = Sam2VisionConfig(
        backbone_config=backbone,
        backbone_channel_list=list(reversed(dims)),
        backbone_feature_sizes=sizes,
        fpn_hidden_size=cfg.d_model,
        fpn_top_down_levels=list(cfg.fpn_top_down_levels),
    )
    return Sam2VideoConfig(
        vision_config=vision,
        # config objects, not dicts: transformers 5.17 built the mask decoder's sub-config from a dict
        # as a prompt-encoder config (AttributeError: no attribute 'attention_downsample_rate')
        prompt_encoder_config=Sam2VideoPromptEncoderConfig(
            hidden_size=cfg.d_model, image_size=s, patch_size=cfg.backbone_stride
        ),
        mask_decoder_config=Sam2VideoMaskDecoderConfig(
            hidden_size=cfg.d_model,
            mlp_dim=cfg.decoder_mlp_dim,
            num_hidden_layers=cfg.decoder_depth,
            num_attention_heads=cfg.decoder_heads,
            num_multimask_outputs=cfg.num_multimask_outputs,
            iou_head_depth=cfg.iou_head_depth,
            iou_head_hidden_dim=cfg.iou_head_hidden_dim,
        ),
        image_size=s,
        num_maskmem=cfg.num_maskmem,
        max_object_pointers_in_encoder=cfg.max_obj_ptrs_in_encoder,
        memory_attention_hidden_size=cfg.d_model,
        memory_attention_num_layers=cfg.mem_attn_layers,
        memory_attention_feed_forward_hidden_size=cfg.mem_attn_ffn,
        memory_attention_rope_feat_sizes=[cfg.feat_size, cfg.feat_size],
        memory_encoder_hidden_size=cfg.d_model,
        memory_encoder_output_channels=cfg.mem_dim,
        mask_downsampler_embed_dim=cfg.d_model,
        memory_fuser_embed_dim=cfg.d_model,
        memory_fuser_intermediate_dim=4 * cfg.d_model,
        memory_fuser_num_layers=cfg.mem_fuser_layers,
        sigmoid_scale_for_mem_enc=cfg.sigmoid_scale_for_mem_enc,
        sigmoid_bias_for_mem_enc=cfg.sigmoid_bias_for_mem_enc,
    )


def hf_model(model: SAM2Model) -> Any:
    """transformers' ``Sam2VideoModel`` holding ``model``'s weights (eval mode, same device)."""
    from transformers import Sam2VideoModel

    hf = Sam2VideoModel(hf_config(model.cfg)).eval()
    missing, unexpected = hf.load_state_dict(hf_state_dict(model.state_dict()), strict=False)
    if missing or unexpected:
        raise ValueError(
            f"weights do not map onto transformers' Sam2VideoModel: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    return hf.to(next(model.parameters()).device)
