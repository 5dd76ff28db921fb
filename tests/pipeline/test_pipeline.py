"""itkit_infer against the Python reference (reference_segment.py).

Agreement = fraction of voxels with the same label; the bar is 99.9 % (constant
mode, FP32). Cases: phantoms in LPS/RAS/LSA/oblique orientations with anisotropic
spacing, volumes smaller than the patch, real images nobody here made (ITK's Kmeans
T1, the Colin27 brain from mricron-data, a pydicom CT series), Gaussian blending,
the other normalisations, resampling; plus outputs (.seg.nrrd, statistics,
probabilities, 16-bit labels) and errors (bad headers, 4D mismatch, missing window,
batch failures).

Tests that run a real ONNX network need the CPU kernels; while an op is still
missing they are skipped with the runtime's message. The --identity-network tests
(a built-in network mirrored in the reference) always run.
"""
from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess

import numpy as np
import pytest
import SimpleITK as sitk

from pipeline_fixtures import (agreement, direction_from_code, make_net, make_phantom, make_pointwise_net,
                               rotation, same_geometry)
from reference_segment import OrtNetwork, SyntheticNetwork, read_metadata, reference_segment

KMEANS = "/usr/share/doc/insighttoolkit5-examples/examples/Data/KmeansTest_T1UCharRaw.nii.gz"
CH2 = "/usr/share/mricron/templates/ch2.nii.gz"
CH2BETTER = "/usr/share/mricron/templates/ch2better.nii.gz"
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEMO_MODEL = os.path.join(REPO, "models", "demo_ct_body.onnx")
DEMO_CT = os.path.join(REPO, "models", "sample", "sample_ct.nii.gz")
DEMO_TRUTH = os.path.join(REPO, "models", "sample", "sample_ct_labels.nii.gz")
DICOM_CT = "/usr/lib/python3/dist-packages/pydicom/data/test_files/dicomdirtests/98892001/CT5N"
THRESHOLD = 0.999
WINDOW = {"window_level": 0, "window_width": 2000}


def run(exe, *args, check=True):
    p = subprocess.run([exe, *[str(a) for a in args], "--quiet"], capture_output=True, text=True, timeout=600)
    if check and p.returncode != 0:
        raise AssertionError(f"itkit_infer failed ({p.returncode}):\n{p.stderr}")
    return p


def report(case, value):
    print(f"AGREEMENT {case}: {100 * value:.4f} %")


@pytest.fixture(scope="session")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("pipeline")


@pytest.fixture(scope="session")
def nets(work):
    d = {}
    d["conv"] = make_net(str(work / "conv.onnx"), metadata={**WINDOW, "inference_config": {"patch_size": [24, 24, 24]},
                                                            "labels": ["background", "a", {"name": "b", "color": [10, 200, 30]}]})
    d["static"] = make_net(str(work / "static.onnx"), static_shape=(1, 1, 16, 16, 16), metadata=WINDOW, seed=1)
    d["brain"] = make_net(str(work / "brain.onnx"), hidden=2, metadata={"window_level": 100, "window_width": 200}, seed=2)
    d["ct"] = make_net(str(work / "ct.onnx"), seed=3, metadata={
        "normalization": {"mode": "ct", "clip": [-500, 800], "mean": 100.0, "std": 300.0},
        "inference_config": {"patch_size": [16, 16, 16], "patch_stride": [12, 12, 12]}})
    d["zscore"] = make_net(str(work / "zscore.onnx"), seed=4, metadata={"normalization": {"mode": "zscore"}})
    d["resample"] = make_net(str(work / "resample.onnx"), seed=5, metadata={
        **WINDOW, "spacing": [1.4, 1.1, 3.3], "resample_to_spacing": "true", "inference_config": {"patch_size": [16, 16, 16]}})
    d["resample_logits"] = make_net(str(work / "resample_logits.onnx"), seed=8, metadata={
        **WINDOW, "spacing": [0.9, 1.7, 1.5], "resample_to_spacing": True, "resample_back": "logits",
        "inference_config": {"patch_size": [16, 16, 16]}})
    d["two_channel"] = make_net(str(work / "two.onnx"), channels=2, seed=6, metadata=WINDOW)
    d["many"] = make_pointwise_net(str(work / "many.onnx"), 300, metadata=WINDOW)
    return d


@pytest.fixture(scope="session")
def runtime_ready(itkit_infer, nets, work):
    """Skips network tests (with the reason) until the runtime runs the test nets."""
    img = str(work / "probe.nii.gz")
    make_phantom(img, (20, 20, 20))
    p = run(itkit_infer, "--model", nets["conv"], "--input", img, "--output", work / "probe_out.nii.gz", check=False)
    if p.returncode != 0:
        msg = p.stderr.strip().splitlines()[-3:] if p.stderr else ["?"]
        if any(s in p.stderr.lower() for s in ("unsupported", "not implemented", "no kernel")):
            pytest.skip("runtime cannot run the test network yet: " + " / ".join(msg))
        raise AssertionError(p.stderr)
    return True


def compare(itkit_infer, net_path, image, out, *, cli=(), threshold=THRESHOLD, case="", **ref):
    run(itkit_infer, "--model", net_path, "--input", image, "--output", out, *cli)
    ours = sitk.ReadImage(str(out))
    expected, _ = reference_segment(str(image), OrtNetwork(net_path), read_metadata(net_path), **ref)
    assert same_geometry(ours, expected), (ours.GetOrigin(), expected.GetOrigin(), ours.GetDirection())
    # A network that gives one label everywhere would agree with anything.
    counts = np.bincount(sitk.GetArrayViewFromImage(ours).ravel())
    assert (counts >= 0.01 * counts.sum()).sum() >= 2, f"degenerate labels {counts}"
    a = agreement(ours, expected)
    report(case or os.path.basename(str(image)), a)
    assert a >= threshold
    return ours, expected


# ------------------------------------------------------------------ geometry (no runtime needed)

ORIENTATIONS = [("LPS", None), ("RAS", None), ("LSA", None), ("PIR", None),
                ("oblique", rotation(0.3, -0.5, 0.8)), ("oblique45", rotation(0.0, 0.0, np.pi / 4)),
                ("oblique_lsa", direction_from_code("LSA") @ rotation(0.2, 0.35, -0.1))]


@pytest.mark.parametrize("name,direction", ORIENTATIONS, ids=[o[0] for o in ORIENTATIONS])
def test_identity_network_geometry(itkit_infer, work, name, direction):
    d = direction_from_code(name) if direction is None else direction
    img = work / f"geo_{name}.nii.gz"
    make_phantom(str(img), (37, 29, 21), spacing=(0.7, 1.3, 2.6), direction=d, seed=7)
    for orient in ("input", "model"):
        out = work / f"geo_{name}_{orient}.nii.gz"
        run(itkit_infer, "--identity-network", 5, "--patch", "16,12,20", "--input", img, "--output", out,
            "--window-level", 0, "--window-width", 2000, "--output-orientation", orient)
        ours = sitk.ReadImage(str(out))
        ref, _ = reference_segment(str(img), SyntheticNetwork(5), {}, wl=0, ww=2000, patch=(16, 12, 20),
                                   output_in_model_orientation=orient == "model")
        assert same_geometry(ours, ref)
        if orient == "input":
            assert same_geometry(ours, sitk.ReadImage(str(img)))  # overlays the input exactly
        else:
            assert sitk.DICOMOrientImageFilter_GetOrientationFromDirectionCosines(ours.GetDirection()) == "LPI"
        a = agreement(ours, ref)
        report(f"identity-{name}-{orient}", a)
        assert a == 1.0


def test_identity_network_formats(itkit_infer, work):
    """NRRD (attached and detached), MetaImage (.mha, .mhd) inputs and outputs."""
    base = make_phantom(str(work / "fmt.nii.gz"), (30, 22, 14), spacing=(0.9, 0.8, 3.0),
                        direction=direction_from_code("RAS"), pixel=sitk.sitkUInt16, lo=0, hi=4000)
    ref, _ = reference_segment(str(work / "fmt.nii.gz"), SyntheticNetwork(3), {}, wl=2000, ww=4000, patch=(8, 8, 8))
    for ext in (".nrrd", ".nhdr", ".mha", ".mhd"):
        src = str(work / f"fmt_in{ext}")
        sitk.WriteImage(base, src)
        out = str(work / f"fmt_out{ext}")
        run(itkit_infer, "--identity-network", 3, "--patch", 8, "--input", src, "--output", out,
            "--window-level", 2000, "--window-width", 4000)
        ours = sitk.ReadImage(out)
        assert same_geometry(ours, ref) and agreement(ours, ref) == 1.0, ext


def test_nifti_variants(itkit_infer, work):
    """Our own NIfTI reader (plain, gzip, multi-member gzip) and ITK's (scaled,
    big-endian) must give the voxels SimpleITK reads."""
    import nibabel as nib
    rng = np.random.RandomState(3)
    arr = (rng.rand(14, 11, 9) * 3000 - 1000).astype(np.int16)  # nibabel: (x, y, z)
    affine = np.diag([-0.8, -0.9, 2.5, 1.0])
    affine[:3, 3] = (12.0, -30.0, 5.0)
    variants = {}
    img = nib.Nifti1Image(arr, affine)
    variants["plain.nii"] = img
    variants["gz.nii.gz"] = img
    scaled = nib.Nifti1Image(arr, affine)
    scaled.header.set_slope_inter(0.5, -100.0)
    variants["scaled.nii.gz"] = scaled
    big = nib.Nifti1Image(arr.astype(">i2"), affine, header=nib.Nifti1Header(endianness=">"))
    variants["bigendian.nii.gz"] = big
    for name, im in variants.items():
        nib.save(im, str(work / name))
    raw = gzip.decompress((work / "gz.nii.gz").read_bytes())
    (work / "multi.nii.gz").write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:]))
    for name in list(variants) + ["multi.nii.gz"]:
        src, out = str(work / name), str(work / ("out_" + name.replace(".nii.gz", ".nii").replace(".nii", ".nii.gz")))
        run(itkit_infer, "--identity-network", 6, "--patch", 8, "--input", src, "--output", out,
            "--window-level", 0, "--window-width", 3000)
        ref, _ = reference_segment(src, SyntheticNetwork(6), {}, wl=0, ww=3000, patch=(8, 8, 8))
        ours = sitk.ReadImage(out)
        assert same_geometry(ours, ref), name
        assert agreement(ours, ref) == 1.0, name


@pytest.mark.parametrize("direction", ["LSA", "oblique"])
def test_nifti_gz_output_is_itk_bytes(itkit_infer, work, direction):
    """Our .nii.gz writer (ITK's header for one slice, patched; voxels deflated from
    memory, parallel gzip members) must inflate to exactly what ITK writes as .nii."""
    d = direction_from_code("LSA") if direction == "LSA" else rotation(0.3, 0.2, -0.4)
    img = work / f"bytes_{direction}.nii.gz"
    make_phantom(str(img), (33, 27, 19), spacing=(0.6, 0.8, 2.4), direction=d)
    outs = {}
    for ext in (".nii", ".nii.gz"):
        out, prob = work / f"bytes_{direction}_lab{ext}", work / f"bytes_{direction}_prob{ext}"
        run(itkit_infer, "--identity-network", 4, "--patch", 8, "--input", img, "--output", out,
            "--probabilities", prob, "--window-level", 0, "--window-width", 2000)
        outs[ext] = (out.read_bytes(), prob.read_bytes())
    for plain, packed in zip(outs[".nii"], outs[".nii.gz"]):
        assert gzip.decompress(packed) == plain


def test_dicom_series_folder(itkit_infer, work):
    out = work / "dicom.nii.gz"
    run(itkit_infer, "--identity-network", 4, "--patch", "8,8,8", "--input", DICOM_CT, "--output", out,
        "--window-level", -400, "--window-width", 1000)
    ours = sitk.ReadImage(str(out))
    ref, _ = reference_segment(DICOM_CT, SyntheticNetwork(4), {}, wl=-400, ww=1000, patch=(8, 8, 8))
    assert same_geometry(ours, ref)
    a = agreement(ours, ref)
    report("identity-dicom-CT5N", a)
    assert a == 1.0


def test_seg_nrrd_for_slicer(itkit_infer, work):
    img = work / "seg.nii.gz"
    make_phantom(str(img), (24, 20, 12), direction=direction_from_code("LSA"))
    out = work / "seg.seg.nrrd"
    run(itkit_infer, "--identity-network", 4, "--patch", 8, "--input", img, "--output", out,
        "--window-level", 0, "--window-width", 2000)
    with open(out, "rb") as f:
        header = f.read(8192).split(b"\n\n")[0].decode()
    assert "Segmentation_MasterRepresentation:=Binary labelmap" in header
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    for i, value in enumerate(range(1, 4)):
        assert f"Segment{i}_ID:=Segment_{value}" in header
        assert f"Segment{i}_LabelValue:={value}" in header
        assert f"Segment{i}_Layer:=0" in header
        assert f"Segment{i}_Name:=label_{value}" in header
        assert f"Segment{i}_Color:=" in header
        zz, yy, xx = np.nonzero(labels == value)
        extent = f"{xx.min()} {xx.max()} {yy.min()} {yy.max()} {zz.min()} {zz.max()}" if len(xx) else "0 -1 0 -1 0 -1"
        assert f"Segment{i}_Extent:={extent}" in header
    assert "Segment3_ID" not in header  # background is not a segment


def test_seg_nrrd_large_matches_nifti(itkit_infer, work):
    # 256 x 256 x 300 labels: more than one 16 MiB gzip member, which ITK's NRRD reader
    # (Slicer's) must read whole; labels and geometry as in the .nii.gz of the same run.
    a = (np.indices((300, 256, 256)).sum(axis=0) % 2000 - 1000).astype(np.int16)
    img = sitk.GetImageFromArray(a)
    img.SetSpacing((0.7, 0.8, 2.5))
    img.SetOrigin((10.0, -20.0, 30.0))
    img.SetDirection((0, 1, 0, 1, 0, 0, 0, 0, -1))
    src = work / "large_seg_in.nii.gz"
    sitk.WriteImage(img, str(src))
    outs = [work / "large_seg.nii.gz", work / "large_seg.seg.nrrd"]
    for out in outs:
        run(itkit_infer, "--identity-network", 4, "--patch", "64,64,64", "--input", src, "--output", out,
            "--window-level", 0, "--window-width", 2000)
    nii, nrrd = (sitk.ReadImage(str(o)) for o in outs)
    assert np.array_equal(sitk.GetArrayFromImage(nii), sitk.GetArrayFromImage(nrrd))
    assert len(np.unique(sitk.GetArrayFromImage(nrrd))) == 3
    assert same_geometry(nii, nrrd)
    header = outs[1].read_bytes()[:8192].split(b"\n\n")[0].decode()
    assert "encoding: gzip" in header and "sizes: 256 256 300" in header
    assert "Segmentation_MasterRepresentation:=Binary labelmap" in header


def test_stats_json(itkit_infer, work):
    img = work / "stats.nii.gz"
    make_phantom(str(img), (20, 18, 10), spacing=(0.5, 0.75, 2.0))
    out, stats = work / "stats_out.nii.gz", work / "stats.json"
    run(itkit_infer, "--identity-network", 3, "--patch", 8, "--input", img, "--output", out,
        "--window-level", 0, "--window-width", 2000, "--stats", stats)
    doc = json.loads(stats.read_text())
    lab = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    inten = sitk.GetArrayFromImage(sitk.ReadImage(str(img))).astype(np.float64)
    for entry in doc["labels"]:
        m = lab == entry["label"]
        assert entry["voxels"] == int(m.sum())
        assert entry["volume_mm3"] == pytest.approx(m.sum() * 0.5 * 0.75 * 2.0)
        if m.any():
            assert entry["mean"] == pytest.approx(inten[m].mean(), rel=1e-6)
            assert entry["min"] == inten[m].min() and entry["max"] == inten[m].max()


def test_probabilities_output(itkit_infer, work):
    img = work / "prob.nii.gz"
    make_phantom(str(img), (16, 12, 10), direction=direction_from_code("RAS"))
    out, prob = work / "prob_out.nii.gz", work / "prob_p.nii.gz"
    run(itkit_infer, "--identity-network", 3, "--patch", 8, "--input", img, "--output", out,
        "--window-level", 0, "--window-width", 2000, "--probabilities", prob)
    p = sitk.ReadImage(str(prob))
    assert p.GetNumberOfComponentsPerPixel() == 3 and same_geometry(p, sitk.ReadImage(str(img)))
    arr = sitk.GetArrayFromImage(p)
    assert np.allclose(arr.sum(-1), 1, atol=1e-5)
    assert (arr.argmax(-1) == sitk.GetArrayFromImage(sitk.ReadImage(str(out)))).mean() > 0.999


# ------------------------------------------------------------------ errors (no runtime needed)

def write_nifti_header(path, dims, datatype=4, bitpix=16):
    """A NIfTI-1 header declaring `dims` with (almost) no data behind it."""
    hdr = bytearray(348)
    struct.pack_into("<i", hdr, 0, 348)
    d = [len(dims)] + list(dims) + [1] * (7 - len(dims))
    struct.pack_into("<8h", hdr, 40, *d)
    struct.pack_into("<h", hdr, 70, datatype)
    struct.pack_into("<h", hdr, 72, bitpix)
    struct.pack_into("<8f", hdr, 76, 1, 1, 1, 1, 1, 1, 1, 1)
    struct.pack_into("<f", hdr, 108, 352)
    hdr[344:348] = b"n+1\0"
    with gzip.open(path, "wb") as f:
        f.write(bytes(hdr) + b"\0" * 4 + b"\0" * 64)


def test_gigantic_header_is_rejected(itkit_infer, work):
    bad = str(work / "huge.nii.gz")
    write_nifti_header(bad, (30000, 30000, 30000))
    p = run(itkit_infer, "--identity-network", 2, "--patch", 8, "--input", bad, "--output", work / "huge_out.nii.gz",
            "--window-level", 0, "--window-width", 1, check=False)
    assert p.returncode == 1
    assert "huge.nii.gz" in p.stderr and "exceeds the limit" in p.stderr
    small = str(work / "limit.nii.gz")
    make_phantom(small, (20, 20, 20))
    p = run(itkit_infer, "--identity-network", 2, "--patch", 8, "--input", small, "--output", work / "limit_out.nii.gz",
            "--window-level", 0, "--window-width", 1, "--max-voxels", 7999, check=False)
    assert p.returncode == 1 and "exceeds the limit" in p.stderr


def test_truncated_and_garbage_files(itkit_infer, work):
    good = str(work / "trunc_src.nii.gz")
    make_phantom(good, (40, 40, 40))
    raw = gzip.open(good).read()
    trunc = str(work / "trunc.nii.gz")
    with gzip.open(trunc, "wb") as f:
        f.write(raw[: len(raw) // 3])
    garbage = work / "garbage.nii.gz"
    garbage.write_bytes(os.urandom(5000))
    for path in (trunc, str(garbage), str(work / "missing.nii.gz")):
        p = run(itkit_infer, "--identity-network", 2, "--patch", 8, "--input", path, "--output", work / "x.nii.gz",
                "--window-level", 0, "--window-width", 1, check=False)
        assert p.returncode != 0, path
        assert os.path.basename(path) in p.stderr


def test_4d_and_vector_inputs_need_matching_channels(itkit_infer, work, nets):
    four = sitk.JoinSeries([sitk.Image(10, 10, 10, sitk.sitkInt16)] * 3)
    sitk.WriteImage(four, str(work / "four.nii.gz"))
    p = run(itkit_infer, "--identity-network", 2, "--patch", 8, "--input", work / "four.nii.gz",
            "--output", work / "four_out.nii.gz", "--window-level", 0, "--window-width", 1, check=False)
    assert p.returncode == 1 and "4D image with 3 volumes" in p.stderr and "1 input channel" in p.stderr
    make_phantom(str(work / "vec.nrrd"), (10, 10, 10), components=3)
    p = run(itkit_infer, "--identity-network", 2, "--patch", 8, "--input", work / "vec.nrrd",
            "--output", work / "vec_out.nii.gz", "--window-level", 0, "--window-width", 1, check=False)
    assert p.returncode == 1 and "vector image with 3 components" in p.stderr


def test_missing_window_is_an_error(itkit_infer, work):
    img = str(work / "nowin.nii.gz")
    make_phantom(img, (10, 10, 10))
    p = run(itkit_infer, "--identity-network", 2, "--patch", 8, "--input", img, "--output", work / "nowin_out.nii.gz",
            check=False)
    assert p.returncode == 1 and "window_level/window_width required" in p.stderr


def test_batch_folder_names_failures(itkit_infer, work):
    src, dst = work / "batch_in", work / "batch_out"
    src.mkdir()
    make_phantom(str(src / "one.nii.gz"), (12, 12, 12))
    make_phantom(str(src / "two.nrrd"), (10, 14, 9), direction=direction_from_code("RAS"))
    (src / "broken.nii.gz").write_bytes(b"not an image")
    p = run(itkit_infer, "--identity-network", 2, "--patch", 8, "--input", src, "--output", dst,
            "--window-level", 0, "--window-width", 2000, check=False)
    assert p.returncode == 1
    assert "broken.nii.gz" in p.stderr and "1 of 3 file(s) failed" in p.stderr
    assert (dst / "one.nii.gz").exists() and (dst / "two.nrrd").exists()
    assert not (dst / "broken.nii.gz").exists()


def test_usage_errors(itkit_infer):
    assert run(itkit_infer, "--input", "x", check=False).returncode == 2
    assert run(itkit_infer, "--model", "m.onnx", "--input", "x", "--output", "y", "--blend", "fancy",
               check=False).returncode == 2
    p = run(itkit_infer, "--model", "/nonexistent.onnx", "--input", CH2, "--output", "/tmp/never.nii.gz", check=False)
    assert p.returncode == 1 and "nonexistent.onnx" in p.stderr


# ------------------------------------------------------------------ real networks vs reference

PHANTOMS = [
    ("lps_aniso", (48, 40, 30), (0.7, 0.9, 2.5), direction_from_code("LPS")),
    ("ras", (40, 44, 28), (1.0, 1.0, 1.0), direction_from_code("RAS")),
    ("lsa", (36, 30, 40), (1.2, 2.0, 0.8), direction_from_code("LSA")),
    ("oblique", (44, 38, 26), (0.8, 1.1, 3.0), rotation(0.25, -0.4, 0.6)),
    ("oblique_near45", (40, 40, 24), (0.9, 0.9, 2.0), rotation(0.05, 0.0, 0.78)),
    ("smaller_than_patch", (20, 70, 15), (0.6, 0.6, 4.0), direction_from_code("RAS") @ rotation(0.1, 0.0, 0.0)),
    ("thin_slab", (60, 50, 5), (0.8, 0.8, 5.0), direction_from_code("LPS")),
]


@pytest.mark.parametrize("name,size,spacing,direction", PHANTOMS, ids=[p[0] for p in PHANTOMS])
def test_phantom_agreement(itkit_infer, runtime_ready, nets, work, name, size, spacing, direction):
    img = work / f"ph_{name}.nii.gz"
    make_phantom(str(img), size, spacing=spacing, direction=direction, seed=11)
    compare(itkit_infer, nets["conv"], img, work / f"ph_{name}_out.nii.gz", case=f"conv-{name}")


def test_yaml_sidecar_overrides_metadata(itkit_infer, runtime_ready, work):
    net = make_net(str(work / "side.onnx"), seed=9, metadata={**WINDOW, "labels": ["bg", "x", "y"]})
    (work / "side.yaml").write_text(
        "name: Sidecar model\n"
        "window_level: 200\n"
        "window_width: 1200\n"
        "inference_config:\n  patch_size: [16, 20, 24]\n  patch_stride: [8, 10, 12]\n"
        "labels:\n  - background\n  - {name: liver, color: [200, 100, 50]}\n  - spleen\n")
    img = work / "side_in.nii.gz"
    make_phantom(str(img), (40, 34, 26), direction=direction_from_code("RAS"))
    compare(itkit_infer, net, img, work / "side_out.nii.gz", case="yaml-sidecar")  # reference reads the sidecar too
    out = work / "side_out.seg.nrrd"
    run(itkit_infer, "--model", net, "--input", img, "--output", out)
    header = out.read_bytes()[:8192].split(b"\n\n")[0].decode()
    assert "Segment0_Name:=liver" in header and "Segment1_Name:=spleen" in header
    assert "Segment0_Color:=0.784314 0.392157 0.196078" in header


def test_static_network_patch(itkit_infer, runtime_ready, nets, work):
    img = work / "static_in.nii.gz"
    make_phantom(str(img), (40, 33, 21), spacing=(1.0, 1.0, 2.0), direction=direction_from_code("LSA"))
    compare(itkit_infer, nets["static"], img, work / "static_out.nii.gz", case="static-16")
    p = run(itkit_infer, "--model", nets["static"], "--input", img, "--output", work / "x.nii.gz", "--patch", 24,
            check=False)
    assert p.returncode == 1 and "static input" in p.stderr


def test_gaussian_blending(itkit_infer, runtime_ready, nets, work):
    img = work / "gauss.nii.gz"
    make_phantom(str(img), (44, 36, 28), spacing=(0.9, 0.9, 2.0), direction=rotation(0.2, 0.1, -0.3))
    compare(itkit_infer, nets["conv"], img, work / "gauss_out.nii.gz", cli=("--blend", "gaussian"), blend="gaussian",
            case="conv-gaussian")


def test_mirroring_tta(itkit_infer, runtime_ready, nets, work):
    img = work / "tta.nii.gz"
    make_phantom(str(img), (30, 26, 20), spacing=(1.0, 1.2, 2.0), direction=direction_from_code("LSA"))
    compare(itkit_infer, nets["conv"], img, work / "tta_out.nii.gz", cli=("--tta", "--patch", 16), patch=(16, 16, 16),
            tta=True, case="conv-tta")


def test_batching_and_stride_options(itkit_infer, runtime_ready, nets, work):
    img = work / "batch.nii.gz"
    make_phantom(str(img), (40, 36, 30), direction=direction_from_code("RAS"))
    compare(itkit_infer, nets["conv"], img, work / "batch_out.nii.gz",
            cli=("--batch", 3, "--patch", "16,20,24", "--stride", "8,15,12"), patch=(16, 20, 24), stride=(8, 15, 12),
            case="conv-batch3-stride")


def test_ct_normalisation(itkit_infer, runtime_ready, nets, work):
    img = work / "ct.nii.gz"
    make_phantom(str(img), (36, 30, 24), direction=direction_from_code("LPS"))
    compare(itkit_infer, nets["ct"], img, work / "ct_out.nii.gz", case="ct-normalisation")


def test_zscore(itkit_infer, runtime_ready, nets, work):
    img = work / "z.nii.gz"
    make_phantom(str(img), (30, 30, 20), pixel=sitk.sitkFloat32, lo=3.0, hi=9.0)
    compare(itkit_infer, nets["zscore"], img, work / "z_out.nii.gz", cli=("--patch", 16), patch=(16, 16, 16),
            case="zscore")


def test_resampling(itkit_infer, runtime_ready, nets, work):
    img = work / "rs.nii.gz"
    make_phantom(str(img), (40, 30, 20), spacing=(0.7, 0.8, 2.0), direction=direction_from_code("RAS"))
    # Nearest-neighbour label resampling decides half-voxel ties by rounding that
    # ITK does in physical space and we in index space: allow a little more slack.
    compare(itkit_infer, nets["resample"], img, work / "rs_out.nii.gz", threshold=0.995, case="resample-labels")


def test_resampling_logits(itkit_infer, runtime_ready, nets, work):
    img = work / "rsl.nii.gz"
    make_phantom(str(img), (36, 28, 22), spacing=(0.6, 1.0, 2.2), direction=rotation(0.2, -0.1, 0.4))
    compare(itkit_infer, nets["resample_logits"], img, work / "rsl_out.nii.gz", threshold=0.995,
            case="resample-logits")


def test_two_channel_4d_input(itkit_infer, runtime_ready, nets, work):
    vols = [make_phantom(str(work / f"ch{i}.nii.gz"), (24, 20, 16), seed=20 + i) for i in range(2)]
    four = sitk.JoinSeries(vols)
    sitk.WriteImage(four, str(work / "two_ch.nii.gz"))
    out = work / "two_ch_out.nii.gz"
    run(itkit_infer, "--model", nets["two_channel"], "--input", work / "two_ch.nii.gz", "--output", out, "--patch", 16)
    ours = sitk.ReadImage(str(out))
    assert ours.GetSize() == (24, 20, 16)
    # Reference: stack the channels by hand (DICOMOrient per channel; identity here).
    arr = np.stack([sitk.GetArrayFromImage(sitk.DICOMOrient(v, "LPI")) for v in vols]).astype(np.float32)
    from reference_segment import normalize, slide_inference
    arr = np.stack([normalize(a, WINDOW) for a in arr])
    logits = slide_inference(arr, OrtNetwork(nets["two_channel"]), (16, 16, 16), (8, 8, 8))
    lab = sitk.GetImageFromArray(np.argmax(logits, 0).astype(np.uint8))
    lab.CopyInformation(sitk.DICOMOrient(vols[0], "LPI"))
    lab = sitk.Resample(lab, vols[0], sitk.Transform(), sitk.sitkNearestNeighbor)
    counts = np.bincount(sitk.GetArrayViewFromImage(ours).ravel())
    assert (counts >= 0.01 * counts.sum()).sum() >= 2, f"degenerate labels {counts}"
    a = agreement(ours, lab)
    report("two-channel-4d", a)
    assert a >= THRESHOLD


def test_uint16_labels_for_many_classes(itkit_infer, runtime_ready, nets, work):
    img = work / "many.nii.gz"
    make_phantom(str(img), (12, 10, 8))
    out = work / "many_out.nii.gz"
    run(itkit_infer, "--model", nets["many"], "--input", img, "--output", out, "--patch", 8)
    ours = sitk.ReadImage(str(out))
    assert ours.GetPixelID() == sitk.sitkUInt16
    ref, _ = reference_segment(str(img), OrtNetwork(nets["many"]), read_metadata(nets["many"]), patch=(8, 8, 8))
    a = agreement(ours, ref)
    report("300-classes-uint16", a)
    assert a >= THRESHOLD


def test_real_kmeans_t1_lsa(itkit_infer, runtime_ready, nets, work):
    compare(itkit_infer, nets["brain"], KMEANS, work / "kmeans_out.nii.gz", cli=("--patch", 32), patch=(32, 32, 32),
            case="real-KmeansTest_T1UCharRaw (LSA)")


def test_real_colin27(itkit_infer, runtime_ready, nets, work):
    compare(itkit_infer, nets["brain"], CH2, work / "ch2_out.nii.gz", cli=("--patch", 64, "--stride", 64),
            patch=(64, 64, 64), stride=(64, 64, 64), case="real-ch2 (RAS)")


def test_real_colin27_better(itkit_infer, runtime_ready, nets, work):
    compare(itkit_infer, nets["brain"], CH2BETTER, work / "ch2better_out.nii.gz", cli=("--patch", 96, "--stride", 96),
            patch=(96, 96, 96), stride=(96, 96, 96), case="real-ch2better (RAS)")


def test_real_dicom_series(itkit_infer, runtime_ready, nets, work):
    compare(itkit_infer, nets["brain"], DICOM_CT, work / "dicom_conv.nii.gz", cli=("--patch", 16, "--window-level",
            -400, "--window-width", 1000), patch=(16, 16, 16), wl=-400, ww=1000, case="real-dicom-CT5N")


@pytest.mark.skipif(not (os.path.exists(DEMO_MODEL) and os.path.exists(DEMO_CT)), reason="demo model not built")
def test_demo_model_on_sample_ct(itkit_infer, runtime_ready, work):
    """The repository's demo U-Net (ONNX metadata + YAML sidecar) on its sample CT: agrees with
    onnxruntime, and segments: Dice against the generator's ground truth (docs/demo-model.md;
    measured 0.974 / 0.908 / 0.942) meets train_demo_model.py's own bar, mean >= 0.9."""
    ours, _ = compare(itkit_infer, DEMO_MODEL, DEMO_CT, work / "demo_out.nii.gz", case="demo_ct_body on sample_ct")
    truth = sitk.ReadImage(DEMO_TRUTH)
    assert same_geometry(ours, truth)
    pred, ref = sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(truth)
    dice = [2.0 * np.sum((pred == c) & (ref == c)) / (np.sum(pred == c) + np.sum(ref == c)) for c in (1, 2, 3)]
    print("DICE demo_ct_body on sample_ct (body, fat, bone): " + ", ".join(f"{d:.4f}" for d in dice))
    assert np.mean(dice) >= 0.9 and min(dice) >= 0.8, dice
