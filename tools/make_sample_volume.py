#!/usr/bin/env python3
"""Synthetic CT-like volumes with a ground-truth label map (no patient data needed).

The anatomy is defined in patient (LPS, mm) coordinates and then sampled on the voxel
grid, so an image written with a flipped or oblique direction shows the same anatomy at
the same physical place; reorienting it (e.g. DICOMOrient "LPI") recovers the usual view.

Labels: 0 background (air outside, and lung air), 1 body soft tissue, 2 fat, 3 bone.
Intensities (HU): air -1000, lung about -850, fat about -100, soft tissue about +40
(organs +20..+70, a vessel up to +250), bone +700..+1200 (cortex brighter than marrow).
The HU map is smoothed (partial-volume edges, slice profile) before noise is added.

Run with the project venv:
    .venv/bin/python tools/make_sample_volume.py --out image.nii.gz \
        --labels-out labels.nii.gz --size 160 160 64 --seed 3 [--oblique]
With no --out it writes the default sample models/sample/sample_ct.nii.gz
(+ models/sample/sample_ct_labels.nii.gz).
"""
from __future__ import annotations

import argparse
import math
import os
import sys

import numpy as np
import SimpleITK as sitk

LABEL_NAMES = ("background", "body", "fat", "bone")
BACKGROUND, BODY, FAT, BONE = 0, 1, 2, 3

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, "models", "sample", "sample_ct.nii.gz")
DEFAULT_LABELS_OUT = os.path.join(REPO, "models", "sample", "sample_ct_labels.nii.gz")
DEFAULT_SIZE = (160, 160, 64)
DEFAULT_SEED = 3


# ---------------------------------------------------------------------------- geometry

def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues rotation matrix about a unit axis."""
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


def random_geometry(rng: np.random.Generator, size, oblique: bool):
    """Spacing (x,y,z mm), origin (mm) and direction (3x3, columns = axis directions).

    Typical CT: square in-plane pixels 0.6-1.0 mm, slices 1.5-5 mm. With `oblique`, the
    grid is flipped on random axes and tilted by 5-25 degrees, which exercises the
    reorientation code of whoever reads the file."""
    inplane = rng.uniform(0.6, 1.0)
    spacing = np.array([inplane, inplane, rng.uniform(1.5, 5.0)])
    direction = np.eye(3)
    if oblique:
        flips = np.diag(rng.choice([-1.0, 1.0], size=3))
        if np.all(np.diag(flips) > 0):
            i = int(rng.integers(3))
            flips[i, i] = -1.0  # at least one flipped axis
        tilt = _rotation(rng.normal(size=3), math.radians(rng.uniform(5, 25)))
        direction = tilt @ flips
    origin = rng.uniform([-250, -250, -600], [50, 50, 200])
    return spacing, origin, direction


def _patient_coords(size, spacing, direction, center_offset):
    """Per-voxel patient coordinates relative to the anatomy centre, each (Z,Y,X) float32.

    The anatomy centre is the physical centre of the grid plus a small offset, so the body
    is always in view whatever the direction is."""
    nx, ny, nz = size
    ix = (np.arange(nx, dtype=np.float32) - (nx - 1) / 2) * spacing[0]
    iy = (np.arange(ny, dtype=np.float32) - (ny - 1) / 2) * spacing[1]
    iz = (np.arange(nz, dtype=np.float32) - (nz - 1) / 2) * spacing[2]
    ix, iy, iz = ix[None, None, :], iy[None, :, None], iz[:, None, None]
    d = direction.astype(np.float32)
    return [d[r, 0] * ix + d[r, 1] * iy + d[r, 2] * iz - np.float32(center_offset[r])
            for r in range(3)]


# ---------------------------------------------------------------------------- anatomy

def _angdist(a, b):
    """Absolute angular distance in [0, pi]."""
    return np.abs(np.angle(np.exp(1j * (a - b))))


def _ellipsoid(ux, uy, uz, c, r):
    return ((ux - c[0]) / r[0]) ** 2 + ((uy - c[1]) / r[1]) ** 2 + ((uz - c[2]) / r[2]) ** 2 < 1


def build_anatomy(rng, ux, uy, uz, fov_inplane: float, lungs: bool):
    """Label map and noise-free HU map (both (Z,Y,X)) from patient coordinates in mm.

    x = patient left, y = posterior, z = superior (LPS). All sizes scale with the body so
    that small fields of view still hold a complete torso cross-section."""
    shape = ux.shape
    labels = np.zeros(shape, np.uint8)
    hu = np.full(shape, -1000.0, np.float32)

    # Torso: irregular ellipse cross-section whose size drifts slowly along z.
    a = fov_inplane * rng.uniform(0.36, 0.44)
    b = a * rng.uniform(0.62, 0.8)
    zs = 1 + 0.06 * np.sin(2 * np.pi * uz / rng.uniform(150, 300) + rng.uniform(0, 2 * np.pi))
    ex, ey = ux / (a * zs), uy / (b * zs)
    theta = np.arctan2(ey, ex)
    rho = np.sqrt(ex * ex + ey * ey)
    r_b = np.ones(shape, np.float32)
    for k in range(2, 6):  # low-order harmonics make the outline irregular, twisting along z
        r_b += rng.uniform(0, 0.035) * np.cos(k * theta + rng.uniform(0, 2 * np.pi)
                                              + uz * rng.uniform(-0.02, 0.02))
    radius_mm = np.sqrt((a * np.cos(theta)) ** 2 + (b * np.sin(theta)) ** 2) * zs
    depth = (r_b - rho) * radius_mm  # approximate mm below the skin (negative outside)
    body = depth > 0
    soft = rng.uniform(30, 50)
    labels[body] = BODY
    hu[body] = soft

    # Subcutaneous fat: thicker anteriorly (theta = -pi/2 is anterior in LPS).
    fat_hu = rng.uniform(-120, -80)
    t_fat = b * rng.uniform(0.08, 0.18) * (1 + 0.4 * -np.sin(theta))
    subq = body & (depth < t_fat)
    labels[subq] = FAT
    hu[subq] = fat_hu
    inner = depth > t_fat + 1.0  # internal structures stay under the fat layer

    # Organs: soft-tissue ellipsoids with their own HU (same label), for texture.
    zlo, zhi = float(uz.min()), float(uz.max())
    for _ in range(rng.integers(2, 5)):
        c = (rng.uniform(-0.5, 0.5) * a, rng.uniform(-0.5, 0.2) * b, rng.uniform(zlo, zhi))
        r = (rng.uniform(0.15, 0.35) * a, rng.uniform(0.15, 0.35) * b, rng.uniform(0.3, 1.0) * b)
        m = inner & _ellipsoid(ux, uy, uz, c, r)
        hu[m] = rng.uniform(20, 70)

    # Internal fat blobs (visceral fat).
    for _ in range(rng.integers(3, 8)):
        rr, th = rng.uniform(0, 0.6), rng.uniform(-np.pi, np.pi)
        c = (rr * a * math.cos(th), rr * b * math.sin(th), rng.uniform(zlo, zhi))
        r = (rng.uniform(0.08, 0.2) * b, rng.uniform(0.08, 0.2) * b, rng.uniform(0.15, 0.5) * b)
        m = inner & _ellipsoid(ux, uy, uz, c, r)
        labels[m] = FAT
        hu[m] = fat_hu + rng.normal(0, 5)

    # Spine geometry (used by lungs and vessel placement too).
    yc = b * rng.uniform(0.3, 0.4)          # vertebral body centre, posterior of the centre
    rv = b * rng.uniform(0.12, 0.16)        # vertebral body radius
    rc = 0.4 * rv                           # spinal canal radius
    yk = yc + rv + 0.15 * rv + rc           # canal centre
    wring = 0.35 * rv                       # posterior arch thickness

    # Lungs: two air ellipsoids in the upper part, labelled background (air, like outside).
    if lungs:
        z0 = rng.uniform(zlo, 0.5 * (zlo + zhi))
        for side in (-1, 1):
            c = (side * 0.48 * a, -0.05 * b, z0 + (zhi - z0) * 1.2)
            r = (0.3 * a, 0.5 * b, (zhi - z0) * 1.2 + 1e-3)
            m = inner & (depth > t_fat + 0.12 * b) & _ellipsoid(ux, uy, uz, c, r)
            m &= np.abs(ux) > rv * 1.3  # leave the mediastinum / spine free
            labels[m] = BACKGROUND
            hu[m] = rng.uniform(-880, -820)

    # Aorta: contrast-enhanced or not; soft-tissue label either way.
    aorta = inner & ((ux + 0.6 * rv) ** 2 + (uy - (yc - 1.9 * rv)) ** 2 < (0.7 * rv) ** 2)
    labels[aorta] = BODY
    hu[aorta] = rng.uniform(40, 250)

    # Spine: vertebral bodies (marrow + cortex) separated by discs, posterior arch with canal.
    period = rv * rng.uniform(1.6, 2.1)
    phase = np.mod(uz - rng.uniform(0, period), period) / period
    dv = np.sqrt(ux * ux + (uy - yc) ** 2)
    disc = phase < 0.2
    vbody = (dv < rv) & ~disc
    dk = np.sqrt(ux * ux + (uy - yk) ** 2)
    arch = (dk >= rc) & (dk < rc + wring) & (phase > 0.1)
    spinous = (np.abs(ux) < 0.5 * wring) & (uy > yk) & (uy < yk + rc + wring + 0.7 * rv) & (phase > 0.25)
    marrow_hu, cortex_hu = rng.uniform(700, 800), rng.uniform(1000, 1200)
    bone_spine = inner & (vbody | arch | spinous)
    labels[bone_spine] = BONE
    hu[bone_spine] = cortex_hu
    marrow = inner & vbody & (dv < rv - max(1.5, 0.15 * rv))
    hu[marrow] = marrow_hu
    for m, v in ((inner & disc & (dv < rv), 80.0), (inner & (dk < rc), 15.0)):
        labels[m] = BODY
        hu[m] = v

    # Ribs: arcs just under the fat/muscle wall, sloping down anteriorly, over part of z.
    if rng.uniform() < 0.85:
        rib_depth = t_fat + b * rng.uniform(0.05, 0.09)
        rib_half = max(1.2, b * rng.uniform(0.035, 0.05))
        rib_period, rib_h = b * rng.uniform(0.45, 0.6), b * rng.uniform(0.15, 0.22)
        from_back = _angdist(theta, np.pi / 2)  # 0 at the spine, pi at the sternum
        zr = uz + b * rng.uniform(0.05, 0.15) * from_back
        rib_phase = np.mod(zr - rng.uniform(0, rib_period), rib_period)
        rib_zstart = rng.uniform(zlo - 0.2 * (zhi - zlo), 0.5 * (zlo + zhi))
        ribs = (np.abs(depth - rib_depth) < rib_half) & (rib_phase < rib_h) & (uz > rib_zstart)
        ribs &= (from_back > 0.35) & (from_back < np.pi - 0.45) & body
        labels[ribs] = BONE
        hu[ribs] = rng.uniform(850, 1100)
    return labels, hu


# ---------------------------------------------------------------------------- volume

def _to_image(arr: np.ndarray, spacing, origin, direction) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing([float(s) for s in spacing])
    img.SetOrigin([float(o) for o in origin])
    img.SetDirection([float(v) for v in np.asarray(direction).ravel()])
    return img


def generate_case(size=DEFAULT_SIZE, seed: int = 0, oblique: bool = False, lungs=None,
                  noise_sd=None):
    """Returns (image int16 HU, labels uint8) with identical geometry.

    size is (X, Y, Z) like ITK; lungs None picks at random; noise_sd None picks 15-25 HU."""
    rng = np.random.default_rng(seed)
    size = tuple(int(s) for s in size)
    spacing, origin, direction = random_geometry(rng, size, oblique)
    fov = min(size[0] * spacing[0], size[1] * spacing[1])
    offset = (rng.uniform(-0.04, 0.04) * fov, rng.uniform(-0.04, 0.04) * fov, 0.0)
    ux, uy, uz = _patient_coords(size, spacing, direction, offset)
    if lungs is None:
        lungs = bool(rng.uniform() < 0.5)
    labels, hu = build_anatomy(rng, ux, uy, uz, fov, lungs)
    del ux, uy, uz

    hu_img = _to_image(hu, spacing, origin, direction)
    # Partial volume and slice profile: blur about half a voxel on each axis.
    hu_img = sitk.SmoothingRecursiveGaussian(hu_img, [0.45 * float(s) for s in spacing])
    smooth = sitk.GetArrayFromImage(hu_img)

    # Quantum noise, mildly correlated in-plane like reconstructed CT noise.
    sd = rng.uniform(15, 25) if noise_sd is None else float(noise_sd)
    noise = _to_image(rng.standard_normal(smooth.shape).astype(np.float32), spacing, origin, direction)
    noise = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(
        noise, [0.5 * float(spacing[0]), 0.5 * float(spacing[1]), 0.01]))
    noise *= sd / max(float(noise.std()), 1e-6)
    ct = np.clip(np.rint(smooth + noise), -1024, 3071).astype(np.int16)
    return _to_image(ct, spacing, origin, direction), _to_image(labels, spacing, origin, direction)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=DEFAULT_OUT, help="image path (.nii.gz, .nrrd, .mha ...)")
    p.add_argument("--labels-out", default=None,
                   help="label map path (default: next to the default sample, else none)")
    p.add_argument("--size", type=int, nargs=3, default=list(DEFAULT_SIZE), metavar=("X", "Y", "Z"))
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--oblique", action="store_true", help="flipped + tilted direction cosines")
    p.add_argument("--lungs", choices=("random", "on", "off"), default="random")
    args = p.parse_args(argv)
    labels_out = args.labels_out
    if labels_out is None and os.path.abspath(args.out) == DEFAULT_OUT:
        labels_out = DEFAULT_LABELS_OUT
    lungs = {"random": None, "on": True, "off": False}[args.lungs]
    img, lab = generate_case(args.size, args.seed, args.oblique, lungs)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    sitk.WriteImage(img, args.out, useCompression=True)
    print(f"wrote {args.out}: size {img.GetSize()} spacing "
          f"{tuple(round(s, 3) for s in img.GetSpacing())} origin "
          f"{tuple(round(o, 1) for o in img.GetOrigin())} orientation "
          f"{sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(img.GetDirection())}")
    if labels_out:
        os.makedirs(os.path.dirname(os.path.abspath(labels_out)), exist_ok=True)
        sitk.WriteImage(lab, labels_out, useCompression=True)
        counts = np.bincount(sitk.GetArrayViewFromImage(lab).ravel(), minlength=4)
        print(f"wrote {labels_out}: voxels per label "
              + ", ".join(f"{n}={c}" for n, c in zip(LABEL_NAMES, counts)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
