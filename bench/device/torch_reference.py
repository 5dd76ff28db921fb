#!/usr/bin/env python3
"""PyTorch side of bench/device/run.sh (runs on the GPU machine's python3).

    torch_reference.py export --out ref_unet.onnx      the 31.2 M reference U-Net, N/D/H/W dynamic
    torch_reference.py bench [--batch 4] [--patch 128] [--stride 64] [--volume 320,512,512] --json F
        eager FP16 (torch.autocast, cudnn.benchmark=True): time per 128^3 window at batch 4, and a
        whole sliding-window pass over the volume (Gaussian blending, argmax on the GPU)
    torch_reference.py table --ours A.json --torch B.json [--commit C]
        the markdown table for docs/PERFORMANCE.md

The network is tests/models/reference_unet.py's PlainUNet with its fixed seed, so ours and
PyTorch time the same weights.
"""
from __future__ import annotations

import argparse
import datetime
import inspect
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "models"))

import torch  # noqa: E402

import reference_unet as ru  # noqa: E402


def export(args) -> None:
    model = ru.build_reference_unet().eval()
    x = torch.randn(1, 1, 64, 64, 64)  # dims are dynamic; a small trace is quicker
    dyn = {"input": {0: "N", 2: "D", 3: "H", 4: "W"}, "output": {0: "N", 2: "D", 3: "H", 4: "W"}}
    kwargs = {}
    # torch >= 2.9 exports through dynamo by default; the TorchScript exporter gives the
    # plain Conv/InstanceNormalization/LeakyRelu graph the zoo was checked with.
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False
    t0 = time.time()
    with torch.no_grad():
        torch.onnx.export(model, x, args.out, opset_version=17, input_names=["input"], output_names=["output"],
                          dynamic_axes=dyn, do_constant_folding=True, **kwargs)
    print(f"exported {args.out} ({os.path.getsize(args.out) / 2**20:.0f} MiB) in {time.time() - t0:.1f} s")


def starts(size: int, patch: int, stride: int) -> list:
    if size <= patch:
        return [0]
    n = math.ceil((size - patch) / stride) + 1
    return [round(i * (size - patch) / (n - 1)) for i in range(n)]


def gaussian(patch: int, device) -> torch.Tensor:
    i = torch.arange(patch, dtype=torch.float64, device=device)
    sigma = patch / 8
    g = torch.exp(-((i - (patch - 1) / 2) ** 2) / (2 * sigma * sigma))
    g = g / g.max()
    return (g[:, None, None] * g[None, :, None] * g[None, None, :]).float()


def bench(args) -> None:
    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    model = ru.build_reference_unet().to(dev).eval()
    b, p = args.batch, args.patch
    x = torch.randn(b, 1, p, p, p, device=dev)
    times = []
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16):
        t0 = time.time()
        model(x)
        torch.cuda.synchronize()
        first_ms = (time.time() - t0) * 1000
        for _ in range(args.warmup):
            model(x)
        for _ in range(args.repeat):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            model(x)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    times.sort()
    window_ms = times[len(times) // 2] / b
    print(f"torch {torch.__version__} eager fp16 batch {b}: {window_ms:.3f} ms/window (first call {first_ms:.0f} ms)")

    d, h, w = args.volume
    vol = torch.randn(1, 1, d, h, w, device=dev)
    origins = [(z, y, xx) for z in starts(d, p, args.stride) for y in starts(h, p, args.stride)
               for xx in starts(w, p, args.stride)]
    del x
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    g = gaussian(p, dev)
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16):
        t0 = time.time()
        acc = None
        wsum = torch.zeros(d, h, w, device=dev)
        for k in range(0, len(origins), b):
            these = origins[k:k + b]
            batch = torch.cat([vol[:, :, z:z + p, y:y + p, xx:xx + p] for z, y, xx in these])
            logits = model(batch).float()
            if acc is None:
                acc = torch.zeros(logits.shape[1], d, h, w, device=dev)
            for j, (z, y, xx) in enumerate(these):
                acc[:, z:z + p, y:y + p, xx:xx + p] += logits[j] * g
                wsum[z:z + p, y:y + p, xx:xx + p] += g
        labels = (acc / wsum).argmax(0).to(torch.uint8)
        torch.cuda.synchronize()
        volume_s = time.time() - t0
    peak = torch.cuda.max_memory_allocated() / 2**20
    print(f"torch sliding window {d}x{h}x{w}: {len(origins)} windows in {volume_s:.2f} s, peak {peak:.0f} MiB "
          f"(labels {tuple(labels.shape)})")
    result = {"impl": "torch", "version": torch.__version__, "precision": "fp16-autocast", "batch": b, "patch": p,
              "window_ms": window_ms, "first_run_ms": first_ms, "volume": [d, h, w], "windows": len(origins),
              "volume_s": volume_s, "peak_gpu_mib": peak, "gpu": torch.cuda.get_device_name()}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f)


def table(args) -> None:
    with open(args.ours) as f:
        ours = json.load(f)
    with open(args.torch) as f:
        ref = json.load(f)
    date = datetime.date.today().isoformat()
    card = ours.get("gpu") or ref.get("gpu", "?")
    d, h, w = ours["volume"]
    rows = [
        ("128^3 window, batch %d, FP16 (ms/window)" % ours["batch"], ours["window_ms"], ref["window_ms"]),
        ("  same, ours with the input uploaded from the host", ours.get("window_ms_host_input", math.nan),
         ref["window_ms"]),
        ("  same, ours with host input and logits copied to the host", ours["window_ms_e2e"], ref["window_ms"]),
        ("sliding window %dx%dx%d, %d windows (s)" % (d, h, w, ours["windows"]), ours["volume_s"], ref["volume_s"]),
        ("peak GPU memory of that pass (MiB)", ours["peak_gpu_mib"], ref["peak_gpu_mib"]),
    ]
    print(f"| card | date | commit | measure | ours | PyTorch {ref.get('version', '')} eager | ratio |")
    print("|---|---|---|---|---|---|---|")
    for name, a, b in rows:
        print(f"| {card} | {date} | {args.commit} | {name} | {a:.3f} | {b:.3f} | {a / b:.2f} |")
    print()
    print("ratio = ours / PyTorch (< 1: ours faster or smaller). Both keep the window input and the whole "
          "volume on the GPU and cut windows there; ours keeps the logits on the GPU for its accumulator "
          "(RunOptions::outputs_on_device).")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("--out", required=True)
    bp = sub.add_parser("bench")
    bp.add_argument("--batch", type=int, default=4)
    bp.add_argument("--patch", type=int, default=128)
    bp.add_argument("--stride", type=int, default=64)
    bp.add_argument("--volume", type=lambda s: [int(v) for v in s.split(",")], default=[320, 512, 512])
    bp.add_argument("--warmup", type=int, default=5)
    bp.add_argument("--repeat", type=int, default=20)
    bp.add_argument("--json")
    t = sub.add_parser("table")
    t.add_argument("--ours", required=True)
    t.add_argument("--torch", required=True)
    t.add_argument("--commit", default="unknown")
    args = ap.parse_args()
    {"export": export, "bench": bench, "table": table}[args.cmd](args)


if __name__ == "__main__":
    main()
