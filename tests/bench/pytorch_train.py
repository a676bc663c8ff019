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


class BasicBlock(nn.Module):
    """torchvision's BasicBlock, as include/syncbn/nn/residual.h builds it."""

    def __init__(self, inp, out, stride, kind):
        super().__init__()
        bias = kind == "none"
        self.conv1 = nn.Conv2d(inp, out, 3, stride, 1, bias=bias)
        self.bn1 = norm_2d(kind, out) or nn.Identity()
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(out, out, 3, 1, 1, bias=bias)
        self.bn2 = norm_2d(kind, out) or nn.Identity()
        self.downsample = None
        if stride != 1 or inp != out:
            layers = [nn.Conv2d(inp, out, 1, stride, 0, bias=bias)]
            if norm_2d(kind, out) is not None:
                layers.append(norm_2d(kind, out))
            self.downsample = nn.Sequential(*layers)

    def forward(self, x):
        y = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + (self.downsample(x) if self.downsample is not None else x))


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
    elif name == "resnet":
        layers += [nn.Conv2d(1, 32, 3, padding=1, bias=(kind == "none"))]
        if norm_2d(kind, 32) is not None:
            layers.append(norm_2d(kind, 32))
        layers.append(nn.ReLU())
        channels = 32
        for out, stride in ((32, 1), (64, 2), (128, 2)):
            layers += [BasicBlock(channels, out, stride, kind), BasicBlock(out, out, 1, kind)]
            channels = out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 10)]
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
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images = read_idx(find(args.data_dir, "train-images-idx3-ubyte")).astype(np.float32)
    labels = read_idx(find(args.data_dir, "train-labels-idx1-ubyte")).astype(np.int64)
    x = torch.from_numpy((images / 255.0 - 0.2860) / 0.3530).unsqueeze(1).contiguous()
    y = torch.from_numpy(labels)

    device = torch.device(args.device)
    x, y = x.to(device), y.to(device)
    model = make_model(args.model, args.norm).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    criterion = nn.CrossEntropyLoss()
    model.train()
    order = torch.randperm(len(x), device=device)
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
        total_loss += loss.detach()
    total_loss = float(total_loss)  # one synchronisation, after the timed loop's work is queued
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    print(json.dumps({"framework": "pytorch", "version": torch.__version__, "device": args.device,
                      "model": args.model,
                      "norm": args.norm, "batch_size": args.batch_size, "threads": args.threads,
                      "steps": steps, "seconds": round(seconds, 3),
                      "images_per_second": round(steps * args.batch_size / seconds, 1),
                      "train_loss": round(total_loss / steps, 4)}))


if __name__ == "__main__":
    main()
