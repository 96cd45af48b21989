"""Letterbox geometry against hand-computed Ultralytics values, tensor contents, box round trips."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cityeye.vision.letterbox import Letterbox, LetterboxSpec, letterbox


def _reference_tensor(img: np.ndarray, geo: Letterbox, rgb: bool, normalize: bool) -> np.ndarray:
    """Ultralytics' literal steps: resize, copyMakeBorder(114), BGR->RGB, HWC->CHW, /255."""
    rh, rw = geo.resized_hw
    im = cv2.resize(img, (rw, rh), interpolation=cv2.INTER_LINEAR) if (rh, rw) != img.shape[:2] else img
    bottom = geo.input_hw[0] - rh - geo.top
    right = geo.input_hw[1] - rw - geo.left
    im = cv2.copyMakeBorder(im, geo.top, bottom, geo.left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114))
    if rgb:
        im = im[..., ::-1]
    t = np.ascontiguousarray(im.transpose(2, 0, 1)[None]).astype(np.float32)
    return t / np.float32(255) if normalize else t


@pytest.mark.parametrize(
    ("image_hw", "input_hw", "resized_hw", "top", "left", "pad"),
    [
        # 1280x720 PKLot frame: r = 0.5, 640x360, dh = 280 -> 140 / 140
        ((720, 1280), (640, 640), (360, 640), 140, 0, (0.0, 140.0)),
        # 960x540 DETRAC frame: r = 2/3, 640x360
        ((540, 960), (640, 640), (360, 640), 140, 0, (0.0, 140.0)),
        # odd padding: 279 rows -> dh = 139.5 -> top round(139.4) = 139, bottom round(139.6) = 140
        ((361, 640), (640, 640), (361, 640), 139, 0, (0.0, 139.0)),
        # odd padding on x: 640x639 -> dw = 0.5 -> left round(0.4) = 0, right round(0.6) = 1
        ((640, 639), (640, 640), (640, 639), 0, 0, (0.0, 0.0)),
        # scale-up of a small image: r = 4, 400x160 -> dh = 480 -> 240 / 240
        ((40, 100), (640, 400), (160, 400), 240, 0, (0.0, 240.0)),
        # half-to-even: 5 px * 0.5 = 2.5 -> round() gives 2; dw = 638 -> left round(318.9) = 319
        ((1280, 5), (640, 640), (640, 2), 0, 319, (319.0, 0.0)),
    ],
)
def test_geometry_hand_computed(
    image_hw: tuple[int, int],
    input_hw: tuple[int, int],
    resized_hw: tuple[int, int],
    top: int,
    left: int,
    pad: tuple[float, float],
) -> None:
    geo = Letterbox.fit(image_hw, input_hw)
    assert geo.resized_hw == resized_hw
    assert (geo.top, geo.left) == (top, left)
    assert geo.pad == pad


def test_bottom_right_padding_for_yolox() -> None:
    geo = Letterbox.fit((540, 960), (416, 416), center=False)
    assert geo.resized_hw == (234, 416)
    assert (geo.top, geo.left, geo.pad) == (0, 0, (0.0, 0.0))
    assert geo.gain == pytest.approx(416 / 960)


@pytest.mark.parametrize(
    ("image_hw", "spec"),
    [
        ((720, 1280), LetterboxSpec()),
        ((361, 640), LetterboxSpec()),
        ((300, 517), LetterboxSpec()),
        ((540, 960), LetterboxSpec(center=False, rgb=False, normalize=False)),
        ((640, 300), LetterboxSpec()),  # portrait: padded left and right, image columns not contiguous
        ((600, 200), LetterboxSpec(center=False, rgb=False, normalize=False)),
    ],
)
def test_tensor_equals_ultralytics_steps(image_hw: tuple[int, int], spec: LetterboxSpec) -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (*image_hw, 3), dtype=np.uint8)
    input_hw = (640, 640) if spec.center else (416, 416)
    tensor, geo = letterbox(img, input_hw, spec)
    ref = _reference_tensor(img, geo, spec.rgb, spec.normalize)
    assert tensor.dtype == np.float32 and tensor.shape == ref.shape
    np.testing.assert_array_equal(tensor, ref)
    # A uint8 tensor (models that normalise inside their graph) holds the same pixels, unscaled.
    raw = np.zeros((1, 3, *input_hw), dtype=np.uint8)
    got, geo_raw = letterbox(img, input_hw, spec, out=raw)
    assert got is raw and geo_raw == geo
    np.testing.assert_array_equal(raw.astype(np.float32), _reference_tensor(img, geo, spec.rgb, False))


def test_reused_tensor_gets_every_pixel_rewritten() -> None:
    """A scratch tensor reused for a frame of another shape keeps nothing of the previous one."""
    rng = np.random.default_rng(1)
    out = np.zeros((1, 3, 640, 640), dtype=np.float32)
    for hw in ((720, 1280), (640, 300), (720, 1280)):
        img = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
        _, geo = letterbox(img, (640, 640), out=out)
        np.testing.assert_array_equal(out, _reference_tensor(img, geo, True, True))


def test_out_of_the_wrong_type_is_refused() -> None:
    img = np.zeros((720, 1280, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="float32 or uint8"):
        letterbox(img, (640, 640), out=np.zeros((1, 3, 640, 640), dtype=np.float64))  # type: ignore[arg-type]


def test_channel_order_and_pad_value() -> None:
    img = np.zeros((361, 640, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 10, 20, 30  # B, G, R
    t, geo = letterbox(img, (640, 640))
    assert geo.top == 139
    assert t[0, :, 0, 0].tolist() == pytest.approx([114 / 255] * 3)
    assert t[0, :, 139, 0].tolist() == pytest.approx([30 / 255, 20 / 255, 10 / 255])  # RGB
    assert t[0, :, 139 + 361, 0].tolist() == pytest.approx([114 / 255] * 3)  # first bottom pad row
    t_bgr, _ = letterbox(img, (640, 640), LetterboxSpec(rgb=False, normalize=False))
    assert t_bgr[0, :, 139, 0].tolist() == [10.0, 20.0, 30.0]


def test_box_mapping_by_hand_and_round_trip() -> None:
    geo = Letterbox.fit((720, 1280), (640, 640))
    inp = np.array([[100, 150, 300, 400]], np.float32)
    np.testing.assert_allclose(geo.boxes_to_image(inp), [[200, 20, 600, 520]])

    rng = np.random.default_rng(1)
    for image_hw in [(720, 1280), (361, 640), (1080, 1920), (480, 333)]:
        for center in (True, False):
            g = Letterbox.fit(image_hw, (640, 640), center)
            h, w = image_hw
            xy1 = rng.uniform(0, [w * 0.5, h * 0.5], (20, 2))
            boxes = np.concatenate([xy1, xy1 + rng.uniform(1, [w * 0.5, h * 0.5], (20, 2))], 1).astype(
                np.float32
            )
            np.testing.assert_allclose(g.boxes_to_image(g.boxes_to_input(boxes)), boxes, atol=1e-3)


def test_boxes_clipped_to_image() -> None:
    geo = Letterbox.fit((720, 1280), (640, 640))
    out = geo.boxes_to_image(np.array([[-10, 100, 700, 600]], np.float32))
    np.testing.assert_allclose(out, [[0, 0, 1280, 720]])


def test_rejects_non_bgr_images() -> None:
    with pytest.raises(ValueError, match="cvtColor"):
        letterbox(np.zeros((10, 10), np.uint8), (64, 64))
    with pytest.raises(ValueError, match="BGR uint8"):
        letterbox(np.zeros((10, 10, 3), np.float32), (64, 64))  # type: ignore[arg-type]
