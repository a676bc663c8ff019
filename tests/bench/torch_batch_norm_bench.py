#!/usr/bin/env python3
"""PyTorch's batch-norm kernels on one GPU: the shapes and JSON fields of syncbn-bench-batch-norm.

Two implementations per shape and layout (channels_last for nhwc):
  torch_syncbn  the kernels of torch.nn.SyncBatchNorm without communication (world size 1):
                forward  = batch_norm_stats + batch_norm_gather_stats_with_counts + batch_norm_elemt
                backward = batch_norm_backward_reduce + batch_norm_backward_elemt
  torch_bn      torch.nn.functional.batch_norm in training mode, backward through autograd
                (cuDNN where PyTorch picks it)
Times are CUDA-event medians after warm-up; bandwidth counts the minimal traffic (forward 3 passes
of x's size, backward 5), and memcpy_gbps is a device-to-device copy of x's size (2 passes)
measured in the same run. One JSON line per row.
"""
import argparse
import json
import statistics
import sys

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("torch_batch_norm_bench.py: PyTorch is not installed", file=sys.stderr)
    sys.exit(77)

EPS = 1e-5
MOMENTUM = 0.1


def parse_shapes(text):
    shapes = []
    for item in text.split(","):
        parts = item.split("x")
        if len(parts) != 4:
            raise SystemExit(f"--shapes: expected NxCxHxW, got {item!r}")
        shapes.append(tuple(int(p) for p in parts))
    return shapes


def median_ms(pairs):
    """Median elapsed time (ms) of (start, end) event pairs, after synchronising."""
    torch.cuda.synchronize()
    return statistics.median(start.elapsed_time(end) for start, end in pairs)


def events():
    return torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)


def bench_syncbn_kernels(x, dy, weight, bias, warmup, iters):
    channels = x.shape[1]
    count = x.numel() // channels
    running_mean = torch.zeros(channels, device=x.device)
    running_var = torch.ones(channels, device=x.device)
    counts = torch.full((1,), count, dtype=torch.float32, device=x.device)
    count_tensor = counts.to(torch.int32)
    fwd, bwd = [], []
    for i in range(warmup + iters):
        f0, f1 = events()
        b0, b1 = events()
        f0.record()
        mean, invstd = torch.batch_norm_stats(x, EPS)
        mean, invstd = torch.batch_norm_gather_stats_with_counts(
            x, mean.unsqueeze(0), invstd.unsqueeze(0), running_mean, running_var, MOMENTUM, EPS,
            counts)
        y = torch.batch_norm_elemt(x, weight, bias, mean, invstd, EPS)
        f1.record()
        b0.record()
        sum_dy, sum_dy_xmu, grad_weight, grad_bias = torch.batch_norm_backward_reduce(
            dy, x, mean, invstd, weight, True, True, True)
        dx = torch.batch_norm_backward_elemt(dy, x, mean, invstd, weight, sum_dy, sum_dy_xmu,
                                             count_tensor)
        b1.record()
        if i >= warmup:
            fwd.append((f0, f1))
            bwd.append((b0, b1))
        del y, dx
    return median_ms(fwd), median_ms(bwd)


def bench_functional(x, dy, weight, bias, warmup, iters):
    channels = x.shape[1]
    running_mean = torch.zeros(channels, device=x.device)
    running_var = torch.ones(channels, device=x.device)
    x = x.detach().requires_grad_(True)
    weight = weight.detach().requires_grad_(True)
    bias = bias.detach().requires_grad_(True)
    fwd, bwd = [], []
    for i in range(warmup + iters):
        x.grad = weight.grad = bias.grad = None  # no accumulation kernels in the timing
        f0, f1 = events()
        b0, b1 = events()
        f0.record()
        y = F.batch_norm(x, running_mean, running_var, weight, bias, training=True,
                         momentum=MOMENTUM, eps=EPS)
        f1.record()
        b0.record()
        y.backward(dy)
        b1.record()
        if i >= warmup:
            fwd.append((f0, f1))
            bwd.append((b0, b1))
        del y
    return median_ms(fwd), median_ms(bwd)


def bench_memcpy(x, warmup, iters):
    out = torch.empty_like(x)
    pairs = []
    for i in range(warmup + iters):
        start, end = events()
        start.record()
        out.copy_(x)
        end.record()
        if i >= warmup:
            pairs.append((start, end))
    return median_ms(pairs)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes",
                        default="64x256x56x56,128x64x112x112,32x256x112x112,256x2048x7x7")
    parser.add_argument("--layouts", default="nchw,nhwc")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--device", type=int, default=0)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("torch_batch_norm_bench.py: no CUDA device", file=sys.stderr)
        sys.exit(77)
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = torch.device("cuda", args.device)
    torch.cuda.set_device(device)
    name = torch.cuda.get_device_name(device)
    torch.manual_seed(0)
    print(f"# device {name}, torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, "
          f"{args.warmup} warm-up and {args.iters} timed iterations, median")
    print(f"#{'shape':>21} {'layout':>6} {'impl':>13} {'fwd(us)':>10} {'fwd GB/s':>9} "
          f"{'bwd(us)':>10} {'bwd GB/s':>9} {'all GB/s':>9} {'all %':>7} {'memcpy':>9}")
    lines = []
    for n, c, h, w in parse_shapes(args.shapes):
        for layout in args.layouts.split(","):
            memory_format = torch.channels_last if layout == "nhwc" else torch.contiguous_format
            x = torch.randn(n, c, h, w, device=device).contiguous(memory_format=memory_format)
            dy = torch.randn(n, c, h, w, device=device).contiguous(memory_format=memory_format)
            weight = torch.randn(c, device=device) * 0.3 + 1.0
            bias = torch.randn(c, device=device) * 0.3
            x_bytes = x.numel() * x.element_size()
            memcpy_gbps = 2 * x_bytes / (bench_memcpy(x, args.warmup, args.iters) * 1e-3) / 1e9
            for impl, fn in (("torch_syncbn", bench_syncbn_kernels),
                             ("torch_bn", bench_functional)):
                fwd_ms, bwd_ms = fn(x, dy, weight, bias, args.warmup, args.iters)
                fwd_gbps = 3 * x_bytes / (fwd_ms * 1e-3) / 1e9
                bwd_gbps = 5 * x_bytes / (bwd_ms * 1e-3) / 1e9
                all_gbps = 8 * x_bytes / ((fwd_ms + bwd_ms) * 1e-3) / 1e9
                shape = f"{n}x{c}x{h}x{w}"
                print(f" {shape:>21} {layout:>6} {impl:>13} {fwd_ms * 1e3:10.1f} {fwd_gbps:9.1f} "
                      f"{bwd_ms * 1e3:10.1f} {bwd_gbps:9.1f} {all_gbps:9.1f} "
                      f"{100 * all_gbps / memcpy_gbps:6.1f}% {memcpy_gbps:9.1f}")
                lines.append(json.dumps({
                    "bench": "batch_norm", "impl": impl, "device": name,
                    "n": n, "c": c, "h": h, "w": w, "layout": layout,
                    "fwd_us": round(fwd_ms * 1e3, 2), "bwd_us": round(bwd_ms * 1e3, 2),
                    "fwd_gbps": round(fwd_gbps, 1), "bwd_gbps": round(bwd_gbps, 1),
                    "all_gbps": round(all_gbps, 1), "memcpy_gbps": round(memcpy_gbps, 1),
                    "fwd_pct_memcpy": round(100 * fwd_gbps / memcpy_gbps, 1),
                    "bwd_pct_memcpy": round(100 * bwd_gbps / memcpy_gbps, 1),
                    "all_pct_memcpy": round(100 * all_gbps / memcpy_gbps, 1),
                    "torch": torch.__version__,
                }))
            del x, dy
            torch.cuda.empty_cache()
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
