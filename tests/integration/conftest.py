"""Fixtures for the server integration tests: the real itkit_server binary on a
free port, tiny ONNX models exported by torch at test time, and test images.

Run:  .venv/bin/python -m pytest tests/integration --server-bin build/server/itkit_server
"""
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import requests
import SimpleITK as sitk

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent


def pytest_addoption(parser):
    parser.addoption("--server-bin", default=os.environ.get("ITKIT_SERVER_BIN", ""),
                     help="path of the itkit_server binary")


def pytest_configure(config):
    config.addinivalue_line("markers", "load: concurrency/memory test (CTest server_load)")
    config.addinivalue_line("markers", "schemathesis: schemathesis run against the live server")


@pytest.fixture(scope="session")
def server_bin(pytestconfig):
    path = pytestconfig.getoption("--server-bin")
    if not path:
        for cand in sorted(REPO.glob("build*/server/itkit_server")):
            path = str(cand)
            break
    if not path or not os.access(path, os.X_OK):
        pytest.skip("itkit_server binary not found (pass --server-bin)")
    return os.path.abspath(path)  # some tests start it from another working directory


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One itkit_server process. Output goes to a log file for diagnosis."""

    def __init__(self, binary, workdir, args=(), env=None, scheme="http", wait_ready=True, cwd=None):
        self.binary = binary
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.cache = self.workdir / "cache"
        self.log_path = self.workdir / f"server-{self.port}.log"
        self.args = [binary, "--host", "127.0.0.1", "--port", str(self.port), "--cache-dir", str(self.cache),
                     "--threads", "2", *map(str, args)]
        self.env = dict(os.environ)
        self.env.pop("ITKIT_API_KEY", None)
        self.env.update(env or {})
        self.proc = None
        self.expect_exit = 0  # checked when the fixture stops the server; None: do not check
        self.wait_ready = wait_ready
        self.cwd = cwd  # working directory of the process (None: the test's)

    def start(self, timeout=60, verify=True):
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                r = requests.get(self.url + "/api/health", timeout=2, verify=verify)
                if r.status_code == 200 and (not self.wait_ready or "listening on" in self.log_text()):
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not come up:\n{self.log_text()}")

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def rss_bytes(self):
        for line in pathlib.Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def get(self, path, **kw):
        kw.setdefault("timeout", 60)
        return requests.get(self.url + path, **kw)

    def post(self, path, **kw):
        kw.setdefault("timeout", 120)
        return requests.post(self.url + path, **kw)

    def delete(self, path, **kw):
        kw.setdefault("timeout", 120)
        return requests.delete(self.url + path, **kw)


@pytest.fixture(scope="session")
def model_files(tmp_path_factory):
    """tiny.onnx and conv.onnx (see make_test_models.py), exported once."""
    out = tmp_path_factory.mktemp("onnx")
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    subprocess.run([python, str(HERE / "make_test_models.py"), str(out)], check=True)
    return out


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, model_files):
    d = tmp_path_factory.mktemp("models")
    for name in ("tiny.onnx", "conv.onnx"):
        shutil.copy(model_files / name, d / name)
    return d


@pytest.fixture
def make_server(server_bin, tmp_path):
    """Factory: make_server(args...) starts a server that is stopped after the test."""
    servers = []

    def make(*args, start=True, env=None, scheme="http", verify=True, cwd=None):
        s = Server(server_bin, tmp_path / f"srv{len(servers)}", args, env=env, scheme=scheme, cwd=cwd)
        servers.append(s)
        if start:
            s.start(verify=verify)
        return s

    yield make
    for s in servers:
        code = s.stop()
        if s.expect_exit is not None and s.proc is not None:
            assert code == s.expect_exit, s.log_text()


@pytest.fixture(scope="module")
def server(server_bin, model_dir, tmp_path_factory):
    """A shared server with tiny and conv loaded from --model-dir."""
    s = Server(server_bin, tmp_path_factory.mktemp("server"), ["--model-dir", model_dir]).start()
    yield s
    code = s.stop()
    assert code == 0, s.log_text()


# ---------------------------------------------------------------- images

# Intensities well away from the tiny model's class boundaries for the
# default window (WL 0, WW 2000: boundaries at -500 and 500).
SAFE_VALUES = np.array([-950, -800, -650, -300, 0, 300, 650, 800, 950], dtype=np.int16)


def expected_labels(arr, wl=0.0, ww=2000.0):
    """What the tiny model must answer, voxel by voxel."""
    x = np.clip((arr.astype(np.float64) - (wl - ww / 2)) / ww, 0, 1)
    assert np.all(np.abs(x - 0.25) > 0.01) and np.all(np.abs(x - 0.75) > 0.01), "ambiguous test values"
    return np.where(x < 0.25, 0, np.where(x < 0.75, 1, 2)).astype(np.uint8)


def make_volume(shape=(12, 14, 16), seed=0):
    """(z, y, x) int16 array of SAFE_VALUES."""
    rng = np.random.RandomState(seed)
    return SAFE_VALUES[rng.randint(0, len(SAFE_VALUES), size=shape)]


def write_image(path, arr, spacing=(0.8, 0.9, 1.5), origin=(10.0, -5.0, 3.0), direction=None):
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    if direction is not None:
        img.SetDirection(direction)
    sitk.WriteImage(img, str(path))
    return img


def read_result(content, tmp_path, suffix=".nii.gz"):
    p = pathlib.Path(tmp_path) / f"result-{time.time_ns()}{suffix}"
    p.write_bytes(content)
    img = sitk.ReadImage(str(p))
    p.unlink()
    return img


def assert_json_error(r, status):
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:500]}"
    body = r.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    return body["error"]


def wait_job(server, job_id, states=("done", "failed", "cancelled"), timeout=120, **kw):
    deadline = time.time() + timeout
    while time.time() < deadline:
        j = server.get(f"/api/jobs/{job_id}", **kw).json()
        if j["state"] in states:
            return j
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not reach {states}")
