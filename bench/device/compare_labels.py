#!/usr/bin/env python3
"""Voxel agreement of two label maps (.nii / .nii.gz), with numpy only (the GPU
machine has no nibabel/SimpleITK). Exit 1 when the agreement is below --min.

    python3 bench/device/compare_labels.py A.nii.gz B.nii.gz --min 0.999
"""
import argparse
import gzip
import struct
import sys

import numpy as np

DTYPES = {2: np.uint8, 4: np.int16, 8: np.int32, 16: np.float32, 256: np.int8, 512: np.uint16, 768: np.uint32,
          1024: np.int64}


def read_nifti(path):
    raw = gzip.open(path, "rb").read() if path.endswith(".gz") else open(path, "rb").read()
    endian = "<" if struct.unpack("<i", raw[:4])[0] == 348 else ">"
    dims = struct.unpack(endian + "8h", raw[40:56])
    datatype = struct.unpack(endian + "h", raw[70:72])[0]
    offset = int(struct.unpack(endian + "f", raw[108:112])[0])
    shape = dims[1:1 + dims[0]]
    dtype = np.dtype(DTYPES[datatype]).newbyteorder(endian)
    count = int(np.prod(shape))
    return np.frombuffer(raw, dtype=dtype, count=count, offset=offset), shape


def main():
    p = argparse.ArgumentParser()
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--min", type=float, default=0.999)
    args = p.parse_args()
    a, sa = read_nifti(args.a)
    b, sb = read_nifti(args.b)
    if sa != sb:
        print(f"shapes differ: {sa} vs {sb}")
        return 1
    agree = float(np.mean(a == b))
    labels = sorted(set(np.unique(a).tolist()) | set(np.unique(b).tolist()))
    print(f"labels agree at {agree * 100:.4f} % of {a.size} voxels (labels {labels}); needs {args.min * 100:.2f} %")
    return 0 if agree >= args.min else 1


if __name__ == "__main__":
    sys.exit(main())
