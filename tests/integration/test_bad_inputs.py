"""The bad-input catalogue: each answered with a JSON error and the right
status, while the server stays up and keeps serving."""
import gzip
import os
import select
import socket
import struct
import threading
import time

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import assert_json_error, make_volume, write_image


@pytest.fixture(autouse=True)
def still_serving(server):
    yield
    assert server.alive(), server.log_text()
    assert server.get("/api/health", timeout=5).status_code == 200
    assert server.get("/api/info", timeout=5).status_code == 200


def post_image(server, content, filename="ct.nii.gz", **data):
    data.setdefault("model_name", "tiny")
    return server.post("/api/infer", files={"image": (filename, content)}, data=data)


def nifti_header(dims, datatype=4, bitpix=16):
    """A NIfTI-1 header (348 bytes + 4 extension bytes) declaring `dims`."""
    h = bytearray(352)
    struct.pack_into("<i", h, 0, 348)
    d = [len(dims)] + list(dims) + [1] * (7 - len(dims))
    struct.pack_into("<8h", h, 40, *d)
    struct.pack_into("<hh", h, 70, datatype, bitpix)
    struct.pack_into("<8f", h, 76, 1, 1, 1, 1, 1, 1, 1, 1)
    struct.pack_into("<f", h, 108, 352.0)
    h[344:348] = b"n+1\x00"
    return bytes(h)


def valid_image_bytes(tmp_path):
    write_image(tmp_path / "ok.nii.gz", make_volume((10, 10, 10)))
    return (tmp_path / "ok.nii.gz").read_bytes()


def test_truncated_nii_gz(server, tmp_path):
    data = valid_image_bytes(tmp_path)
    assert_json_error(post_image(server, data[: len(data) // 2]), 400)
    assert_json_error(post_image(server, data[:40]), 400)


def test_random_bytes(server):
    rng = np.random.RandomState(0)
    assert_json_error(post_image(server, rng.bytes(5000), "ct.nii.gz"), 400)
    assert_json_error(post_image(server, rng.bytes(5000), "ct.bin"), 400)
    assert_json_error(post_image(server, b"\x1f\x8b" + rng.bytes(3000)), 400)  # gzip magic, not gzip


def test_gigantic_dimensions(server):
    assert_json_error(post_image(server, nifti_header((30000, 30000, 30000)), "huge.nii"), 413)
    assert_json_error(post_image(server, gzip.compress(nifti_header((2 ** 15 - 1,) * 3)), "huge.nii.gz"), 413)
    # Declares a plausible size but holds no voxels.
    assert_json_error(post_image(server, nifti_header((64, 64, 64)), "empty.nii"), 400)


def test_4d_2d_and_zero_size_images(server, tmp_path):
    img4 = sitk.JoinSeries([sitk.GetImageFromArray(make_volume((6, 6, 6), seed=i)) for i in range(2)])
    sitk.WriteImage(img4, str(tmp_path / "4d.nii.gz"))
    assert "3D" in assert_json_error(post_image(server, (tmp_path / "4d.nii.gz").read_bytes()), 400)
    sitk.WriteImage(sitk.GetImageFromArray(make_volume((6, 6))), str(tmp_path / "2d.nii.gz"))
    assert "3D" in assert_json_error(post_image(server, (tmp_path / "2d.nii.gz").read_bytes()), 400)
    assert_json_error(post_image(server, nifti_header((4, 0, 4)), "zero.nii"), 400)
    assert_json_error(post_image(server, b""), 400)
    rgb = sitk.Compose([sitk.GetImageFromArray(make_volume((5, 5, 5)).astype(np.uint8))] * 3)
    sitk.WriteImage(rgb, str(tmp_path / "rgb.nii.gz"))
    assert "channel" in assert_json_error(post_image(server, (tmp_path / "rgb.nii.gz").read_bytes()), 400)


def test_missing_fields_and_unknown_model(server, tmp_path):
    data = valid_image_bytes(tmp_path)
    assert "image" in assert_json_error(server.post("/api/infer", data={"model_name": "tiny"}), 400)
    assert "model_name" in assert_json_error(post_image(server, data, model_name=""), 400)  # two models loaded
    assert_json_error(post_image(server, data, model_name="nope"), 404)
    assert_json_error(server.post("/api/jobs", files={"image": ("a.nii.gz", data)}, data={"model_name": "nope"}), 404)
    for field, value in (("force_cpu", "maybe"), ("window_level", "high"), ("window_width", "-5"),
                         ("patch_size", "1,2"), ("patch_stride", "a,b,c"), ("blend", "max"),
                         ("output_format", "png"), ("tta", "2")):
        assert field in assert_json_error(post_image(server, data, **{field: value}), 400)
    assert_json_error(server.post("/api/models", json={"backend_type": "onnx"}), 400)
    assert_json_error(server.post("/api/models", json={"name": "../x", "model_path": "tiny.onnx"}), 400)


def test_path_traversal_and_symlink_escapes(server, model_dir, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.onnx").write_bytes((model_dir / "tiny.onnx").read_bytes())
    links = []
    for name, target in (("escape.onnx", outside / "secret.onnx"), ("escape_dir", outside),
                         ("passwd.onnx", "/etc/passwd")):
        link = model_dir / name
        if not link.exists():
            os.symlink(target, link)
        links.append(link)
    try:
        for path in ("../../../../etc/passwd", "/etc/passwd", str(outside / "secret.onnx"),
                     f"{model_dir}/../{model_dir.name}/../outside/secret.onnx", "escape.onnx",
                     str(model_dir / "escape_dir" / "secret.onnx"), "escape_dir/missing.onnx", "passwd.onnx",
                     "/nonexistent/x.onnx"):
            r = server.post("/api/models", json={"name": "evil", "backend_type": "onnx", "model_path": path})
            msg = assert_json_error(r, 403)
            assert "secret" not in msg and "root:" not in msg
        r = server.post("/api/models", json={"name": "evil", "backend_type": "onnx", "model_path": "tiny.onnx",
                                             "config_path": "/etc/passwd"})
        assert_json_error(r, 403)
        assert_json_error(server.post("/api/models", json={"backend_type": "onnx", "model_path": "missing.onnx"}), 404)
        assert_json_error(server.post("/api/model", json={"backend_type": "onnx", "model_path": "/etc/shadow"}), 403)
        assert "evil" not in server.get("/api/info").json()["models"]
    finally:
        for link in links:
            link.unlink()


def test_onnx_file_that_is_not_onnx(server, model_dir):
    fake = model_dir / "fake_model.onnx"
    fake.write_bytes(np.random.RandomState(1).bytes(4096))
    try:
        assert_json_error(server.post("/api/models", json={"backend_type": "onnx", "model_path": str(fake)}), 400)
    finally:
        fake.unlink()
    r = server.post("/api/models/upload", files={"model": ("x.onnx", b"this is not onnx")}, data={"name": "junk"})
    assert_json_error(r, 400)
    assert_json_error(server.post("/api/models/upload", files={"model": ("x.onnx", b"")}), 400)
    assert_json_error(server.post("/api/models/upload", data={"name": "x"}), 400)
    r = server.post("/api/models/upload", files={"model": ("x.onnx", b"x")}, data={"inference_config": "{nope"})
    assert_json_error(r, 400)


def test_deeply_nested_sidecar_and_json(server, model_dir):
    """Nesting that recursive parsers (yaml-cpp, and the DICOM/ONNX readers) walk
    once per level. A 400-deep YAML list used to overflow CivetWeb's 100 KB worker
    stack and kill the server."""
    model = (model_dir / "tiny.onnx").read_bytes()
    for depth in (400, 5000, 100000):
        sidecar = ("labels: " + "[" * depth + "]" * depth + "\n").encode()
        r = server.post("/api/models/upload", files={"model": ("deep.onnx", model), "sidecar": ("deep.yaml", sidecar)},
                        data={"name": f"deep{depth}"})
        assert_json_error(r, 400)
        body = "{" + '"a":[' * depth + "]" * depth + "}"
        r = server.post("/api/models", data=body, headers={"Content-Type": "application/json"})
        assert r.status_code in (400, 413), r.text


def test_non_json_bodies_and_wrong_content_types(server, tmp_path):
    json_ct = {"Content-Type": "application/json"}
    assert_json_error(server.post("/api/models", data="not json", headers=json_ct), 400)
    assert_json_error(server.post("/api/models", data="[1, 2]", headers=json_ct), 400)
    assert_json_error(server.post("/api/models", data=b"\xff\xfe\x00garbage", headers=json_ct), 400)
    assert_json_error(server.post("/api/models", data='{"model_path": "tiny.onnx"}',
                                  headers={"Content-Type": "text/plain"}), 415)
    assert_json_error(server.post("/api/models", data={"model_path": "tiny.onnx"}), 415)  # form-encoded
    assert_json_error(server.post("/api/infer", json={"model_name": "tiny"}), 415)
    assert_json_error(server.post("/api/infer", data=b"x", headers={"Content-Type": "multipart/form-data"}), 400)
    assert_json_error(server.post("/api/infer", data=b"--b\r\nbroken", headers={
        "Content-Type": "multipart/form-data; boundary=b"}), 400)
    assert_json_error(server.post("/api/jobs", data="a=b", headers={"Content-Type": "text/plain"}), 415)
    r = server.delete("/api/models/..%2F..%2Fetc")
    assert r.status_code in (400, 404) and "error" in r.json()
    assert_json_error(server.get("/api/nothing"), 404)
    r = server.post("/api/health")
    assert_json_error(r, 405)
    assert "GET" in r.headers["Allow"]


def raw_request(server, head, body_parts=(), delay=0.0, read_timeout=20):
    """Sends a hand-made request part by part, stopping as soon as the server
    answers; returns (status, body) of the answer (None when it just closed)."""
    s = socket.create_connection(("127.0.0.1", server.port), timeout=read_timeout)
    try:
        s.sendall(head.encode())
        for part in body_parts:
            if delay:
                time.sleep(delay)
            if select.select([s], [], [], 0)[0]:
                break  # the answer (or a close) is already there
            try:
                s.sendall(part)
            except OSError:
                break
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            if not data:
                return None, b""
            headers, _, body = data.partition(b"\r\n\r\n")
            fields = dict(l.split(b": ", 1) for l in headers.split(b"\r\n")[1:] if b": " in l)
            length = int(fields.get(b"Content-Length", b"0"))
            while len(body) < length:
                chunk = s.recv(65536)
                if not chunk:
                    break
                body += chunk
        except (ConnectionResetError, socket.timeout):
            if not data:
                return None, b""
            headers, _, body = data.partition(b"\r\n\r\n")
        return int(data.split(b" ", 2)[1]), body
    finally:
        s.close()


def test_oversize_uploads(make_server, model_dir):
    s = make_server("--model-dir", model_dir, "--max-upload-mb", "1")
    head = (f"POST /api/infer HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            f"Content-Length: {5 * 1024 * 1024}\r\n\r\n")
    status, body = raw_request(s, head, [b"--b\r\n" + b"x" * 1000])
    assert status == 413 and b'"error"' in body
    # Chunked: no length up front; refused once the limit is crossed.
    head = ("POST /api/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            "Transfer-Encoding: chunked\r\n\r\n")
    part = b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.nii.gz"\r\n\r\n'
    chunks = [b"%x\r\n%s\r\n" % (len(part), part)] + [b"10000\r\n" + b"x" * 0x10000 + b"\r\n"] * 24
    status, body = raw_request(s, head, chunks)
    assert status == 413 and b'"error"' in body
    assert s.get("/api/health").status_code == 200
    assert list((s.cache / "tmp").iterdir()) == []
    # A model upload over the limit, through requests.
    r = s.post("/api/models/upload", files={"model": ("big.onnx", b"x" * (600 * 1024))}, data={"name": "small"})
    assert r.status_code == 400  # under the limit: read, then refused as not ONNX


def test_slow_client_trickling_bytes(make_server, model_dir):
    s = make_server("--model-dir", model_dir, "--upload-timeout", "2", "--io-timeout", "1")
    head = ("POST /api/infer HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            "Content-Length: 100000\r\n\r\n")
    result = {}

    def trickle():
        result["answer"] = raw_request(s, head, [b"-"] * 40, delay=0.3)

    t = threading.Thread(target=trickle)
    t0 = time.time()
    t.start()
    time.sleep(0.5)
    assert s.get("/api/health", timeout=5).status_code == 200  # others are served meanwhile
    t.join(30)
    assert not t.is_alive()
    status, body = result["answer"]
    assert time.time() - t0 < 15
    assert status == 408 and b"error" in body
    # A client that stops sending: the read times out, the connection is closed.
    status, body = raw_request(s, head, [b"--b\r\n"], read_timeout=20)
    assert status in (None, 408)
    assert s.get("/api/health", timeout=5).status_code == 200
    assert list((s.cache / "tmp").iterdir()) == []


def test_temp_files_are_removed(server):
    assert list((server.cache / "tmp").iterdir()) == []
