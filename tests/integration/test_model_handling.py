"""Model handling against the real binary: the single-model DELETE with several
models loaded, force_cpu, and a network with a static batch of 1."""
import shutil

import numpy as np
import SimpleITK as sitk

from conftest import assert_json_error, expected_labels, make_volume, read_result, wait_job, write_image


def test_single_model_delete_with_several_models(make_server, model_dir):
    s = make_server("--model-dir", model_dir)
    # Two models from --model-dir, none made default by POST /api/model.
    msg = assert_json_error(s.delete("/api/model"), 409)
    assert "conv, tiny" in msg and "DELETE /api/models/{name}" in msg, msg
    assert s.get("/api/models").json()["count"] == 2

    r = s.post("/api/model", json={"backend_type": "onnx", "model_path": str(model_dir / "tiny.onnx")})
    assert r.status_code == 200, r.text
    assert s.get("/api/models").json()["default"] == "tiny"
    r = s.delete("/api/model")
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "tiny" and r.json()["message"] == "Model tiny unloaded"
    # conv is now the only model, so the default one.
    r = s.delete("/api/model")
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "conv"
    assert assert_json_error(s.delete("/api/model"), 404) == "No model loaded"


def test_force_cpu_and_forward_device(server, tmp_path):
    """force_cpu (ITKIT's meaning) moves only the accumulation to the host: the job stays
    in the model's queue and the network where the model runs. forward_device=cpu moves
    the network and the queue to the CPU. The labels are exact either way."""
    arr = make_volume((20, 18, 22), seed=3)
    path = tmp_path / "ct.nii.gz"
    write_image(path, arr)
    models = {m["name"]: m for m in server.get("/api/models").json()["models"]}
    for fields in ({"force_cpu": "true"}, {"force_cpu": "false"}, {"forward_device": "cpu"}):
        with open(path, "rb") as f:
            r = server.post("/api/jobs", files={"image": f}, data={"model_name": "tiny", **fields})
        assert r.status_code == 202, r.text
        job = wait_job(server, r.json()["id"])
        assert job["state"] == "done", job
        if "forward_device" in fields:
            assert job["device"] == "cpu" and job["network_device"] == "cpu", job
        else:  # where the model was loaded (cuda on a GPU machine)
            assert job["device"] == job["network_device"] == models["tiny"]["backend"], job
        if fields.get("force_cpu") == "true" or models["tiny"]["backend"] == "cpu":
            assert job["accumulate_device"] == "cpu", job
        res = server.get(job["result_url"])
        assert res.status_code == 200
        got = sitk.GetArrayFromImage(read_result(res.content, tmp_path))
        np.testing.assert_array_equal(got, expected_labels(arr))
    with open(path, "rb") as f:
        r = server.post("/api/infer", files={"image": f}, data={"model_name": "tiny", "force_cpu": "yes"})
    assert r.status_code == 200, r.text
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_result(r.content, tmp_path)), expected_labels(arr))


def test_static_batch_of_one_falls_back_to_one_window_per_forward(make_server, model_files, tmp_path):
    d = tmp_path / "models"
    d.mkdir()
    shutil.copy(model_files / "tiny_b1.onnx", d / "tiny_b1.onnx")
    s = make_server("--model-dir", d)
    m = s.get("/api/models/tiny_b1").json()
    assert m["inference_config"]["forward_batch_windows"] == 1, m  # metadata said 4
    assert "fixed batch of 1; forward_batch_windows 4 falls back to 1" in s.log_text()
    # A load request asking for a batch gets the same fallback.
    r = s.post("/api/models", json={"name": "b8", "model_path": "tiny_b1.onnx",
                                    "inference_config": {"forward_batch_windows": 8}})
    assert r.status_code == 200, r.text
    assert r.json()["model"]["inference_config"]["forward_batch_windows"] == 1

    arr = make_volume((20, 24, 28), seed=5)  # patch 8^3, stride 4: hundreds of windows
    path = tmp_path / "ct.nii.gz"
    write_image(path, arr)
    for name, data in (("tiny_b1", {}), ("b8", {}), ("tiny_b1", {"forward_batch_windows": "3"})):
        with open(path, "rb") as f:
            r = s.post("/api/infer", files={"image": f}, data={"model_name": name, **data})
        assert r.status_code == 200, r.text
        np.testing.assert_array_equal(sitk.GetArrayFromImage(read_result(r.content, tmp_path)), expected_labels(arr))
    with open(path, "rb") as f:
        r = s.post("/api/jobs", files={"image": f}, data={"model_name": "tiny_b1", "forward_batch_windows": "3"})
    job = wait_job(s, r.json()["id"])
    assert job["state"] == "done", job
    assert any("forward_batch_windows 3 ignored" in n for n in job.get("notes", [])), job
    assert "forward_batch_windows 3 ignored: the network's input has a fixed batch of 1" in s.log_text()
