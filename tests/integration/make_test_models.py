"""Exports the tiny ONNX models the server integration tests use.

Run with Debian's python3 (torch 1.13, onnx):  python3 make_test_models.py OUT_DIR

* tiny.onnx  - 2 Conv3d layers, kernel 1, 3 classes, with hand-set weights: the
  label of a voxel depends only on its windowed intensity x in [0, 1]:
  0 for x < 0.25, 1 for 0.25 < x < 0.75, 2 for x > 0.75. Being voxel-wise it
  gives the same labels whatever the windows, blending, flips or orientation,
  so the tests can check every result exactly.
* conv.onnx  - 2 Conv3d layers, kernel 3, 3 classes, random weights: a model
  whose output depends on neighbourhoods (sliding windows, blending, TTA).
* slow_load.onnx - tiny plus a constant branch (a 2560x2560 MatMul of ones,
  times 0, added to the logits) that constant folding evaluates at load: about
  half a second of loading on a CPU, same labels as tiny.
* tiny_b1.onnx - tiny's network exported with a static batch dimension of 1
  but inference_config forward_batch_windows 4: the server must fall back to
  one window per forward.
All carry ITKIT metadata: window_level 0, window_width 2000, labels,
inference_config.
"""
import json
import sys

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper


class TwoConv(torch.nn.Module):
    def __init__(self, k):
        super().__init__()
        self.c1 = torch.nn.Conv3d(1, 4, k, padding=k // 2)
        self.c2 = torch.nn.Conv3d(4, 3, k, padding=k // 2)

    def forward(self, x):
        return self.c2(torch.relu(self.c1(x)))


def export(net, path, name, patch, labels, dynamic_batch=True, **inference):
    net.eval()
    x = torch.zeros(1, 1, *patch)
    axes = {0: "N", 2: "D", 3: "H", 4: "W"} if dynamic_batch else {2: "D", 3: "H", 4: "W"}
    torch.onnx.export(net, x, path, opset_version=17, input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": axes, "output": axes})
    m = onnx.load(path)
    config = {"patch_size": list(patch), "patch_stride": [p // 2 for p in patch], **inference}
    meta = {"name": name, "window_level": "0", "window_width": "2000", "labels": json.dumps(labels),
            "inference_config": json.dumps(config), "description": "integration test model"}
    for k, v in meta.items():
        e = m.metadata_props.add()
        e.key, e.value = k, v
    onnx.save(m, path)


def add_slow_constant_branch(src, dst, name, size=2560):
    m = onnx.load(src)
    g = m.graph
    out = g.output[0].name
    for n in g.node:
        for i, o in enumerate(n.output):
            if o == out:
                n.output[i] = "logits_raw"
    g.initializer.extend([numpy_helper.from_array(np.array([size, size], dtype=np.int64), "slow_shape"),
                          numpy_helper.from_array(np.array(0.0, dtype=np.float32), "slow_zero")])
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    g.node.extend([helper.make_node("ConstantOfShape", ["slow_shape"], ["slow_big"], value=one),
                   helper.make_node("MatMul", ["slow_big", "slow_big"], ["slow_prod"]),
                   helper.make_node("ReduceSum", ["slow_prod"], ["slow_total"], keepdims=0),
                   helper.make_node("Mul", ["slow_total", "slow_zero"], ["slow_nothing"]),
                   helper.make_node("Add", ["logits_raw", "slow_nothing"], [out])])
    for e in m.metadata_props:
        if e.key == "name":
            e.value = name
    onnx.checker.check_model(m)
    onnx.save(m, dst)


def main(out):
    torch.manual_seed(0)
    labels = ["background", {"name": "liver", "color": [255, 0, 0]}, {"name": "tumor", "color": [0, 255, 0]}]
    tiny = TwoConv(1)
    with torch.no_grad():
        tiny.c1.weight.zero_()
        tiny.c1.bias.zero_()
        tiny.c1.weight[0, 0] = 1.0          # h0 = relu(x) = x
        tiny.c2.weight.zero_()
        tiny.c2.weight[0, 0] = -8.0         # class 0: 2 - 8x
        tiny.c2.weight[2, 0] = 8.0          # class 2: 8x - 6
        tiny.c2.bias.copy_(torch.tensor([2.0, 0.0, -6.0]))
    export(tiny, f"{out}/tiny.onnx", "tiny", (16, 16, 16), labels)
    export(TwoConv(3), f"{out}/conv.onnx", "conv", (16, 16, 16), labels)
    add_slow_constant_branch(f"{out}/tiny.onnx", f"{out}/slow_load.onnx", "slow_load")
    export(tiny, f"{out}/tiny_b1.onnx", "tiny_b1", (8, 8, 8), labels, dynamic_batch=False, forward_batch_windows=4)


if __name__ == "__main__":
    main(sys.argv[1])
