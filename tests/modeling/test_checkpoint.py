"""The strict checkpoint loader on good and bad files (``surgsam.modeling.checkpoint``)."""

from __future__ import annotations

import collections
import os
from pathlib import Path

import pytest
import torch

from oracle import CONFIGS, needs_oracle
from surgsam.modeling import (
    CheckpointError,
    SAM2Model,
    build_model,
    get_preset,
    list_presets,
    read_checkpoint,
    save_checkpoint,
)
from surgsam.modeling.checkpoint import guess_preset, strip_prefixes

OFFICIAL = [p for p in list_presets() if p != "nano"]
KEY_LISTS = [
    Path(__file__).parent / "keys" / "sam2.1_hiera_s.txt",  # copy kept with the tests
    Path(os.environ.get("SURGSAM_SHARED", "/work/shared")) / "checkpoint_keys" / "sam2.1_hiera_s.txt",
]


class NotATensor:
    """A custom class: unpickling it needs code execution, which weights_only forbids."""

    def __init__(self) -> None:
        self.payload = [1, 2, 3]


@pytest.fixture(scope="module")
def nano_sd():
    torch.manual_seed(0)
    return build_model("nano").state_dict()


@pytest.fixture(scope="module")
def small_sd():
    return build_model("sam2.1_hiera_small").state_dict()


def _save(obj, path: Path) -> Path:
    torch.save(obj, path)
    return path


def _same_weights(model: torch.nn.Module, sd: dict[str, torch.Tensor]) -> bool:
    own = model.state_dict()
    return own.keys() == sd.keys() and all(torch.equal(own[k], sd[k]) for k in sd)


# ---------------------------------------------------------------------- accepted layouts
def test_meta_format(tmp_path, nano_sd):
    path = _save({"model": nano_sd}, tmp_path / "meta.pt")
    assert _same_weights(build_model("nano", checkpoint=path), nano_sd)


def test_bare_state_dict(tmp_path, nano_sd):
    path = _save(collections.OrderedDict(nano_sd), tmp_path / "bare.pth")
    ck = read_checkpoint(path)
    assert ck.config is None
    assert _same_weights(build_model("nano", checkpoint=path), nano_sd)


@pytest.mark.parametrize("prefix", ["_orig_mod.", "module.", "module._orig_mod."])
def test_wrapper_prefixes_stripped(tmp_path, nano_sd, prefix):
    path = _save({"model": {prefix + k: v for k, v in nano_sd.items()}}, tmp_path / "wrapped.pt")
    assert _same_weights(build_model("nano", checkpoint=path), nano_sd)


def test_strip_prefixes_inner_compile_wrapper():
    t = torch.zeros(1)
    assert list(strip_prefixes({"image_encoder._orig_mod.trunk.x": t})) == ["image_encoder.trunk.x"]


def test_own_format_round_trip(tmp_path):
    torch.manual_seed(3)
    model = build_model("nano", image_size=128)
    path = save_checkpoint(model, tmp_path / "ours.pt", config=model.cfg.to_dict(), step=7, note="test")
    ck = read_checkpoint(path)
    assert ck.config is not None and ck.meta == {"step": 7, "note": "test"}
    again = build_model(checkpoint=path)  # no name: the file carries its config
    assert again.cfg == model.cfg and again.image_size == 128
    assert _same_weights(again, model.state_dict())
    assert build_model("nano", checkpoint=path).cfg == model.cfg  # a consistent name is fine
    assert build_model(checkpoint=path, image_size=256).image_size == 256


def test_own_format_refuses_contradicting_name(tmp_path):
    model = build_model("nano")
    path = save_checkpoint(model, tmp_path / "ours.pt", config=model.cfg.to_dict())
    with pytest.raises(CheckpointError, match=r"saved from preset 'nano'.*sam2.1_hiera_tiny"):
        build_model("sam2.1_hiera_tiny", checkpoint=path)


def test_own_format_with_foreign_config(tmp_path, nano_sd):
    cfg = build_model("nano").cfg.to_dict()
    cfg["not_a_field"] = 1
    path = _save({"format": "surgsam", "config": cfg, "model": nano_sd}, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match="not_a_field"):
        build_model(checkpoint=path)


def test_name_required_without_config(tmp_path, nano_sd):
    path = _save({"model": nano_sd}, tmp_path / "meta.pt")
    with pytest.raises(ValueError, match="preset name"):
        build_model(checkpoint=path)


# ---------------------------------------------------------------------- refused files
@pytest.mark.parametrize("target", ["nano", "sam2.1_hiera_tiny"])
def test_wrong_preset(tmp_path, small_sd, target):
    path = _save({"model": small_sd}, tmp_path / "sam2.1_hiera_small.pt")
    with pytest.raises(CheckpointError) as e:
        build_model(target, checkpoint=path)
    msg = str(e.value)
    assert f"the model is '{target}'" in msg and "looks like 'sam2.1_hiera_small'" in msg
    if target == "nano":
        assert "shape mismatches" in msg and "image_encoder.trunk.patch_embed.proj.weight" in msg
    else:  # tiny has 12 trunk blocks, small 16: the extra blocks are unexpected, shapes agree
        assert "unexpected keys" in msg and "image_encoder.trunk.blocks.12." in msg


def test_sam2_file_into_sam21_model(tmp_path):
    sd = build_model("sam2_hiera_tiny").state_dict()
    path = _save({"model": sd}, tmp_path / "sam2_hiera_tiny.pt")
    with pytest.raises(CheckpointError, match=r"(?s)looks like 'sam2_hiera_tiny'.*missing keys.*no_obj_embed_spatial"):
        build_model("sam2.1_hiera_tiny", checkpoint=path)


def test_guess_preset_names_every_official_file():
    for name in OFFICIAL:
        with torch.device("meta"):
            sd = SAM2Model(get_preset(name)).state_dict()
        assert guess_preset(sd) == name


def test_missing_keys(tmp_path, nano_sd):
    sd = dict(nano_sd)
    gone = ["no_mem_embed", "sam_mask_decoder.iou_token.weight", "memory_encoder.fuser.layers.0.gamma"]
    gone = [k for k in gone if k in sd]
    assert len(gone) >= 2
    for k in gone:
        del sd[k]
    path = _save({"model": sd}, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError) as e:
        build_model("nano", checkpoint=path)
    msg = str(e.value)
    assert f"{len(gone)} missing keys" in msg and all(k in msg for k in gone)
    assert "unexpected" not in msg


def test_unexpected_keys(tmp_path, nano_sd):
    sd = dict(nano_sd)
    sd["token_projection.layers.0.weight"] = torch.zeros(2, 2)
    sd["language_model.final_layer_norm.bias"] = torch.zeros(2)
    path = _save({"model": sd}, tmp_path / "extra.pt")
    with pytest.raises(
        CheckpointError, match=r"2 unexpected keys: language_model.final_layer_norm.bias, token_projection"
    ):
        build_model("nano", checkpoint=path)


def test_shape_mismatch_named(tmp_path, nano_sd):
    sd = dict(nano_sd)
    sd["no_mem_embed"] = torch.zeros(1, 1, 7)
    path = _save(sd, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match=r"1 shape mismatches.*no_mem_embed: \(1, 1, 7\) vs \(1, 1, 64\)"):
        build_model("nano", checkpoint=path)


def test_truncated_file(tmp_path, nano_sd):
    path = _save({"model": nano_sd}, tmp_path / "full.pt")
    data = path.read_bytes()
    cut = tmp_path / "truncated.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        build_model("nano", checkpoint=cut)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("this is not a checkpoint\n")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        read_checkpoint(path)


@pytest.mark.parametrize("kind", ["object", "dict_with_object", "sd_with_object"])
def test_pickle_needing_code_is_refused(tmp_path, nano_sd, kind):
    obj = {
        "object": NotATensor(),
        "dict_with_object": {"model": nano_sd, "extra": NotATensor()},
        "sd_with_object": {**nano_sd, "evil": NotATensor()},
    }[kind]
    path = _save(obj, tmp_path / f"{kind}.pt")
    with pytest.raises(CheckpointError, match=r"refused to load .*weights_only=True"):
        build_model("nano", checkpoint=path)


def test_non_tensor_entries(tmp_path, nano_sd):
    path = _save({"model": {**nano_sd, "step": 3}}, tmp_path / "mixed.pt")
    with pytest.raises(CheckpointError, match="not tensors.*step"):
        build_model("nano", checkpoint=path)


def test_not_a_dict(tmp_path):
    path = _save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="expected a dict"):
        read_checkpoint(path)


def test_empty_state_dict(tmp_path):
    path = _save({"model": {}}, tmp_path / "nothing.pt")
    with pytest.raises(CheckpointError, match="no state dict"):
        read_checkpoint(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pt"
    path.touch()
    with pytest.raises(CheckpointError, match="empty"):
        build_model("nano", checkpoint=path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        build_model("nano", checkpoint=tmp_path / "nope.pt")


def test_directory_is_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="is a folder, not a file"):
        read_checkpoint(tmp_path)


def test_device_is_not_a_checkpoint():
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero here")
    with pytest.raises(CheckpointError, match="not a regular file"):
        build_model("nano", checkpoint="/dev/zero")


def test_symlink_loop_and_broken_link(tmp_path):
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    a.symlink_to(b)
    b.symlink_to(a)
    with pytest.raises(CheckpointError, match="symbolic link loop"):
        build_model("nano", checkpoint=a)
    dangling = tmp_path / "dangling.pt"
    dangling.symlink_to(tmp_path / "gone.pt")
    with pytest.raises(FileNotFoundError, match="broken symbolic link"):
        build_model("nano", checkpoint=dangling)


# ---------------------------------------------------------------------- bad values and dtypes
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_refused_and_named(tmp_path, nano_sd, value):
    sd = dict(nano_sd)
    key = "sam_mask_decoder.iou_prediction_head.layers.0.weight"
    sd[key] = sd[key].clone()
    sd[key][0, :3] = value
    path = _save({"model": sd}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="NaN or inf") as e:
        build_model("nano", checkpoint=path)
    assert f"{key} (3 of " in str(e.value)


def test_all_nan_weights_refused(tmp_path, nano_sd):
    sd = {k: torch.full_like(v, float("nan")) for k, v in nano_sd.items()}
    with pytest.raises(CheckpointError, match=r"\d+ tensors hold NaN or inf"):
        read_checkpoint(_save(sd, tmp_path / "nan.pt"))


def test_integer_tensor_where_float_expected(tmp_path, nano_sd):
    sd = dict(nano_sd)
    key = "image_encoder.trunk.pos_embed"
    sd[key] = sd[key].long()
    with pytest.raises(CheckpointError, match="not floating point") as e:
        build_model("nano", checkpoint=_save(sd, tmp_path / "int.pt"))
    assert key in str(e.value) and "int64" in str(e.value)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_needs_the_flag(tmp_path, nano_sd, dtype):
    sd = {k: v.to(dtype) for k, v in nano_sd.items()}
    path = _save({"model": sd}, tmp_path / "half.pt")
    with pytest.raises(CheckpointError, match="half precision") as e:
        build_model("nano", checkpoint=path)
    assert "allow_half" in str(e.value) and str(dtype).removeprefix("torch.") in str(e.value)
    model = build_model("nano", checkpoint=path, allow_half=True)
    assert next(model.parameters()).dtype == torch.float32


def test_safetensors_values_checked(tmp_path, nano_sd):
    st = pytest.importorskip("safetensors.torch")
    sd = {k: v.contiguous() for k, v in nano_sd.items()}
    key = "sam_mask_decoder.iou_token.weight"
    sd[key] = sd[key].clone()
    sd[key][0, 0] = float("inf")
    sd["image_encoder.trunk.pos_embed"] = sd["image_encoder.trunk.pos_embed"].half()
    path = tmp_path / "bad.safetensors"
    st.save_file(sd, str(path))
    with pytest.raises(CheckpointError) as e:
        build_model("nano", checkpoint=path)
    assert key in str(e.value) and "image_encoder.trunk.pos_embed (float16)" in str(e.value)


def test_save_is_atomic(tmp_path, nano_sd, monkeypatch):
    path = save_checkpoint(build_model("nano"), tmp_path / "ours.pt", get_preset("nano").to_dict())
    before = path.read_bytes()

    def full_disk(obj, f, *args, **kwargs):
        with open(f, "wb") as out:
            out.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="no space left"):
        save_checkpoint(build_model("nano"), path, get_preset("nano").to_dict())
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["ours.pt"]


# ---------------------------------------------------------------------- presets
@pytest.mark.parametrize("name", list_presets())
def test_every_preset_builds(name):
    model = build_model(name)
    cfg = get_preset(name)
    assert model.image_size == cfg.image_size and not model.training
    assert model.cfg == cfg


def _read_key_list(path: Path) -> dict[str, tuple[int, ...]]:
    out = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, shape = line.split("\t")[:2]
        out[name] = tuple(int(s) for s in shape.strip("[] ").split(",") if s.strip())
    return out


@pytest.mark.parametrize("image_size", [512, 1024])
def test_sam21_small_keys_match_published_list(image_size):
    path = next((p for p in KEY_LISTS if p.is_file()), None)
    if path is None:
        pytest.skip("checkpoint key list sam2.1_hiera_s.txt not available")
    want = _read_key_list(path)
    assert len(want) == 519
    got = {k: tuple(v.shape) for k, v in build_model("sam2.1_hiera_s", image_size=image_size).state_dict().items()}
    assert list(got) == list(want), "key order differs from Meta's state-dict order"
    assert got == want


@needs_oracle
@pytest.mark.oracle
@pytest.mark.parametrize("name", OFFICIAL)
def test_official_presets_match_meta_state_dict(name):
    import sam2  # noqa: F401  (initialises hydra)
    from sam2.build_sam import build_sam2

    ref = build_sam2(CONFIGS[name], None, device="cpu", mode="eval")
    want = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    with torch.device("meta"):
        ours = SAM2Model(get_preset(name))
    got = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert sorted(set(got) ^ set(want)) == []
    assert got == want


def test_trainer_state_file_is_refused_with_the_weights_beside_it(tmp_path):
    """The trainer writes step_N.pt (weights) and step_N.state.pt (optimizer etc.) side by side;
    passing the state file by mistake names the weights file instead of listing odd entries."""
    model = build_model("nano", image_size=128)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    state = {"step": 3, "optimizer": opt.state_dict(), "schedule": {"step": 3}, "rng_torch": torch.get_rng_state()}
    path = _save(state, tmp_path / "step_0000003.state.pt")
    with pytest.raises(CheckpointError, match=r"trainer state file.*step_0000003\.pt$"):
        build_model(checkpoint=path)
