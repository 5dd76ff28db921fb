#!/usr/bin/env python3
"""The REST server on the GPU machine (standard library only: the machine has no
requests). Starts itkit_server with models/, submits the sample CT as two jobs — plain
and force_cpu=true — and checks where each ran: the network on `cuda` both times, the
logits accumulated on the GPU for the plain job and on the host for force_cpu (the
job's `accumulate_device`), and both label maps equal to a reference (the CPU pipeline's) on
>= 99.9 % of voxels. Exit 1 when any check fails.

    python3 bench/device/server_check.py --server BIN --reference lab_cpu.nii.gz
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from compare_labels import read_nifti  # noqa: E402


def request(url, data=None, headers=None, method=None, timeout=60):
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def multipart(fields, files):
    boundary = uuid.uuid4().hex
    body = b""
    for name, value in fields.items():
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").encode()
    for name, path in files.items():
        with open(path, "rb") as f:
            content = f.read()
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
                 f"filename=\"{os.path.basename(path)}\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
        body += content + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def run_job(base, image, fields, out_path):
    body, headers = multipart(dict(fields, model_name="demo_ct_body"), {"image": image})
    status, raw = request(base + "/api/jobs", body, headers, "POST")
    if status != 202:
        return None, f"POST /api/jobs: {status} {raw[:300]!r}"
    job = json.loads(raw)
    deadline = time.time() + 120
    while time.time() < deadline:
        status, raw = request(base + job["status_url"])
        info = json.loads(raw)
        if info.get("state") in ("done", "failed", "cancelled"):
            break
        time.sleep(0.2)
    if info.get("state") != "done":
        return info, f"job ended {info.get('state')}: {info.get('error')}"
    status, raw = request(base + info["result_url"])
    if status != 200:
        return info, f"result: {status}"
    with open(out_path, "wb") as f:
        f.write(raw)
    return info, None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True)
    p.add_argument("--reference", required=True, help="the CPU pipeline's label map")
    p.add_argument("--image", default=os.path.join(REPO, "models/sample/sample_ct.nii.gz"))
    p.add_argument("--port", type=int, default=8123)
    args = p.parse_args()
    base = f"http://127.0.0.1:{args.port}"
    work = tempfile.mkdtemp(prefix="itkit-server-")
    log = open(os.path.join(work, "server.log"), "w")
    server = subprocess.Popen([args.server, "--host", "127.0.0.1", "--port", str(args.port), "--model-dir",
                               os.path.join(REPO, "models"), "--cache-dir", os.path.join(work, "cache")],
                              stdout=log, stderr=subprocess.STDOUT)
    failures = []
    try:
        ready = False
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                status, _ = request(base + "/api/health", timeout=2)
                if status == 200:
                    ready = True
                    break
            except OSError:
                pass
            time.sleep(0.3)
        else:
            failures.append("the server did not become ready in 60 s")
        ref, ref_shape = read_nifti(args.reference)
        for name, fields, want_host_acc in (("plain", {}, False), ("force_cpu", {"force_cpu": "true"}, True)):
            if not ready:
                break
            out = os.path.join(work, f"{name}.nii.gz")
            info, err = run_job(base, args.image, fields, out)
            if err:
                failures.append(f"{name}: {err}")
                continue
            notes = " | ".join(info.get("notes", []))
            print(f"{name}: queue {info.get('device')}, network {info.get('network_device')}, "
                  f"accumulated on {info.get('accumulate_device')}, "
                  f"{info.get('elapsed_s', 0):.2f} s, notes: {notes or '-'}")
            if info.get("network_device") != "cuda":
                failures.append(f"{name}: the network ran on {info.get('network_device')}, not cuda")
            want = "cpu" if want_host_acc else "cuda"
            if info.get("accumulate_device") != want:
                failures.append(f"{name}: logits accumulated on {info.get('accumulate_device')}, not {want}")
            labels, shape = read_nifti(out)
            if shape != ref_shape:
                failures.append(f"{name}: label shape {shape} vs {ref_shape}")
                continue
            agree = float((labels == ref).mean())
            print(f"{name}: labels agree with the CPU pipeline at {100 * agree:.4f} %")
            if agree < 0.999:
                failures.append(f"{name}: labels agree at {100 * agree:.3f} % < 99.9 %")
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    if failures:
        print("server check FAILED:\n  " + "\n  ".join(failures))
        print(open(os.path.join(work, "server.log")).read()[-3000:])
        return 1
    print("server check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
