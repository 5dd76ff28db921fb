"""Tests of the Slicer module's HTTP client (slicer_module/ITKITInference/itkit_client.py).

The server tests run against the real itkit_server (--server-bin), once per transport:
`requests` and the standard-library urllib fallback Slicer uses when requests is missing.
"""
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import SimpleITK as sitk

import itkit_client as ic
import itkit_tasks
from conftest import (API_KEY, HU_CORE, HU_SHELL, LABELS, expected_labels, make_volume,
                      write_model)

TRANSPORTS = ["requests", "urllib"]


def transport(name):
    if name == "requests":
        pytest.importorskip("requests")  # Slicer may lack it; urllib is then the only path
    return name


@pytest.fixture(params=TRANSPORTS)
def client(request, server):
    return ic.ITKITClient(server.url, transport=transport(request.param))


@pytest.fixture
def loaded(client, model_path, request):
    """A model loaded under a name unique to the test; unloaded afterwards."""
    name = "m_" + request.node.name.replace("[", "_").replace("]", "").replace("-", "_")[-40:]
    client.load_model(name, model_path, backend_type="onnx", upload=False)
    yield name
    try:
        client.unload_model(name)
    except ic.ModelNotFound:
        pass


def read_labels(path):
    return sitk.GetArrayFromImage(sitk.ReadImage(path))


def assert_same_geometry(a, b):
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-5)


def hu_array():
    return sitk.GetArrayFromImage(make_volume())


# ---------------------------------------------------------------------- no server needed

def test_parse_triplet():
    assert ic.parse_triplet("96,96,64") == [96, 96, 64]
    assert ic.parse_triplet(" 96 x 80 x 64 ") == [96, 80, 64]
    assert ic.parse_triplet("[32, 32, 32]") == [32, 32, 32]
    assert ic.parse_triplet("48") == [48, 48, 48]
    assert ic.parse_triplet("") is None and ic.parse_triplet(None) is None
    for bad in ("96,96", "a,b,c", "0,1,1", "-1"):
        with pytest.raises(ic.InvalidParameter, match="96,96,96"):
            ic.parse_triplet(bad)


def test_normalize_url():
    assert ic.normalize_url("localhost:8000/") == "http://localhost:8000"
    assert ic.normalize_url("") == ic.DEFAULT_SERVER_URL
    assert ic.normalize_url("https://gpu.example.org") == "https://gpu.example.org"
    for bad in ("ftp://host", "http://", "http://host:port"):
        with pytest.raises(ic.InvalidParameter):
            ic.normalize_url(bad)


def test_model_labels_forms():
    labels = ic.model_labels({"labels": ["background", {"name": "liver", "color": [1, 2, 3]},
                                         {"name": "spleen"}]})
    assert [(l.value, l.name) for l in labels] == [(0, "background"), (1, "liver"), (2, "spleen")]
    assert labels[1].color == (1, 2, 3) and labels[2].color == ic.default_color(2)
    assert [l.name for l in ic.model_labels({"names": ["a", "b"]})] == ["a", "b"]
    assert [l.name for l in ic.model_labels({"labels": {"1": "b", "0": "a"}})] == ["a", "b"]
    assert ic.model_labels({"name": "x"}) == []
    # Labels may carry their value explicitly; /api/info keys models by name.
    assert [l.value for l in ic.model_labels({"labels": [{"value": 0, "name": "a"}, {"value": 3, "name": "b"}]})] == [0, 3]
    assert [m["name"] for m in ic.model_entries({"a": {"backend": "onnx"}, "b": {"name": "b"}})] == ["a", "b"]
    assert ic.model_entries([{"name": "a"}, {"x": 1}, "junk"]) == [{"name": "a"}]
    colors = {ic.default_color(i) for i in range(60)}
    assert len(colors) == 60 and all(0 <= c <= 255 for rgb in colors for c in rgb)


def test_model_names():
    assert ic.model_name_from_path("/m/Liver CT v2.onnx") == "Liver_CT_v2"
    assert ic.model_name_from_path("/m/ckpt.pth") == "ckpt"
    assert ic.check_model_name("abdomen_seg-1.0") == "abdomen_seg-1.0"
    for bad in ("", "a b", "x" * 129, "naïve", "a/b"):
        with pytest.raises(ic.InvalidParameter):
            ic.check_model_name(bad)


def test_inference_options_fields():
    opts = ic.InferenceOptions(force_cpu=True, window_level=40, window_width=400,
                               patch_size="64", patch_stride="32,32,16", blend="gaussian", tta=True)
    assert opts.to_fields() == {"force_cpu": "true", "tta": "true", "output_format": "nii.gz",
                                "window_level": "40", "window_width": "400",
                                "patch_size": "64,64,64", "patch_stride": "32,32,16",
                                "blend": "gaussian"}
    assert ic.InferenceOptions().to_fields() == {"force_cpu": "false", "tta": "false",
                                                 "output_format": "nii.gz"}
    for bad in (dict(window_level=40), dict(window_level=0, window_width=0), dict(blend="max"),
                dict(output_format="png"), dict(patch_size="1,2")):
        with pytest.raises(ic.InvalidParameter):
            ic.InferenceOptions(**bad).to_fields()


def test_multipart_roundtrip():
    import email.parser
    import email.policy
    body, ctype = ic.encode_multipart({"model_name": "liver", "skip": None},
                                      {"image": ('ct "1".nii.gz', b"\x00\x01binary\r\n--", "application/octet-stream")})
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body)
    parts = {p.get_param("name", header="content-disposition"): p for p in msg.iter_parts()}
    assert set(parts) == {"model_name", "image"}
    assert parts["model_name"].get_payload(decode=True) == b"liver"
    assert parts["image"].get_payload(decode=True) == b"\x00\x01binary\r\n--"
    assert parts["image"].get_filename() == "ct _1_.nii.gz"


def test_server_summary():
    gpu = {"name": "NVIDIA H100", "free_bytes": 70 * 2**30, "total_bytes": 80 * 2**30}
    text = itkit_tasks.server_summary({"health": {"cuda_available": True},
                                       "info": {"name": "ITKIT", "version": "1.2", "devices": [gpu],
                                                "auth_required": True}}, "urllib")
    assert text == ("ITKIT 1.2 | GPU: NVIDIA H100 (70.0 of 80.0 GiB free) | API key required"
                    " | client transport: urllib")
    assert "none (CPU" in itkit_tasks.server_summary({"health": {"cuda_available": False}})


def test_background_tasks():
    tasks = itkit_tasks.BackgroundTasks()
    results, errors = [], []
    gate = threading.Event()
    tasks.submit(lambda: gate.wait(10) and 42, on_done=results.append, on_error=errors.append)
    tasks.submit(ic.parse_triplet, "1,2", on_done=results.append, on_error=errors.append)
    time.sleep(0.1)
    assert tasks.poll() == 1 and tasks.busy  # the failing call is delivered, the other waits
    assert results == [] and isinstance(errors[0], ic.InvalidParameter)
    gate.set()
    deadline = time.monotonic() + 10
    while tasks.poll() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert results == [42] and not tasks.busy
    tasks.shutdown()


def test_transport_selection(monkeypatch):
    assert ic.ITKITClient("localhost", transport="urllib").transport_name == "urllib"
    monkeypatch.setenv("ITKIT_CLIENT_TRANSPORT", "urllib")  # forces the fallback everywhere
    assert ic.ITKITClient("localhost").transport_name == "urllib"
    monkeypatch.delenv("ITKIT_CLIENT_TRANSPORT")
    monkeypatch.setitem(sys.modules, "requests", None)  # as in a Slicer without requests
    assert ic.ITKITClient("localhost").transport_name == "urllib"
    with pytest.raises(ic.RequestsMissing, match="pip_install"):
        ic.ITKITClient("localhost", transport="requests")
    with pytest.raises(ic.InvalidParameter):
        ic.ITKITClient("localhost", transport="carrier-pigeon")


def test_locality():
    assert ic.ITKITClient("http://localhost:8000").is_local
    assert ic.ITKITClient("http://127.0.0.1:8000").is_local
    assert not ic.ITKITClient("http://192.0.2.10:8000").is_local  # TEST-NET: never ours


@pytest.mark.parametrize("transport_name", TRANSPORTS)
def test_unreachable(transport_name):
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = ic.ITKITClient(f"http://127.0.0.1:{port}", transport=transport(transport_name), timeout=3)
    with pytest.raises(ic.ServerUnreachable, match="connection refused.*itkit_server is running"):
        client.connect()


class _CannedHandler(BaseHTTPRequestHandler):
    """Answers that the real server gives only under load or failure (503, 500, non-JSON)."""
    routes = {
        "/api/health": (503, {"Retry-After": "7"}, b'{"error": "job queue is full"}'),
        "/api/info": (500, {}, b'{"error": "out of memory on cuda:0"}'),
        "/api/models": (200, {}, b"<html>not an ITKIT server</html>"),
        "/api/jobs/abc": (200, {}, b'{"id": "abc", "status": "completed"}'),
    }

    def do_GET(self):
        status, headers, body = self.routes.get(self.path, (404, {}, b'{"error": "no route"}'))
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("transport_name", TRANSPORTS)
def test_error_mapping(transport_name):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _CannedHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        client = ic.ITKITClient(f"http://127.0.0.1:{httpd.server_port}", transport=transport(transport_name))
        with pytest.raises(ic.ServerBusy) as busy:
            client.health()
        assert busy.value.retry_after == 7 and "job queue is full" in str(busy.value)
        with pytest.raises(ic.ServerError, match="HTTP 500.*out of memory on cuda:0") as err:
            client.info()
        assert err.value.status == 500 and err.value.server_message == "out of memory on cuda:0"
        with pytest.raises(ic.ServerError, match="did not answer with JSON"):
            client.list_models()
        status = client.job_status("abc")  # older field names: id / status
        assert status.state == "done" and status.finished and status.progress == 1.0
        with pytest.raises(ic.JobNotFound):
            client.job_status("nope")
    finally:
        httpd.shutdown()
        httpd.server_close()


# ---------------------------------------------------------------------- against itkit_server

def test_connect(client):
    reply = client.connect()
    assert reply["is_local"] and itkit_tasks.server_summary(reply).startswith(reply["info"]["name"])
    assert reply["health"]["status"]
    info = reply["info"]
    assert info.get("name") and info.get("version")
    assert isinstance(ic.model_entries(info.get("models")), list)
    assert "cuda_available" in reply["health"]


def test_load_list_unload(client, model_path):
    reply = client.load_model("listed", model_path, backend_type="ONNX", patch_size="16",
                              patch_stride="8,8,8", fp16=False, upload=False)
    assert reply.get("name") == "listed"
    try:
        models = {m["name"]: m for m in client.list_models()}
        assert "listed" in models
        labels = ic.model_labels(models["listed"])
        assert [(l.name, list(l.color)) for l in labels] == [(e["name"], e["color"]) for e in LABELS]
        assert "listed" in {m["name"] for m in ic.model_entries(client.info()["models"])}
        assert client.get_model("listed")["name"] == "listed"
    finally:
        client.unload_model("listed")
    assert "listed" not in {m["name"] for m in client.list_models()}
    with pytest.raises(ic.ModelNotFound, match="'listed' is not loaded"):
        client.unload_model("listed")
    with pytest.raises(ic.ModelNotFound):
        client.get_model("listed")


def test_upload_with_sidecar(client, tmp_path):
    # A remote server cannot read our paths: the file and its NAME.yaml sidecar are sent.
    path = write_model(tmp_path / "remote_model.onnx")
    renamed = [{"name": "air", "color": [0, 0, 0]}, {"name": "tissue", "color": [10, 20, 30]},
               {"name": "core", "color": [40, 50, 60]}]
    (tmp_path / "remote_model.yaml").write_text("labels: " + json.dumps(renamed) + "\n")
    reply = client.load_model("uploaded", path, upload=True)
    try:
        assert reply.get("name") == "uploaded"
        labels = ic.model_labels(client.get_model("uploaded"))
        assert [l.name for l in labels] == ["air", "tissue", "core"]
        assert labels[1].color == (10, 20, 30)
    finally:
        client.unload_model("uploaded")


def test_path_outside_model_roots(client):
    # The server loads paths only under --model-dir/--model-root; elsewhere it answers 403,
    # which must not be mistaken for a wrong API key. Left to decide (upload=None), the
    # client then sends the file instead.
    outside = tempfile.mkdtemp(prefix="itkit-outside-")
    try:
        path = write_model(os.path.join(outside, "outside.onnx"))
        with pytest.raises(ic.ServerError, match="--model-root") as err:
            client.load_model("outside", path, upload=False)
        assert err.value.status == 403 and not isinstance(err.value, ic.AuthenticationFailed)
        assert client.load_model("outside", path).get("name") == "outside"
        client.unload_model("outside")
    finally:
        shutil.rmtree(outside, ignore_errors=True)


def test_load_errors(client, model_path, tmp_path):
    with pytest.raises(ic.InvalidParameter, match="not found"):
        client.load_model("x", str(tmp_path / "missing.onnx"), upload=False)
    with pytest.raises(ic.InvalidParameter, match="not found"):
        client.load_model("x", str(tmp_path / "missing.onnx"), upload=True)
    with pytest.raises(ic.InvalidParameter, match="backend"):
        client.load_model("x", model_path, backend_type="tensorflow")
    with pytest.raises(ic.InvalidParameter, match="model name"):
        client.load_model("my model!", model_path)  # names end up in URLs
    with pytest.raises(ic.ServerError, match="export_onnx") as err:
        client.load_model("mm", model_path, backend_type="mmengine",
                          config_path=model_path, upload=False)
    assert err.value.status == 400
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"this is not a protobuf")
    with pytest.raises(ic.ServerError) as err:
        client.load_model("broken", str(bad), upload=False)
    assert 400 <= err.value.status < 500 and err.value.server_message


def test_infer_sync(client, loaded, volume_path, tmp_path):
    out = client.infer(volume_path, loaded, str(tmp_path / "seg.nii.gz"))
    result = sitk.ReadImage(out)
    assert_same_geometry(result, make_volume())
    labels = sitk.GetArrayFromImage(result)
    np.testing.assert_array_equal(labels, expected_labels(hu_array()))
    assert set(np.unique(labels)) == {0, 1, 2}


def test_job_progress(client, loaded, volume_path, tmp_path):
    seen = []
    out = client.segment(volume_path, loaded, str(tmp_path / "seg.nii.gz"), callback=seen.append,
                         poll_interval=0.05, timeout=120)
    np.testing.assert_array_equal(read_labels(out), expected_labels(hu_array()))
    assert seen and seen[-1].state == "done" and seen[-1].progress == 1.0
    assert all(s.state in ("queued", "running", "done") for s in seen)
    final = seen[-1]
    assert final.windows_total > 0 and final.windows_done == final.windows_total
    assert final.elapsed_seconds is not None and final.elapsed_seconds >= 0


def test_overrides_reach_the_server(client, loaded, volume_path, tmp_path):
    # Window [0, 200] HU turns the 40 HU shell into background: proof the override is applied.
    opts = ic.InferenceOptions(window_level=100, window_width=200, patch_size="8",
                               patch_stride="4,4,4", blend="gaussian", tta=True, force_cpu=True)
    run = itkit_tasks.InferenceRun(client, volume_path, loaded, str(tmp_path / "seg.nii.gz"), opts,
                                   poll_interval=0.05).start()
    phases = set()
    while run.tick():
        phases.add(run.phase)
        assert run.elapsed >= 0 and run.message
        time.sleep(0.01)
    assert run.phase == "done", run.message
    assert phases <= {"uploading", "queued", "running", "downloading"}
    assert run.message.startswith("Done in") and run.progress == 1.0
    got = read_labels(run.result_path)
    np.testing.assert_array_equal(got, expected_labels(hu_array(), level=100, width=200))
    hu = hu_array()
    assert (got[hu == HU_SHELL] == 0).all() and (got[hu == HU_CORE] == 2).all()


def test_seg_nrrd_output(client, loaded, volume_path, tmp_path):
    out = client.infer(volume_path, loaded, str(tmp_path / "seg.seg.nrrd"),
                       ic.InferenceOptions(output_format="seg.nrrd"))
    np.testing.assert_array_equal(read_labels(out).squeeze(), expected_labels(hu_array()))


def test_result_name_from_server(client, loaded, volume_path):
    out = client.infer(volume_path, loaded)  # no path: named from Content-Disposition
    try:
        assert os.path.isfile(out) and out.endswith(".nii.gz")
    finally:
        shutil.rmtree(os.path.dirname(out), ignore_errors=True)


def test_unknown_model(client, volume_path, tmp_path):
    with pytest.raises(ic.ModelNotFound, match="'ghost' is not loaded"):
        client.infer(volume_path, "ghost", str(tmp_path / "x.nii.gz"))
    with pytest.raises(ic.ModelNotFound):
        client.submit_job(volume_path, "ghost")
    run = itkit_tasks.InferenceRun(client, volume_path, "ghost").start()
    with pytest.raises(ic.ModelNotFound):
        run.wait(timeout=60)
    assert run.phase == "failed" and "Model Management" in run.message


def test_bad_image(client, loaded, tmp_path):
    bad = tmp_path / "garbage.nii.gz"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ic.ServerError) as err:
        client.segment(str(bad), loaded, str(tmp_path / "x.nii.gz"), poll_interval=0.05, timeout=60)
    assert err.value.server_message and not isinstance(err.value, ic.ModelNotFound)


def test_cancel(client, loaded, tmp_path):
    # A larger volume with tiny windows keeps the job busy for minutes: cancel must stop it.
    big = make_volume()
    big = sitk.Expand(big, [4, 4, 4])
    path = str(tmp_path / "big.nii.gz")
    sitk.WriteImage(big, path, True)
    opts = ic.InferenceOptions(patch_size="4", patch_stride="2")
    job = client.submit_job(path, loaded, opts)
    status = client.cancel_job(job)
    deadline = time.monotonic() + 60
    while True:
        status = client.job_status(job)
        if status.finished or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert status.state == "cancelled", status.raw  # the job has ~260k windows to go
    # Cancelled before its windows began (queued, or the worker was still reading or
    # preprocessing: windows_total is not known yet), or part-way through its windows.
    before_windows = status.stage in ("queued", "read", "preprocess") and status.windows_total == 0
    assert status.error and (before_windows or status.windows_done < status.windows_total), status.raw
    with pytest.raises(ic.JobCancelled):
        client.download_result(job, str(tmp_path / "x.nii.gz"))
    gate = threading.Event()
    run = itkit_tasks.InferenceRun(client, path, loaded, options=opts, prepare=gate.wait).start()
    run.cancel()  # while still "preparing": files must stay until the worker lets go of them
    assert run.phase == "cancelled" and run.finished and not run.tick()
    removed = threading.Event()
    run.when_idle(removed.set)
    assert not removed.is_set()
    gate.set()
    assert removed.wait(10)
    with pytest.raises(ic.JobCancelled):
        run.wait()
    with pytest.raises(ic.JobNotFound):
        client.job_status("no-such-job")


@pytest.mark.parametrize("transport_name", TRANSPORTS)
def test_api_key(auth_server, transport_name, model_path):
    url = auth_server.url
    transport(transport_name)
    with pytest.raises(ic.AuthenticationFailed, match="requires an API key"):
        ic.ITKITClient(url, transport=transport_name).connect()
    with pytest.raises(ic.AuthenticationFailed, match="rejected the API key"):
        ic.ITKITClient(url, api_key="wrong", transport=transport_name).connect()
    client = ic.ITKITClient(url, api_key=f"  {API_KEY} ", transport=transport_name)
    assert client.connect()["info"]["version"]
    client.load_model("keyed", model_path, upload=False)
    client.unload_model("keyed")
