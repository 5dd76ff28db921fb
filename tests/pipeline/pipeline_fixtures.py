"""Test inputs for the pipeline tests: tiny ONNX networks (torch export) and
phantom volumes with chosen orientation, obliquity, spacing and pixel type."""
from __future__ import annotations

import json
import math

import numpy as np
import SimpleITK as sitk

# ------------------------------------------------------------------ networks

def _calibration_input(channels: int, seed: int = 123):
    """A smooth random field in [0, 1], like a normalised phantom."""
    import torch
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((1, channels, 24, 24, 24), generator=g)
    for _ in range(3):  # cheap smoothing: repeated 3x3x3 box filter
        x = torch.nn.functional.avg_pool3d(x, 3, stride=1, padding=1, count_include_pad=False)
    x = (x - x.amin()) / (x.amax() - x.amin())
    return x


def make_net(path: str, *, classes: int = 3, channels: int = 1, hidden: int = 8, kernel: int = 3,
             static_shape=None, metadata: dict | None = None, seed: int = 0) -> str:
    """Conv3d(k) -> ReLU -> Conv3d(k) with random but fixed weights. The weights are
    amplified and the class biases calibrated so that every class wins on a good
    share of a smooth [0, 1] input: labels then depend on intensity *and* context,
    so a wrong orientation, window placement, padding or blending changes them."""
    import onnx
    import torch

    torch.manual_seed(seed)
    pad = kernel // 2
    net = torch.nn.Sequential(
        torch.nn.Conv3d(channels, hidden, kernel, padding=pad),
        torch.nn.ReLU(),
        torch.nn.Conv3d(hidden, classes, kernel, padding=pad),
    ).eval()
    with torch.no_grad():
        net[0].weight.mul_(4.0)
        net[2].weight.mul_(4.0)
        x = _calibration_input(channels)
        logits = net(x)
        # Centre each class on its median so the argmax is spread over the classes.
        net[2].bias.sub_(logits.flatten(2).median(dim=2).values[0])
    shape = static_shape or (1, channels, 16, 16, 16)
    x = torch.zeros(shape)
    dynamic = None if static_shape else {"input": {0: "N", 2: "Z", 3: "Y", 4: "X"},
                                         "logits": {0: "N", 2: "Z", 3: "Y", 4: "X"}}
    torch.onnx.export(net, x, path, input_names=["input"], output_names=["logits"], opset_version=17,
                      dynamic_axes=dynamic)
    _add_metadata(path, metadata)
    return path


def make_pointwise_net(path: str, classes: int, metadata: dict | None = None) -> str:
    """1x1x1 convs whose argmax bins the [0, 1] input into `classes` levels
    (logit_c = c/C * x - (c/C)^2 / 2), e.g. > 255 classes for 16-bit labels."""
    import torch

    net = torch.nn.Sequential(torch.nn.Conv3d(1, 1, 1), torch.nn.ReLU(), torch.nn.Conv3d(1, classes, 1)).eval()
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.fill_(0.0)
        a = torch.arange(classes, dtype=torch.float32) / classes
        net[2].weight.copy_(a.reshape(classes, 1, 1, 1, 1))
        net[2].bias.copy_(-a * a / 2)
    x = torch.zeros((1, 1, 8, 8, 8))
    dynamic = {"input": {0: "N", 2: "Z", 3: "Y", 4: "X"}, "logits": {0: "N", 2: "Z", 3: "Y", 4: "X"}}
    torch.onnx.export(net, x, path, input_names=["input"], output_names=["logits"], opset_version=17,
                      dynamic_axes=dynamic)
    _add_metadata(path, metadata)
    return path


def _add_metadata(path: str, metadata: dict | None) -> None:
    if not metadata:
        return
    import onnx
    m = onnx.load(path)
    for k, v in metadata.items():
        p = m.metadata_props.add()
        p.key = k
        p.value = v if isinstance(v, str) else json.dumps(v)
    onnx.save(m, path)


# ------------------------------------------------------------------ geometry

_AXES = {"L": (1, 0, 0), "R": (-1, 0, 0), "P": (0, 1, 0), "A": (0, -1, 0), "S": (0, 0, 1), "I": (0, 0, -1)}


def direction_from_code(code: str) -> np.ndarray:
    """Columns point toward the named directions (DICOMOrient notation)."""
    return np.array([_AXES[c] for c in code], dtype=float).T


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = math.cos(ax), math.sin(ax), math.cos(ay), math.sin(ay), math.cos(az), math.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def make_phantom(path: str, size_xyz, *, spacing=(1.0, 1.0, 1.0), direction=None, origin=(-40.0, 25.0, 110.0),
                 pixel=sitk.sitkInt16, lo=-1000.0, hi=1000.0, seed: int = 0, components: int = 1) -> sitk.Image:
    """Smooth random blobs plus a gradient: structure at several scales, no symmetry."""
    rng = np.random.RandomState(seed)
    nx, ny, nz = size_xyz
    noise = sitk.GetImageFromArray(rng.rand(nz, ny, nx).astype(np.float32))
    smooth = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(noise, 2.0))
    smooth = (smooth - smooth.min()) / max(float(np.ptp(smooth)), 1e-6)
    zz, yy, xx = np.meshgrid(np.linspace(0, 1, nz), np.linspace(0, 1, ny), np.linspace(0, 1, nx), indexing="ij")
    field = 0.7 * smooth + 0.2 * xx + 0.1 * yy * zz
    arr = lo + (hi - lo) * field
    if components > 1:
        arr = np.stack([arr * (1 - 0.2 * c) for c in range(components)], axis=-1)
    img = sitk.GetImageFromArray(arr.astype(np.float64), isVector=components > 1)
    img = sitk.Cast(img, pixel if components == 1 else sitk.sitkVectorFloat32)
    img.SetSpacing([float(s) for s in spacing])
    img.SetOrigin([float(o) for o in origin])
    if direction is not None:
        img.SetDirection([float(v) for v in np.asarray(direction).ravel()])
    sitk.WriteImage(img, path, True)
    return img


def agreement(a: sitk.Image, b: sitk.Image) -> float:
    x, y = sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b)
    assert x.shape == y.shape, f"shapes differ: {x.shape} vs {y.shape}"
    return float((x == y).mean())


def same_geometry(a: sitk.Image, b: sitk.Image, tol: float = 1e-4) -> bool:
    return (a.GetSize() == b.GetSize()
            and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tol)
            and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tol)
            and np.allclose(a.GetDirection(), b.GetDirection(), atol=tol))
