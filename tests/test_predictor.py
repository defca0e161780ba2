"""``ImagePredictor``: parity with Meta's ``SAM2ImagePredictor`` and input validation.

Parity: Meta's model (random weights) is saved in Meta's format and loaded strictly into ours.
Both predictors then see the SAME preprocessed input tensor (ours: ``model.preprocess``; Meta's
``set_image`` is run with its torchvision resize replaced by that tensor, since the two resize
kernels differ and torchvision is not installed here). Every later step is Meta's own code.
"""

from __future__ import annotations

import sys
import types
from unittest import mock

import numpy as np
import pytest
import torch

from oracle import build_reference, needs_oracle
from surgsam.modeling import build_model
from surgsam.predictor import ImagePrediction, ImagePredictor

TOL = 1e-4
H, W = 300, 400  # non-square on purpose: x is normalised by W, y by H


def _image(h: int = H, w: int = W, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([128 + 60 * np.sin(xx / 17.0), 90 + 50 * np.cos(yy / 11.0), 70 + 0 * xx], -1)
    img[h // 3 : h // 2, w // 4 : 3 * w // 4] = (200, 200, 210)  # a bright bar
    img = img + rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------- Meta's predictor
def _import_meta_predictor():
    """Import ``sam2.sam2_image_predictor`` even without torchvision.

    Meta's transforms module imports torchvision at top level only for its resize/normalise,
    which these tests replace; a throw-away stub satisfies the import and is removed again
    so nothing else in the session sees a fake torchvision.
    """
    try:
        import torchvision.transforms  # noqa: F401

        from sam2.sam2_image_predictor import SAM2ImagePredictor

        return SAM2ImagePredictor
    except ImportError:
        pass

    class _NotAvailable(torch.nn.Module):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__()

        def forward(self, x):  # pragma: no cover - never called
            raise RuntimeError("torchvision stub: the test feeds preprocessed tensors")

    tv, tr = types.ModuleType("torchvision"), types.ModuleType("torchvision.transforms")
    tr.Resize = tr.Normalize = tr.ToTensor = _NotAvailable
    tv.transforms = tr
    saved = {k: sys.modules.get(k) for k in ("torchvision", "torchvision.transforms")}
    sys.modules.update({"torchvision": tv, "torchvision.transforms": tr})
    try:
        for mod in ("sam2.utils.transforms", "sam2.sam2_image_predictor"):
            sys.modules.pop(mod, None)
        from sam2.sam2_image_predictor import SAM2ImagePredictor
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return SAM2ImagePredictor


class _GivenInput:
    """Stands in for Meta's ``SAM2Transforms``: returns our preprocessed image from
    ``__call__`` and delegates coordinate/mask post-processing to Meta's own methods."""

    def __init__(self, meta_transforms, image_tensor: torch.Tensor) -> None:
        self._meta = meta_transforms
        self._image = image_tensor

    def __call__(self, image):
        return self._image

    def __getattr__(self, name):
        return getattr(self._meta, name)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    name, size = "sam2.1_hiera_tiny", 512
    ref = build_reference(name, size)
    path = tmp_path_factory.mktemp("ckpt") / f"{name}.pt"
    torch.save({"model": ref.state_dict()}, path)
    ours = build_model(name, image_size=size, checkpoint=path)
    image = _image()

    ours_pred = ImagePredictor(ours)
    ours_pred.set_image(image)

    SAM2ImagePredictor = _import_meta_predictor()
    with mock.patch.object(torch.jit, "script", lambda m: m):  # its Resize/Normalize are unused
        meta = SAM2ImagePredictor(ref)
    # Meta hard-codes the 1024-px feature sizes; at 512 px they are half as large.
    s = size // 4
    meta._bb_feat_sizes = [(s, s), (s // 2, s // 2), (s // 4, s // 4)]
    with torch.no_grad():
        x = ours.preprocess(torch.from_numpy(image).permute(2, 0, 1)[None])[0]
    meta._transforms = _GivenInput(meta._transforms, x)
    meta.set_image(image)
    return ours_pred, meta


def _compare(ours: ImagePrediction, meta_out, tag: str) -> None:
    m_masks, m_scores, m_low = meta_out
    assert ours.masks.dtype == np.bool_ and ours.masks.shape == m_masks.shape, tag
    assert ours.masks.shape[1:] == (H, W)
    assert ours.low_res_logits.shape == m_low.shape, tag
    d_low = np.abs(ours.low_res_logits - m_low).max()
    d_score = np.abs(ours.scores - m_scores).max()
    assert d_low <= TOL, f"{tag}: low-res logits differ by {d_low:.3g}"
    assert d_score <= TOL, f"{tag}: scores differ by {d_score:.3g}"
    assert np.array_equal(ours.masks, m_masks.astype(bool)), (
        f"{tag}: {np.sum(ours.masks != m_masks)} mask pixels differ"
    )


CLICK = np.array([[200.0, 125.0]])
CLICKS = np.array([[200.0, 125.0], [120.0, 130.0], [350.0, 40.0]])
CLICK_LABELS = np.array([1, 1, 0])
BOX = np.array([95.0, 95.0, 305.0, 155.0])

PROMPTS = {
    "click": dict(points=CLICK, labels=[1]),
    "click_single": dict(points=CLICK, labels=[1], multimask_output=False),
    "clicks": dict(points=CLICKS, labels=CLICK_LABELS, multimask_output=False),
    "clicks_multi": dict(points=CLICKS, labels=CLICK_LABELS),
    "box": dict(box=BOX, multimask_output=False),
    "box_multi": dict(box=BOX),
    "box_click": dict(box=BOX, points=[[330.0, 120.0]], labels=[0], multimask_output=False),
}


@needs_oracle
@pytest.mark.oracle
@pytest.mark.parametrize("prompt", list(PROMPTS))
def test_parity(pair, prompt):
    ours, meta = pair
    kw = PROMPTS[prompt]
    out = ours.predict(**kw)
    ref = meta.predict(
        point_coords=kw.get("points"),
        point_labels=kw.get("labels"),
        box=kw.get("box"),
        multimask_output=kw.get("multimask_output", True),
    )
    _compare(out, ref, prompt)
    assert len(out.scores) == (3 if kw.get("multimask_output", True) else 1)


@needs_oracle
@pytest.mark.oracle
@pytest.mark.parametrize("with_click", [False, True], ids=["mask_only", "mask_click"])
def test_parity_mask_input(pair, with_click):
    ours, meta = pair
    first = ours.predict(points=CLICK, labels=[1])
    prev = first.low_res_logits[first.best][None]  # 1 x 128 x 128: the same array goes to both
    kw = dict(points=CLICKS[:2], labels=[1, 0]) if with_click else {}
    out = ours.predict(mask_input=prev, multimask_output=False, **kw)
    ref = meta.predict(
        point_coords=kw.get("points"), point_labels=kw.get("labels"), mask_input=prev, multimask_output=False
    )
    _compare(out, ref, f"mask_input(click={with_click})")


# ---------------------------------------------------------------------- behaviour, no oracle
@pytest.fixture(scope="module")
def nano():
    torch.manual_seed(0)
    pred = ImagePredictor(build_model("nano"))
    pred.set_image(_image(120, 160))
    return pred


def test_output_shapes(nano):
    out = nano.predict(points=[[80, 60]], labels=[1])
    low = nano.model.sam_prompt_encoder.mask_input_size
    assert out.masks.shape == (3, 120, 160) and out.masks.dtype == np.bool_
    assert out.scores.shape == (3,)
    assert out.low_res_logits.shape == (3, *low) and out.low_res_logits.dtype == np.float32
    assert np.abs(out.low_res_logits).max() <= 32.0
    single = nano.predict(box=(10, 10, 100, 90), multimask_output=False)
    assert single.masks.shape == (1, 120, 160)
    refined = nano.predict(mask_input=out.low_res_logits[out.best][None])
    assert refined.masks.shape == (3, 120, 160)
    # 2-D mask and torch inputs are accepted too
    nano.predict(
        points=torch.tensor([[5.0, 5.0]]), labels=torch.tensor([0]), mask_input=torch.from_numpy(out.low_res_logits[0])
    )


def test_torch_image_matches_numpy(nano):
    img = _image(120, 160)
    a = nano.predict(points=[[80, 60]], labels=[1])
    p = ImagePredictor(nano.model)
    p.set_image(torch.from_numpy(img))
    b = p.predict(points=[[80, 60]], labels=[1])
    assert np.array_equal(a.masks, b.masks) and np.allclose(a.low_res_logits, b.low_res_logits)


def test_predict_before_set_image():
    p = ImagePredictor(build_model("nano"))
    with pytest.raises(RuntimeError, match="set_image"):
        p.predict(points=[[1, 1]], labels=[1])


@pytest.mark.parametrize(
    "image, err, match",
    [
        (np.zeros((32, 32), np.uint8), ValueError, "H x W x 3"),
        (np.zeros((32, 32, 4), np.uint8), ValueError, "H x W x 3"),
        (np.zeros((3, 32, 32), np.uint8), ValueError, "H x W x 3"),
        (np.zeros((32, 32, 3), np.float32), TypeError, "uint8"),
        (torch.zeros(32, 32, 3), TypeError, "uint8"),
        (np.zeros((0, 32, 3), np.uint8), ValueError, "empty"),
        ([[0, 0, 0]], TypeError, "numpy array or torch tensor"),
    ],
    ids=["2d", "rgba", "chw", "float", "torch_float", "empty", "list"],
)
def test_bad_image(image, err, match):
    p = ImagePredictor(build_model("nano"))
    with pytest.raises(err, match=match):
        p.set_image(image)
    assert not p.is_image_set


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(points=[[-1, 5]], labels=[1]), "outside"),
        (dict(points=[[5, -0.5]], labels=[1]), "outside"),
        (dict(points=[[160, 5]], labels=[1]), "outside"),  # x == W
        (dict(points=[[5, 120]], labels=[1]), "outside"),  # y == H
        (dict(points=[[5, 5], [6, 6]], labels=[1]), "2 points but 1 labels"),
        (dict(points=[[5, 5]], labels=[1, 0]), "1 points but 2 labels"),
        (dict(points=[[5, 5]]), "need labels"),
        (dict(labels=[1]), "without points"),
        (dict(points=[[5, 5]], labels=[2]), "0 .negative. or 1"),
        (dict(points=[[5, 5]], labels=[-1]), "0 .negative. or 1"),
        (dict(points=[[5, 5, 1]], labels=[1]), "P x 2"),
        (dict(points=np.zeros((0, 2)), labels=[]), "empty"),
        (dict(points=[[np.nan, 5]], labels=[1]), "NaN"),
        (dict(box=(50, 10, 40, 90)), "x1 > x0"),
        (dict(box=(10, 50, 40, 50)), "y1 > y0"),
        (dict(box=(-1, 10, 40, 90)), "outside"),
        (dict(box=(10, 10, 161, 90)), "outside"),
        (dict(box=(10, 10, 40, 121)), "outside"),
        (dict(box=(10, 10, 40)), "x0, y0, x1, y1"),
        (dict(mask_input=np.zeros((1, 32, 32))), "low-res logits"),
        (dict(mask_input=np.zeros((3, 64, 64))), "single"),
        (dict(), "empty prompt"),
    ],
)
def test_bad_prompts(nano, kw, match):
    with pytest.raises(ValueError, match=match):
        nano.predict(**kw)


@pytest.mark.parametrize(
    "kw",
    [
        dict(points=[[5, 5]], labels=[2]),
        dict(points=[[160, 5]], labels=[1]),
        dict(points=[[np.nan, 5]], labels=[1]),
        dict(points=[[5, 5]]),
        dict(box=(50, 10, 40, 90)),
        dict(box=(10, 10, 40, 121)),
        dict(box=(10, 10, 40)),
    ],
)
def test_image_and_video_prompts_are_checked_in_one_place(nano, kw):
    """The image predictor and the video engine refuse a bad click or box with the same error."""
    from surgsam.engine import VideoSegmenter

    with pytest.raises((ValueError, TypeError)) as image_err:
        nano.predict(**kw)
    with pytest.raises((ValueError, TypeError)) as video_err:
        VideoSegmenter(nano.model).add_prompt(_image(120, 160), obj_id=1, **kw)
    assert (type(image_err.value), str(image_err.value)) == (type(video_err.value), str(video_err.value))


@pytest.mark.parametrize(
    "frame",
    [np.zeros((32, 32), np.uint8), np.zeros((32, 32, 3), np.float32), np.zeros((0, 32, 3), np.uint8), [[0, 0, 0]]],
)
def test_image_and_video_frames_are_checked_in_one_place(nano, frame):
    from surgsam.engine import VideoSegmenter

    with pytest.raises((ValueError, TypeError)) as image_err:
        ImagePredictor(nano.model).set_image(frame)
    with pytest.raises((ValueError, TypeError)) as video_err:
        VideoSegmenter(nano.model).step(frame)
    assert type(image_err.value) is type(video_err.value)
    assert str(image_err.value).removeprefix("image") == str(video_err.value).removeprefix("a frame")


def test_box_on_the_image_border_is_fine(nano):
    out = nano.predict(box=(0, 0, 160, 120))
    assert out.masks.shape == (3, 120, 160)
