#!/usr/bin/env python3
"""The PyTorch reference for tests/bench/train_vs_pytorch.sh: the same models as syncbn's
(include/syncbn/nn/models.h), the same data and optimizer, one epoch on N threads.
Prints one JSON line: {"framework": "pytorch", "model", "norm", "images_per_second", ...}."""
import argparse
import gzip
import json
import os
import struct
import time

import numpy as np
import torch
import torch.nn as nn


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find(data_dir, stem):
    for name in (stem + ".gz", stem):
        path = os.path.join(data_dir, name)
        if os.path.exists(path):
            return path
    raise SystemExit(f"missing {stem} in {data_dir}")


def norm_1d(kind, features):
    return {"bn": nn.BatchNorm1d(features), "none": None}[kind]


def norm_2d(kind, channels):
    return {"bn": nn.BatchNorm2d(channels), "none": None}[kind]


def make_model(name, kind):
    layers = []
    if name == "mlp":
        layers.append(nn.Flatten())
        features = 784
        for width in (256, 256):
            layers.append(nn.Linear(features, width))
            if norm_1d(kind, width) is not None:
                layers.append(norm_1d(kind, width))
            layers.append(nn.ReLU())
            features = width
        layers.append(nn.Linear(features, 10))
    elif name == "cnn":
        channels, size = 1, 28
        for out in (32, 64):
            layers.append(nn.Conv2d(channels, out, 3, padding=1, bias=(kind == "none")))
            if norm_2d(kind, out) is not None:
                layers.append(norm_2d(kind, out))
            layers += [nn.ReLU(), nn.MaxPool2d(2)]
            channels, size = out, size // 2
        layers += [nn.Flatten(), nn.Linear(channels * size * size, 10)]
    else:
        raise SystemExit(f"unknown model {name}")
    return nn.Sequential(*layers)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--norm", default="bn")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--steps", type=int, default=0, help="cap on steps (0 = one epoch)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images = read_idx(find(args.data_dir, "train-images-idx3-ubyte")).astype(np.float32)
    labels = read_idx(find(args.data_dir, "train-labels-idx1-ubyte")).astype(np.int64)
    x = torch.from_numpy((images / 255.0 - 0.2860) / 0.3530).unsqueeze(1).contiguous()
    y = torch.from_numpy(labels)

    model = make_model(args.model, args.norm)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    criterion = nn.CrossEntropyLoss()
    model.train()
    order = torch.randperm(len(x))
    steps = len(x) // args.batch_size
    if args.steps:
        steps = min(steps, args.steps)
    total_loss = 0.0
    start = time.perf_counter()
    for step in range(steps):
        index = order[step * args.batch_size:(step + 1) * args.batch_size]
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(model(x[index]), y[index])
        loss.backward()
        optimizer.step()
        total_loss += loss.item()
    seconds = time.perf_counter() - start
    print(json.dumps({"framework": "pytorch", "version": torch.__version__, "model": args.model,
                      "norm": args.norm, "batch_size": args.batch_size, "threads": args.threads,
                      "steps": steps, "seconds": round(seconds, 3),
                      "images_per_second": round(steps * args.batch_size / seconds, 1),
                      "train_loss": round(total_loss / steps, 4)}))


if __name__ == "__main__":
    main()
