"""Models bundled with the package: name resolution, clear errors, and the shipped file itself."""

from __future__ import annotations

import pytest
import torch

from surgsam.modeling import CheckpointError, build_model, read_checkpoint, save_checkpoint
from surgsam.modeling import embedded
from surgsam.modeling.embedded import EMBEDDED_MODELS, EmbeddedModel, embedded_path, resolve_checkpoint


def test_the_demo_model_ships_and_loads_by_name():
    path = embedded_path("surgsam-nano-synth")
    assert path.stat().st_size <= 25 * 2**20
    model = build_model(checkpoint="surgsam-nano-synth")
    assert model.cfg.name == "nano" and model.image_size == 256
    meta = read_checkpoint("surgsam-nano-synth").meta
    # the record of how it was made travels with it
    assert meta["recipe"] == "nano-synth" and meta["step"] > 0 and "surgsam train" in meta["command"]
    assert meta["train_config"]["model"] == "nano" and [d.rsplit("/", 1)[-1] for d in meta["train_config"]["data"]] == [
        "synth-nano"
    ]
    assert meta["evaluation"]["rows"] and meta["train_time_s"] > 0
    # trained, not random: the weights differ from a fresh nano of any seed
    torch.manual_seed(0)
    fresh = build_model("nano")
    diff = sum((a - b).abs().sum() for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))
    assert diff > 1.0


def test_a_file_wins_over_a_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    net = build_model("nano", image_size=64)
    save_checkpoint(net, tmp_path / "surgsam-nano-synth", net.cfg.to_dict())
    assert resolve_checkpoint("surgsam-nano-synth").resolve() == tmp_path / "surgsam-nano-synth"
    assert build_model(checkpoint="surgsam-nano-synth").image_size == 64
    assert resolve_checkpoint("other.pt").name == "other.pt"  # not a name: left for the loader to report


def test_unknown_or_missing_embedded_models_are_clear_errors(monkeypatch):
    with pytest.raises(KeyError, match="unknown embedded model 'nope'"):
        embedded_path("nope")
    monkeypatch.setitem(EMBEDDED_MODELS, "surgsam-ghost", EmbeddedModel("surgsam-ghost", "ghost.pt", "missing"))
    with pytest.raises(FileNotFoundError, match="'surgsam-ghost' is not part of this installation"):
        build_model(checkpoint="surgsam-ghost")
    assert not embedded.is_embedded_available("surgsam-ghost")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        read_checkpoint("surgsam-typo")


def test_a_wrong_preset_for_the_embedded_model_is_refused():
    with pytest.raises(CheckpointError, match="saved from preset 'nano'"):
        build_model("sam2.1_hiera_s", checkpoint="surgsam-nano-synth")


@pytest.fixture(scope="module")
def tissue_frame(tmp_path_factory):
    """One frame of a fresh synthetic video (seed 7, unseen in training) with its expressions."""
    from surgsam.data import open_dataset
    from surgsam.data.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("ref_embedded")
    generate(
        root,
        SynthConfig(width=320, height=256, frames=2, tissue_objects=(3, 3)),
        videos=1,
        seed=7,
        valid=1,
        overwrite=True,
        progress=False,
    )
    video = open_dataset(root, "valid")[0]
    return video, video.frames[0], video.labels(0)


def test_the_referring_model_ships_loads_by_name_and_reads_the_text(tissue_frame):
    from surgsam.referring.checkpoint import build_referring_model, read_referring_checkpoint
    from surgsam.referring.text import build_text_encoder

    path = embedded_path("surgsam-ref-nano-synth")
    assert path.stat().st_size <= 25 * 2**20  # the MiniLM encoder is not in it
    net = build_referring_model(checkpoint="surgsam-ref-nano-synth").eval()
    assert net.sam.cfg.name == "nano" and net.cfg.text_encoder == "minilm" and net.sam.image_size == 256
    meta = read_referring_checkpoint("surgsam-ref-nano-synth").meta
    assert meta["recipe"] == "ref-nano-synth" and meta["step"] > 0 and "surgsam train" in meta["command"]
    assert meta["evaluation"]["rows"]
    # trained: each tissue's own sentence segments that tissue (random weights give IoU ~0)
    video, frame, labels = tissue_frame
    enc = build_text_encoder("minilm")
    tissue = [e for e in video.expressions() if e.obj_id in (11, 12, 17) and (labels == e.obj_id).mean() > 0.05]
    assert len(tissue) >= 2
    with torch.no_grad():
        feats = net.sam.encode_image(net.sam.preprocess(torch.from_numpy(frame).permute(2, 0, 1)[None]))
        det = net.detect(feats.expand(len(tissue)), [], net.project_text(enc.encode([e.text for e in tissue])))
        logits = torch.nn.functional.interpolate(det.masks.high_res_masks, size=labels.shape, mode="bilinear")
    for i, e in enumerate(tissue):
        pred, gt = logits[i, 0].numpy() > 0, labels == e.obj_id
        iou = (pred & gt).sum() / max(1, (pred | gt).sum())
        assert iou > 0.5, (e.text, iou)
