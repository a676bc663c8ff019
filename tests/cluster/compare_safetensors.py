#!/usr/bin/env python3
"""compare_safetensors.py A B [--rtol R] [--atol A]: the fallback of the cluster test when
syncbn-compare-safetensors is not built. Same names, shapes and dtypes, and values within
|a - b| <= atol + rtol * |b| (the rule of syncbn-compare-safetensors). Standard library only.
Exit 0 when they match, 1 when not, 2 on bad input."""
import json
import struct
import sys

FORMATS = {"F64": "d", "F32": "f", "I64": "q", "I32": "i", "I16": "h", "I8": "b", "U8": "B",
           "BOOL": "?"}


def load(path):
    with open(path, "rb") as f:
        data = f.read()
    (header_size,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + header_size])
    body = data[8 + header_size:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        fmt = FORMATS.get(info["dtype"])
        if fmt is None:
            raise ValueError(f"{path}: {name}: dtype {info['dtype']} not supported")
        begin, end = info["data_offsets"]
        count = (end - begin) // struct.calcsize(fmt)
        values = struct.unpack_from(f"<{count}{fmt}", body, begin)
        tensors[name] = (info["dtype"], tuple(info["shape"]), values)
    return tensors


def main(argv):
    files, rtol, atol = [], 1e-4, 1e-6
    args = iter(argv)
    for arg in args:
        if arg in ("--rtol", "--atol"):
            value = float(next(args))
            rtol, atol = (value, atol) if arg == "--rtol" else (rtol, value)
        else:
            files.append(arg)
    if len(files) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        a, b = load(files[0]), load(files[1])
    except (OSError, ValueError, KeyError, struct.error) as error:
        print(f"compare_safetensors: {error}", file=sys.stderr)
        return 2
    ok = True
    if a.keys() != b.keys():
        print(f"different tensors: only in A {sorted(a.keys() - b.keys())}, "
              f"only in B {sorted(b.keys() - a.keys())}")
        ok = False
    worst, worst_name = 0.0, ""
    for name in sorted(a.keys() & b.keys()):
        (dtype_a, shape_a, va), (dtype_b, shape_b, vb) = a[name], b[name]
        if (dtype_a, shape_a) != (dtype_b, shape_b):
            print(f"{name}: {dtype_a}{list(shape_a)} vs {dtype_b}{list(shape_b)}")
            ok = False
            continue
        for x, y in zip(va, vb):
            excess = abs(x - y) / (atol + rtol * abs(y))
            if excess > worst:
                worst, worst_name = excess, name
    if worst > 1:
        print(f"{worst_name}: differs by {worst:.3g} times the tolerance (rtol {rtol}, atol {atol})")
        ok = False
    print(f"{len(a)} tensors compared, worst {worst_name or '-'} at {worst:.3g} of the tolerance: "
          f"{'match' if ok else 'MISMATCH'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
