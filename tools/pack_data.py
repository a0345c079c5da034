"""Pack a two-class image folder into one .npz of JPEG bytes, for a machine that cannot see the folder.

The images are decoded and resized as training does (greyscale, --size px, 240 by default), then stored
as JPEG (--quality 90): Br35H comes to 45.6 MiB, small enough to carry to a rented GPU. Every
``--data`` option of ``python -m bt_core`` takes the file in place of the folder. Never commit it
(``*.npz`` is ignored).

Usage: python tools/pack_data.py --data ../shared/data/br35h --out data_cache/br35h-240.npz
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere, no install

import argparse

from bt_core import data
from bt_core.errors import BTError


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="folder with no/ and yes/")
    ap.add_argument("--out", required=True, help="the .npz to write")
    ap.add_argument("--size", type=int, default=data.DEFAULT_SIZE)
    ap.add_argument("--quality", type=int, default=90, help="JPEG quality, 1-100")
    args = ap.parse_args()
    try:
        ds = data.load_folder(args.data, args.size)
        out = data.pack(ds, args.out, args.quality)
    except BTError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"packed {len(ds)} images ({len(ds.skipped)} skipped) into {out}: {out.stat().st_size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
