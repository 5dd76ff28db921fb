"""Command line and startup: help, version, clear one-line failures, relative
paths, and /api/health while the --model-dir models load."""
import os
import shutil
import socket
import subprocess
import time

import numpy as np
import pytest
import requests
import SimpleITK as sitk

from conftest import Server, expected_labels, free_port, make_volume, read_result, write_image


def run(server_bin, *args, timeout=30):
    return subprocess.run([server_bin, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def one_line_error(p):
    assert p.returncode != 0
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("itkit_server: ")
    return lines[0]


def test_help_and_version(server_bin):
    p = run(server_bin, "--help")
    assert p.returncode == 0
    for opt in ("--host HOST", "--port PORT", "--debug", "--model-dir DIR", "--config FILE", "--api-key KEY",
                "--api-key-file FILE", "--tls-cert PEM", "--max-upload-mb N", "--threads N", "--queue N",
                "--cache-dir DIR"):
        assert opt in p.stdout, opt
    p = run(server_bin, "--version")
    assert p.returncode == 0 and p.stdout.startswith("itkit_server ")


def test_port_in_use(server_bin, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        p = run(server_bin, "--port", port, "--cache-dir", tmp_path)
    assert "cannot listen on 127.0.0.1:%d" % port in one_line_error(p)


def test_missing_model_dir_and_bad_options(server_bin, tmp_path):
    assert "no such directory" in one_line_error(run(server_bin, "--model-dir", tmp_path / "nope", "--cache-dir", tmp_path))
    assert "unknown option" in one_line_error(run(server_bin, "--modle-dir", tmp_path))
    one_line_error(run(server_bin, "--port", "http"))
    one_line_error(run(server_bin, "--port"))
    one_line_error(run(server_bin, "--tls-cert", tmp_path / "missing.pem", "--cache-dir", tmp_path))


@pytest.mark.parametrize("text", ["port: [1, 2\n", "prot: 8000\n", "- a\n", "queue: many\n"])
def test_bad_config(server_bin, tmp_path, text):
    cfg = tmp_path / "server.yaml"
    cfg.write_text(text)
    assert "config" in one_line_error(run(server_bin, "--config", cfg, "--cache-dir", tmp_path))
    one_line_error(run(server_bin, "--config", tmp_path / "missing.yaml"))


def test_config_file(server_bin, model_dir, tmp_path):
    port = free_port()
    cfg = tmp_path / "server.yaml"
    cfg.write_text(f"host: 127.0.0.1\nport: {port}\nmodel_dir: {model_dir}\nqueue: 3\n"
                   f"cache_dir: {tmp_path / 'cache'}\napi_key: from-yaml\n")
    s = Server(server_bin, tmp_path / "srv", [])
    s.args = [server_bin, "--config", str(cfg)]
    s.port, s.url = port, f"http://127.0.0.1:{port}"
    s.start()
    try:
        info = requests.get(s.url + "/api/info", headers={"Authorization": "Bearer from-yaml"}, timeout=5).json()
        assert set(info["models"]) == {"tiny", "conv"}
        assert info["queue"]["capacity_per_device"] == 3
    finally:
        assert s.stop() == 0


def real(p):
    return os.path.realpath(str(p))


def test_relative_model_dir(make_server, model_dir, tmp_path):
    """--model-dir models, started from the folder that holds models/."""
    work = tmp_path / "work"
    (work / "models").mkdir(parents=True)
    for name in ("tiny.onnx", "conv.onnx"):
        shutil.copy(model_dir / name, work / "models" / name)
    s = make_server("--model-dir", "models", "--model-root", "./models/../models", cwd=work)
    info = s.get("/api/info").json()
    assert set(info["models"]) == {"tiny", "conv"}, info["failed_models"]
    assert info["failed_models"] == []
    assert os.path.isabs(info["model_dir"]) and real(info["model_dir"]) == real(work / "models")
    assert real(info["models"]["tiny"]["model_path"]) == real(work / "models" / "tiny.onnx")
    # A relative model_path in a load request is relative to the model directory.
    r = s.post("/api/models", json={"name": "again", "model_path": "tiny.onnx"})
    assert r.status_code == 200, r.text
    arr = make_volume()
    write_image(tmp_path / "ct.nii.gz", arr)
    with open(tmp_path / "ct.nii.gz", "rb") as f:
        r = s.post("/api/infer", files={"image": f}, data={"model_name": "again"})
    assert r.status_code == 200, r.text
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_result(r.content, tmp_path)), expected_labels(arr))


def test_relative_paths_in_config_are_relative_to_its_folder(server_bin, model_dir, tmp_path):
    etc = tmp_path / "etc"
    (etc / "models").mkdir(parents=True)
    (tmp_path / "extra").mkdir()
    shutil.copy(model_dir / "tiny.onnx", etc / "models" / "tiny.onnx")
    shutil.copy(model_dir / "conv.onnx", tmp_path / "extra" / "conv.onnx")
    (etc / "key").write_text("from-file\n")
    port = free_port()
    (etc / "server.yaml").write_text(f"port: {port}\nmodel_dir: models\nmodel_roots: [../extra]\n"
                                     f"cache_dir: cache\napi_key_file: key\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    s = Server(server_bin, tmp_path / "srv", [], cwd=elsewhere)
    s.args = [server_bin, "--config", str(etc / "server.yaml")]
    s.port, s.url = port, f"http://127.0.0.1:{port}"
    s.start()
    try:
        auth = {"Authorization": "Bearer from-file"}
        info = requests.get(s.url + "/api/info", headers=auth, timeout=5).json()
        assert set(info["models"]) == {"tiny"}, info["failed_models"]
        assert real(info["model_dir"]) == real(etc / "models")
        assert real(tmp_path / "extra") in [real(r) for r in info["model_roots"]]
        assert (etc / "cache").is_dir() and not (elsewhere / "cache").exists()
        r = requests.post(s.url + "/api/models", headers=auth, timeout=60,
                          json={"model_path": str(tmp_path / "extra" / "conv.onnx")})
        assert r.status_code == 200, r.text
    finally:
        assert s.stop() == 0


def test_health_says_loading_until_the_model_dir_is_loaded(server_bin, model_files, tmp_path):
    """Clients poll /api/health, then infer at once: "ok" must mean the models are there."""
    d = tmp_path / "models"
    d.mkdir()
    shutil.copy(model_files / "slow_load.onnx", d / "a_slow_load.onnx")  # about 0.5 s of constant folding
    shutil.copy(model_files / "tiny.onnx", d / "z_tiny.onnx")  # loaded after it (sorted)
    arr = make_volume()
    write_image(tmp_path / "ct.nii.gz", arr)
    s = Server(server_bin, tmp_path / "srv", ["--model-dir", d])
    s.log = open(s.log_path, "wb")
    s.proc = subprocess.Popen(s.args, stdout=s.log, stderr=subprocess.STDOUT, env=s.env)
    try:
        deadline = time.time() + 120
        while True:
            assert time.time() < deadline, s.log_text()
            assert s.alive(), s.log_text()
            try:
                r = requests.get(s.url + "/api/health", timeout=5)
            except requests.ConnectionError:
                time.sleep(0.01)
                continue
            if r.status_code == 503:
                assert r.json()["status"] == "loading" and r.json()["error"], r.text
                assert r.headers["Retry-After"] == "1"
                time.sleep(0.01)
                continue
            assert r.status_code == 200 and r.json()["status"] == "ok", r.text
            break
        # Straight after "ok", as the Slicer module and scripts do.
        with open(tmp_path / "ct.nii.gz", "rb") as f:
            r = requests.post(s.url + "/api/infer", files={"image": f}, data={"model_name": "tiny"}, timeout=60)
        assert r.status_code == 200, r.text
        np.testing.assert_array_equal(sitk.GetArrayFromImage(read_result(r.content, tmp_path)), expected_labels(arr))
        assert requests.get(s.url + "/api/models", timeout=5).json()["count"] == 2
    finally:
        assert s.stop() == 0, s.log_text()
