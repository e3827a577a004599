"""damacy for PyTorch: a pipeline as an ``IterableDataset`` of torch tensors.

Imported on first use (``damacy.torch``), and only where torch is installed. Use it with
``DataLoader(dataset, batch_size=None, num_workers=0)``: damacy batches and parallelizes
on its own threads, so DataLoader workers would only split (and copy) its work.

Under ``torch.distributed`` each rank runs its own pipeline on its own share of the
sample stream (every ``world_size``-th sample, from its rank), on the GPU of its
``LOCAL_RANK`` when the configuration's backend is ``auto`` and CUDA is there.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import IterableDataset, get_worker_info

from ._native import CUDA_BUILT, Batch, Config, Pipeline, Sample

__all__ = ["DamacyDataset", "rank_and_world", "to_tensor"]


def rank_and_world() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from ``torch.distributed`` when it is
    initialized, else from the ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` environment (as
    ``torchrun`` sets it), else ``(0, 1, 0)``."""
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), local
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")), local


def to_tensor(batch: Batch) -> torch.Tensor:
    """The batch as a torch tensor, without a copy (a CUDA tensor for a device batch; torch
    passes its current stream, which then waits on the batch's ready event)."""
    return torch.from_dlpack(batch)


def _for_device(config: Config, local_rank: int) -> Config:
    """``config`` with an ``auto`` backend pinned to this rank's GPU, where there is one."""
    knobs = config.to_dict()
    if knobs["backend"].get("kind") == "auto" and CUDA_BUILT and torch.cuda.is_available():
        knobs["backend"] = {"kind": "cuda", "device": local_rank}
    return Config.from_dict(knobs)


class DamacyDataset(IterableDataset):
    """An ``IterableDataset`` yielding one ``[n, *sample_shape]`` tensor per batch.

    ``samples`` is an iterable of ``damacy.Sample`` (it may be infinite), or a callable
    returning a fresh one for each epoch (each ``iter(dataset)``). Every rank takes every
    ``world_size``-th sample starting at its rank, so ranks never read the same sample.

    A yielded tensor holds its batch's buffer until the next one is requested: a device
    batch is then released on torch's current stream (reuse waits for the work queued on
    it, with no host sync); keep a ``.clone()`` to hold data longer. At most
    ``batches_in_flight`` buffers exist (``0``, the default, resolves by engine and batch
    size: ``pipeline.stats()["batches_in_flight"]``), each holding the
    ``batches_per_plan`` batches planned together (``pipeline.stats()["batches_per_plan"]``);
    a buffer is reused once all of its batches are released.
    """

    def __init__(
        self,
        config: Config,
        samples: Iterable[Sample] | Callable[[], Iterable[Sample]],
        *,
        rank: int | None = None,
        world_size: int | None = None,
        local_rank: int | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.samples = samples
        r, w, lr = rank_and_world()
        self.rank = r if rank is None else rank
        self.world_size = w if world_size is None else world_size
        self.local_rank = lr if local_rank is None else local_rank
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is outside world_size {self.world_size}")
        self.backend: str | None = None

    def _my_samples(self) -> Iterator[Sample]:
        source: Any = self.samples() if callable(self.samples) else self.samples
        return itertools.islice(iter(source), self.rank, None, self.world_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        info = get_worker_info()
        if info is not None and info.num_workers > 1:
            raise RuntimeError(
                "damacy.torch.DamacyDataset runs its own threads: use DataLoader(..., "
                "batch_size=None, num_workers=0)"
            )
        with Pipeline(_for_device(self.config, self.local_rank)) as pipeline:
            self.backend = pipeline.backend
            pipeline.push(self._my_samples())
            pipeline.finish()
            for batch in pipeline:
                tensor = to_tensor(batch)
                if tensor.is_cuda:
                    yield tensor
                    stream = torch.cuda.current_stream(tensor.device).cuda_stream
                    batch.release(stream=stream or 1)
                else:
                    batch.release()  # the tensor keeps the buffer alive
                    yield tensor
                del tensor
