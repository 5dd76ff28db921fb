#!/usr/bin/env python3
"""Reference segmentation pipeline: what itkit_infer must reproduce.

SimpleITK for reading and orientation (its DICOMOrient is *the* orientation
reference), numpy for ITKIT's sliding-window algorithm, ONNX Runtime for the network.
Written from the algorithm's description, independently of the C++ code:

  read -> DICOMOrient(image, "LPI") -> array (Z, Y, X) -> intensity normalisation
  -> [resample to the model's spacing] -> sliding window (pad smaller-than-patch axes
  by edge replication, windows at i*stride moved back flush with the border, logits
  averaged over covering windows, or Gaussian-weighted) -> argmax -> [resample back]
  -> label image in the LPI grid -> nearest-neighbour onto the input's own grid.

Accumulation is float32 (ITKIT accumulates in float16; float32 is what itkit_infer
does, and the agreement threshold absorbs neither choice's rounding).

    python reference_segment.py --model M.onnx --input IN --output OUT.nii.gz \
        [--window-level L --window-width W] [--patch Z,Y,X] [--stride Z,Y,X] \
        [--blend constant|gaussian] [--identity-network C]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np
import SimpleITK as sitk


# ---------------------------------------------------------------- model metadata

def read_metadata(model_path: str | None) -> dict:
    """ONNX metadata_props (JSON-decoded where possible) overlaid by NAME.yaml."""
    meta: dict = {}
    if model_path is None:
        return meta
    import onnx
    m = onnx.load(model_path, load_external_data=False)
    for p in m.metadata_props:
        try:
            meta[p.key] = json.loads(p.value)
        except ValueError:
            meta[p.key] = p.value
    side = os.path.splitext(model_path)[0] + ".yaml"
    if os.path.exists(side):
        import yaml
        with open(side) as f:
            meta.update(yaml.safe_load(f) or {})
    return meta


# ---------------------------------------------------------------- networks

class OrtNetwork:
    def __init__(self, path: str):
        import onnxruntime as ort
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.name = inp.name
        shape = inp.shape
        self.static_patch = tuple(shape[2:]) if all(isinstance(d, int) for d in shape[2:]) else None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.name: batch.astype(np.float32)})[0].astype(np.float32)


class SyntheticNetwork:
    """Mirror of itkit_infer --identity-network C: logits[c] = c * (x - c / (2C))."""

    static_patch = None

    def __init__(self, classes: int):
        self.classes = classes

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = batch[:, :1].astype(np.float32)
        out = [np.float32(c) * (x - np.float32(c / (2.0 * self.classes))) for c in range(self.classes)]
        return np.concatenate(out, axis=1).astype(np.float32)


# ---------------------------------------------------------------- pieces

def read_image(path: str) -> sitk.Image:
    if os.path.isdir(path):
        reader = sitk.ImageSeriesReader()
        uids = reader.GetGDCMSeriesIDs(path)
        files = max((reader.GetGDCMSeriesFileNames(path, u) for u in uids), key=len)
        reader.SetFileNames(files)
        return sitk.Cast(reader.Execute(), sitk.sitkFloat32)
    return sitk.ReadImage(path, sitk.sitkFloat32)


def normalize(arr: np.ndarray, meta: dict, wl=None, ww=None) -> np.ndarray:
    norm = meta.get("normalization") or {"mode": "window"}
    mode = norm.get("mode", "window")
    arr = arr.astype(np.float32)
    if mode == "window":
        wl = wl if wl is not None else meta.get("window_level")
        ww = ww if ww is not None else meta.get("window_width")
        if wl is None or ww is None:
            raise ValueError("window_level/window_width required")
        wl, ww = float(wl), float(ww)
        left, right = wl - ww / 2.0, wl + ww / 2.0
        # ITKIT's _apply_windowing, float32 throughout.
        arr = np.clip(arr, np.float32(left), np.float32(right))
        return ((arr - np.float32(left)) / np.float32(ww)).astype(np.float32)
    if mode == "ct":
        lo, hi = norm["clip"]
        arr = np.clip(arr, np.float32(lo), np.float32(hi))
        return ((arr - np.float32(norm["mean"])) / np.float32(norm["std"])).astype(np.float32)
    if mode == "zscore":
        mean = float(arr.mean(dtype=np.float64))
        std = max(float(arr.std(dtype=np.float64)), 1e-8)
        return ((arr - np.float32(mean)) / np.float32(std)).astype(np.float32)
    raise ValueError(mode)


def window_starts(size: int, patch: int, stride: int) -> list[int]:
    n = max(size - patch + stride - 1, 0) // stride + 1
    starts = []
    for i in range(n):
        end = min(i * stride + patch, size)
        starts.append(max(end - patch, 0))
    return starts


def gaussian_1d(patch: int) -> np.ndarray:
    sigma = patch / 8.0
    i = np.arange(patch, dtype=np.float64) - (patch // 2)
    return np.exp(-i * i / (2 * sigma * sigma)).astype(np.float32)


def mirrored(forward):
    """nnU-Net's mirroring TTA: mean over the 8 flip combinations of Z, Y, X."""
    def f(batch):
        acc = None
        for mask in range(8):
            axes = tuple(a for bit, a in ((1, 4), (2, 3), (4, 2)) if mask & bit)
            x = np.ascontiguousarray(np.flip(batch, axes)) if axes else batch
            y = forward(x)
            y = np.flip(y, axes) if axes else y
            acc = y.astype(np.float32) if acc is None else acc + y
        return acc * np.float32(0.125)
    return f


def slide_inference(vol: np.ndarray, forward, patch, stride, blend="constant", batch=1, tta=False) -> np.ndarray:
    """vol (C, Z, Y, X) -> averaged logits (classes, Z, Y, X), ITKIT's algorithm."""
    if tta:
        forward = mirrored(forward)
    size = vol.shape[1:]
    pad = [max(p - s, 0) for p, s in zip(patch, size)]
    if any(pad):
        vol = np.pad(vol, [(0, 0)] + [(q // 2, q - q // 2) for q in pad], mode="edge")
    padded = vol.shape[1:]
    starts = [window_starts(padded[a], patch[a], stride[a]) for a in range(3)]
    windows = [(z, y, x) for z in starts[0] for y in starts[1] for x in starts[2]]
    acc = None
    norm = np.zeros(padded, np.float32)
    if blend == "gaussian":
        wz, wy, wx = (gaussian_1d(p) for p in patch)
        w3 = ((wz[:, None, None] * wy[None, :, None]).astype(np.float32) * wx[None, None, :]).astype(np.float32)
    else:
        w3 = None
    for i in range(0, len(windows), batch):
        group = windows[i:i + batch]
        inp = np.stack([vol[:, z:z + patch[0], y:y + patch[1], x:x + patch[2]] for z, y, x in group])
        out = forward(inp)
        if acc is None:
            acc = np.zeros((out.shape[1],) + padded, np.float32)
        for j, (z, y, x) in enumerate(group):
            sl = (slice(z, z + patch[0]), slice(y, y + patch[1]), slice(x, x + patch[2]))
            if w3 is None:
                acc[(slice(None),) + sl] += out[j]
                norm[sl] += 1
            else:
                acc[(slice(None),) + sl] += out[j] * w3
                norm[sl] += w3
    assert norm.min() > 0, "voxels not covered by any window"
    logits = acc / norm[None]
    crop = tuple(slice(q // 2, q // 2 + s) for q, s in zip(pad, size))
    return logits[(slice(None),) + crop]


def resample_like_itkit(img: sitk.Image, spacing_xyz, size_xyz, interp) -> sitk.Image:
    return sitk.Resample(img, [int(s) for s in size_xyz], sitk.Transform(), interp, img.GetOrigin(),
                         [float(s) for s in spacing_xyz], img.GetDirection(), 0.0, img.GetPixelID(),
                         True)  # nearest-neighbour extrapolation: clamp at the border


def resampled_size(size_xyz, old_xyz, new_xyz):
    return [max(1, int(math.floor(n * o / w + 0.5))) for n, o, w in zip(size_xyz, old_xyz, new_xyz)]


# ---------------------------------------------------------------- the pipeline

def reference_segment(input_path: str, network, meta: dict, *, wl=None, ww=None, patch=None, stride=None,
                      blend=None, batch=1, output_in_model_orientation=False, tta=False):
    """Returns (label image in the input's grid, or in the model's when asked;
    the probabilities array (classes, Z, Y, X) in the model's grid)."""
    cfg = meta.get("inference_config") or {}
    orientation = meta.get("orientation", "LPI")
    image = read_image(input_path)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError("vector images are not handled by the reference")
    oriented = sitk.DICOMOrient(image, orientation)
    arr = sitk.GetArrayFromImage(oriented)  # (Z, Y, X)
    arr = normalize(arr, meta, wl, ww)

    resample = bool(meta.get("resample_to_spacing")) and meta.get("spacing") is not None
    work = arr
    if resample:
        src = sitk.GetImageFromArray(arr)
        src.CopyInformation(oriented)
        new_sp = [float(s) for s in meta["spacing"]]
        size = resampled_size(oriented.GetSize(), oriented.GetSpacing(), new_sp)
        work = sitk.GetArrayFromImage(resample_like_itkit(src, new_sp, size, sitk.sitkLinear))

    if patch is None:
        patch = network.static_patch or cfg.get("patch_size")
        if stride is None:
            stride = cfg.get("patch_stride")
    if patch is None:  # no patch anywhere: the whole volume is one window
        patch = stride = work.shape
    patch = tuple(int(p) for p in patch)
    stride = tuple(int(s) for s in stride) if stride is not None else tuple(max(1, p // 2) for p in patch)
    blend = blend or cfg.get("blend", "constant")

    logits = slide_inference(work[None], network, patch, stride, blend, batch, tta)
    if resample and meta.get("resample_back", "labels") == "logits":
        chans = []
        for c in range(logits.shape[0]):
            im = sitk.GetImageFromArray(logits[c])
            im.SetSpacing([float(s) for s in meta["spacing"]])
            im.SetOrigin(oriented.GetOrigin())
            im.SetDirection(oriented.GetDirection())
            chans.append(sitk.GetArrayFromImage(resample_like_itkit(im, oriented.GetSpacing(), oriented.GetSize(),
                                                                   sitk.sitkLinear)))
        logits = np.stack(chans)
        labels = np.argmax(logits, axis=0)
    else:
        labels = np.argmax(logits, axis=0)
        if resample:
            im = sitk.GetImageFromArray(labels.astype(np.uint16))
            im.SetSpacing([float(s) for s in meta["spacing"]])
            im.SetOrigin(oriented.GetOrigin())
            im.SetDirection(oriented.GetDirection())
            labels = sitk.GetArrayFromImage(resample_like_itkit(im, oriented.GetSpacing(), oriented.GetSize(),
                                                               sitk.sitkNearestNeighbor))
    dtype = np.uint16 if logits.shape[0] > 255 else np.uint8
    lab = sitk.GetImageFromArray(labels.astype(dtype))
    lab.CopyInformation(oriented)
    if not output_in_model_orientation:
        # Voxel centres coincide, so nearest neighbour only re-indexes.
        lab = sitk.Resample(lab, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, lab.GetPixelID())
    return lab, logits


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--identity-network", type=int)
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--window-level", type=float)
    ap.add_argument("--window-width", type=float)
    ap.add_argument("--patch")
    ap.add_argument("--stride")
    ap.add_argument("--blend")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--output-orientation", choices=["input", "model"], default="input")
    a = ap.parse_args(argv)
    triple = lambda s: tuple(int(v) for v in s.split(",")) if s else None  # noqa: E731
    net = SyntheticNetwork(a.identity_network) if a.identity_network else OrtNetwork(a.model)
    meta = read_metadata(a.model)
    lab, _ = reference_segment(a.input, net, meta, wl=a.window_level, ww=a.window_width, patch=triple(a.patch),
                               stride=triple(a.stride), blend=a.blend, batch=a.batch,
                               output_in_model_orientation=a.output_orientation == "model")
    sitk.WriteImage(lab, a.output, True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
