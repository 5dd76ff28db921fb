#!/usr/bin/env python3
"""Build the ONNX model zoo used to test the runtime.

Each case is a small 3D (or 2D) segmentation network with random but fixed weights,
exported by torch.onnx.export at opset 17 and written in ONNX's backend-test layout:

    OUT/<case>/model.onnx
    OUT/<case>/test_data_set_0/{input_0,output_0}.pb     reference = PyTorch's output
    OUT/<case>/test_data_set_1/...                      other batch/spatial size (dynamic cases)

Every case is checked against onnxruntime (rtol 1e-4, atol 1e-5) before it is written.

Usage (project venv: Debian torch 1.13 / onnx 1.12 + onnxruntime, monai, einops):
    .venv/bin/python tests/models/make_zoo.py --out build/zoo [--only NAME ...] [--list]
    .venv/bin/python tests/models/make_zoo.py --readme        # refresh the table in README.md
    .venv/bin/python tests/models/make_zoo.py --reference-unet ref.onnx [--patch 128] [--dynamic]
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import time
import warnings
import zlib
from dataclasses import dataclass
from typing import Callable, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

import reference_unet as ru  # noqa: E402
import zoo_nets as zn  # noqa: E402

RTOL, ATOL = 1e-4, 1e-5
OPSET = 17

# Symbolic-dimension names used in dynamic_axes; outputs reuse the input's names where the
# network preserves the size, so the exported graph states that relation.
NCDHW = {0: "N", 2: "D", 3: "H", 4: "W"}
N_ONLY = {0: "N"}


@dataclass
class Case:
    name: str
    desc: str
    build: Callable[[], nn.Module]
    shape0: tuple                       # input shape of test_data_set_0
    shape1: Optional[tuple] = None      # test_data_set_1 (needs dynamic axes)
    in_dyn: Optional[dict] = None       # dynamic_axes of the input
    out_dyn: Optional[dict] = None      # dynamic_axes of the output

    @property
    def seed(self) -> int:  # stable per-case seed, independent of case order / --only
        return zlib.crc32(self.name.encode()) & 0x7FFFFFFF


# --------------------------------------------------------------------------- MONAI nets
def _monai():
    # MONAI 1.3.2 was installed with --no-deps; its import emits unrelated warnings.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import monai.networks.nets as nets
    return nets


def build_segresnet():
    return _monai().SegResNet(spatial_dims=3, init_filters=8, in_channels=1, out_channels=3,
                              norm=("GROUP", {"num_groups": 4}), blocks_down=(1, 2, 2, 4),
                              blocks_up=(1, 1, 1), upsample_mode="nontrainable")


def build_unetr(matmul_attention=False):
    # UNETR in MONAI 1.3 has 12 transformer layers and 16^3 patches (both fixed); hidden 48
    # keeps it tiny. Instance norm made affine so its scale/bias are exercised.
    m = _monai().UNETR(in_channels=1, out_channels=3, img_size=32, feature_size=8, hidden_size=48,
                       mlp_dim=96, num_heads=4, norm_name=("instance", {"affine": True}),
                       res_block=True, dropout_rate=0.0)
    if matmul_attention:
        from monai.networks.blocks.selfattention import SABlock
        for mod in m.modules():
            if isinstance(mod, SABlock):
                mod.forward = _matmul_sablock_forward.__get__(mod)
    return m


def build_swinunetr():
    # Smallest stock 3D SwinUNETR: inputs must be multiples of 2**5, feature_size of 12, so 32^3 /
    # 12 is the floor (~0.73 G MAC, most of it in the full-resolution conv blocks). At 32^3 the
    # bottleneck is 1x1x1, where InstanceNorm raises in PyTorch itself ("Expected more than 1
    # spatial element"), hence GroupNorm(4 groups). normalize=False: with the default True,
    # proj_out's F.layer_norm(x, [ch]) takes ch from x.size(), which torch 1.13 cannot export
    # ("it is not constant"), static or dynamic.
    nets = _monai()
    with warnings.catch_warnings():  # img_size is deprecated from 1.3 but still required in 1.3.2
        warnings.simplefilter("ignore", FutureWarning)
        return nets.SwinUNETR(img_size=32, in_channels=1, out_channels=3, feature_size=12,
                              depths=(2, 2, 2, 2), num_heads=(3, 6, 12, 24),
                              norm_name=("group", {"num_groups": 4}), normalize=False,
                              use_checkpoint=False)


def _matmul_sablock_forward(self, x):
    """Same math as MONAI's SABlock.forward, with einsum replaced by matmul so that the export
    has MatMul instead of Einsum (what a hand-written transformer usually gives)."""
    output = self.input_rearrange(self.qkv(x))
    q, k, v = output[0], output[1], output[2]
    att = (torch.matmul(q, k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
    return self.drop_output(self.out_proj(self.out_rearrange(torch.matmul(att, v))))


# --------------------------------------------------------------------------- case list
def _interp(first, second):
    return lambda: zn.Interp(first, second)


CASES = [
    Case("unet_nnunet", "nnU-Net-style 3D U-Net: (Conv3d-InstanceNorm(affine)-LeakyReLU)x2 per stage, "
         "strided-conv down, ConvTranspose(k2,s2) up, concat skips, 1x1 head; channels 8,16,32,64.",
         lambda: ru.PlainUNet(1, 3, (8, 16, 32, 64), 3), (1, 1, 32, 32, 32), (2, 1, 48, 32, 16),
         NCDHW, NCDHW),
    Case("segresnet", "MONAI SegResNet, init_filters 8, GroupNorm(4 groups)+ReLU residual blocks "
         "(1,2,2,4 down / 1,1,1 up), 1x1 conv + trilinear x2 upsampling (nontrainable).",
         build_segresnet, (1, 1, 32, 32, 32), (1, 1, 16, 32, 48), NCDHW, NCDHW),
    Case("unetr", "MONAI UNETR, img 32, 16^3 patches (8 tokens), hidden 48, 4 heads, MLP 96, 12 layers, "
         "feature_size 8; conv/transposed-conv decoder. MONAI's attention uses einsum -> Einsum.",
         build_unetr, (1, 1, 32, 32, 32), (2, 1, 32, 32, 32), N_ONLY, N_ONLY),
    Case("unetr_matmul", "unetr with MONAI's SABlock einsum replaced by matmul (same weights layout).",
         lambda: build_unetr(matmul_attention=True), (1, 1, 32, 32, 32), None),
    Case("swinunetr", "MONAI SwinUNETR, img 32, 2^3 patches, feature_size 12, depths 2,2,2,2, heads 3,6,12,24; "
         "padded, shifted 7^3 windows in stages 1-2 (torch exports the shift masks as ScatterND/Where "
         "chains), one whole-grid window in stages 3-4; GroupNorm(4) conv decoder (InstanceNorm fails on "
         "the 1^3 bottleneck); normalize=False (see build_swinunetr).",
         build_swinunetr, (1, 1, 32, 32, 32), (2, 1, 32, 32, 32), N_ONLY, N_ONLY),
    Case("mednext", "MedNeXt-style (own definition): depthwise 7^3 conv, GroupNorm(groups=C), 1x1 expand x2, "
         "GELU, 1x1 compress, residual; strided depthwise down blocks, depthwise ConvTranspose up "
         "blocks + Pad, additive skips; channels 8..64. Fully static.",
         lambda: zn.MedNeXt(1, 3, c=8, levels=3), (1, 1, 32, 32, 32), None),
    Case("segformer3d", "SegFormer3D-style (own definition): conv patch embeddings (k7/s4, k3/s2), "
         "efficient attention with spatial-reduction conv (sr 4,2,1,1), Mix-FFN with depthwise "
         "3^3 conv + GELU, LayerNorm; MLP decoder with trilinear resize to stage-1 size, x4 output.",
         lambda: zn.SegFormer3D(), (1, 1, 32, 32, 32), (2, 1, 32, 48, 16), NCDHW, NCDHW),
    Case("unet_bn", "U-Net with (Conv-BN-ReLU)x2, MaxPool3d(2), nearest Upsample(x2)+1x1 conv, concat; "
         "channels 8..64. BN is folded into Conv by torch's export.",
         lambda: zn.UNetBN(), (1, 1, 32, 32, 32), (1, 1, 16, 24, 40),
         {2: "D", 3: "H", 4: "W"}, {2: "D", 3: "H", 4: "W"}),
    Case("unet2d_nnunet", "2D nnU-Net-style U-Net (Conv2d-InstanceNorm2d-LeakyReLU, ConvTranspose2d), "
         "channels 8,16,32.",
         lambda: ru.PlainUNet(1, 3, (8, 16, 32), 2), (1, 1, 64, 64), (2, 1, 48, 80),
         {0: "N", 2: "H", 3: "W"}, {0: "N", 2: "H", 3: "W"}),
    Case("op_groupnorm", "Conv3d + GroupNorm(4 groups, 16 ch): torch emits "
         "Reshape->InstanceNormalization->Reshape->Mul->Add.",
         lambda: zn.OpGroupNorm(), (1, 2, 12, 16, 20), (2, 2, 8, 8, 8), NCDHW, NCDHW),
    Case("op_resenc", "nnU-Net ResEnc blocks (conv-IN-LReLU-conv-IN + skip -> LReLU; identity, 1x1 conv+IN "
         "and strided AvgPool skips), SiLU, 1x1 head: the residual and elementwise fusions' targets.",
         lambda: zn.OpResEnc(), (1, 2, 16, 16, 16), (2, 2, 8, 12, 16), NCDHW, NCDHW),
    Case("op_layernorm_decomposed", "Conv3d + hand-written channels-first LayerNorm "
         "(ReduceMean/Sub/Pow/Add/Sqrt/Div).",
         lambda: zn.OpLayerNormDecomposed(), (1, 2, 16, 16, 16), None),
    Case("op_convtranspose_outpad", "ConvTranspose3d k3/s2/p1 output_padding 1; stride (2,2,1) "
         "output_padding (1,1,0); kernel (2,1,2) stride (2,1,2) no bias.",
         lambda: zn.OpConvTransposeOutPad(), (1, 2, 6, 7, 8), None),
    Case("op_conv_groups_dilation", "Conv3d groups=4 dilation 2; depthwise dilation (1,3,2); "
         "anisotropic kernel (1,3,5) stride (1,2,2) groups 2.",
         lambda: zn.OpConvGroupsDilation(), (1, 4, 16, 16, 16), None),
    Case("op_batchnorm", "BatchNorm3d where it cannot be folded (on the input, after MaxPool, after a "
         "residual add with AveragePool), so BatchNormalization survives.",
         lambda: zn.OpBatchNorm(), (1, 2, 16, 16, 16), (3, 2, 8, 12, 16), NCDHW, NCDHW),
    Case("op_resize_trilinear_ac", "trilinear align_corners=True: scale_factor 2, then explicit "
         "size (13,21,9).",
         _interp(dict(scale_factor=2.0, mode="trilinear", align_corners=True),
                 dict(size=(13, 21, 9), mode="trilinear", align_corners=True)), (1, 2, 8, 10, 12), None),
    Case("op_resize_trilinear_hp", "trilinear align_corners=False (exported as half_pixel): scale_factor 1.5, "
         "then explicit size (13,21,9).",
         _interp(dict(scale_factor=1.5, mode="trilinear", align_corners=False),
                 dict(size=(13, 21, 9), mode="trilinear", align_corners=False)),
         (1, 2, 8, 10, 12), (2, 2, 6, 9, 11), NCDHW, N_ONLY),
    Case("op_resize_nearest_scale", "nearest with scale_factor 2, then per-axis scale (2, 1, 0.5).",
         _interp(dict(scale_factor=2.0, mode="nearest"), dict(scale_factor=(2.0, 1.0, 0.5), mode="nearest")),
         (1, 2, 6, 8, 10), (2, 2, 4, 6, 12), NCDHW, N_ONLY),
    Case("op_resize_nearest_size", "nearest with explicit sizes (24,20,9) then (12,30,27).",
         _interp(dict(size=(24, 20, 9), mode="nearest"), dict(size=(12, 30, 27), mode="nearest")),
         (1, 2, 16, 16, 16), None),
    Case("op_softmax", "Conv3d + Softmax over channels (axis 1).",
         lambda: zn.OpSoftmax(), (1, 2, 16, 16, 16), (2, 2, 8, 12, 10), NCDHW, NCDHW),
    Case("op_argmax", "Conv3d + torch.argmax over channels: ArgMax keepdims=0, int64 output (N,D,H,W).",
         lambda: zn.OpArgmax(), (1, 2, 16, 16, 16), (2, 2, 12, 8, 10), NCDHW,
         {0: "N", 1: "D", 2: "H", 3: "W"}),
]
# Output dims are named only where they equal an input dim; torch names the others itself
# (e.g. 'Resizeoutput_dim_2'), which is what real exports look like.


# --------------------------------------------------------------------------- helpers
def build_model(case: Case) -> nn.Module:
    torch.manual_seed(case.seed)
    model = case.build()
    ru.randomize_norms(model, torch.Generator().manual_seed(case.seed + 1))
    return model.eval()


def make_input(case: Case, shape: tuple, k: int) -> np.ndarray:
    # numpy's legacy RandomState is stable across versions; standard normal is never all-zero.
    return np.random.RandomState(case.seed + 100 + k).standard_normal(shape).astype(np.float32)


def count_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of Conv/ConvTranspose/Linear (attention matmuls ignored: tiny here)."""
    total = [0]

    def hook(m, inp, out):
        if isinstance(m, nn.modules.conv._ConvNd):
            k = int(np.prod(m.kernel_size)) * (m.in_channels // m.groups)
            if m.transposed:
                total[0] += inp[0].numel() * k * m.out_channels // m.in_channels
            else:
                total[0] += out.numel() * k
        elif isinstance(m, nn.Linear):
            total[0] += out.numel() * m.in_features

    hs = [m.register_forward_hook(hook) for m in model.modules()
          if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    with torch.no_grad():
        model(x)
    for h in hs:
        h.remove()
    return total[0]


def export(model: nn.Module, case: Case, x: torch.Tensor) -> bytes:
    dyn = None
    if case.in_dyn:
        dyn = {"input": case.in_dyn, "output": case.out_dyn or {}}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # shape-inference / tracer warnings from torch 1.13 are noise for these graphs
        warnings.simplefilter("ignore")
        torch.onnx.export(model, x, buf, opset_version=OPSET, input_names=["input"],
                          output_names=["output"], dynamic_axes=dyn, do_constant_folding=True)
    return buf.getvalue()


def compare(got: np.ndarray, ref: np.ndarray) -> dict:
    if got.shape != ref.shape or got.dtype != ref.dtype:
        return dict(ok=False, abs=float("inf"), rel=float("inf"), worst=float("inf"),
                    why=f"shape/dtype {got.shape}/{got.dtype} vs {ref.shape}/{ref.dtype}")
    if not np.issubdtype(ref.dtype, np.floating):
        bad = int((got != ref).sum())
        return dict(ok=bad == 0, abs=float(bad), rel=0.0, worst=float(bad), why=f"{bad} mismatches")
    d = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    r = np.abs(ref.astype(np.float64))
    big = r > 1e-3  # relative error only where it means something
    return dict(ok=bool(np.all(d <= ATOL + RTOL * r)), abs=float(d.max()),
                rel=float((d[big] / r[big]).max()) if big.any() else 0.0,
                worst=float((d / (ATOL + RTOL * r)).max()), why="")


def op_types(model_bytes: bytes) -> list:
    import onnx
    m = onnx.load_from_string(model_bytes)
    ops = {n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}" for n in m.graph.node}
    return sorted(ops)


def write_tensor(path: str, arr: np.ndarray, name: str) -> None:
    from onnx import numpy_helper
    with open(path, "wb") as f:
        f.write(numpy_helper.from_array(arr, name).SerializeToString())


def run_case(case: Case, out_dir: Optional[str]) -> dict:
    import onnx
    import onnxruntime as ort

    t0 = time.time()
    model = build_model(case)
    shapes = [case.shape0] + ([case.shape1] if case.shape1 else [])
    inputs = [make_input(case, s, k) for k, s in enumerate(shapes)]
    x0 = torch.from_numpy(inputs[0])
    model_bytes = export(model, case, x0)
    onnx.checker.check_model(onnx.load_from_string(model_bytes))
    with torch.no_grad():
        refs = [model(torch.from_numpy(x)).numpy() for x in inputs]

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
    results = [compare(sess.run(None, {"input": x})[0], r) for x, r in zip(inputs, refs)]

    if out_dir:
        cdir = os.path.join(out_dir, case.name)
        shutil.rmtree(cdir, ignore_errors=True)
        os.makedirs(cdir)
        with open(os.path.join(cdir, "model.onnx"), "wb") as f:
            f.write(model_bytes)
        for k, (x, r) in enumerate(zip(inputs, refs)):
            d = os.path.join(cdir, f"test_data_set_{k}")
            os.makedirs(d)
            write_tensor(os.path.join(d, "input_0.pb"), x, "input")
            write_tensor(os.path.join(d, "output_0.pb"), r, "output")

    return dict(case=case, params=sum(p.numel() for p in model.parameters()),
                mmac=count_macs(model, x0) / 1e6, shapes=shapes, out_shapes=[r.shape for r in refs],
                out_dtype=str(refs[0].dtype), results=results, ops=op_types(model_bytes),
                seconds=time.time() - t0, size_kb=len(model_bytes) / 1024)


# --------------------------------------------------------------------------- reporting
def fmt_shape(s) -> str:
    return "x".join(str(v) for v in s)


def print_table(rows: list) -> bool:
    print(f"\n{'case':26s} {'params':>8s} {'MMAC':>7s} {'set':>3s} {'input':>14s} {'output':>14s} "
          f"{'max_abs':>9s} {'max_rel':>9s} {'worst/tol':>9s} {'ok':>4s} {'sec':>5s}")
    all_ok = True
    for row in rows:
        for k, res in enumerate(row["results"]):
            all_ok &= res["ok"]
            print(f"{row['case'].name if k == 0 else '':26s} "
                  f"{row['params'] if k == 0 else '':>8} {('%.1f' % row['mmac']) if k == 0 else '':>7s} "
                  f"{k:>3d} {fmt_shape(row['shapes'][k]):>14s} {fmt_shape(row['out_shapes'][k]):>14s} "
                  f"{res['abs']:9.2e} {res['rel']:9.2e} {res['worst']:9.3f} {'yes' if res['ok'] else 'NO':>4s} "
                  f"{('%.1f' % row['seconds']) if k == 0 else '':>5s} {res['why']}")
    print("\nONNX op types per case:")
    for row in rows:
        print(f"  {row['case'].name:26s} {' '.join(row['ops'])}")
    union = sorted({o for row in rows for o in row["ops"]})
    print(f"\nall op types ({len(union)}): {' '.join(union)}")
    return all_ok


def markdown(rows: list) -> str:
    lines = ["| case | dynamic | set 0 input -> output | set 1 input | params | MMAC | ONNX op types |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        c = row["case"]
        dyn = "static" if not c.in_dyn else ",".join(str(v) for v in c.in_dyn.values())
        s1 = fmt_shape(row["shapes"][1]) if len(row["shapes"]) > 1 else "-"
        io_ = f"{fmt_shape(row['shapes'][0])} -> {fmt_shape(row['out_shapes'][0])}"
        if row["out_dtype"] != "float32":
            io_ += f" ({row['out_dtype']})"
        lines.append(f"| `{c.name}` | {dyn} | {io_} | {s1} | {row['params']:,} | {row['mmac']:.1f} | "
                     f"{', '.join(row['ops'])} |")
    lines += ["", "| case | description |", "|---|---|"]
    lines += [f"| `{row['case'].name}` | {row['case'].desc} |" for row in rows]
    union = sorted({o for row in rows for o in row["ops"]})
    lines += ["", f"All op types used by the zoo ({len(union)}): " + ", ".join(f"`{o}`" for o in union)]
    return "\n".join(lines)


def update_readme(rows: list) -> None:
    path = os.path.join(HERE, "README.md")
    begin, end = "<!-- zoo-table:begin -->", "<!-- zoo-table:end -->"
    text = open(path).read()
    i, j = text.index(begin) + len(begin), text.index(end)
    with open(path, "w") as f:
        f.write(text[:i] + "\n" + markdown(rows) + "\n" + text[j:])
    print(f"updated {path}")


# --------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Generate the ONNX model zoo (see module docstring).")
    ap.add_argument("--out", help="output directory for the test cases")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="only these cases")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--readme", action="store_true", help="rewrite the case table in README.md")
    ap.add_argument("--reference-unet", metavar="OUT.onnx", help="export the 31.2 M benchmark U-Net")
    ru.add_cli(ap)
    a = ap.parse_args(argv)

    if a.list:
        for c in CASES:
            print(f"{c.name:26s} {'dynamic' if c.in_dyn else 'static ':7s} {c.desc}")
        return 0
    if a.reference_unet:
        ru.export_reference_unet(a.reference_unet, a.patch, a.dynamic, a.with_output)
        if not a.out and not a.readme:
            return 0
    if not a.out and not a.readme:
        ap.error("--out DIR (or --list / --readme / --reference-unet) is required")

    # Determinism: one thread, deterministic kernels, fixed per-case seeds.
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True, warn_only=True)
    cases = CASES
    if a.only:
        unknown = set(a.only) - {c.name for c in CASES}
        if unknown:
            ap.error(f"unknown case(s): {', '.join(sorted(unknown))}")
        cases = [c for c in CASES if c.name in a.only]

    t0 = time.time()
    if a.out:
        os.makedirs(a.out, exist_ok=True)
    rows = []
    for c in cases:
        rows.append(run_case(c, a.out))
        print(f"  {c.name:26s} done in {rows[-1]['seconds']:.1f} s", flush=True)
    ok = print_table(rows)
    if a.readme:
        update_readme(rows)
    print(f"\n{len(rows)} cases in {time.time() - t0:.1f} s -> {a.out or '(not written)'}; "
          f"ORT vs torch (rtol {RTOL}, atol {ATOL}): {'all match' if ok else 'MISMATCH'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
