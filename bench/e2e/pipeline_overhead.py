#!/usr/bin/env python3
"""Time everything itkit_infer does around the network on a 512x512x320 int16 CT.

The network is the built-in stand-in (--identity-network C: one multiply-add per
output value), so the stages measured are the pipeline's own: read (.nii.gz),
reorient + window, window extraction, accumulation, argmax, back to the input grid,
write (.nii.gz, gzip level 1). "overhead" = total - network.

    .venv/bin/python bench/e2e/pipeline_overhead.py --itkit-infer build/pipeline/itkit_infer \
        [--work /tmp/itkit-bench] [--repeats 3] [--classes 3] [--threads 2]

The CT (a smooth body-like phantom, HU -1000..1500, RAS direction as many scanners
write it) is made once and cached in --work. Prints one table row per configuration,
minimum over the repeats; --json writes the rows too.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

# "accumulate" includes the argmax: each voxel's label is produced by the last window
# covering it (see pipeline/host_accumulator.cpp).
STAGES = ["read", "preprocess", "extract", "accumulate", "restore", "write", "network", "total"]


def make_ct(path: str, size=(512, 512, 320)) -> None:
    import SimpleITK as sitk
    nx, ny, nz = size
    z, y, x = np.ogrid[0:nz, 0:ny, 0:nx]
    body = ((x - nx / 2) / (0.42 * nx)) ** 2 + ((y - ny / 2) / (0.32 * ny)) ** 2 < 1
    spine = ((x - nx / 2) / 22.0) ** 2 + ((y - 0.68 * ny) / 22.0) ** 2 < 1
    lungs = (((np.abs(x - nx / 2) - 0.17 * nx) / (0.1 * nx)) ** 2 + ((y - 0.45 * ny) / (0.14 * ny)) ** 2 < 1) \
        & (z > 0.45 * nz)
    rng = np.random.RandomState(0)
    arr = np.full((nz, ny, nx), -1000, np.int16)
    arr[np.broadcast_to(body, arr.shape)] = 40
    arr[np.broadcast_to(lungs, arr.shape)] = -850
    arr[np.broadcast_to(spine, arr.shape)] = 900
    arr += rng.randint(-20, 21, size=arr.shape, dtype=np.int16)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.78, 0.78, 1.25))
    img.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    img.SetOrigin((200.0, 200.0, -400.0))
    sitk.WriteImage(img, path, True)


def run(exe, ct, out, cfg, classes, threads, timing_json):
    args = [exe, "--identity-network", str(classes), "--input", ct, "--output", out, "--window-level", "40",
            "--window-width", "400", "--quiet", "--timing-json", timing_json, "--threads", str(threads)]
    args += cfg
    t = time.perf_counter()
    subprocess.run(args, check=True)
    wall = time.perf_counter() - t
    with open(timing_json) as f:
        rec = json.loads(f.read().strip().splitlines()[-1])
    sec = rec["seconds"]
    cpu = rec["cpu_seconds"]
    sec["process_wall"] = wall
    sec["overhead"] = sec["total"] - sec.get("network", 0.0)
    cpu["overhead"] = cpu["total"] - cpu.get("network", 0.0)
    return sec, cpu, rec["windows"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--itkit-infer", required=True)
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "itkit-bench"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--classes", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    ct = os.path.join(a.work, "ct_512x512x320.nii.gz")
    if not os.path.exists(ct):
        print(f"making {ct} ...", file=sys.stderr)
        make_ct(ct)
    configs = {
        "patch 96, stride 48 (ITKIT default)": ["--patch", "96", "--stride", "48"],
        "patch 128, stride 64": ["--patch", "128", "--stride", "64"],
        "patch 96, stride 96 (no overlap)": ["--patch", "96", "--stride", "96"],
        "patch 96, stride 48, gaussian": ["--patch", "96", "--stride", "48", "--blend", "gaussian"],
        "patch 96, stride 48, .seg.nrrd out": ["--patch", "96", "--stride", "48"],
    }
    rows = []
    load = os.getloadavg()[0]
    print(f"load average {load:.1f} on {os.cpu_count()} CPUs (wall times inflate with load; CPU times much less)")
    print(f"{'configuration':38s} {'':4s} {'windows':>7s} " + " ".join(f"{s:>10s}" for s in STAGES + ["overhead"]))
    for name, cfg in configs.items():
        out = os.path.join(a.work, "labels.seg.nrrd" if "seg.nrrd" in name else "labels.nii.gz")
        best, best_cpu, windows = None, None, 0
        for _ in range(a.repeats):
            tj = os.path.join(a.work, "timing.jsonl")
            if os.path.exists(tj):
                os.remove(tj)
            sec, cpu, windows = run(a.itkit_infer, ct, out, cfg, a.classes, a.threads, tj)
            if best is None or sec["overhead"] < best["overhead"]:
                best = sec
            if best_cpu is None or cpu["overhead"] < best_cpu["overhead"]:
                best_cpu = cpu
        rows.append({"configuration": name, "windows": windows, "seconds": best, "cpu_seconds": best_cpu})
        print(f"{name:38s} wall {windows:7d} " + " ".join(f"{best.get(s, 0.0):10.3f}" for s in STAGES + ["overhead"]))
        print(f"{'':38s} cpu  {'':7s} " + " ".join(f"{best_cpu.get(s, 0.0):10.3f}" for s in STAGES + ["overhead"]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"classes": a.classes, "load_average": load, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
