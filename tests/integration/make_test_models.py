"""Exports the tiny ONNX models the server integration tests use.

Run with Debian's python3 (torch 1.13, onnx):  python3 make_test_models.py OUT_DIR

* tiny.onnx  - 2 Conv3d layers, kernel 1, 3 classes, with hand-set weights: the
  label of a voxel depends only on its windowed intensity x in [0, 1]:
  0 for x < 0.25, 1 for 0.25 < x < 0.75, 2 for x > 0.75. Being voxel-wise it
  gives the same labels whatever the windows, blending, flips or orientation,
  so the tests can check every result exactly.
* conv.onnx  - 2 Conv3d layers, kernel 3, 3 classes, random weights: a model
  whose output depends on neighbourhoods (sliding windows, blending, TTA).
Both carry ITKIT metadata: window_level 0, window_width 2000, labels,
inference_config.
"""
import json
import sys

import onnx
import torch


class TwoConv(torch.nn.Module):
    def __init__(self, k):
        super().__init__()
        self.c1 = torch.nn.Conv3d(1, 4, k, padding=k // 2)
        self.c2 = torch.nn.Conv3d(4, 3, k, padding=k // 2)

    def forward(self, x):
        return self.c2(torch.relu(self.c1(x)))


def export(net, path, name, patch, labels):
    net.eval()
    x = torch.zeros(1, 1, *patch)
    torch.onnx.export(net, x, path, opset_version=17, input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "N", 2: "D", 3: "H", 4: "W"},
                                    "output": {0: "N", 2: "D", 3: "H", 4: "W"}})
    m = onnx.load(path)
    meta = {"name": name, "window_level": "0", "window_width": "2000", "labels": json.dumps(labels),
            "inference_config": json.dumps({"patch_size": list(patch), "patch_stride": [p // 2 for p in patch]}),
            "description": "integration test model"}
    for k, v in meta.items():
        e = m.metadata_props.add()
        e.key, e.value = k, v
    onnx.save(m, path)


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


if __name__ == "__main__":
    main(sys.argv[1])
