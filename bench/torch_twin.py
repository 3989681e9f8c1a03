#!/usr/bin/python3
"""PyTorch twin of experiments/bench.lua: the same reference workloads (two ResNet
encoders, concat fusion, three cross-entropy losses, Adam over three parameter
groups, batch 64), timed the same way, so `make bench` can print ours/PyTorch.
Usage: torch_twin.py WORKLOAD [threads] [seconds] [--cuda] [--amp] [--channels-last]
  (WORKLOAD: smnist | luma | cremad; --cuda: on the GPU; --amp: bf16 autocast;
  --channels-last: NHWC memory format)
Prints one line: "<workload>: <N> samples/s (<ms> ms/step, peak RSS <MiB> MiB)"."""
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    """BasicBlock: two 3x3 convs with batch norm, identity or 1x1 projection."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class Encoder(nn.Module):
    """ResNet with the 7x7/2 stem and max pooling, returning the pooled features."""

    def __init__(self, cin, blocks, widths=(64, 128, 256, 512)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(cin, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64),
                                  nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        layers, c = [], 64
        for i, n in enumerate(blocks):
            for j in range(n):
                layers.append(Block(c, widths[i], 2 if j == 0 and i > 0 else 1))
                c = widths[i]
        self.layers = nn.Sequential(*layers)
        self.out_features = c

    def forward(self, x):
        return torch.flatten(F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1), 1)


WORKLOADS = {  # shape A, shape B, blocks per stage, classes
    "smnist": ((1, 28, 28), (1, 28, 28), [1, 1, 1, 1], 10),
    "luma": ((1, 96, 96), (3, 96, 96), [1, 1], 50),
    "cremad": ((1, 224, 224), (3, 224, 224), [2, 2, 2, 2], 6),
}
BATCH, WARMUP, MIN_SECONDS, MIN_STEPS = 64, 3, 10.0, 3


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    flags = {a for a in sys.argv[1:] if a.startswith("--")}
    name = args[0]
    threads = int(args[1]) if len(args) > 1 else 2
    seconds = float(args[2]) if len(args) > 2 else MIN_SECONDS
    dev = "cuda" if "--cuda" in flags else "cpu"
    amp = "--amp" in flags
    fmt = torch.channels_last if "--channels-last" in flags else torch.contiguous_format
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    sa, sb, blocks, ncls = WORKLOADS[name]
    ea, eb = Encoder(sa[0], blocks), Encoder(sb[0], blocks)
    ha, hb = nn.Linear(ea.out_features, ncls), nn.Linear(eb.out_features, ncls)
    hab = nn.Linear(ea.out_features + eb.out_features, ncls)
    for m in (ea, eb, ha, hb, hab):
        m.to(dev, memory_format=fmt)
    heads = list(ha.parameters()) + list(hb.parameters()) + list(hab.parameters())
    opt = torch.optim.Adam([{"params": ea.parameters()}, {"params": eb.parameters()},
                            {"params": heads}], lr=1e-3)
    a = torch.randn(BATCH, *sa).to(dev, memory_format=fmt)
    b = torch.randn(BATCH, *sb).to(dev, memory_format=fmt)
    y = torch.randint(0, ncls, (BATCH,)).to(dev)
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=dev, dtype=torch.bfloat16, enabled=amp):
            za, zb = ea(a), eb(b)
            loss = (F.cross_entropy(hab(torch.cat([za, zb], 1)), y) + F.cross_entropy(ha(za), y)
                    + F.cross_entropy(hb(zb), y))
        loss.backward()
        opt.step()

    for _ in range(WARMUP):
        step()
    sync()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < MIN_STEPS:
        step()
        n += 1
        if n % 10 == 0:
            sync()  # keep the queue short, as a training loop reading its loss does
    sync()
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{name}: {n * BATCH / dt:.1f} samples/s ({dt / n * 1000:.1f} ms/step, "
          f"peak RSS {peak:.0f} MiB)")


main()
