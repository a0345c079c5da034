"""bt_core.evaluation.visibility: how much a masked tumour stands out from its surroundings (generated slices)."""
import numpy as np
import pytest
from PIL import Image

from bt_core.evaluation import visibility


def _slice(lesion_value: float, radius: int = 8, size: int = 96):
    yy, xx = np.mgrid[:size, :size]
    head = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size * 0.42) ** 2
    img = np.where(head, 100.0 + 20.0 * ((xx // 6) % 2), 0.0)  # a striped head (spread 10) on black
    lesion = (yy - 40) ** 2 + (xx - 52) ** 2 < radius ** 2
    img[lesion] = lesion_value
    return img.astype(np.uint8), (lesion * 255).astype(np.uint8)


def test_a_bright_lesion_stands_out_and_an_iso_intense_one_does_not():
    bright = visibility.tumour_contrast(*_slice(200))
    iso = visibility.tumour_contrast(*_slice(110))  # the ring's mean: half 100, half 120
    assert bright > 2.0 and iso < 0.25
    img, mask = _slice(200)
    assert visibility.tumour_contrast(img, mask // 255) == pytest.approx(bright)  # 0/1 masks as 0/255 ones


def test_undefined_contrast_is_nan_and_wrong_shapes_raise():
    img, mask = _slice(200, radius=1)  # under 5 mask pixels
    assert np.isnan(visibility.tumour_contrast(img, mask))
    assert np.isnan(visibility.tumour_contrast(img, np.zeros_like(mask)))
    with pytest.raises(ValueError, match="one size"):
        visibility.tumour_contrast(img, mask[:10])


def test_source_contrasts_read_each_masked_tumour_slice(tmp_path):
    (tmp_path / "yes").mkdir()
    (tmp_path / "masks").mkdir()
    for name, value in (("a", 200), ("b", 110)):
        img, mask = _slice(value)
        Image.fromarray(img).save(tmp_path / "yes" / f"{name}.png")
        Image.fromarray(mask).save(tmp_path / "masks" / f"{name}.png")
    Image.fromarray(_slice(200)[0]).save(tmp_path / "yes" / "no_mask.png")  # left out: no mask
    (tmp_path / "yes" / "broken.png").write_bytes(b"not an image")
    (tmp_path / "masks" / "broken.png").write_bytes(b"nor this")
    c = visibility.source_contrasts(tmp_path)
    assert sorted(c) == ["a.png", "b.png"] and c["a.png"] > 2.0 and c["b.png"] < 0.25
    assert visibility.source_contrasts(tmp_path / "nowhere") == {}


def test_detection_by_contrast_counts_each_bin():
    rows = visibility.detection_by_contrast([0.1, 0.2, 0.3, 2.0, float("nan")], [0.9, 0.1, 0.2, 0.8, 0.9])
    assert rows == [{"bin": "0-0.25", "n": 2, "share": 0.5, "sensitivity": 0.5},
                    {"bin": "0.25-0.5", "n": 1, "share": 0.25, "sensitivity": 0.0},
                    {"bin": "1 or more", "n": 1, "share": 0.25, "sensitivity": 1.0}]
