"""The GPU suite: run on a GPU host with torch and cupy installed and a wheel built by
`cargo xtask wheel` (the `cuda` feature) installed:

    pip install target/wheels/damacy-*.whl torch cupy-cuda13x pytest numpy
    pytest crates/damacy-py/tests_gpu

Nothing here is skipped silently: without CUDA, torch or cupy the suite errors out.
"""

import pathlib
import sys

import pytest

import damacy

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))

import torch  # noqa: E402  (required: the GPU host has it)

assert damacy.CUDA_BUILT, "install the wheel from `cargo xtask wheel` (built with the cuda feature)"
assert torch.cuda.is_available(), "the GPU suite needs a CUDA device"


@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
    return damacy.gen_scenario("smoke", tmp_path_factory.mktemp("smoke"))


@pytest.fixture(scope="session")
def quickstart(tmp_path_factory):
    return damacy.gen_scenario("quickstart", tmp_path_factory.mktemp("quickstart"))
