"""Writes random IDX files of Fashion-MNIST's shape (60000 + 10000 28x28 images, 10 classes)
into DIR, for throughput runs where no dataset is installed: speed does not depend on pixels.

    python3 tests/bench/random_idx.py DIR
"""
import gzip
import os
import struct
import sys

import numpy as np

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(0)
for prefix, n in (("train", 60000), ("t10k", 10000)):
    with gzip.open(f"{out}/{prefix}-images-idx3-ubyte.gz", "wb", compresslevel=1) as f:
        f.write(struct.pack(">IIII", 0x803, n, 28, 28)
                + rng.integers(0, 256, n * 784, dtype=np.uint8).tobytes())
    with gzip.open(f"{out}/{prefix}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + rng.integers(0, 10, n, dtype=np.uint8).tobytes())
