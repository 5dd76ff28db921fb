#!/usr/bin/env python3
"""Export a PyTorch segmentation network to ONNX with the metadata ITKIT Server reads.

The metadata keys and their string forms are specified in docs/model-metadata.md; this
tool writes them into the ONNX `metadata_props` and, with --sidecar, into NAME.yaml next
to the .onnx (same keys, as YAML values).

Model sources:
  --module path/to/file.py:factory   any callable returning a torch.nn.Module (a class or
                                     a function); --kwargs '{"in_channels":1}' is passed to it,
                                     --checkpoint ckpt.pth loads a state_dict afterwards.
  --mmengine-config cfg.py --checkpoint ckpt.pth
                                     an MMEngine / ITKIT config: the model is built with
                                     mmengine's MODELS registry and `model.backbone` is
                                     exported, as ITKIT's MMEngine inference backend runs it.
                                     Needs `pip install mmengine` (and the packages the
                                     config imports, e.g. itkit).

Example:
  .venv/bin/python tools/export_onnx.py --module mynet.py:UNet --kwargs '{"classes":4}' \
      --checkpoint best.pth --out models/mynet.onnx --name mynet \
      --patch-size 96 96 96 --patch-stride 48 48 48 --window-level 40 --window-width 400 \
      --labels background,liver,spleen --dynamic --sidecar

After exporting, the ONNX is run with onnxruntime (when installed) on a random input and
compared with the PyTorch output (rtol 1e-3); the exit status is 1 when they disagree.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys

import numpy as np
import torch

# Fallback colours for labels given without one (index 0 = background stays black).
_PALETTE = [(0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200),
            (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60),
            (250, 190, 212), (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200),
            (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128)]
NORMALIZATION_MODES = ("window", "ct", "zscore")


def default_color(index: int) -> list:
    if index < len(_PALETTE):
        return list(_PALETTE[index])
    # Deterministic pseudo-random colour for large label sets.
    rng = np.random.default_rng(index)
    return [int(v) for v in rng.integers(40, 256, size=3)]


# ---------------------------------------------------------------------------- metadata

def _num(v):
    """Keep integral values integral (ITKIT parses window_level with int())."""
    f = float(v)
    return int(f) if f.is_integer() else f


def parse_labels(spec, with_colors: bool = True) -> list:
    """Labels from comma-separated names, a list, or a .yaml/.yml/.json file.

    A file may hold a list (names or {name, color}) or a mapping with a `labels` list.
    Entries without a colour get one from the palette when with_colors is set."""
    if spec is None:
        return None
    if isinstance(spec, str):
        if os.path.isfile(spec):
            with open(spec, encoding="utf-8") as f:
                if spec.lower().endswith((".yaml", ".yml")):
                    import yaml
                    data = yaml.safe_load(f)
                else:
                    data = json.load(f)
            if isinstance(data, dict):
                data = data.get("labels")
            if not isinstance(data, list):
                raise ValueError(f"{spec}: expected a list of labels or a mapping with 'labels'")
            spec = data
        else:
            spec = [s.strip() for s in spec.split(",") if s.strip()]
    out = []
    for i, entry in enumerate(spec):
        if isinstance(entry, str):
            out.append({"name": entry, "color": default_color(i)} if with_colors else entry)
        elif isinstance(entry, dict) and "name" in entry:
            color = entry.get("color")
            if color is None and with_colors:
                color = default_color(i)
            if color is not None:
                if len(color) != 3 or not all(0 <= int(c) <= 255 for c in color):
                    raise ValueError(f"label {entry['name']!r}: color must be [r,g,b] in 0..255")
                out.append({"name": str(entry["name"]), "color": [int(c) for c in color]})
            else:
                out.append(str(entry["name"]))
        else:
            raise ValueError(f"label {i}: expected a name or {{name, color}}, got {entry!r}")
    return out


def build_metadata(name=None, description=None, patch_size=None, patch_stride=None,
                   forward_batch_windows=None, blend=None, window_level=None, window_width=None,
                   normalization=None, labels=None, spacing=None, resample_to_spacing=None,
                   orientation=None, inference_config=None) -> dict:
    """Structured metadata (Python values); None entries are left out.

    inference_config: extra ITKIT inference keys merged under the explicit ones."""
    meta = {}
    if name:
        meta["name"] = str(name)
    if description:
        meta["description"] = str(description)
    icfg = dict(inference_config or {})
    if patch_size is not None:
        icfg["patch_size"] = [int(v) for v in patch_size]
    if patch_stride is not None:
        icfg["patch_stride"] = [int(v) for v in patch_stride]
    elif "patch_size" in icfg and "patch_stride" not in icfg:
        icfg["patch_stride"] = [max(1, int(v) // 2) for v in icfg["patch_size"]]  # ITKIT's default
    if forward_batch_windows is not None:
        icfg["forward_batch_windows"] = int(forward_batch_windows)
    if blend is not None:
        if blend not in ("constant", "gaussian"):
            raise ValueError("blend must be 'constant' or 'gaussian'")
        icfg["blend"] = blend
    for key in ("patch_size", "patch_stride"):
        if key in icfg and len(icfg[key]) != 3:
            raise ValueError(f"{key} must have 3 values [z,y,x], got {icfg[key]}")
    if icfg:
        meta["inference_config"] = icfg
    if (window_level is None) != (window_width is None):
        raise ValueError("window_level and window_width go together")
    if window_level is not None:
        if float(window_width) <= 0:
            raise ValueError("window_width must be > 0")
        meta["window_level"] = _num(window_level)
        meta["window_width"] = _num(window_width)
    if normalization is not None:
        if isinstance(normalization, str):
            normalization = json.loads(normalization)
        if not isinstance(normalization, dict) or normalization.get("mode") not in NORMALIZATION_MODES:
            raise ValueError(f"normalization must be an object with mode in {NORMALIZATION_MODES}")
        if normalization["mode"] == "window" and "window_level" not in meta:
            raise ValueError("normalization mode 'window' needs window_level/window_width")
        meta["normalization"] = normalization
    if labels is not None:
        meta["labels"] = parse_labels(labels)
    if spacing is not None:
        if len(spacing) != 3 or any(float(s) <= 0 for s in spacing):
            raise ValueError("spacing must be 3 positive values [x,y,z] mm")
        meta["spacing"] = [float(s) for s in spacing]
    if resample_to_spacing is not None:
        if resample_to_spacing and "spacing" not in meta:
            raise ValueError("resample_to_spacing needs spacing")
        meta["resample_to_spacing"] = bool(resample_to_spacing)
    if orientation is not None:
        o = str(orientation).upper()
        axes = [{"L": 0, "R": 0, "P": 1, "A": 1, "I": 2, "S": 2}.get(c) for c in o]
        if len(o) != 3 or None in axes or sorted(axes) != [0, 1, 2]:
            raise ValueError(f"orientation {orientation!r} is not a DICOMOrient code like LPI")
        meta["orientation"] = o
    return meta


def metadata_to_props(meta: dict) -> dict:
    """ONNX string forms: JSON for objects/lists, plain text for numbers and strings,
    "true"/"false" for booleans (docs/model-metadata.md)."""
    props = {}
    for key, value in meta.items():
        if isinstance(value, bool):
            props[key] = "true" if value else "false"
        elif isinstance(value, (dict, list)):
            props[key] = json.dumps(value, separators=(",", ":"))
        else:
            props[key] = str(value)
    return props


def write_metadata(onnx_path: str, meta: dict) -> None:
    """Replace (or add) the metadata keys in an ONNX file, keeping other keys."""
    import onnx
    model = onnx.load(onnx_path)
    props = metadata_to_props(meta)
    keep = [(p.key, p.value) for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    for k, v in keep + list(props.items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(model, onnx_path)


def write_sidecar(yaml_path: str, meta: dict) -> None:
    import yaml
    with open(yaml_path, "w", encoding="utf-8") as f:
        f.write("# ITKIT Server model metadata (docs/model-metadata.md); overrides the ONNX metadata.\n")
        # Short lists (patch sizes, colours) inline, mappings in block style.
        yaml.safe_dump(meta, f, sort_keys=False, default_flow_style=None, allow_unicode=True)


def sidecar_path(onnx_path: str) -> str:
    return os.path.splitext(onnx_path)[0] + ".yaml"


# ---------------------------------------------------------------------------- export

def export_module(model, onnx_path: str, input_shape, opset: int = 17, dynamic: bool = False,
                  input_name: str = "input", output_name: str = "logits"):
    """torch.onnx.export in eval mode; returns the example input used."""
    model.eval()
    x = torch.rand(*input_shape)  # [0,1): the range windowed CT has
    dynamic_axes = None
    if dynamic:
        names = {0: "N"}
        spatial = ["Z", "Y", "X"][-(len(input_shape) - 2):] if len(input_shape) > 2 else []
        names.update({2 + i: n for i, n in enumerate(spatial)})
        dynamic_axes = {input_name: names, output_name: dict(names)}
    os.makedirs(os.path.dirname(os.path.abspath(onnx_path)), exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(model, x, onnx_path, opset_version=opset, input_names=[input_name],
                          output_names=[output_name], dynamic_axes=dynamic_axes,
                          do_constant_folding=True)
    import onnx
    onnx.checker.check_model(onnx.load(onnx_path))
    return x


def fold_constants(onnx_path: str) -> None:
    """Fold constant subgraphs with onnxruntime's basic (ONNX-op-only) optimizations.

    torch 1.13 exports e.g. replicate padding as a Shape/Slice/Reshape/... chain that
    computes constant pads; folded, it is a single Pad with a constant pads initializer,
    which is what a small runtime wants to see. Metadata and opset imports are kept."""
    import tempfile

    import onnx
    import onnxruntime as ort
    original = onnx.load(onnx_path)
    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.optimized_model_filepath = os.path.join(tmp, "folded.onnx")
        ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
        folded = onnx.load(so.optimized_model_filepath)
    foreign = {n.domain for n in folded.graph.node} - {d.domain for d in original.opset_import}
    if foreign:
        raise RuntimeError(f"constant folding introduced operator domains {foreign}")
    del folded.opset_import[:]
    folded.opset_import.extend(original.opset_import)  # ORT lists all its domains
    folded.ir_version = original.ir_version
    folded.producer_name, folded.producer_version = original.producer_name, original.producer_version
    del folded.metadata_props[:]
    folded.metadata_props.extend(original.metadata_props)
    onnx.checker.check_model(folded)
    onnx.save(folded, onnx_path)


def verify_with_ort(model, onnx_path: str, x, rtol: float = 1e-3, atol: float = 1e-4):
    """Runs torch and onnxruntime on x. Returns (ok, max_abs_diff) or (None, None) without ORT."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None, None
    with torch.no_grad():
        ref = _first_tensor(model(x)).numpy()
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    if out.shape != ref.shape:
        return False, float("inf")
    return bool(np.allclose(out, ref, rtol=rtol, atol=atol)), float(np.abs(out - ref).max())


def _first_tensor(out):
    """Networks with deep supervision return lists; the full-resolution output comes first."""
    while isinstance(out, (list, tuple)):
        out = out[0]
    if isinstance(out, dict):
        out = next(iter(out.values()))
    return out


class FirstOutput(torch.nn.Module):
    """Wraps a module so the exported graph has exactly one output."""

    def __init__(self, module):
        super().__init__()
        self.inner = module

    def forward(self, x):
        return _first_tensor(self.inner(x))


def load_state(model, checkpoint: str, strict: bool = True):
    ckpt = torch.load(checkpoint, map_location="cpu")
    state = ckpt
    for key in ("state_dict", "model", "network_weights"):  # MMEngine, common, nnU-Net
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
            break
    state = {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=strict)
    if missing or unexpected:
        print(f"checkpoint: {len(missing)} missing, {len(unexpected)} unexpected keys", file=sys.stderr)
    return model


def load_module(spec: str, kwargs: dict):
    """'file.py:attr' or 'package.module:attr' -> attr(**kwargs)."""
    if ":" not in spec:
        raise ValueError("--module must be FILE.py:NAME or MODULE:NAME")
    where, attr = spec.rsplit(":", 1)
    if where.endswith(".py"):
        path = os.path.abspath(where)
        sys.path.insert(0, os.path.dirname(path))  # lets the file import its neighbours
        mspec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
        mod = importlib.util.module_from_spec(mspec)
        mspec.loader.exec_module(mod)
    else:
        mod = importlib.import_module(where)
    factory = getattr(mod, attr)
    return factory(**kwargs)


def load_mmengine(config: str, checkpoint: str):
    """Build an MMEngine/ITKIT model; returns (backbone, config-derived metadata defaults)."""
    try:
        from mmengine.config import Config
        from mmengine.registry import MODELS
        from mmengine.runner import load_checkpoint
    except ImportError:
        raise SystemExit("export_onnx: --mmengine-config needs MMEngine: `pip install mmengine` "
                         "(plus the packages the config imports, e.g. `pip install itkit`).")
    cfg = Config.fromfile(config)
    if cfg.get("default_scope"):
        from mmengine.registry import init_default_scope
        init_default_scope(cfg.default_scope)
    model = MODELS.build(cfg.model)
    load_checkpoint(model, checkpoint, map_location="cpu")
    # ITKIT's MMEngineInferBackend runs model.backbone on the windowed patch.
    net = getattr(model, "backbone", model)
    defaults = {}
    icfg = cfg.model.get("inference_config") if hasattr(cfg.model, "get") else None
    if icfg:
        defaults["inference_config"] = {k: (list(v) if isinstance(v, (tuple, list)) else v)
                                        for k, v in dict(icfg).items() if v is not None}
    if cfg.get("wl") is not None and cfg.get("ww") is not None:
        defaults["window_level"], defaults["window_width"] = cfg.wl, cfg.ww
    return net, defaults


# ---------------------------------------------------------------------------- CLI

def _parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--module", help="FILE.py:NAME or package.module:NAME returning an nn.Module")
    src.add_argument("--mmengine-config", help="MMEngine/ITKIT config .py (needs --checkpoint)")
    p.add_argument("--checkpoint", help="state_dict / MMEngine checkpoint (.pth)")
    p.add_argument("--kwargs", default="{}", help="JSON object passed to the --module factory")
    p.add_argument("--non-strict", action="store_true", help="load_state_dict(strict=False)")
    p.add_argument("--out", required=True, help="output .onnx path")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--dynamic", action="store_true", help="symbolic N and spatial dims")
    p.add_argument("--in-channels", type=int, default=1)
    p.add_argument("--input-shape", type=int, nargs="+",
                   help="full example input shape N C [Z] Y X (default: 1 C patch-size)")
    p.add_argument("--sidecar", action="store_true", help="also write NAME.yaml next to the .onnx")
    p.add_argument("--fold-constants", action="store_true",
                   help="fold constant subgraphs with onnxruntime (basic level, ONNX ops only)")
    p.add_argument("--no-verify", action="store_true", help="skip the onnxruntime comparison")
    m = p.add_argument_group("metadata (docs/model-metadata.md)")
    m.add_argument("--name")
    m.add_argument("--description")
    m.add_argument("--patch-size", type=int, nargs=3, metavar=("Z", "Y", "X"))
    m.add_argument("--patch-stride", type=int, nargs=3, metavar=("Z", "Y", "X"))
    m.add_argument("--forward-batch-windows", type=int)
    m.add_argument("--blend", choices=("constant", "gaussian"))
    m.add_argument("--window-level", type=float)
    m.add_argument("--window-width", type=float)
    m.add_argument("--normalization", help='JSON, e.g. {"mode":"ct","clip":[-1000,1000],"mean":0,"std":1}')
    m.add_argument("--labels", help="comma-separated names, or a .yaml/.json file (names or {name,color})")
    m.add_argument("--spacing", type=float, nargs=3, metavar=("X", "Y", "Z"), help="training spacing, mm")
    m.add_argument("--resample-to-spacing", action="store_true")
    m.add_argument("--orientation", help="DICOMOrient code the network expects (server default LPI)")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.mmengine_config:
        if not args.checkpoint:
            raise SystemExit("export_onnx: --mmengine-config needs --checkpoint")
        net, defaults = load_mmengine(args.mmengine_config, args.checkpoint)
    else:
        net = load_module(args.module, json.loads(args.kwargs))
        if not isinstance(net, torch.nn.Module):
            raise SystemExit(f"export_onnx: {args.module} returned {type(net).__name__}, not an nn.Module")
        if args.checkpoint:
            load_state(net, args.checkpoint, strict=not args.non_strict)
        defaults = {}
    net = FirstOutput(net).eval()

    icfg = defaults.get("inference_config", {})
    wl = args.window_level if args.window_level is not None else defaults.get("window_level")
    ww = args.window_width if args.window_width is not None else defaults.get("window_width")
    meta = build_metadata(
        name=args.name or os.path.splitext(os.path.basename(args.out))[0],
        description=args.description, patch_size=args.patch_size, patch_stride=args.patch_stride,
        forward_batch_windows=args.forward_batch_windows, blend=args.blend,
        window_level=wl, window_width=ww, normalization=args.normalization, labels=args.labels,
        spacing=args.spacing, resample_to_spacing=True if args.resample_to_spacing else None,
        orientation=args.orientation, inference_config=icfg)

    shape = args.input_shape
    if shape is None:
        patch = meta.get("inference_config", {}).get("patch_size")
        if patch is None:
            raise SystemExit("export_onnx: give --patch-size (or --input-shape) for the example input")
        shape = [1, args.in_channels] + list(patch)
    x = export_module(net, args.out, shape, opset=args.opset, dynamic=args.dynamic)
    if args.fold_constants:
        fold_constants(args.out)
    write_metadata(args.out, meta)
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB, opset {args.opset}, "
          f"input {shape}{', dynamic' if args.dynamic else ''})")
    for k, v in metadata_to_props(meta).items():
        print(f"  {k} = {v}")
    if args.sidecar:
        write_sidecar(sidecar_path(args.out), meta)
        print(f"wrote {sidecar_path(args.out)}")
    if args.no_verify:
        return 0
    inputs = [x]
    if args.dynamic:  # a second batch size proves the symbolic N axis works
        inputs.append(torch.rand(2, *x.shape[1:]))
    all_ok = True
    for xi in inputs:
        ok, diff = verify_with_ort(net, args.out, xi)
        if ok is None:
            print("verify: onnxruntime not installed, skipped")
            return 0
        print(f"verify: input {list(xi.shape)}: onnxruntime vs torch max |diff| = {diff:.3g} "
              f"-> {'OK' if ok else 'MISMATCH'}")
        all_ok &= ok
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
