"""Train a small 3-D U-Net for N steps on a generated dataset, fed by damacy.

A denoising task: the input is a crop plus noise, the target the clean crop. Runs on the
CPU, or on the GPU when torch sees one (and damacy was built with the CUDA engine, batches
then never leave the device).

    python examples/train_3d_unet.py --steps 100 [--device cpu|cuda] [--data DIR]

Prints one line per 10 steps and ``done: N steps`` at the end.
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile
import time

import torch
from torch import nn
from torch.utils.data import DataLoader

import damacy
from damacy.torch import DamacyDataset


def block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(cin, cout, 3, padding=1),
        nn.GroupNorm(4, cout),
        nn.SiLU(),
        nn.Conv3d(cout, cout, 3, padding=1),
        nn.GroupNorm(4, cout),
        nn.SiLU(),
    )


class UNet3d(nn.Module):
    """Two levels: 16 and 32 channels."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.enc = block(1, width)
        self.down = nn.MaxPool3d(2)
        self.mid = block(width, 2 * width)
        self.up = nn.ConvTranspose3d(2 * width, width, 2, stride=2)
        self.dec = block(2 * width, width)
        self.out = nn.Conv3d(width, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.enc(x)
        m = self.mid(self.down(e))
        d = self.dec(torch.cat([self.up(m), e], dim=1))
        return self.out(d)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--device", choices=["cpu", "cuda"], default=None)
    ap.add_argument("--data", type=pathlib.Path, default=None)
    ap.add_argument("--scenario", default="smoke")
    args = ap.parse_args()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    data_dir = args.data or pathlib.Path(tempfile.gettempdir()) / f"damacy-{args.scenario}"

    data = damacy.gen_scenario(args.scenario, data_dir)
    backend = "auto" if device == "cuda" else "host"
    config = data.config(backend=backend, dtype="f32", samples_per_batch=4)
    # The scenario's crop sequence is infinite: take what the steps need.
    n = config.samples_per_batch
    dataset = DamacyDataset(config, lambda: iter(data.samples()), rank=0, world_size=1)
    loader = DataLoader(dataset, batch_size=None, num_workers=0)

    model = UNet3d().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    start = time.perf_counter()
    step = 0
    for batch in loader:
        x = batch.to(device, non_blocking=True).unsqueeze(1)  # [n, 1, z, y, x]
        mean = x.mean(dim=(2, 3, 4), keepdim=True)
        std = x.std(dim=(2, 3, 4), keepdim=True).clamp_min(1e-3)
        clean = (x - mean) / std
        noisy = clean + 0.5 * torch.randn_like(clean)
        loss = nn.functional.mse_loss(model(noisy), clean)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 10 == 0 or step == args.steps:
            print(f"step {step:4d}  loss {loss.item():.4f}  ({dataset.backend}, batch {n})")
        if step == args.steps:
            break
    secs = time.perf_counter() - start
    print(f"done: {step} steps in {secs:.1f} s on {device}")


if __name__ == "__main__":
    main()
