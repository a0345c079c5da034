"""bt_core.data.images: every file type and every way a file can be bad, all generated in memory."""
import io
import struct
import time
import tracemalloc
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (UID, ExplicitVRLittleEndian, JPEG2000Lossless, JPEGBaseline8Bit,
                         JPEGLosslessSV1, RLELossless)

from bt_core.data import images
from bt_core.errors import ConfigError, ImageError
from bt_core.data.images import (LoadedImage, load_image, normalize_intensity, safe_name,
                            to_model_input)

RNG = np.random.default_rng(0)


# ---------------------------------------------------------------- helpers
def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def grey(h=24, w=32) -> np.ndarray:
    return RNG.integers(0, 256, (h, w), dtype=np.uint8)


def refused(source, *words, name="scan.png", **kw) -> str:
    """Load must raise ImageError with a one-line message naming the file and containing words."""
    with pytest.raises(ImageError) as info:
        load_image(source, name=name, **kw)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{safe_name(name)}: "), msg
    for word in words:
        assert word.lower() in msg.lower(), msg
    return msg


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def raw_png(width, height, depth, colour, idat) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b""))


def bomb_png(side: int) -> bytes:
    """A side x side all-black 1-bit PNG, compressed row by row (a few KB, little memory)."""
    comp, row = zlib.compressobj(9), b"\0" * (1 + (side + 7) // 8)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    return raw_png(side, side, 1, 0, idat)


def dicom(arr, photometric="MONOCHROME2", ts=ExplicitVRLittleEndian, bits_stored=None,
          pixel_data=None, preamble=True, **attrs) -> bytes:
    """A DICOM file in memory. arr: (H, W), (H, W, 3) or (frames, H, W) for NumberOfFrames."""
    arr = np.asarray(arr)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = "1.2.3.4.5"
    ds.file_meta.TransferSyntaxUID = ts
    colour = photometric == "RGB"
    ds.Rows, ds.Columns = arr.shape[1:3] if arr.ndim == 3 and not colour else arr.shape[:2]
    if arr.ndim == 3 and not colour:
        ds.NumberOfFrames = arr.shape[0]
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = arr.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = int(arr.dtype.kind == "i")
    for key, value in attrs.items():
        setattr(ds, key, value)
    if pixel_data is not False:
        ds.PixelData = arr.tobytes() if pixel_data is None else pixel_data
        if pixel_data is not None:
            ds["PixelData"].VR = "OB"
    buf = io.BytesIO()
    if preamble:
        ds.save_as(buf, enforce_file_format=True)
    else:
        ds.file_meta = FileMetaDataset()
        ds.save_as(buf, implicit_vr=True, little_endian=True)
    return buf.getvalue()


# ---------------------------------------------------------------- sources and size limits
def test_grey_png_bytes_exact_and_default_name():
    arr = grey()
    out = load_image(encode(Image.fromarray(arr), "PNG"))
    assert isinstance(out, LoadedImage) and out.name == "upload" and out.notes == []
    assert out.pixels.dtype == np.uint8 and out.pixels.shape == (24, 32)
    np.testing.assert_array_equal(out.pixels, arr)


def test_path_file_object_and_names(tmp_path):
    arr = grey()
    path = tmp_path / "brain 01.png"
    path.write_bytes(encode(Image.fromarray(arr), "PNG"))
    for source in (path, str(path)):
        out = load_image(source)
        assert out.name == "brain 01.png"
        np.testing.assert_array_equal(out.pixels, arr)
    with open(path, "rb") as fh:
        assert load_image(fh).name == "brain 01.png"
    assert load_image(io.BytesIO(path.read_bytes()), name="up/x.png").name == "x.png"
    with open(path, "r", encoding="latin-1") as fh:
        refused(fh, "binary mode", name="t.png")
    refused(tmp_path / "missing.png", "cannot read", name="missing.png")
    refused(tmp_path, "cannot read", name="folder")
    refused(12345, "unsupported source", name="n")


def test_empty_file(tmp_path):
    refused(b"", "empty file")
    (tmp_path / "e.png").write_bytes(b"")
    refused(tmp_path / "e.png", "empty file", name="e.png")


def test_garbage_bytes():
    refused(b"this is not an image at all" * 10, "not a recognised image")
    refused(bytes(range(256)) * 4, "not a recognised image", name="g.jpg")


def test_file_over_byte_limit(tmp_path):
    data = encode(Image.fromarray(grey(64, 64)), "PNG")
    limit = len(data) - 1
    refused(data, "limit", max_bytes=limit)
    (tmp_path / "big.png").write_bytes(data)
    refused(tmp_path / "big.png", "limit", name="big.png", max_bytes=limit)
    refused(io.BytesIO(data), "limit", max_bytes=limit)
    assert load_image(data, max_bytes=len(data)).pixels.shape == (64, 64)
    assert images.MAX_UPLOAD_BYTES == 20 * 1024 * 1024
    with pytest.raises(ConfigError):
        load_image(data, max_bytes=0)


def test_truncated_jpeg_refused_not_padded():
    data = encode(Image.fromarray(grey(64, 64)), "JPEG", quality=90)
    assert load_image(data).pixels.shape == (64, 64)
    for cut in (len(data) // 2, len(data) - 40):
        refused(data[:cut], "truncated", name="cut.jpg")


def test_decompression_bomb_refused_fast_and_small():
    data = bomb_png(12000)  # 144 Mpixels declared in ~18 KB
    assert len(data) < 40_000
    filters = list(warnings.filters)
    start = time.perf_counter()
    refused(data, "decompression bomb", "144,000,000", "50,000,000")
    assert time.perf_counter() - start < 2
    # 64 Mpixels: above our limit but below Pillow's hard error -> its warning is made an error
    refused(bomb_png(8000), "decompression bomb", "64,000,000")
    assert warnings.filters == filters  # no permanent change to the global warning filters
    assert Image.MAX_IMAGE_PIXELS == images.MAX_PIXELS == 50_000_000


def test_20000_square_refused_before_decoding():
    data = raw_png(20000, 20000, 8, 0, zlib.compress(b"\0" * 64))  # header says 400 Mpixels
    tracemalloc.start()
    try:
        msg = refused(data, "400,000,000", "50,000,000")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "truncated" not in msg and peak < 5_000_000  # refused from the header alone


def test_own_pixel_limit_names_the_size(monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 5000)
    refused(encode(Image.fromarray(grey(100, 120)), "PNG"), "120x100", "5,000")


@pytest.mark.parametrize("exc, words", [
    (MemoryError(), ["not enough memory"]),
    (RuntimeError("boom\nsecond\x00line"), ["cannot decode image", "boom second line"]),
    (Image.DecompressionBombError("Image size (123456789 pixels) exceeds"), ["123,456,789"]),
    (KeyError("x"), ["cannot decode image"]),
])
def test_any_decoder_exception_becomes_one_line_image_error(monkeypatch, exc, words):
    def explode(data):
        raise exc
    monkeypatch.setattr(images, "_decode_pillow", explode)
    refused(encode(Image.fromarray(grey()), "PNG"), *words)


# ---------------------------------------------------------------- Pillow modes and formats
@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF", "GIF", "WEBP"])
def test_lossless_formats_round_trip(fmt):
    arr = grey()
    kw = {"lossless": True} if fmt == "WEBP" else {}
    out = load_image(encode(Image.fromarray(arr), fmt, **kw), name=f"a.{fmt.lower()}")
    np.testing.assert_array_equal(out.pixels, arr)


def test_16bit_png_rescaled():
    arr = np.linspace(1000, 3000, 20 * 30).reshape(20, 30).astype(np.uint16)
    data = encode(Image.fromarray(arr), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    out = load_image(data)
    assert out.pixels[0, 0] == 0 and out.pixels[-1, -1] == 255
    assert np.all(np.diff(out.pixels.ravel().astype(int)) >= 0)
    assert any("16-bit image rescaled to 8-bit" in n for n in out.notes)


def test_float_tiff_rescaled_with_nan():
    arr = np.linspace(-1.0, 1.0, 64, dtype=np.float32).reshape(8, 8)
    arr[0, 1] = np.nan
    out = load_image(encode(Image.fromarray(arr), "TIFF"), name="f.tif")
    assert out.pixels[-1, -1] == 255 and out.pixels[0, 0] == 0 and out.pixels[0, 1] == 0
    assert any("floating-point" in n for n in out.notes)


def test_rgba_composited_on_black():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[0, :, 3], rgba[1, :, 3], rgba[2:, :, 3] = 0, 128, 255
    out = load_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert np.all(out.pixels[0] == 0) and np.all(abs(out.pixels[1].astype(int) - 128) <= 1)
    assert np.all(out.pixels[2:] == 255)
    assert any("composited on black" in n for n in out.notes)


def test_palette_and_la_images():
    pal = Image.new("P", (6, 4))
    pal.putpalette([0, 0, 0, 255, 0, 0, 255, 255, 255] + [0] * 759)
    pal.putpixel((0, 0), 1)
    pal.putpixel((1, 0), 2)
    out = load_image(encode(pal, "PNG"))
    assert out.pixels[0, 0] == 76 and out.pixels[0, 1] == 255 and out.pixels[1, 1] == 0
    assert any("palette" in n for n in out.notes)
    pal.info["transparency"] = 2  # white made transparent -> black
    out = load_image(encode(pal, "PNG", transparency=2))
    assert out.pixels[0, 1] == 0 and any("transparency" in n for n in out.notes)
    la = Image.merge("LA", [Image.new("L", (5, 5), 200), Image.new("L", (5, 5), 255)])
    assert np.all(load_image(encode(la, "PNG")).pixels == 200)


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_converted(fmt):
    im = Image.new("CMYK", (8, 8), (0, 0, 0, 0))  # no ink = white
    im.paste((0, 0, 0, 255), (0, 0, 8, 4))  # top half: full black ink
    data = encode(im, fmt)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    out = load_image(data, name=f"c.{fmt.lower()}")
    assert out.pixels[:3].max() <= 10 and out.pixels[5:].min() >= 245
    assert any("CMYK" in n for n in out.notes)


def test_ycbcr_tiff_converted():
    data = encode(Image.new("RGB", (6, 6), (200, 200, 200)).convert("YCbCr"), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "YCbCr"
    out = load_image(data, name="y.tif")
    assert np.all(abs(out.pixels.astype(int) - 200) <= 2) and any("YCbCr" in n for n in out.notes)


def test_animated_gif_first_frame():
    frames = [Image.fromarray(np.full((10, 12), 20 * i, np.uint8)) for i in range(12)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    out = load_image(data, name="anim.gif")
    assert np.all(out.pixels == 0)
    assert "animated GIF: first frame of 12 used" in out.notes


def test_multipage_tiff_first_page():
    pages = [Image.fromarray(np.full((10, 12), v, np.uint8)) for v in (77, 5, 9)]
    data = encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    out = load_image(data, name="stack.tif")
    assert np.all(out.pixels == 77) and "multi-page TIFF: first page of 3 used" in out.notes


def test_exif_orientation_honoured():
    arr = np.zeros((20, 40), np.uint8)  # 40 wide, 20 high; right half white
    arr[:, 20:] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display needs 90 degrees clockwise
    out = load_image(encode(Image.fromarray(arr), "JPEG", exif=exif.tobytes(), quality=95))
    assert out.pixels.shape == (40, 20)
    assert out.pixels[:15].mean() < 30 and out.pixels[25:].mean() > 225  # left side went up
    assert any("EXIF orientation 6" in n for n in out.notes)


def test_unlisted_pillow_format_refused():
    refused(encode(Image.fromarray(grey()), "PPM"), "not a recognised image", name="a.ppm")


# ---------------------------------------------------------------- DICOM
def test_dicom_monochrome2_window_after_rescale():
    stored = np.linspace(0, 1000, 16 * 20).reshape(16, 20).astype(np.uint16)
    data = dicom(stored, bits_stored=12, RescaleSlope=2, RescaleIntercept=-1000,
                 WindowCenter=0, WindowWidth=400)
    assert data[128:132] == b"DICM"
    out = load_image(data, name="ct.dcm")
    modality = stored.astype(float) * 2 - 1000
    assert np.all(out.pixels[modality <= -210] == 0) and np.all(out.pixels[modality >= 210] == 255)
    middle = np.abs(modality) < 5
    assert middle.any() and np.all(np.abs(out.pixels[middle].astype(int) - 128) <= 4)
    assert "DICOM window applied" in out.notes


def test_dicom_without_window_uses_min_max_and_any_name():
    stored = np.arange(12 * 10, dtype=np.int16).reshape(12, 10) - 60
    out = load_image(dicom(stored), name="noext")
    assert out.pixels.min() == 0 and out.pixels.max() == 255 and out.pixels[0, 0] == 0


def test_dicom_monochrome1_inverted():
    stored = np.arange(16 * 16, dtype=np.uint16).reshape(16, 16)
    out = load_image(dicom(stored, photometric="MONOCHROME1"), name="xr.dcm")
    assert out.pixels[0, 0] == 255 and out.pixels[-1, -1] == 0
    assert any("MONOCHROME1 inverted" in n for n in out.notes)


def test_dicom_voi_lut_applied():
    stored = np.arange(256, dtype=np.uint16).reshape(16, 16)
    lut = Dataset()
    lut.add_new(0x00283002, "US", [256, 0, 8])  # LUT Descriptor: 256 entries from 0, 8 bits
    lut.add_new(0x00283006, "US", [255 - i for i in range(256)])  # inverting LUT Data
    out = load_image(dicom(stored, bits_stored=8, VOILUTSequence=[lut]), name="lut.dcm")
    np.testing.assert_array_equal(out.pixels, 255 - stored)
    assert "DICOM VOI LUT applied" in out.notes


def test_dicom_multiframe_middle_slice():
    vol = np.stack([np.full((8, 9), 100 * f, np.uint16) for f in range(10)])
    out = load_image(dicom(vol, bits_stored=12, WindowCenter=500, WindowWidth=1000), name="v.dcm")
    assert out.pixels.shape == (8, 9)
    assert np.all(np.abs(out.pixels.astype(int) - 102) <= 2)  # frame 4 (value 400), not 3 or 5
    assert "DICOM multi-frame: middle slice 5 of 10 used" in out.notes


def test_dicom_rgb_converted():
    rgb = np.zeros((6, 6, 3), np.uint8)
    rgb[:3, :, 0] = 255
    rgb[3:, :, 1] = 255
    out = load_image(dicom(rgb, photometric="RGB"), name="rgb.dcm")
    assert np.all(out.pixels[:3] == 76) and np.all(out.pixels[3:] == 150)
    assert any("RGB DICOM" in n for n in out.notes)


def test_dicom_without_preamble_by_name():
    stored = np.arange(64, dtype=np.uint16).reshape(8, 8)
    data = dicom(stored, preamble=False)
    assert data[128:132] != b"DICM"
    assert load_image(data, name="raw.dcm").pixels[-1, -1] == 255
    refused(data, "not a recognised image", name="raw.bin")  # no magic, no name: not DICOM


def test_dcm_name_on_a_png_still_loads():
    arr = grey()
    np.testing.assert_array_equal(load_image(encode(Image.fromarray(arr), "PNG"), name="a.dcm").pixels, arr)


def test_dicom_compressed_that_can_be_decoded_loads():
    arr = (np.arange(48 * 64).reshape(48, 64) % 256).astype(np.uint8)
    ds = dcmread(io.BytesIO(dicom(arr)))
    ds.compress(RLELossless)  # pydicom's own RLE encoder and decoder
    buf = io.BytesIO()
    ds.save_as(buf)
    np.testing.assert_array_equal(load_image(buf.getvalue(), name="rle.dcm").pixels, arr)
    jpeg = encapsulate([encode(Image.fromarray(arr), "JPEG", quality=95)])  # decoded via Pillow
    out = load_image(dicom(arr, ts=JPEGBaseline8Bit, pixel_data=jpeg), name="jpeg.dcm")
    assert np.abs(out.pixels.astype(int) - arr).max() <= 3


def test_dicom_without_pixel_data_refused():
    refused(dicom(np.zeros((4, 4), np.uint16), pixel_data=False), "DICOM file has no pixel data",
            name="meta.dcm")


@pytest.mark.parametrize("ts", [JPEG2000Lossless, JPEGLosslessSV1, RLELossless])
def test_dicom_compressed_undecodable_refused_naming_syntax(ts):
    garbage = encapsulate([b"\xff\x4f\xff\x51" + bytes(RNG.integers(0, 256, 200, dtype=np.uint8))])
    data = dicom(np.zeros((16, 16), np.uint16), ts=ts, pixel_data=garbage)
    msg = refused(data, "transfer syntax", UID(ts).name, str(ts), "cannot be decoded", name="c.dcm")
    if ts == JPEGLosslessSV1:  # no pure-Python/Pillow decoder for it
        assert "no decoder plugin" in msg


def test_dicom_bad_window_falls_back_to_min_max():
    stored = np.arange(64, dtype=np.uint16).reshape(8, 8)
    out = load_image(dicom(stored, WindowCenter=10, WindowWidth=0), name="w.dcm")
    assert out.pixels[0, 0] == 0 and out.pixels[-1, -1] == 255
    assert any("ignored" in n for n in out.notes)


def test_dicom_huge_declared_size_refused():
    refused(dicom(np.zeros((4, 4), np.uint16), Rows=10000, Columns=10000), "10000x10000",
            name="big.dcm")


# ---------------------------------------------------------------- safe_name
@pytest.mark.parametrize("raw, expected", [
    ("../../etc/passwd", "passwd"),
    ("C:\\Users\\me\\scan 1.jpg", "scan 1.jpg"),
    ("a/b\\c.png", "c.png"),
    ("bad\x00na\x1bme\n.png", "badname.png"),
    ("x<>|:*?\"y.jpg", "x_y.jpg"),
    ("..", "upload"),
    ("", "upload"),
    ("/", "upload"),
    (".hidden.png", "hidden.png"),
    ("--rm -rf.png", "rm -rf.png"),
    ("tumour  \t scan.png", "tumour scan.png"),
    ("IRM_cérébrale.png", "IRM_cérébrale.png"),
    (None, "upload"),
])
def test_safe_name(raw, expected):
    assert safe_name(raw) == expected


def test_safe_name_length_keeps_extension():
    name = safe_name("d/" + "a" * 300 + ".jpeg")
    assert len(name) == 100 and name.endswith(".jpeg") and name.startswith("aaa")
    assert len(safe_name("b" * 500)) == 100


# ---------------------------------------------------------------- model input and intensity
def test_to_model_input_shape_range_channels():
    arr = grey(30, 50)
    one = to_model_input(arr)
    assert one.shape == (240, 240, 1) and one.dtype == np.float32
    assert 0 <= one.min() and one.max() <= 255
    three = to_model_input(arr, size=64, channels=3)
    assert three.shape == (64, 64, 3) and np.array_equal(three[..., 0], three[..., 2])
    flat = to_model_input(np.full((10, 300), 90, np.uint8), size=32)  # aspect not kept
    assert flat.shape == (32, 32, 1) and np.all(flat == 90)
    small = to_model_input(np.kron(np.eye(2), np.ones((4, 4))) * 255, size=4)  # float input
    assert small.dtype == np.float32 and 0 <= small.min() and small.max() <= 255


def test_to_model_input_antialias():
    checker = (np.indices((200, 200)).sum(0) % 2 * 255).astype(np.uint8)
    out = to_model_input(checker, size=20)
    assert np.all(np.abs(out - 127.5) < 20)  # averaged, not aliased to 0 or 255


def test_to_model_input_bad_arguments():
    with pytest.raises(ConfigError):
        to_model_input(grey(), size=0)
    with pytest.raises(ConfigError):
        to_model_input(grey(), channels=2)
    with pytest.raises(ImageError):
        to_model_input(np.zeros((3, 4, 5)))
    with pytest.raises(ImageError):
        to_model_input(np.zeros((0, 4)))


def test_normalize_intensity():
    arr = np.arange(1000, dtype=np.float64).reshape(25, 40)
    arr[0, 0], arr[-1, -1] = -1e6, 1e6  # outliers clipped by the 0.5/99.5 percentiles
    out = normalize_intensity(arr)
    assert out.dtype == np.uint8 and out.shape == arr.shape
    assert out[0, 0] == 0 and out[-1, -1] == 255 and 100 < out[12, 20] < 155
    assert np.all(normalize_intensity(np.full((5, 5), 7, np.uint8)) == 0)
    with_nan = np.array([[np.nan, 1.0], [2.0, np.inf]])
    res = normalize_intensity(with_nan, 0, 100)
    assert res.dtype == np.uint8 and res[0, 0] == 0 and res[1, 0] == 255
    with pytest.raises(ConfigError):
        normalize_intensity(arr, low=50, high=10)
