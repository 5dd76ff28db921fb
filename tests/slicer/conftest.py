"""Fixtures for the Slicer client tests: a real itkit_server process, a tiny ONNX model and a
synthetic CT-like volume whose correct segmentation is known exactly.

    .venv/bin/python -m pytest -q tests/slicer --server-bin build/server/itkit_server

Without --server-bin only the tests that need no server run.
"""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "slicer_module", "ITKITInference"))

API_KEY = "test-key-5f2b"
LABELS = [{"name": "background", "color": [0, 0, 0]},
          {"name": "soft_tissue", "color": [221, 130, 101]},
          {"name": "dense", "color": [241, 214, 145]}]
WINDOW_LEVEL, WINDOW_WIDTH = 0, 200            # model default: [-100, 100] HU -> [0, 1]
HU_BACKGROUND, HU_SHELL, HU_CORE = -500, 40, 200


def pytest_addoption(parser):
    parser.addoption("--server-bin", default=None, help="path of the itkit_server executable")
    parser.addoption("--server-arg", action="append", default=[],
                     help="extra argument for itkit_server (repeatable)")
    parser.addoption("--api-key-arg", default="--api-key",
                     help="itkit_server option that sets the API key")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, binary, extra, log_path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")
        cmd = [binary, "--host", "127.0.0.1", "--port", str(self.port)] + list(extra)
        env = {k: v for k, v in os.environ.items() if k != "ITKIT_API_KEY"}
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self._wait_ready()

    def _wait_ready(self, timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"itkit_server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                with opener.open(self.url + "/api/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"itkit_server did not answer /api/health within {timeout} s:\n{self.log()}")

    def log(self):
        self._log.flush()
        with open(self.log_path, "rb") as f:
            return f.read()[-4000:].decode("utf-8", "replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def _start(config, tmp_path_factory, extra):
    binary = config.getoption("--server-bin")
    if not binary:
        pytest.skip("needs --server-bin PATH (the itkit_server executable)")
    work = tmp_path_factory.mktemp("server")
    # Every test's tmp_path lies under the base temp: the server may load models from there.
    args = ["--model-root", str(tmp_path_factory.getbasetemp()), "--cache-dir", str(work / "cache")]
    return ServerProcess(binary, args + list(config.getoption("--server-arg")) + extra,
                         str(work / "server.log"))


@pytest.fixture(scope="session")
def server(request, tmp_path_factory):
    proc = _start(request.config, tmp_path_factory, [])
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def auth_server(request, tmp_path_factory):
    proc = _start(request.config, tmp_path_factory, [request.config.getoption("--api-key-arg"), API_KEY])
    yield proc
    proc.stop()


def write_model(path, labels=LABELS, with_metadata=True):
    """A 1x1x1 convolution (1 -> 3 channels) whose argmax thresholds the windowed intensity x:
    x < 0.5 -> 0, 0.5 < x < 0.9 -> 1, x > 0.9 -> 2. Being pointwise, every patch size,
    stride, blend mode and flip TTA gives exactly the same labels."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    weight = np.array([0.0, 10.0, 20.0], np.float32).reshape(3, 1, 1, 1, 1)
    bias = np.array([0.0, -5.0, -14.0], np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "W", "B"], ["output"], kernel_shape=[1, 1, 1])],
        "threshold3",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, "D", "H", "W"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3, "D", "H", "W"])],
        [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="itkit-tests")
    model.ir_version = 8
    if with_metadata:
        meta = {"name": "threshold3", "labels": json.dumps(labels),
                "window_level": str(WINDOW_LEVEL), "window_width": str(WINDOW_WIDTH),
                "inference_config": json.dumps({"patch_size": [16, 16, 16],
                                                "patch_stride": [8, 8, 8]})}
        for key, value in meta.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


@pytest.fixture(scope="session")
def model_path(tmp_path_factory):
    return write_model(tmp_path_factory.mktemp("model") / "threshold3.onnx")


def make_volume():
    """CT-like volume (x 40, y 36, z 24) with oblique-free but flipped geometry: a shell of
    soft tissue around a dense core, far from every class threshold."""
    import SimpleITK as sitk
    z, y, x = np.mgrid[0:24, 0:36, 0:40].astype(np.float32)
    spacing = (0.8, 0.9, 2.0)
    r = np.sqrt(((x - 20) * spacing[0]) ** 2 + ((y - 18) * spacing[1]) ** 2 + ((z - 12) * spacing[2]) ** 2)
    hu = np.full(r.shape, HU_BACKGROUND, np.int16)
    hu[r < 13] = HU_SHELL
    hu[r < 6] = HU_CORE
    img = sitk.GetImageFromArray(hu)
    img.SetSpacing(spacing)
    img.SetOrigin((-12.5, 30.0, 7.25))
    img.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, -1))  # flipped x and z: the server must restore them
    return img


def expected_labels(hu, level=WINDOW_LEVEL, width=WINDOW_WIDTH):
    x = np.clip((hu.astype(np.float64) - (level - width / 2.0)) / width, 0.0, 1.0)
    logits = np.stack([np.zeros_like(x), 10 * x - 5, 20 * x - 14])
    return np.argmax(logits, axis=0).astype(np.uint8)


@pytest.fixture(scope="session")
def volume_path(tmp_path_factory):
    import SimpleITK as sitk
    path = tmp_path_factory.mktemp("volume") / "phantom.nii.gz"
    sitk.WriteImage(make_volume(), str(path), True)
    return str(path)
