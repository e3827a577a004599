"""damacy: stream fixed-shape crops from many sharded zarr v3 arrays as batches of tensors.

Batches are DLPack producers (``numpy.from_dlpack``, ``torch.from_dlpack``,
``cupy.from_dlpack``) with no copy: host batches on the CPU, device batches (the CUDA
engine) on the pipeline's GPU.

>>> import damacy
>>> cfg = damacy.Config(sample_shape=[16, 16, 16], samples_per_batch=4)
>>> cfg.samples_per_batch
4
"""

from ._native import (
    CUDA_BUILT,
    Axis,
    Batch,
    BudgetError,
    ClosedError,
    Config,
    ConfigError,
    Dataset,
    DlpackError,
    Error,
    GpuError,
    Image,
    ImageError,
    ImageLevel,
    InternalError,
    Pipeline,
    Sample,
    SampleError,
    SampleStream,
    SourceError,
    StoreError,
    TimeoutError,
    gen_scenario,
)

__all__ = [
    "CUDA_BUILT",
    "Axis",
    "Batch",
    "BudgetError",
    "ClosedError",
    "Config",
    "ConfigError",
    "Dataset",
    "DlpackError",
    "Error",
    "GpuError",
    "Image",
    "ImageError",
    "ImageLevel",
    "InternalError",
    "Pipeline",
    "Sample",
    "SampleError",
    "SampleStream",
    "SourceError",
    "StoreError",
    "TimeoutError",
    "gen_scenario",
]


def __getattr__(name: str):
    # `damacy.torch` is imported on first use only, and only where torch is installed.
    if name == "torch":
        import importlib

        return importlib.import_module(".torch", __name__)
    raise AttributeError(f"module 'damacy' has no attribute {name!r}")
