"""bt_core.data.archive: labelled zips read in memory; every unsafe archive refused with one line."""
import io
import os
import stat
import zipfile

import numpy as np
import pytest
from PIL import Image

from bt_core.data import archive
from bt_core.data.archive import ArchiveError, read_archive
from bt_core.errors import DataError
from conftest import blob_image


def png(seed=0, tumour=False, size=48) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(blob_image(np.random.default_rng(seed), size, tumour)).save(buf, "PNG")
    return buf.getvalue()


def make_zip(entries: dict, compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, blob in entries.items():
            zf.writestr(name, blob)
    return buf.getvalue()


def labelled_zip(prefix="", n=3, classes=("no", "yes")) -> bytes:
    return make_zip({f"{prefix}{cls}/{cls}{i}.png": png(10 * k + i, cls == "yes")
                     for k, cls in enumerate(classes) for i in range(n)})


def one_line_error(blob, **kw) -> str:
    with pytest.raises(ArchiveError) as err:
        read_archive(blob, **kw)
    msg = str(err.value)
    assert isinstance(err.value, DataError) and "\n" not in msg and msg
    return msg


def test_folders_at_the_top_are_read_in_memory_and_resized(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = set(os.listdir(tmp_path))
    got = read_archive(labelled_zip())
    assert got.layout == "folders" and len(got) == 6 and got.skipped == []
    assert got.pixels.shape == (6, 240, 240) and got.pixels.dtype == np.uint8
    assert sorted(zip(got.names, got.labels.tolist()))[0] == ("no/no0.png", 0)
    assert got.labels.tolist().count(1) == 3
    assert set(os.listdir(tmp_path)) == before  # nothing extracted


def test_nested_folder_layout_and_one_class_alone():
    got = read_archive(labelled_zip("mydata/", n=2, classes=("no",)))
    assert len(got) == 2 and set(got.labels.tolist()) == {0} and got.names[0].startswith("no/")


def test_non_images_are_skipped_and_listed_and_the_rest_are_read():
    entries = {"d/yes/a.png": png(1, True), "d/no/b.png": png(2), "d/no/notes.txt": b"hello",
               "d/no/broken.png": b"\x89PNG\r\n\x1a\n nope", "d/readme.md": b"x", "__MACOSX/d/._a.png": b"junk"}
    got = read_archive(make_zip(entries))
    assert sorted(got.names) == ["no/b.png", "yes/a.png"]
    text = " | ".join(got.skipped)
    assert len(got.skipped) == 3 and "notes.txt: not an image" in text and "broken.png" in text and "readme.md" in text
    assert "__MACOSX" not in text


def test_csv_layout_with_yes_no_and_1_0_labels():
    entries = {"set/scans/a.png": png(1, True), "set/scans/b.png": png(2), "set/scans/c.png": png(3),
               "set/scans/d.png": png(4), "set/labels.csv": b"file,label\nscans/a.png,yes\nscans/b.png,0\n"
                                                             b"scans/c.png,maybe\nscans/missing.png,1\n./scans/d.png,NO\n"}
    got = read_archive(make_zip(entries))
    assert got.layout == "csv"
    assert dict(zip(got.names, got.labels.tolist())) == {"scans/a.png": 1, "scans/b.png": 0, "scans/d.png": 0}
    text = " | ".join(got.skipped)
    assert "maybe" in text and "missing.png" in text and len(got.skipped) == 2


def test_not_a_zip_and_an_empty_one():
    assert "not a zip" in one_line_error(b"this is not a zip at all")
    assert "not a zip" in one_line_error(png())
    assert "no labelled images" in one_line_error(make_zip({"a.txt": b"x"}))


@pytest.mark.parametrize("name", ["../evil.png", "yes/../../evil.png", "/etc/yes/evil.png", "C:/yes/evil.png",
                                  "..\\yes\\evil.png"])
def test_path_traversal_is_refused(name):
    blob = make_zip({"yes/ok.png": png(), name: png(1)})
    assert "unsafe path" in one_line_error(blob)


def test_symlink_entries_are_refused():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("yes/ok.png", png())
        link = zipfile.ZipInfo("yes/link.png")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    assert "symbolic link" in one_line_error(buf.getvalue())


def test_too_many_files_are_refused():
    blob = make_zip({f"no/{i}.png": b"x" for i in range(12)}, zipfile.ZIP_STORED)
    assert "limit is 10" in one_line_error(blob, max_files=10)


def test_zip_bombs_are_refused_by_ratio_and_by_total_size():
    bomb = make_zip({"yes/bomb.png": bytes(30 * 1024 * 1024)})  # 30 MB of zeros in about 30 kB
    assert len(bomb) < 200_000 and "zip bomb" in one_line_error(bomb)
    many = make_zip({f"no/{i}.png": bytes(900 * 1024) for i in range(4)})  # each under the ratio floor
    assert "zip bomb" in one_line_error(many, max_total_bytes=3 * 1024 * 1024)


def test_sizes_are_checked_while_reading_not_only_in_the_header(monkeypatch):
    """An entry whose header understates its size (a forged central directory) still cannot expand beyond it."""
    blob = bytearray(make_zip({"no/a.png": png(), "no/b.png": bytes(2 * 1024 * 1024)}))
    zf = zipfile.ZipFile(io.BytesIO(bytes(blob)))
    info = zf.getinfo("no/b.png")
    cd = blob.rfind(b"PK\x01\x02")  # central directory record of the last entry: file size at offset 24
    assert int.from_bytes(blob[cd + 24:cd + 28], "little") == info.file_size
    blob[cd + 24:cd + 28] = (1000).to_bytes(4, "little")
    monkeypatch.setattr(archive, "CHUNK", 4096)
    msg = one_line_error(bytes(blob))
    assert "damaged" in msg or "zip bomb" in msg


def test_encrypted_entries_are_refused():
    blob = bytearray(make_zip({"no/a.png": png()}, zipfile.ZIP_STORED))
    for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # set the "encrypted" flag bit in both headers
        at = blob.find(sig)
        blob[at + off] |= 0x1
    assert "encrypted" in one_line_error(bytes(blob))


def test_class_folders_in_several_places_are_refused():
    blob = make_zip({"a/yes/x.png": png(1, True), "b/no/y.png": png(2)})
    assert "several places" in one_line_error(blob)
