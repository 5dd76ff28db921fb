"""API key authentication and TLS."""
import shutil
import subprocess

import pytest
import requests

from conftest import assert_json_error, make_volume, write_image


def test_api_key_required_everywhere_but_health(make_server, model_dir, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("s3cret-key\n")
    s = make_server("--model-dir", model_dir, "--api-key-file", key_file)
    assert s.get("/api/health").status_code == 200
    for method, path in (("GET", "/api/info"), ("GET", "/api/models"), ("GET", "/metrics"),
                         ("GET", "/api/openapi.json"), ("GET", "/api/jobs"), ("GET", "/api/jobs/x"),
                         ("POST", "/api/models"), ("POST", "/api/infer"), ("POST", "/api/jobs"),
                         ("DELETE", "/api/models/tiny"), ("DELETE", "/api/model"), ("POST", "/api/model"),
                         ("POST", "/api/models/upload"), ("GET", "/api/unknown")):
        r = requests.request(method, s.url + path, timeout=10)
        assert_json_error(r, 401)
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        r = requests.request(method, s.url + path, headers={"Authorization": "Bearer wrong"}, timeout=10)
        assert_json_error(r, 401)
    auth = {"Authorization": "Bearer s3cret-key"}
    assert s.get("/api/info", headers=auth).status_code == 200
    assert s.get("/metrics", headers=auth).status_code == 200
    write_image(tmp_path / "ct.nii.gz", make_volume((8, 8, 8)))
    with open(tmp_path / "ct.nii.gz", "rb") as f:
        r = s.post("/api/infer", files={"image": f}, data={"model_name": "tiny"}, headers=auth)
    assert r.status_code == 200, r.text
    assert "s3cret" not in s.log_text()


def test_api_key_from_the_environment(make_server):
    s = make_server(env={"ITKIT_API_KEY": "envkey"})
    assert_json_error(s.get("/api/info"), 401)
    assert s.get("/api/info", headers={"Authorization": "Bearer envkey"}).status_code == 200


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
def test_tls(make_server, tmp_path):
    pem = tmp_path / "server.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(tmp_path / "key.pem"),
                    "-out", str(tmp_path / "cert.pem")], check=True, capture_output=True)
    pem.write_bytes((tmp_path / "cert.pem").read_bytes() + (tmp_path / "key.pem").read_bytes())
    s = make_server("--tls-cert", pem, scheme="https", verify=str(tmp_path / "cert.pem"))
    r = requests.get(s.url + "/api/health", verify=str(tmp_path / "cert.pem"), timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert requests.get(s.url + "/api/info", verify=str(tmp_path / "cert.pem"), timeout=10).json()["tls"] is True
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{s.port}/api/health", timeout=5)
