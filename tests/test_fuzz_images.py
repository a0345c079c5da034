"""Fuzz bt_core.data.images.load_image with mutated JPEG, PNG and DICOM bytes (hypothesis).

The only allowed outcomes are a LoadedImage holding a 2-D uint8 array or an ImageError with a
one-line message naming the file. 1200 cases in all (400 per format), a few seconds.
"""
import io
import struct
import zlib

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from bt_core.errors import ImageError
from bt_core.data.images import LoadedImage, load_image

EXAMPLES = 400
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
_rng = np.random.default_rng(1)


def _encode(im, fmt, **kw):
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _grey(h=16, w=20):
    return Image.fromarray(_rng.integers(0, 256, (h, w), dtype=np.uint8))


JPEGS = [_encode(_grey(), "JPEG", quality=80),
         _encode(_grey().convert("RGB"), "JPEG", progressive=True),
         _encode(Image.new("CMYK", (12, 9), (10, 20, 30, 40)), "JPEG")]
PNGS = [_encode(_grey(), "PNG"),
        _encode(Image.fromarray(_rng.integers(0, 65535, (9, 11), dtype=np.uint16)), "PNG"),
        _encode(_grey().convert("RGBA"), "PNG"),
        _encode(_grey().convert("P"), "PNG")]


def _dicom(frames=1, photometric="MONOCHROME2"):
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = "1.2.3.4.5"
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 12, 10, 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept, ds.WindowCenter, ds.WindowWidth = 1, -100, 300, 800
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = _rng.integers(0, 4096, (frames, 12, 10), dtype=np.uint16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


DICOMS = [_dicom(), _dicom(frames=3, photometric="MONOCHROME1")]
SPECIAL = [b"\x00" * 4, b"\xff" * 4, b"\x7f\xff\xff\xff", b"\x80\x00", b"\xff\xd9", b"\xff\xd8"]


def _fix_png_crcs(data: bytes) -> bytes:
    """Recompute chunk CRCs so that mutations reach the PNG decoder, not just the CRC check."""
    out, pos = bytearray(data), 8
    while pos + 12 <= len(out):
        length = struct.unpack(">I", out[pos:pos + 4])[0]
        end = pos + 8 + length
        if end + 4 > len(out):
            break
        out[end:end + 4] = struct.pack(">I", zlib.crc32(bytes(out[pos + 4:end])))
        pos = end + 4
    return bytes(out)


@st.composite
def mutated(draw, bases, header):
    data = bytearray(draw(st.sampled_from(bases)))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        top = len(data) - 1
        pos = draw(st.integers(min(8, top), min(top, header)) | st.integers(0, top))  # header bias
        op = draw(st.sampled_from(["flip", "truncate", "insert", "overwrite"]))
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[pos:]
        else:
            chunk = draw(st.sampled_from(SPECIAL) | st.binary(min_size=1, max_size=12))
            data[pos:pos + (0 if op == "insert" else len(chunk))] = chunk
    return bytes(data)


def check(data: bytes, name: str) -> None:
    try:
        out = load_image(data, name=name)
    except ImageError as err:
        msg = str(err)
        assert msg.startswith(f"{name}: ") and "\n" not in msg and len(msg) <= 400, msg
        return
    assert isinstance(out, LoadedImage) and out.name == name
    assert isinstance(out.pixels, np.ndarray) and out.pixels.dtype == np.uint8
    assert out.pixels.ndim == 2 and min(out.pixels.shape) >= 1
    assert all(isinstance(n, str) and "\n" not in n for n in out.notes)


def test_bases_decode():
    for data, name in [(d, "f.jpg") for d in JPEGS] + [(d, "f.png") for d in PNGS] + \
                      [(d, "f.dcm") for d in DICOMS]:
        assert load_image(data, name=name).pixels.ndim == 2


@FUZZ
@given(mutated(JPEGS, header=400))
def test_fuzz_jpeg(data):
    check(data, "fuzz.jpg")


@FUZZ
@given(mutated(PNGS, header=64), st.integers(0, 3))
def test_fuzz_png(data, fix_crc):
    check(_fix_png_crcs(data) if fix_crc else data, "fuzz.png")  # CRCs fixed 3 times in 4


@FUZZ
@given(mutated(DICOMS, header=400))
def test_fuzz_dicom(data):
    check(data, "fuzz.dcm")
