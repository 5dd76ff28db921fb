#!/usr/bin/env python3
"""Train the demo model models/demo_ct_body.onnx (body / fat / bone on CT) on CPU.

Everything is synthetic: volumes come from make_sample_volume.generate_case while
training runs, so no data set is needed and retraining reproduces the file (fixed
seeds, fixed iteration count, 2 torch threads).

Preprocessing is ITKIT's: DICOMOrient(image, "LPI"), array (Z,Y,X), clip to
[WL-WW/2, WL+WW/2], scale to [0,1]. The network is a small 3D U-Net
(Conv-InstanceNorm-LeakyReLU, 4 levels). Evaluation uses ITKIT's sliding window
(windows of patch size at stride patch//2, logits averaged, argmax) on held-out
volumes, first with the PyTorch model and then with the exported ONNX in onnxruntime.

    .venv/bin/python tools/train_demo_model.py            # about 5 min on 2 cores
    .venv/bin/python tools/train_demo_model.py --quick    # smoke test, writes to /tmp
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

# Passive OpenMP waiting: on a shared, oversubscribed machine spinning threads made
# training 6x slower; results are bit-identical either way (only scheduling changes).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_onnx  # noqa: E402  (metadata helpers shared with the user export tool)
import make_sample_volume as gen  # noqa: E402

REPO = gen.REPO
NAME = "demo_ct_body"
PATCH = (32, 64, 64)            # z, y, x: trained and inferred at the same size (InstanceNorm)
STRIDE = tuple(p // 2 for p in PATCH)
FORWARD_BATCH_WINDOWS = 4
# Window [-500, 1100] HU: air/lung clip to 0, fat (-100 -> 0.25) and soft tissue
# (+40 -> 0.34) stay unclipped and 7 noise-SDs apart, bone (700-1200 -> 0.75-1.0) is
# clipped only at the very top. A soft-tissue window (40/400) would clip all bone to 1.
WL, WW = 300, 1600
CHANNELS = (8, 16, 32, 64)
LABELS = [
    {"name": "background", "color": [0, 0, 0]},
    {"name": "body", "color": [221, 130, 101]},
    {"name": "fat", "color": [230, 220, 70]},
    {"name": "bone", "color": [241, 214, 145]},
]
DESCRIPTION = ("Demo 3D U-Net: body soft tissue / fat / bone on CT, trained on synthetic "
               "volumes from tools/make_sample_volume.py only. For testing the server, "
               "not for clinical use.")
TRAIN_SEED_BASE = 1000          # training volumes use seeds 1000, 1001, ...
EVAL_SEEDS = (900001, 900002, 900003, 900004)
EVAL_SIZE = (160, 160, 64)


# ---------------------------------------------------------------------------- network

class ConvBlock(nn.Sequential):
    def __init__(self, cin, cout, stride=1):
        super().__init__(
            # Edge (replicate) padding, not zeros: see DemoUNet.
            nn.Conv3d(cin, cout, 3, stride=stride, padding=1, padding_mode="replicate"),
            # affine, no running stats: per-patch statistics in training and inference alike
            nn.InstanceNorm3d(cout, eps=1e-5, affine=True),
            nn.LeakyReLU(0.01, inplace=True))


class DemoUNet(nn.Module):
    """Strided-conv encoder; decoder 2x2x2 ConvTranspose (stride 2), concatenated
    skips; 1x1 head.

    Convolutions pad by edge replication, not zeros: windowing clips air to exactly 0,
    so all-air windows are constant, and with zero padding InstanceNorm blew the
    padding border up into whole planes of "body"/"fat" there. Blank air patches in
    training (sample_patch) teach the net to call such windows background.

    Exported ops: Pad (edge), Conv, InstanceNormalization, LeakyRelu, ConvTranspose, Concat."""

    def __init__(self, in_channels=1, num_classes=4, channels=CHANNELS):
        super().__init__()
        self.encoder = nn.ModuleList()
        cin = in_channels
        for i, c in enumerate(channels):
            self.encoder.append(nn.Sequential(ConvBlock(cin, c, 1 if i == 0 else 2), ConvBlock(c, c)))
            cin = c
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for i in range(len(channels) - 1, 0, -1):
            self.up.append(nn.ConvTranspose3d(channels[i], channels[i - 1], 2, stride=2))
            self.decoder.append(nn.Sequential(ConvBlock(2 * channels[i - 1], channels[i - 1]),
                                              ConvBlock(channels[i - 1], channels[i - 1])))
        self.head = nn.Conv3d(channels[0], num_classes, 1)

    def forward(self, x):
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        x = skips.pop()
        for up, dec in zip(self.up, self.decoder):
            x = dec(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)


# ---------------------------------------------------------------------------- data

def window(arr: np.ndarray, wl=WL, ww=WW) -> np.ndarray:
    lo = wl - ww / 2
    return ((np.clip(arr.astype(np.float32), lo, lo + ww) - lo) / ww).astype(np.float32)


def preprocess(image: sitk.Image, labels: sitk.Image | None = None):
    """ITKIT preprocessing: LPI orientation, (Z,Y,X) array, window to [0,1]."""
    x = window(sitk.GetArrayFromImage(sitk.DICOMOrient(image, "LPI")))
    y = None if labels is None else sitk.GetArrayFromImage(sitk.DICOMOrient(labels, "LPI")).astype(np.int64)
    return x, y


def random_training_case(k: int, rng: np.random.Generator):
    size = (int(rng.integers(112, 177)), int(rng.integers(112, 177)), int(rng.integers(36, 73)))
    img, lab = gen.generate_case(size, seed=TRAIN_SEED_BASE + k, oblique=bool(rng.uniform() < 0.3))
    return preprocess(img, lab)


def sample_patch(x, y, rng, bone_fraction=0.3, air_fraction=0.15, blank_fraction=0.1):
    """A random PATCH-sized crop. Some crops are centred on bone (the rarest class), some
    on outside air (windows at the edge of the body), and some are blank air, which
    teaches the net's single constant-input answer to be background (see DemoUNet)."""
    u = rng.uniform()
    if u < blank_fraction:
        return np.zeros(PATCH, np.float32), np.zeros(PATCH, np.int64)
    pad = [(0, max(p - s, 0)) for p, s in zip(PATCH, x.shape)]
    if any(p[1] for p in pad):
        x, y = np.pad(x, pad, mode="edge"), np.pad(y, pad, mode="edge")
    centre = None
    if u < blank_fraction + bone_fraction:
        idx = np.argwhere(y == gen.BONE)
        if len(idx):
            centre = idx[rng.integers(len(idx))]
    elif u < blank_fraction + bone_fraction + air_fraction:
        for _ in range(50):  # rejection sampling: outside air is usually plentiful
            c = [int(rng.integers(s)) for s in x.shape]
            if x[tuple(c)] == 0 and y[tuple(c)] == gen.BACKGROUND:
                centre = c
                break
    if centre is not None:
        start = [int(np.clip(ci - p // 2, 0, s - p)) for ci, p, s in zip(centre, PATCH, x.shape)]
    else:
        start = [int(rng.integers(0, s - p + 1)) for p, s in zip(PATCH, x.shape)]
    sl = tuple(slice(s0, s0 + p) for s0, p in zip(start, PATCH))
    return x[sl], y[sl]


def soft_dice_loss(logits, target, num_classes):
    """1 - mean soft Dice over the foreground classes (batch pooled)."""
    prob = logits.softmax(1)
    onehot = F.one_hot(target, num_classes).permute(0, 4, 1, 2, 3).float()
    dims = (0, 2, 3, 4)
    inter = (prob * onehot).sum(dims)
    denom = prob.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + 1) / (denom + 1)
    return 1 - dice[1:].mean()


# ---------------------------------------------------------------------------- inference

def window_starts(size: int, patch: int, stride: int):
    """ITKIT's window positions along one axis."""
    n = max(size - patch + stride - 1, 0) // stride + 1
    out = []
    for i in range(n):
        end = min(i * stride + patch, size)
        out.append(max(end - patch, 0))
    return out


def sliding_window(x: np.ndarray, forward, num_classes: int, patch=PATCH, stride=STRIDE,
                   batch=FORWARD_BATCH_WINDOWS) -> np.ndarray:
    """Average of window logits (C,Z,Y,X). Volumes smaller than a patch are padded
    symmetrically with edge values and cropped back, as ITKIT does."""
    pads = [(max(p - s, 0) // 2, max(p - s, 0) - max(p - s, 0) // 2) for p, s in zip(patch, x.shape)]
    xp = np.pad(x, pads, mode="edge") if any(a or b for a, b in pads) else x
    acc = np.zeros((num_classes,) + xp.shape, np.float32)
    cnt = np.zeros(xp.shape, np.float32)
    slices = [(slice(z, z + patch[0]), slice(y, y + patch[1]), slice(x0, x0 + patch[2]))
              for z in window_starts(xp.shape[0], patch[0], stride[0])
              for y in window_starts(xp.shape[1], patch[1], stride[1])
              for x0 in window_starts(xp.shape[2], patch[2], stride[2])]
    for i in range(0, len(slices), batch):
        group = slices[i:i + batch]
        logits = forward(np.stack([xp[s][None] for s in group]).astype(np.float32))
        for s, lg in zip(group, logits):
            acc[(slice(None),) + s] += lg
            cnt[s] += 1
    acc /= cnt
    crop = tuple(slice(a, a + s) for (a, _), s in zip(pads, x.shape))
    return acc[(slice(None),) + crop]


def dice_per_class(pred, truth, classes=(1, 2, 3)):
    out = []
    for c in classes:
        p, t = pred == c, truth == c
        denom = p.sum() + t.sum()
        out.append(1.0 if denom == 0 else 2.0 * np.logical_and(p, t).sum() / denom)
    return out


def torch_forward(model):
    def f(batch):
        with torch.no_grad():
            return model(torch.from_numpy(batch)).numpy()
    return f


def ort_forward(onnx_path, threads):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    return lambda batch: sess.run(["logits"], {"input": batch})[0]


def eval_cases(quick: bool):
    """Held-out volumes (seeds never used in training) plus the committed sample."""
    cases = []
    for i, seed in enumerate(EVAL_SEEDS[:1] if quick else EVAL_SEEDS):
        oblique = i % 2 == 1
        img, lab = gen.generate_case(EVAL_SIZE, seed=seed, oblique=oblique)
        cases.append((f"seed {seed}{' oblique' if oblique else ''}", *preprocess(img, lab)))
    if os.path.exists(gen.DEFAULT_OUT) and os.path.exists(gen.DEFAULT_LABELS_OUT) and not quick:
        cases.append(("models/sample/sample_ct", *preprocess(sitk.ReadImage(gen.DEFAULT_OUT),
                                                               sitk.ReadImage(gen.DEFAULT_LABELS_OUT))))
    return cases


def evaluate(cases, forward, title):
    print(f"\n{title}\n| volume | body | fat | bone | mean |\n|---|---|---|---|---|")
    rows = []
    for name, x, y in cases:
        pred = sliding_window(x, forward, len(LABELS)).argmax(0)
        d = dice_per_class(pred, y)
        rows.append(d)
        print(f"| {name} | " + " | ".join(f"{v:.4f}" for v in d) + f" | {np.mean(d):.4f} |")
    held = np.array(rows[:len(EVAL_SEEDS)] if len(rows) > len(EVAL_SEEDS) else rows)
    m = held.mean(0)
    print(f"| held-out mean | " + " | ".join(f"{v:.4f}" for v in m) + f" | {m.mean():.4f} |")
    return rows, m


# ---------------------------------------------------------------------------- main

def train(args):
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = DemoUNet()
    nparams = sum(p.numel() for p in model.parameters())
    print(f"DemoUNet channels {CHANNELS}: {nparams} parameters; patch {PATCH}, batch {args.batch}, "
          f"{args.iterations} iterations, {torch.get_num_threads()} threads")
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=1e-5)
    # Pool of recent volumes; a new one replaces the oldest every `refresh` iterations,
    # so the net sees ~iterations/refresh distinct volumes without the generator dominating.
    k = 0
    pool = []
    for _ in range(args.pool):
        pool.append(random_training_case(k, rng))
        k += 1
    t0 = time.time()
    gen_time = 0.0
    model.train()
    for it in range(args.iterations):
        if it and it % args.refresh == 0:
            tg = time.time()
            pool[k % args.pool] = random_training_case(k, rng)
            k += 1
            gen_time += time.time() - tg
        lr = args.lr * (1 - it / args.iterations) ** 0.9
        for g in opt.param_groups:
            g["lr"] = lr
        xs, ys = zip(*(sample_patch(*pool[rng.integers(len(pool))], rng) for _ in range(args.batch)))
        xb = torch.from_numpy(np.stack(xs)[:, None])
        yb = torch.from_numpy(np.stack(ys))
        logits = model(xb)
        loss = F.cross_entropy(logits, yb) + soft_dice_loss(logits, yb, len(LABELS))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if it % 25 == 0 or it == args.iterations - 1:
            print(f"it {it:4d}  loss {loss.item():.4f}  lr {lr:.2e}  {time.time() - t0:6.1f}s", flush=True)
    train_s = time.time() - t0
    print(f"training: {train_s:.1f}s ({gen_time:.1f}s generating {k} volumes)")
    return model.eval(), train_s, nparams, k


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.path.join(REPO, "models", f"{NAME}.onnx"))
    p.add_argument("--iterations", type=int, default=500)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--pool", type=int, default=6, help="volumes kept for patch sampling")
    p.add_argument("--refresh", type=int, default=6, help="iterations per new volume")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch threads (results depend on it)")
    p.add_argument("--quick", action="store_true", help="smoke test: 20 iterations, output in /tmp")
    p.add_argument("--metrics-out", help="write Dice/time as JSON here")
    args = p.parse_args(argv)
    if args.quick:
        args.iterations = 20
        if args.out == p.get_default("out"):
            args.out = f"/tmp/{NAME}_quick.onnx"
    torch.set_num_threads(args.threads)

    model, train_s, nparams, nvol = train(args)
    cases = eval_cases(args.quick)
    t = time.time()
    _, torch_mean = evaluate(cases, torch_forward(model), "PyTorch sliding-window Dice")
    print(f"({time.time() - t:.1f}s)")

    # Export: opset 17, symbolic N and spatial dims, metadata per docs/model-metadata.md.
    x = export_onnx.export_module(model, args.out, (1, 1) + PATCH, opset=17, dynamic=True)
    export_onnx.fold_constants(args.out)  # replicate padding -> plain Pad nodes
    meta = export_onnx.build_metadata(
        name=NAME, description=DESCRIPTION, patch_size=PATCH, patch_stride=STRIDE,
        forward_batch_windows=FORWARD_BATCH_WINDOWS, blend="constant", window_level=WL,
        window_width=WW, normalization={"mode": "window"}, labels=LABELS, orientation="LPI")
    export_onnx.write_metadata(args.out, meta)
    sidecar = export_onnx.sidecar_path(args.out)
    export_onnx.write_sidecar(sidecar, meta)
    ok, diff = export_onnx.verify_with_ort(model, args.out, x)
    size_mb = os.path.getsize(args.out) / 1e6
    print(f"\nwrote {args.out} ({size_mb:.2f} MB) and {sidecar}; random-input check: "
          f"max |torch - ORT| = {diff:.3g} ({'OK' if ok else 'MISMATCH'})")

    t = time.time()
    ort_rows, ort_mean = evaluate(cases, ort_forward(args.out, args.threads),
                                  "onnxruntime sliding-window Dice (exported ONNX)")
    print(f"({time.time() - t:.1f}s)")
    blank = ort_forward(args.out, args.threads)(np.zeros((1, 1) + PATCH, np.float32)).argmax(1)
    blank_bg = float((blank == 0).mean())
    print(f"all-air window predicted background: {100 * blank_bg:.2f}% of voxels")
    import onnx
    ops = sorted({n.op_type for n in onnx.load(args.out).graph.node})
    print(f"ONNX op types: {', '.join(ops)}")
    if args.metrics_out:
        with open(args.metrics_out, "w") as f:
            json.dump({"train_seconds": train_s, "parameters": nparams, "volumes": nvol,
                       "iterations": args.iterations, "onnx_bytes": os.path.getsize(args.out),
                       "torch_heldout_mean": torch_mean.tolist(), "ort_heldout_mean": ort_mean.tolist(),
                       "ort_rows": [[c[0]] + list(map(float, r)) for c, r in zip(cases, ort_rows)],
                       "blank_window_background": blank_bg,
                       "ops": ops}, f, indent=1)
    if not ok or ort_mean.mean() < 0.9 or blank_bg < 0.999:
        print("WARNING: ORT mismatch, mean foreground Dice < 0.9 or blank window not background",
              file=sys.stderr)
        return 0 if args.quick else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
