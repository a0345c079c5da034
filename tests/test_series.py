"""bt_core.data.series: DICOM series (shuffled files), multi-frame DICOM and NIfTI open as one ordered volume."""
import gzip
import io

import nibabel as nib
import numpy as np
import pytest
from pydicom.dataset import Dataset

from bt_core.data import series
from bt_core.errors import ImageError
from test_images import dicom

AXIAL = [1, 0, 0, 0, 1, 0]


def ramp_volume(n=6, h=12, w=10):
    """Slice k holds the value 100 * (k + 1) with a small gradient: its order can be read back."""
    base = np.arange(h * w, dtype=np.uint16).reshape(h, w) % 7
    return np.stack([base + 100 * (k + 1) for k in range(n)]).astype(np.uint16)


def series_files(vol, uid="1.2.3.9", positions=True, numbers=True, **attrs):
    files = []
    for k, arr in enumerate(vol):
        extra = dict(SeriesInstanceUID=uid, WindowCenter=350, WindowWidth=700, **attrs)
        if positions:
            extra.update(ImageOrientationPatient=AXIAL, ImagePositionPatient=[0, 0, 5.0 * k - 40])
        if numbers:
            extra["InstanceNumber"] = k + 1
        files.append((f"IM{(k * 7) % 10}{k}.dcm", dicom(arr, **extra)))
    return files


@pytest.mark.parametrize("positions,numbers,note", [(True, True, None), (False, True, "InstanceNumber")])
def test_a_shuffled_series_comes_back_in_order(positions, numbers, note):
    vol = ramp_volume()
    files = series_files(vol, positions=positions, numbers=numbers)
    shuffled = [files[i] for i in np.random.default_rng(0).permutation(len(files))]
    out = series.load_volume(shuffled)
    assert out.kind == "DICOM series" and len(out) == 6
    assert all(s.dtype == np.uint8 and s.shape == (12, 10) for s in out.slices)
    means = [s.mean() for s in out.slices]
    assert means == sorted(means) and means[0] < means[-1]  # inferior (lowest position) first
    assert [lab.split(" (")[1].rstrip(")") for lab in out.labels] == [f[0] for f in files]
    assert "DICOM window applied" in out.notes
    assert (note is None) == (not any("InstanceNumber" in n for n in out.notes))


def test_position_beats_instance_number_and_follows_the_slice_normal():
    vol = ramp_volume(4)
    files = []
    for k, arr in enumerate(vol):  # sagittal: normal along x; instance numbers deliberately reversed
        files.append((f"s{k}.dcm", dicom(arr, SeriesInstanceUID="1.2", ImageOrientationPatient=[0, 1, 0, 0, 0, -1],
                                         ImagePositionPatient=[3.0 * k, -100, 50], InstanceNumber=10 - k)))
    out = series.load_volume(files[::-1])
    means = [s.mean() for s in out.slices]
    assert means == sorted(means)


def test_series_without_window_is_rescaled_like_a_single_dicom_and_a_lone_file_is_one_slice():
    arr = np.arange(64, dtype=np.uint16).reshape(8, 8) * 10
    out = series.load_volume([("only.dcm", dicom(arr))])
    assert out.kind == "DICOM slice" and len(out) == 1
    assert out.slices[0].min() == 0 and out.slices[0].max() == 255


def test_multiframe_dicom_gives_every_frame():
    vol = ramp_volume(5)
    out = series.load_volume([("multi.dcm", dicom(vol, WindowCenter=350, WindowWidth=700))])
    assert out.kind == "DICOM multi-frame" and len(out) == 5 and out.labels[0] == "frame 1"
    means = [s.mean() for s in out.slices]
    assert means == sorted(means) and len(set(means)) == 5
    assert any("window applied" in n for n in out.notes)


def test_multiframe_per_frame_positions_and_windows():
    vol = ramp_volume(3)
    per_frame = []
    for k in (2, 0, 1):  # stored order is not anatomical order
        item = Dataset()
        pos, voi = Dataset(), Dataset()
        pos.ImagePositionPatient = [0, 0, float(k)]
        voi.WindowCenter, voi.WindowWidth = 100 * (k + 1) + 3, 6
        item.PlanePositionSequence, item.FrameVOILUTSequence = [pos], [voi]
        per_frame.append(item)
    shared, orient = Dataset(), Dataset()
    orient.ImageOrientationPatient = AXIAL
    shared.PlaneOrientationSequence = [orient]
    stored = vol[[2, 0, 1]]
    out = series.load_volume([("enh.dcm", dicom(stored, PerFrameFunctionalGroupsSequence=per_frame,
                                                 SharedFunctionalGroupsSequence=[shared]))])
    assert out.labels == ["frame 2", "frame 3", "frame 1"]
    # each frame's own narrow window: every frame spans the full 0..255 range
    assert all(s.min() == 0 and s.max() == 255 for s in out.slices)


def nifti_bytes(vol, affine=None, two=False) -> bytes:
    cls = nib.Nifti2Image if two else nib.Nifti1Image
    return cls(vol, np.eye(4) if affine is None else affine).to_bytes()


def test_nifti_plain_and_gzipped_axial_slices_in_order():
    vol = np.zeros((10, 8, 5), np.float32)
    for k in range(5):
        vol[:, :, k] = k + 1
    vol[9, 0, :] = 50  # patient's right (x max in RAS), posterior (y min): bottom left, as a viewer shows it
    for name, blob in (("brain.nii", nifti_bytes(vol)), ("brain.nii.gz", gzip.compress(nifti_bytes(vol))),
                       ("no_extension", gzip.compress(nifti_bytes(vol, two=True)))):
        out = series.load_volume([(name, blob)])
        assert out.kind == "NIfTI" and len(out) == 5
        assert all(s.shape == (8, 10) and s.dtype == np.uint8 for s in out.slices)
        means = [float(s[:4, :4].mean()) for s in out.slices]
        assert means == sorted(means) and means[0] < means[-1]
        assert out.slices[0][-1, 0] == 255 and out.slices[0][-1, -1] < 255 and out.slices[0][0, 0] < 255


def test_nifti_flipped_affine_is_reoriented_and_4d_uses_the_first_volume():
    vol = np.stack([np.full((6, 6), k, np.float32) for k in range(4)], axis=2)
    flip = np.diag([1.0, 1.0, -1.0, 1.0])  # stored superior first
    out = series.load_volume([("f.nii", nifti_bytes(vol, flip))])
    means = [s.mean() for s in out.slices]  # stored k sits at z = -k: the last stored slice is the lowest
    assert means == sorted(means, reverse=True) and means[0] > means[-1]
    four = np.repeat(vol[..., None], 3, axis=3)
    four[..., 1:] = 0
    out4 = series.load_volume([("t.nii", nifti_bytes(four))])
    assert len(out4) == 4 and any("first of 3 volumes" in n for n in out4.notes)


def one_line(exc) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and len(msg) < 400
    return msg


@pytest.mark.parametrize("files,words", [
    ([], "no files"),
    ([("a.png", b"\x89PNG\r\n\x1a\nnot")], "not a DICOM or NIfTI"),
    ([("x.nii", b"\0" * 400)], "not a NIfTI"),
    ([("x.nii.gz", b"\x1f\x8b\x08\x00garbage")], "broken gzip"),
    ([("empty.dcm", b"")], "empty file"),
])
def test_broken_inputs_are_one_line_errors(files, words):
    with pytest.raises(ImageError) as exc:
        series.load_volume(files)
    assert words in one_line(exc)


def test_mixed_inputs_are_refused_with_the_reason():
    vol = ramp_volume(3)
    a, b = series_files(vol, uid="1.1"), series_files(vol, uid="2.2")
    with pytest.raises(ImageError) as exc:
        series.load_volume(a + b[:1])
    assert "2 different series" in one_line(exc)
    small = ("small.dcm", dicom(np.zeros((4, 4), np.uint16), SeriesInstanceUID="1.1"))
    with pytest.raises(ImageError) as exc:
        series.load_volume(a + [small])
    assert one_line(exc).startswith("small.dcm: 4x4 pixels")
    with pytest.raises(ImageError) as exc:
        series.load_volume(a + [("v.nii", nifti_bytes(np.zeros((4, 4, 2), np.float32)))])
    assert "upload it alone" in one_line(exc)
    with pytest.raises(ImageError) as exc:
        series.load_volume(a + [("m.dcm", dicom(vol, SeriesInstanceUID="1.1"))])
    assert one_line(exc).startswith("m.dcm: a multi-frame DICOM")
    tilted = series_files(vol, uid="1.1")
    tilted[1] = ("tilt.dcm", dicom(vol[1], SeriesInstanceUID="1.1", ImageOrientationPatient=[0, 1, 0, 0, 0, -1],
                                   ImagePositionPatient=[0, 0, 0]))
    with pytest.raises(ImageError) as exc:
        series.load_volume(tilted)
    assert "another plane" in one_line(exc)
    broken = a[:2] + [("bad.dcm", a[2][1][:200])]
    with pytest.raises(ImageError) as exc:
        series.load_volume(broken)
    assert one_line(exc).startswith("bad.dcm")


def test_reads_paths_and_file_objects(tmp_path):
    vol = ramp_volume(3)
    paths = []
    for name, blob in series_files(vol):
        (tmp_path / name).write_bytes(blob)
        paths.append(tmp_path / name)
    assert len(series.load_volume(paths)) == 3
    assert len(series.load_volume([io.BytesIO(nifti_bytes(vol.astype(np.float32)))])) == vol.shape[2]
