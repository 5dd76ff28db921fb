#!/usr/bin/env python3
"""CPU end-to-end comparison: the same ONNX model, the same input, the same thread
count, through our runtime (itkit_run), ONNX Runtime and PyTorch, in one run.

    .venv/bin/python bench/e2e/cpu_compare.py --itkit-run build/tools/itkit_run \
        [--patch 128] [--threads 2] [--repeat 2] [--markdown]

Exports the nnU-Net-style reference U-Net (tests/models/reference_unet.py) at the
given cubic patch, times each engine (best of --repeat after one warm-up), checks
that all three agree, and prints ratios (ours / theirs; < 1 means we are faster).
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "models"))


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def git_commit() -> str:
    try:
        return subprocess.check_output(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], text=True).strip()
    except Exception:
        return "unknown"


def time_itkit(itkit_run: str, model: str, x_path: str, out_path: str, threads: int, repeat: int):
    cmd = [itkit_run, model, "--input", x_path, "--output", out_path, "--threads", str(threads),
           "--warmup", "1", "--repeat", str(repeat)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"itkit_run failed:\n{res.stdout}\n{res.stderr}")
    best = float(re.search(r"best ([0-9.]+) s", res.stdout).group(1))
    peak = float(re.search(r"peak RSS: ([0-9.]+) MiB", res.stdout).group(1))
    return best, peak, np.load(out_path)


def time_ort(model: str, x: np.ndarray, threads: int, repeat: int):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    y = sess.run(None, {name: x})[0]  # warm-up
    best = min(_timed(lambda: sess.run(None, {name: x})) for _ in range(repeat))
    return best, y


def time_torch(x: np.ndarray, threads: int, repeat: int):
    import torch
    from reference_unet import build_reference_unet
    torch.set_num_threads(threads)
    net = build_reference_unet().eval()
    xt = torch.from_numpy(x)
    with torch.no_grad():
        y = net(xt).numpy()
        best = min(_timed(lambda: net(xt)) for _ in range(repeat))
    return best, y


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--itkit-run", required=True)
    ap.add_argument("--patch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--skip-torch", action="store_true")
    ap.add_argument("--markdown", action="store_true", help="print a docs/PERFORMANCE.md row")
    args = ap.parse_args()

    from reference_unet import export_reference_unet
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "ref_unet.onnx")
        export_reference_unet(model, patch=args.patch)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((1, 1, args.patch, args.patch, args.patch)).astype(np.float32)
        x_path = os.path.join(tmp, "x.npy")
        np.save(x_path, x)
        ours, peak, y_ours = time_itkit(args.itkit_run, model, x_path, os.path.join(tmp, "y.npy"),
                                        args.threads, args.repeat)
        ort_t, y_ort = time_ort(model, x, args.threads, args.repeat)
        torch_t, y_torch = (None, None) if args.skip_torch else time_torch(x, args.threads, args.repeat)

    def rel_err(a, b):
        return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))

    print(f"machine: {cpu_name()}, {args.threads} threads, patch {args.patch}^3")
    print(f"ours (itkit_run):   {ours:8.3f} s   peak RSS {peak:.0f} MiB")
    print(f"ONNX Runtime:       {ort_t:8.3f} s   ratio ours/ORT   = {ours / ort_t:.2f}")
    print(f"  max |ours-ORT| / max|ORT| = {rel_err(y_ours, y_ort):.2e}")
    if torch_t is not None:
        print(f"PyTorch:            {torch_t:8.3f} s   ratio ours/torch = {ours / torch_t:.2f}")
        print(f"  max |ours-torch| / max|torch| = {rel_err(y_ours, y_torch):.2e}")
    if args.markdown:
        torch_cell = f"{torch_t:.2f} s" if torch_t is not None else "—"
        torch_ratio = f"{ours / torch_t:.2f}" if torch_t is not None else "—"
        print(f"| {datetime.date.today()} | {git_commit()} | {cpu_name()} | {args.threads} | {args.patch}³ | "
              f"{ours:.2f} s | {ort_t:.2f} s | {ours / ort_t:.2f} | {torch_cell} | {torch_ratio} | {peak:.0f} MiB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
