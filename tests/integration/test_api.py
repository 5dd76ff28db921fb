"""Every endpoint of the real server, the seed README's batch snippet and the
calls the upstream ITKIT Slicer plugin makes."""
import os
import re
import shutil
import signal
import threading
import time

import numpy as np
import pytest
import requests
import SimpleITK as sitk

from conftest import (assert_json_error, expected_labels, make_volume, read_result, wait_job, write_image)


def infer(server, path, **data):
    with open(path, "rb") as f:
        return server.post("/api/infer", files={"image": f}, data=data)


def big_image(tmp_path, name="big.nii.gz", shape=(48, 48, 48)):
    """A volume with many windows for the conv model (slow enough to catch in the act)."""
    p = tmp_path / name
    write_image(p, make_volume(shape, seed=7))
    return p


def slow_form(model="conv"):
    return {"model_name": model, "patch_size": "8,8,8", "patch_stride": "2,2,2"}


def test_health(server):
    r = server.get("/api/health")
    assert r.status_code == 200
    j = r.json()
    assert j["status"] == "ok"
    assert isinstance(j["cuda_available"], bool)
    assert isinstance(j["cuda_device_count"], int)
    assert r.headers["X-Request-Id"]
    assert "total;dur=" in r.headers["Server-Timing"]


def test_info(server):
    j = server.get("/api/info").json()
    assert j["name"] == "ITKIT Inference Server"
    assert j["version"]
    assert set(j["models"]) == {"tiny", "conv"}
    tiny = j["models"]["tiny"]
    assert tiny["loaded"] is True and tiny["backend_type"] == "onnx"
    assert tiny["backend"] in ("cpu", "cuda")
    assert tiny["input_channels"] == 1
    assert tiny["patch_size"] == [16, 16, 16]
    assert tiny["inference_config"]["patch_stride"] == [8, 8, 8]
    assert [l["name"] for l in tiny["labels"]] == ["background", "liver", "tumor"]
    assert tiny["labels"][1]["color"] == [255, 0, 0]
    assert tiny["window_level"] == 0 and tiny["window_width"] == 2000
    assert tiny["model_path"].endswith("tiny.onnx")
    assert j["model"] is None  # two models: no default
    for k in ("cuda_available", "device_count", "cuda_device_count", "devices", "gpu_memory"):
        assert k in j


def test_models_list_and_get(server):
    j = server.get("/api/models").json()
    assert j["count"] == 2 and sorted(m["name"] for m in j["models"]) == ["conv", "tiny"]
    assert server.get("/api/models/tiny").json()["name"] == "tiny"
    assert_json_error(server.get("/api/models/nope"), 404)


@pytest.mark.parametrize("direction", [None, (-1, 0, 0, 0, -1, 0, 0, 0, 1), (0, 1, 0, 1, 0, 0, 0, 0, -1)])
def test_infer_is_exact_on_the_input_grid(server, tmp_path, direction):
    arr = make_volume((12, 14, 16), seed=1)
    src = write_image(tmp_path / "ct.nii.gz", arr, direction=direction)
    r = infer(server, tmp_path / "ct.nii.gz", model_name="tiny")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert 'filename="segmentation.nii.gz"' in r.headers["Content-Disposition"]
    timing = r.headers["Server-Timing"]
    for stage in ("upload", "queue", "read", "windows", "network", "write", "total"):
        assert f"{stage};dur=" in timing, timing
    seg = read_result(r.content, tmp_path)
    assert seg.GetSize() == src.GetSize()
    np.testing.assert_allclose(seg.GetOrigin(), src.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(seg.GetSpacing(), src.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(seg.GetDirection(), src.GetDirection(), atol=1e-5)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(seg), expected_labels(arr))


def test_infer_window_override_and_other_inputs(server, tmp_path):
    arr = make_volume((10, 12, 14), seed=2)
    # WL 500 / WW 1000: boundaries move to 250 and 750.
    vals = np.array([-950, -300, 0, 300, 650, 800, 950], dtype=np.int16)
    arr = vals[np.random.RandomState(3).randint(0, len(vals), size=arr.shape)]
    for name in ("ct.nrrd", "ct.mha", "ct.nii"):
        write_image(tmp_path / name, arr)
        r = infer(server, tmp_path / name, model_name="tiny", window_level="500", window_width="1000")
        assert r.status_code == 200, (name, r.text)
        seg = read_result(r.content, tmp_path)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(seg), expected_labels(arr, 500, 1000))


def test_infer_overrides_and_seg_nrrd(server, tmp_path):
    arr = make_volume((20, 18, 17), seed=4)
    write_image(tmp_path / "ct.nii.gz", arr)
    for extra in ({"patch_size": "8,8,8", "patch_stride": "4,4,4"}, {"blend": "gaussian"}, {"tta": "true"},
                  {"force_cpu": "true"}):
        r = infer(server, tmp_path / "ct.nii.gz", model_name="tiny", **extra)
        assert r.status_code == 200, (extra, r.text)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(read_result(r.content, tmp_path)), expected_labels(arr))
        r = infer(server, tmp_path / "ct.nii.gz", model_name="conv", **extra)
        assert r.status_code == 200, (extra, r.text)
        seg = sitk.GetArrayFromImage(read_result(r.content, tmp_path))
        assert seg.shape == arr.shape and seg.max() <= 2
    r = infer(server, tmp_path / "ct.nii.gz", model_name="tiny", output_format="seg.nrrd")
    assert r.status_code == 200, r.text
    assert 'filename="segmentation.seg.nrrd"' in r.headers["Content-Disposition"]
    assert r.content.startswith(b"NRRD")


def test_batch_processing_snippet_from_the_readme(server, model_dir, tmp_path, monkeypatch):
    """The 'Batch Processing' example of ITKIT-Slicer-README.md, as written."""
    monkeypatch.chdir(tmp_path)
    image_list = []
    for i in range(3):
        name = f"case{i}.nii.gz"
        write_image(tmp_path / name, make_volume((8, 9, 10), seed=10 + i))
        image_list.append(name)
    server_url = server.url
    snippet = f'''
import requests

server_url = "{server_url}"

# Load model once
requests.post(f"{{server_url}}/api/models", json={{
    "name": "batch_model",
    "backend_type": "onnx",
    "model_path": "{model_dir}/tiny.onnx"
}})

# Process multiple images
for image_path in image_list:
    with open(image_path, 'rb') as f:
        response = requests.post(
            f"{{server_url}}/api/infer",
            files={{"image": f}},
            data={{"model_name": "batch_model"}}
        )
    # Save result
    with open(f"seg_{{image_path}}", 'wb') as f:
        f.write(response.content)
'''
    exec(snippet, {"image_list": image_list})
    for name in image_list:
        seg = sitk.ReadImage(str(tmp_path / f"seg_{name}"))
        arr = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / name)))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(seg), expected_labels(arr))
    assert server.delete("/api/models/batch_model").json()["status"] == "success"


def test_upstream_slicer_plugin_calls(make_server, model_dir, tmp_path):
    """What ITKITClient/ITKITWidget of the upstream plugin send and read."""
    s = make_server("--model-root", model_dir)
    url = s.url
    info = requests.get(f"{url}/api/info", timeout=5).json()
    assert info.get("name") and "cuda_available" in info
    assert info.get("model") is None
    # load_model(): POST /api/model, result["status"] == "success"
    data = {"backend_type": "onnx", "model_path": str(model_dir / "tiny.onnx"), "inference_config": {"fp16": False}}
    r = requests.post(f"{url}/api/model", json=data, timeout=120)
    assert r.ok, r.text
    assert r.json().get("status") == "success"
    # onConnectButton(): updateModelStatus(info["model"])
    model = requests.get(f"{url}/api/info", timeout=5).json()["model"]
    assert model["loaded"] and model["name"] == "tiny" and model["backend_type"] == "onnx"
    # run_inference(): no model_name; force_cpu/window as strings
    arr = make_volume((8, 10, 12), seed=5)
    write_image(tmp_path / "vol.nii.gz", arr)
    with open(tmp_path / "vol.nii.gz", "rb") as image_file:
        data = {"force_cpu": "false", "window_level": str(0.0), "window_width": str(2000.0)}
        r = requests.post(f"{url}/api/infer", files={"image": image_file}, data=data, timeout=600)
    r.raise_for_status()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_result(r.content, tmp_path)), expected_labels(arr))
    # A second load replaces the current model.
    r = requests.post(f"{url}/api/model", json={"backend_type": "onnx", "model_path": str(model_dir / "conv.onnx"),
                                                 "inference_config": {"fp16": False}}, timeout=120)
    assert r.json()["status"] == "success"
    assert [m["name"] for m in requests.get(f"{url}/api/models").json()["models"]] == ["conv"]
    # unload_model(): DELETE /api/model
    r = requests.delete(f"{url}/api/model", timeout=10)
    r.raise_for_status()
    assert r.json().get("status") == "success"
    assert requests.get(f"{url}/api/info", timeout=5).json()["model"] is None
    assert_json_error(requests.delete(f"{url}/api/model", timeout=10), 404)
    with open(tmp_path / "vol.nii.gz", "rb") as image_file:
        r = requests.post(f"{url}/api/infer", files={"image": image_file}, data={"force_cpu": "false"})
    assert "No model loaded" in assert_json_error(r, 400)
    # mmengine, as the plugin's default backend, points at the export tool.
    r = requests.post(f"{url}/api/model", json={"backend_type": "mmengine", "config_path": "/x/cfg.py",
                                                 "model_path": "/x/ckpt.pth", "inference_config": {"fp16": False}})
    assert "tools/export_onnx.py" in assert_json_error(r, 400)


def test_info_names_the_sidecar_found_beside_the_model(make_server, model_files, tmp_path):
    d = tmp_path / "with_sidecar"
    d.mkdir()
    shutil.copy(model_files / "tiny.onnx", d / "tiny.onnx")
    (d / "tiny.yaml").write_text("labels:\n  - background\n  - {name: kidney, color: [1, 2, 3]}\n  - cyst\n")
    s = make_server("--model-dir", d)
    model = s.get("/api/info").json()["model"]
    assert [l["name"] for l in model["labels"]] == ["background", "kidney", "cyst"]
    assert model["config_path"] is not None and model["config_path"].endswith("tiny.yaml")
    assert s.get("/api/info").json()["models"]["tiny"]["config_path"] == model["config_path"]


def test_model_upload_with_sidecar(make_server, model_files, tmp_path):
    s = make_server()
    sidecar = (b"name: ignored_by_request_name\n"
               b"labels:\n  - background\n  - {name: organ, color: [1, 2, 3]}\n  - {name: lesion, color: [4, 5, 6]}\n"
               b"window_level: 500\nwindow_width: 1000\n")
    with open(model_files / "tiny.onnx", "rb") as m:
        r = s.post("/api/models/upload", files={"model": ("tiny.onnx", m), "sidecar": ("tiny.yaml", sidecar)},
                   data={"name": "uploaded", "inference_config": '{"patch_size": [8, 8, 8]}'})
    assert r.status_code == 200, r.text
    model = r.json()["model"]
    assert model["name"] == "uploaded" and model["source"] == "upload"
    assert [l["name"] for l in model["labels"]] == ["background", "organ", "lesion"]
    assert model["window_level"] == 500 and model["patch_size"] == [8, 8, 8]
    upload_dirs = list((s.cache / "models").iterdir())
    assert len(upload_dirs) == 1
    vals = np.array([-950, 0, 300, 650, 950], dtype=np.int16)
    arr = vals[np.random.RandomState(6).randint(0, len(vals), size=(9, 9, 9))]
    write_image(tmp_path / "a.nii.gz", arr)
    r = infer(s, tmp_path / "a.nii.gz")  # the only model: name may be omitted
    assert r.status_code == 200, r.text
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_result(r.content, tmp_path)),
                                  expected_labels(arr, 500, 1000))
    assert s.delete("/api/models/uploaded").status_code == 200
    assert list((s.cache / "models").iterdir()) == []  # staged files removed with the model
    with open(model_files / "tiny.onnx", "rb") as m:
        r = s.post("/api/models/upload", files={"model": ("my model.onnx", m)})
    assert r.json()["model"]["name"] == "tiny"  # metadata name


def test_jobs_lifecycle(server, tmp_path):
    arr = make_volume((12, 12, 12), seed=8)
    write_image(tmp_path / "ct.nii.gz", arr)
    with open(tmp_path / "ct.nii.gz", "rb") as f:
        r = server.post("/api/jobs", files={"image": f}, data={"model_name": "tiny"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["state"] in ("queued", "running", "done") and r.headers["Location"] == f"/api/jobs/{job['id']}"
    done = wait_job(server, job["id"])
    assert done["state"] == "done", done
    assert done["windows_total"] >= 1 and done["windows_done"] == done["windows_total"]
    assert done["progress"] == 1 and done["elapsed_s"] >= 0
    assert done["result_url"] == f"/api/jobs/{job['id']}/result"
    assert {"upload", "read", "windows", "network"} <= set(done["stage_seconds"])
    assert any(j["id"] == job["id"] for j in server.get("/api/jobs").json()["jobs"])
    r = server.get(done["result_url"])
    assert r.status_code == 200 and "windows;dur=" in r.headers["Server-Timing"]
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_result(r.content, tmp_path)), expected_labels(arr))
    assert server.delete(f"/api/jobs/{job['id']}").json()["state"] == "deleted"
    assert_json_error(server.get(f"/api/jobs/{job['id']}"), 404)
    assert_json_error(server.get(f"/api/jobs/{job['id']}/result"), 404)


def test_job_progress_and_cancel_twice(server, tmp_path):
    with open(big_image(tmp_path), "rb") as f:
        job = server.post("/api/jobs", files={"image": f}, data=slow_form()).json()
    seen = wait_job(server, job["id"], states=("running", "done", "failed", "cancelled"))
    r = server.delete(f"/api/jobs/{job['id']}")
    if seen["state"] == "running":
        assert r.status_code == 200 and r.json()["state"] in ("cancelling", "cancelled"), r.text
        final = wait_job(server, job["id"])
        assert final["state"] in ("cancelled", "done")
        if final["state"] == "cancelled":
            assert_json_error(server.delete(f"/api/jobs/{job['id']}"), 409)
            assert_json_error(server.get(f"/api/jobs/{job['id']}/result"), 409)


def test_cancel_queued_job_twice(make_server, model_dir, tmp_path):
    s = make_server("--model-dir", model_dir)
    img = big_image(tmp_path)
    ids = []
    for _ in range(2):
        with open(img, "rb") as f:
            ids.append(s.post("/api/jobs", files={"image": f}, data=slow_form()).json()["id"])
    queued = ids[1]
    r = s.delete(f"/api/jobs/{queued}")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "cancelled"
    assert s.get(f"/api/jobs/{queued}").json()["state"] == "cancelled"
    assert "already cancelled" in assert_json_error(s.delete(f"/api/jobs/{queued}"), 409)
    assert_json_error(s.get(f"/api/jobs/{queued}/result"), 409)
    s.delete(f"/api/jobs/{ids[0]}")
    wait_job(s, ids[0])


def test_job_results_expire(make_server, model_dir, tmp_path):
    s = make_server("--model-dir", model_dir, "--job-ttl", "1")
    write_image(tmp_path / "ct.nii.gz", make_volume((8, 8, 8)))
    with open(tmp_path / "ct.nii.gz", "rb") as f:
        job = s.post("/api/jobs", files={"image": f}, data={"model_name": "tiny"}).json()
    assert wait_job(s, job["id"])["state"] == "done"
    time.sleep(1.8)
    assert_json_error(s.get(f"/api/jobs/{job['id']}"), 404)
    assert [p for p in (s.cache / "tmp").iterdir()] == []


def test_health_info_metrics_answer_during_inference(server, tmp_path):
    with open(big_image(tmp_path), "rb") as f:
        job = server.post("/api/jobs", files={"image": f}, data=slow_form()).json()
    try:
        wait_job(server, job["id"], states=("running", "done", "failed"))
        for path in ("/api/health", "/api/info", "/metrics", "/api/models"):
            t0 = time.time()
            r = server.get(path, timeout=5)
            assert r.status_code == 200 and time.time() - t0 < 2, path
    finally:
        server.delete(f"/api/jobs/{job['id']}")
        wait_job(server, job["id"])


def test_unload_while_inferring(server, model_dir, tmp_path):
    r = server.post("/api/models", json={"name": "victim", "backend_type": "onnx",
                                         "model_path": str(model_dir / "conv.onnx")})
    assert r.status_code == 200, r.text
    with open(big_image(tmp_path), "rb") as f:
        job = server.post("/api/jobs", files={"image": f}, data=slow_form("victim")).json()
    state = wait_job(server, job["id"], states=("running", "done", "failed"))["state"]
    r = server.delete("/api/models/victim")
    assert r.status_code == 200 and r.json()["status"] == "success", r.text
    if state == "running":
        assert r.json()["waited_for_requests"] == 1
        # The running request finished first, with a result.
        assert server.get(f"/api/jobs/{job['id']}").json()["state"] == "done"
    assert_json_error(infer(server, big_image(tmp_path, "b.nii.gz", (8, 8, 8)), model_name="victim"), 404)
    assert "victim" not in server.get("/api/info").json()["models"]


def test_queue_full_answers_503_with_retry_after(make_server, model_dir, tmp_path):
    s = make_server("--model-dir", model_dir, "--queue", "1")
    img = big_image(tmp_path)
    ids = []
    for _ in range(2):
        with open(img, "rb") as f:
            r = s.post("/api/jobs", files={"image": f}, data=slow_form())
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
        # The first must be running (out of the queue) before the second waits.
        wait_job(s, ids[0], states=("running", "done", "failed", "cancelled"))
    with open(img, "rb") as f:
        r = s.post("/api/jobs", files={"image": f}, data=slow_form())
    if s.get(f"/api/jobs/{ids[1]}").json()["state"] == "queued":
        assert "queue is full" in assert_json_error(r, 503)
        assert int(r.headers["Retry-After"]) >= 1
    for i in ids:
        s.delete(f"/api/jobs/{i}")


def test_request_time_limit(make_server, model_dir, tmp_path):
    s = make_server("--model-dir", model_dir, "--request-timeout", "1")
    r = infer(s, big_image(tmp_path, shape=(64, 64, 64)), **slow_form())
    assert "time limit" in assert_json_error(r, 504)
    assert s.get("/api/health").status_code == 200


def test_metrics(server, tmp_path):
    write_image(tmp_path / "ct.nii.gz", make_volume((8, 8, 8)))
    assert infer(server, tmp_path / "ct.nii.gz", model_name="tiny").status_code == 200
    server.get("/api/jobs/doesnotexist")
    r = server.get("/metrics")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    t = r.text
    assert re.search(r'itkit_http_requests_total\{endpoint="/api/infer",method="POST",status="200"\} \d+', t)
    assert re.search(r'itkit_http_requests_total\{endpoint="/api/jobs/\{id\}",method="GET",status="404"\} \d+', t)
    assert 'itkit_http_request_duration_seconds_bucket{endpoint="/api/infer",le="+Inf"}' in t
    for stage in ("upload", "queue", "windows"):
        assert f'itkit_inference_stage_duration_seconds_count{{stage="{stage}"}}' in t, stage
    assert 'itkit_queue_length{device="cpu"}' in t
    assert re.search(r'itkit_jobs\{state="done"\} \d+', t)
    assert re.search(r"itkit_models_loaded \d+", t)
    assert "itkit_process_resident_memory_bytes" in t
    assert "# TYPE itkit_http_request_duration_seconds histogram" in t


def test_openapi_and_status_page(server):
    doc = server.get("/api/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for p in ("/api/health", "/api/info", "/api/models", "/api/models/{name}", "/api/models/upload", "/api/model",
              "/api/infer", "/api/jobs", "/api/jobs/{id}", "/api/jobs/{id}/result", "/metrics"):
        assert p in doc["paths"], p
    r = server.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["Content-Type"]


def test_cors(server, make_server):
    r = requests.options(server.url + "/api/infer", headers={"Origin": "http://slicer.example",
                                                              "Access-Control-Request-Method": "POST"})
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    s = make_server("--cors-origin", "http://a.example")
    assert s.get("/api/health", headers={"Origin": "http://a.example"}).headers[
        "Access-Control-Allow-Origin"] == "http://a.example"
    assert "Access-Control-Allow-Origin" not in s.get("/api/health", headers={"Origin": "http://b.example"}).headers


def test_graceful_shutdown_finishes_running_jobs(make_server, model_dir, tmp_path):
    s = make_server("--model-dir", model_dir, "--shutdown-grace", "30")
    with open(big_image(tmp_path, shape=(32, 32, 32)), "rb") as f:
        job = s.post("/api/jobs", files={"image": f}, data=slow_form()).json()
    wait_job(s, job["id"], states=("running", "done"))
    assert s.stop(signal.SIGTERM) == 0
    log = s.log_text()
    assert "shutting down" in log and "stopped" in log
    assert list((s.cache / "tmp").iterdir()) == []
