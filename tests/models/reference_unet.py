#!/usr/bin/env python3
"""nnU-Net-style plain U-Net (PyTorch definition + ONNX export of the benchmark net).

`PlainUNet` is used twice: tiny, as the `unet_nnunet` / `unet2d_nnunet` zoo cases
(make_zoo.py), and at full size (32..320 channels, 31.2 M parameters) as the
benchmark network exported by `--reference-unet`.

Run with the project venv (Debian torch 1.13 + onnx 1.12):
    .venv/bin/python tests/models/reference_unet.py --out ref_unet.onnx [--patch 128]
or the same flags through make_zoo.py (`--reference-unet OUT.onnx`).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn as nn

REF_CHANNELS = (32, 64, 128, 256, 320, 320)
REF_PARAMS = 31_194_083  # what the layout below must give: "31.2 M"


def _nd(spatial_dims: int):
    if spatial_dims == 3:
        return nn.Conv3d, nn.ConvTranspose3d, nn.InstanceNorm3d
    if spatial_dims == 2:
        return nn.Conv2d, nn.ConvTranspose2d, nn.InstanceNorm2d
    raise ValueError(spatial_dims)


class ConvBlock(nn.Sequential):
    """Conv(k3) -> InstanceNorm(affine) -> LeakyReLU(0.01), as in nnU-Net's StackedConvBlocks."""

    def __init__(self, cin: int, cout: int, stride: int, spatial_dims: int):
        conv, _, norm = _nd(spatial_dims)
        super().__init__(
            conv(cin, cout, 3, stride=stride, padding=1, bias=True),
            # nnU-Net uses affine=True and no running stats (per-sample statistics at inference)
            norm(cout, eps=1e-5, affine=True),
            nn.LeakyReLU(0.01, inplace=True),
        )


class PlainUNet(nn.Module):
    """Encoder: per stage two ConvBlocks, the first strided (except stage 1).
    Decoder: ConvTranspose(k2,s2) -> concat skip -> two ConvBlocks. 1x1 head, no deep supervision."""

    def __init__(self, in_channels=1, num_classes=3, channels=REF_CHANNELS, spatial_dims=3):
        super().__init__()
        conv, tconv, _ = _nd(spatial_dims)
        self.encoder = nn.ModuleList()
        cin = in_channels
        for i, c in enumerate(channels):
            self.encoder.append(nn.Sequential(
                ConvBlock(cin, c, 1 if i == 0 else 2, spatial_dims),
                ConvBlock(c, c, 1, spatial_dims)))
            cin = c
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for i in range(len(channels) - 1, 0, -1):
            hi, lo = channels[i], channels[i - 1]
            self.up.append(tconv(hi, lo, 2, stride=2, bias=True))
            self.decoder.append(nn.Sequential(
                ConvBlock(2 * lo, lo, 1, spatial_dims),
                ConvBlock(lo, lo, 1, spatial_dims)))
        self.head = conv(channels[0], num_classes, 1, bias=True)

    def forward(self, x):
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        x = skips.pop()  # bottleneck output
        for up, dec in zip(self.up, self.decoder):
            x = dec(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def randomize_norms(model: nn.Module, gen: torch.Generator) -> None:
    """Give norm layers non-identity affine params (and BN non-trivial running stats),
    so a runtime that ignores scale/bias/mean/var cannot pass by accident."""
    with torch.no_grad():
        for m in model.modules():
            w = getattr(m, "weight", None)
            b = getattr(m, "bias", None)
            is_norm = isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm))
            if is_norm and w is not None:
                w.copy_(torch.rand(w.shape, generator=gen) + 0.5)          # U(0.5, 1.5)
            if is_norm and b is not None:
                b.copy_(torch.randn(b.shape, generator=gen) * 0.2)
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) * 1.5 + 0.5)


def build_reference_unet(seed: int = 1234) -> PlainUNet:
    torch.manual_seed(seed)
    model = PlainUNet(1, 3, REF_CHANNELS, 3)
    randomize_norms(model, torch.Generator().manual_seed(seed + 1))
    return model.eval()


def export_reference_unet(out_path: str, patch: int = 128, dynamic: bool = False,
                          with_output: bool = False, seed: int = 1234) -> None:
    import onnx
    from onnx import numpy_helper

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    model = build_reference_unet(seed)
    n = count_params(model)
    print(f"reference U-Net parameters: {n:,} ({n / 1e6:.2f} M)")
    assert abs(n - 31.2e6) / 31.2e6 < 0.01, "parameter count is not 31.2 M +-1%"
    if patch % 32:
        raise SystemExit("--patch must be a multiple of 32 (5 stride-2 stages)")
    x = torch.from_numpy(np.random.RandomState(seed).standard_normal(
        (1, 1, patch, patch, patch)).astype(np.float32))
    dyn = {"input": {0: "N", 2: "D", 3: "H", 4: "W"},
           "output": {0: "N", 2: "D", 3: "H", 4: "W"}} if dynamic else None
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    t0 = time.time()
    with torch.no_grad(), warnings.catch_warnings():
        # torch 1.13 warns that InstanceNorm (no running stats) is exported "train=True": noise
        warnings.simplefilter("ignore")
        torch.onnx.export(model, x, out_path, opset_version=17, input_names=["input"],
                          output_names=["output"], dynamic_axes=dyn, do_constant_folding=True)
    onnx.checker.check_model(out_path)
    print(f"wrote {out_path} (input {'N,1,D,H,W symbolic' if dynamic else tuple(x.shape)}) "
          f"in {time.time() - t0:.1f} s")
    if with_output:
        # Written next to the model in the ONNX backend-test layout.
        d = os.path.join(os.path.dirname(os.path.abspath(out_path)), "test_data_set_0")
        os.makedirs(d, exist_ok=True)
        t0 = time.time()
        with torch.no_grad():
            y = model(x)
        for name, arr in (("input_0", x), ("output_0", y)):
            with open(os.path.join(d, name + ".pb"), "wb") as f:
                f.write(numpy_helper.from_array(arr.numpy(), name).SerializeToString())
        print(f"reference output {tuple(y.shape)} written to {d} ({time.time() - t0:.1f} s)")


def add_cli(p: argparse.ArgumentParser) -> None:
    p.add_argument("--patch", type=int, default=128, help="cubic input edge (default 128)")
    p.add_argument("--dynamic", action="store_true", help="symbolic N and spatial dims")
    p.add_argument("--with-output", action="store_true",
                   help="also compute PyTorch's output (slow) into test_data_set_0/")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output .onnx path")
    add_cli(ap)
    a = ap.parse_args()
    export_reference_unet(a.out, a.patch, a.dynamic, a.with_output)
    sys.exit(0)
