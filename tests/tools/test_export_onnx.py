"""Tests for tools/export_onnx.py (run: .venv/bin/python -m pytest tests/tools).

A tiny module is exported through the CLI entry point with every metadata flag; the
test then reads the ONNX metadata_props and the YAML sidecar back and compares ONNX
Runtime with PyTorch on an input of another batch and spatial size (dynamic axes).
"""
from __future__ import annotations

import json
import os
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
yaml = pytest.importorskip("yaml")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tools"))
import export_onnx  # noqa: E402

TINY_MODULE = textwrap.dedent('''
    import torch.nn as nn

    class Tiny(nn.Module):
        def __init__(self, classes=3, width=4, deep_supervision=False, padding_mode="zeros"):
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv3d(1, width, 3, padding=1, padding_mode=padding_mode),
                nn.InstanceNorm3d(width, affine=True),
                nn.LeakyReLU(0.01), nn.Conv3d(width, classes, 1))
            self.deep_supervision = deep_supervision

        def forward(self, x):
            y = self.body(x)
            return [y, y[:, :, ::2, ::2, ::2]] if self.deep_supervision else y

    def make(**kw):
        return Tiny(**kw)
''')


@pytest.fixture()
def tiny(tmp_path):
    src = tmp_path / "tinynet.py"
    src.write_text(TINY_MODULE)
    sys.path.insert(0, str(tmp_path))
    import importlib
    mod = importlib.import_module("tinynet")
    torch.manual_seed(123)
    ref = mod.Tiny(classes=3, width=4)
    with torch.no_grad():  # make the affine norm parameters non-trivial
        ref.body[1].weight.uniform_(0.5, 1.5)
        ref.body[1].bias.uniform_(-0.5, 0.5)
    ckpt = tmp_path / "tiny.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in ref.state_dict().items()}}, ckpt)
    yield src, ckpt, ref.eval()
    sys.path.remove(str(tmp_path))
    sys.modules.pop("tinynet", None)


def _props(path):
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_export_with_metadata_and_sidecar(tiny, tmp_path):
    src, ckpt, ref = tiny
    labels = tmp_path / "labels.yaml"
    labels.write_text(yaml.safe_dump({"labels": [
        {"name": "background", "color": [0, 0, 0]},
        {"name": "liver", "color": [255, 0, 0]},
        "spleen"]}))
    out = tmp_path / "tiny_seg.onnx"
    rc = export_onnx.main([
        "--module", f"{src}:make", "--kwargs", '{"classes": 3, "width": 4}',
        "--checkpoint", str(ckpt), "--out", str(out), "--name", "tiny_seg",
        "--description", "tiny test net", "--patch-size", "8", "16", "16",
        "--patch-stride", "4", "8", "8", "--forward-batch-windows", "2",
        "--window-level", "40", "--window-width", "400", "--labels", str(labels),
        "--spacing", "0.8", "0.8", "2.5", "--orientation", "lpi",
        "--normalization", '{"mode": "window"}', "--dynamic", "--sidecar"])
    assert rc == 0

    props = _props(out)
    assert props["name"] == "tiny_seg"
    assert props["description"] == "tiny test net"
    assert json.loads(props["inference_config"]) == {
        "patch_size": [8, 16, 16], "patch_stride": [4, 8, 8], "forward_batch_windows": 2}
    # Integral windows are written as integers: ITKIT parses them with int().
    assert props["window_level"] == "40" and props["window_width"] == "400"
    assert json.loads(props["normalization"]) == {"mode": "window"}
    labels_meta = json.loads(props["labels"])
    assert [entry["name"] for entry in labels_meta] == ["background", "liver", "spleen"]
    assert labels_meta[1]["color"] == [255, 0, 0]
    assert len(labels_meta[2]["color"]) == 3  # palette colour filled in
    assert json.loads(props["spacing"]) == [0.8, 0.8, 2.5]
    assert props["orientation"] == "LPI"
    assert "resample_to_spacing" not in props

    # Sidecar: the same keys as YAML values.
    side = yaml.safe_load((tmp_path / "tiny_seg.yaml").read_text())
    assert side["name"] == "tiny_seg"
    assert side["inference_config"]["patch_size"] == [8, 16, 16]
    assert side["window_level"] == 40 and side["window_width"] == 400
    assert side["labels"] == labels_meta
    assert side["spacing"] == [0.8, 0.8, 2.5]
    assert side["orientation"] == "LPI"
    assert side["normalization"] == {"mode": "window"}
    assert set(side) == set(props)

    # Graph interface: input/output names, symbolic N and spatial dims, opset 17.
    model = onnx.load(str(out))
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["logits"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["N", "", "Z", "Y", "X"]
    assert dims[1].dim_value == 1
    assert any(o.domain in ("", "ai.onnx") and o.version == 17 for o in model.opset_import)

    # Numerics at another batch and spatial size; the checkpoint weights must be in the graph.
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.rand(2, 1, 12, 20, 24)
    with torch.no_grad():
        expect = ref(x).numpy()
    got = sess.run(["logits"], {"input": x.numpy()})[0]
    assert got.shape == (2, 3, 12, 20, 24)
    np.testing.assert_allclose(got, expect, rtol=1e-3, atol=1e-4)


def test_first_output_of_deep_supervision_is_exported(tiny, tmp_path):
    src, _, _ = tiny
    out = tmp_path / "ds.onnx"
    rc = export_onnx.main(["--module", f"{src}:Tiny", "--kwargs", '{"deep_supervision": true}',
                           "--out", str(out), "--patch-size", "8", "8", "8"])
    assert rc == 0
    model = onnx.load(str(out))
    assert len(model.graph.output) == 1
    assert [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim] == [1, 3, 8, 8, 8]
    props = _props(out)
    assert props["name"] == "ds"  # defaults to the file name
    # ITKIT's default stride is half the patch.
    assert json.loads(props["inference_config"])["patch_stride"] == [4, 4, 4]
    assert not (tmp_path / "ds.yaml").exists()


def test_fold_constants_leaves_plain_pad(tiny, tmp_path):
    pytest.importorskip("onnxruntime")
    src, _, _ = tiny
    out = tmp_path / "rep.onnx"
    assert export_onnx.main(["--module", f"{src}:Tiny", "--kwargs", '{"padding_mode": "replicate"}',
                             "--out", str(out), "--patch-size", "8", "8", "8", "--dynamic",
                             "--fold-constants", "--window-level", "40", "--window-width", "400"]) == 0
    model = onnx.load(str(out))
    ops = {n.op_type for n in model.graph.node}
    assert ops == {"Pad", "Conv", "InstanceNormalization", "LeakyRelu"}
    assert {(o.domain, o.version) for o in model.opset_import} == {("", 17)}
    assert _props(out)["window_level"] == "40"  # metadata survives folding


def test_metadata_string_forms_and_validation():
    meta = export_onnx.build_metadata(window_level=40.5, window_width=400, spacing=[1, 1, 3],
                                      resample_to_spacing=True, labels="bg,organ")
    props = export_onnx.metadata_to_props(meta)
    assert props["window_level"] == "40.5" and props["window_width"] == "400"
    assert props["resample_to_spacing"] == "true"
    assert json.loads(props["spacing"]) == [1.0, 1.0, 3.0]
    assert [e["name"] for e in json.loads(props["labels"])] == ["bg", "organ"]
    with pytest.raises(ValueError):
        export_onnx.build_metadata(orientation="LPX")
    with pytest.raises(ValueError):
        export_onnx.build_metadata(orientation="LLI")
    with pytest.raises(ValueError):
        export_onnx.build_metadata(window_level=40)  # width missing
    with pytest.raises(ValueError):
        export_onnx.build_metadata(normalization={"mode": "minmax"})
    with pytest.raises(ValueError):
        export_onnx.build_metadata(patch_size=[64, 64])
    with pytest.raises(ValueError):
        export_onnx.parse_labels([{"name": "x", "color": [0, 0, 300]}])
    ct = export_onnx.build_metadata(normalization='{"mode":"ct","clip":[-1000,1000],"mean":0,"std":1}')
    assert json.loads(export_onnx.metadata_to_props(ct)["normalization"])["clip"] == [-1000, 1000]


def test_write_metadata_keeps_other_keys(tiny, tmp_path):
    src, _, _ = tiny
    out = tmp_path / "keep.onnx"
    assert export_onnx.main(["--module", f"{src}:make", "--out", str(out),
                             "--patch-size", "4", "4", "4", "--name", "first", "--no-verify"]) == 0
    m = onnx.load(str(out))
    extra = m.metadata_props.add()
    extra.key, extra.value = "author", "someone"
    onnx.save(m, str(out))
    export_onnx.write_metadata(str(out), {"name": "second"})
    props = _props(out)
    assert props["name"] == "second" and props["author"] == "someone"
    assert "inference_config" in props


def test_mmengine_missing_gives_install_hint(tmp_path):
    try:
        import mmengine  # noqa: F401
        pytest.skip("mmengine is installed")
    except ImportError:
        pass
    cfg = tmp_path / "cfg.py"
    cfg.write_text("model = dict(type='X')\n")
    with pytest.raises(SystemExit) as exc:
        export_onnx.main(["--mmengine-config", str(cfg), "--checkpoint", str(tmp_path / "c.pth"),
                          "--out", str(tmp_path / "m.onnx")])
    assert "pip install mmengine" in str(exc.value)
