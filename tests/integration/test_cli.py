"""Command line: help, version, and clear one-line failures."""
import socket
import subprocess

import pytest
import requests

from conftest import Server, free_port


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
