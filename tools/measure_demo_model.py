#!/usr/bin/env python3
"""Measure the bundled demo model as users run it: Dice per class against ground truth.

For the committed sample CT and held-out synthetic volumes (the seeds that
tools/train_demo_model.py evaluates on; training used seeds 1000-1088) this runs

  * our binary:  build/pipeline/itkit_infer --model models/demo_ct_body.onnx (sidecar settings),
  * our server:  build/server/itkit_server --model-dir models, POST /api/infer (as the README),
  * onnxruntime: the same ONNX file in train_demo_model.py's Python sliding window
                 (an implementation that shares no code with ours),

compares each label map with the generator's ground truth, checks that our outputs lie on
the input's grid, and reports how many voxels ours and onnxruntime label alike. Nothing is
trained. Prints Markdown tables (the ones in docs/demo-model.md).

    .venv/bin/python tools/measure_demo_model.py                  # about 3 min on 2 cores
    .venv/bin/python tools/measure_demo_model.py --extra-seeds 900005 900006 --json dice.json

Exit status 1 when an output is off the input's grid or a step fails.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import requests
import SimpleITK as sitk

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_sample_volume as gen  # noqa: E402
import train_demo_model as tdm  # noqa: E402  (evaluation helpers only; nothing is trained)

REPO = gen.REPO
MODEL = os.path.join(REPO, "models", "demo_ct_body.onnx")
CLASSES = ("body", "fat", "bone")


def make_cases(workdir, extra_seeds=()):
    """(name, image path, ground-truth path): the sample CT, then train_demo_model's held-out
    seeds (odd positions oblique, as there), then any extra seeds (random size, axis-aligned)."""
    cases = [("models/sample/sample_ct", gen.DEFAULT_OUT, gen.DEFAULT_LABELS_OUT)]
    specs = [(s, tdm.EVAL_SIZE, i % 2 == 1) for i, s in enumerate(tdm.EVAL_SEEDS)]
    for s in extra_seeds:
        rng = np.random.default_rng(s)
        size = (int(rng.integers(112, 177)), int(rng.integers(112, 177)), int(rng.integers(36, 73)))
        specs.append((s, size, False))
    for seed, size, oblique in specs:
        img, lab = gen.generate_case(size, seed=seed, oblique=oblique)
        ip, lp = (os.path.join(workdir, f"seed{seed}_{k}.nii.gz") for k in ("ct", "labels"))
        sitk.WriteImage(img, ip, useCompression=True)
        sitk.WriteImage(lab, lp, useCompression=True)
        cases.append((f"seed {seed}{' oblique' if oblique else ''}", ip, lp))
    return cases


def same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    return (a.GetSize() == b.GetSize()
            and np.allclose(a.GetSpacing(), b.GetSpacing(), rtol=1e-5, atol=1e-6)
            and np.allclose(a.GetOrigin(), b.GetOrigin(), rtol=1e-5, atol=1e-4)
            and np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-6))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(binary, workdir, threads):
    """itkit_server with run.sh's arguments (--host 127.0.0.1 --port P --model-dir models)."""
    port = free_port()
    log = open(os.path.join(workdir, "server.log"), "wb")
    proc = subprocess.Popen([binary, "--host", "127.0.0.1", "--port", str(port), "--model-dir",
                             os.path.join(REPO, "models"), "--threads", str(threads),
                             "--cache-dir", os.path.join(workdir, "cache")],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError(f"itkit_server exited with {proc.returncode}")
        try:
            info = requests.get(url + "/api/info", timeout=2).json()
            if "demo_ct_body" in info.get("models", {}):
                return proc, url
        except (requests.RequestException, ValueError):
            pass
        time.sleep(0.1)
    proc.terminate()
    raise RuntimeError("itkit_server did not load demo_ct_body")


def run_infer(binary, image, out, threads):
    subprocess.run([binary, "--model", MODEL, "--input", image, "--output", out,
                    "--threads", str(threads), "--quiet"], check=True)


def run_server(url, image, out):
    with open(image, "rb") as f:
        r = requests.post(url + "/api/infer", files={"image": f},
                          data={"model_name": "demo_ct_body"}, timeout=600)
    r.raise_for_status()
    with open(out, "wb") as f:
        f.write(r.content)


def table(title, rows, extra_header=""):
    head = "| volume | " + " | ".join(CLASSES) + " | mean |" + extra_header
    print(f"\n{title}\n{head}\n" + "|---" * (head.count("|") - 1) + "|")
    for name, d, *extra in rows:
        print(f"| {name} | " + " | ".join(f"{v:.4f}" for v in d) + f" | {np.mean(d):.4f} |"
              + "".join(f" {e} |" for e in extra))
    held = np.array([d for name, d, *_ in rows if name.startswith("seed")])
    if len(held):
        m = held.mean(0)
        print("| held-out mean | " + " | ".join(f"{v:.4f}" for v in m) + f" | {m.mean():.4f} |"
              + " |" * extra_header.count("|"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--infer-bin", default=os.path.join(REPO, "build", "pipeline", "itkit_infer"))
    p.add_argument("--server-bin", default=os.path.join(REPO, "build", "server", "itkit_server"))
    p.add_argument("--url", help="use this running server instead of starting one")
    p.add_argument("--no-server", action="store_true", help="skip the server")
    p.add_argument("--no-ort", action="store_true", help="skip onnxruntime")
    p.add_argument("--extra-seeds", type=int, nargs="*", default=[],
                   help="more held-out volumes (avoid 1000-1999: training seeds)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="write all numbers here")
    args = p.parse_args(argv)
    for s in args.extra_seeds:
        if tdm.TRAIN_SEED_BASE <= s < tdm.TRAIN_SEED_BASE + 1000:
            p.error(f"seed {s} may have been used for training")

    ok = True
    result = {"model": os.path.relpath(MODEL, REPO), "cases": []}
    with tempfile.TemporaryDirectory(prefix="itkit-demo-dice-") as work:
        cases = make_cases(work, args.extra_seeds)
        server = None
        url = args.url
        if not args.no_server and not url:
            server, url = start_server(args.server_bin, work, args.threads)
        ort = None if args.no_ort else tdm.ort_forward(MODEL, args.threads)
        try:
            for i, (name, ip, lp) in enumerate(cases):
                img, truth = sitk.ReadImage(ip), sitk.ReadImage(lp)
                t_arr = sitk.GetArrayFromImage(truth)
                rec = {"volume": name, "size": list(img.GetSize()),
                       "spacing": [round(s, 3) for s in img.GetSpacing()],
                       "orientation": sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(
                           img.GetDirection())}
                outs = {}
                runs = [("itkit_infer", lambda o: run_infer(args.infer_bin, ip, o, args.threads))]
                if url:
                    runs.append(("server", lambda o: run_server(url, ip, o)))
                for method, fn in runs:
                    out = os.path.join(work, f"case{i}_{method}.nii.gz")
                    t = time.time()
                    fn(out)
                    seg = sitk.ReadImage(out)
                    if not same_grid(seg, img):
                        print(f"ERROR: {method} output of {name} is not on the input's grid", file=sys.stderr)
                        ok = False
                    arr = sitk.GetArrayFromImage(seg)
                    present = sorted(int(v) for v in np.unique(arr))
                    if not set(present) <= {0, 1, 2, 3}:
                        print(f"ERROR: {method} output of {name} has labels {present}", file=sys.stderr)
                        ok = False
                    rec[method] = {"dice": tdm.dice_per_class(arr, t_arr), "seconds": time.time() - t,
                                   "grid_ok": same_grid(seg, img), "labels": present}
                    outs[method] = seg
                if "server" in outs:
                    rec["server_equals_infer"] = float(np.mean(
                        sitk.GetArrayFromImage(outs["server"]) == sitk.GetArrayFromImage(outs["itkit_infer"])))
                if ort is not None:
                    x, y = tdm.preprocess(img, truth)  # LPI, window: as train_demo_model evaluates
                    t = time.time()
                    pred = tdm.sliding_window(x, ort, len(tdm.LABELS)).argmax(0)
                    rec["onnxruntime"] = {"dice": tdm.dice_per_class(pred, y), "seconds": time.time() - t}
                    ours_lpi = sitk.GetArrayFromImage(sitk.DICOMOrient(outs["itkit_infer"], "LPI"))
                    rec["ours_equals_ort"] = float(np.mean(ours_lpi == pred))
                result["cases"].append(rec)
                print(f"{name}: " + ", ".join(
                    f"{m} {np.mean(rec[m]['dice']):.4f} ({rec[m]['seconds']:.1f}s)"
                    for m in ("itkit_infer", "server", "onnxruntime") if m in rec), flush=True)
        finally:
            if server is not None:
                server.terminate()
                server.wait(60)

    rows = result["cases"]
    table("Dice, itkit_infer (our C++ runtime)", [
        (r["volume"], r["itkit_infer"]["dice"],
         f"{100 * r['ours_equals_ort']:.3f} %" if "ours_equals_ort" in r else "-") for r in rows],
        " voxels = onnxruntime |")
    if any("server" in r for r in rows):
        table("Dice, itkit_server POST /api/infer", [
            (r["volume"], r["server"]["dice"], f"{100 * r['server_equals_infer']:.3f} %")
            for r in rows if "server" in r], " voxels = itkit_infer |")
    if any("onnxruntime" in r for r in rows):
        table("Dice, onnxruntime (train_demo_model.py sliding window, same ONNX)",
              [(r["volume"], r["onnxruntime"]["dice"]) for r in rows])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, default=float)
    print("\nall outputs on the input's grid, labels within 0-3" if ok else "\nFAILED (see above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
