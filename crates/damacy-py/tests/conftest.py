"""Shared fixtures of the CPU suite: the conformance arrays zarr-python wrote
(`tests/data` at the repository root) and a small generated scenario dataset."""

import json
import pathlib

import pytest

import damacy

REPO = pathlib.Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "data"


@pytest.fixture(scope="session")
def manifest():
    """The conformance manifest: every array, its crops and their `.npy` references."""
    return json.loads((FIXTURES / "manifest.json").read_text())


@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
    """The `smoke` scenario (two 64^3 uint16 arrays, zstd in shards) generated once."""
    return damacy.gen_scenario("smoke", tmp_path_factory.mktemp("smoke"), threads=1)


def host_config(**knobs):
    """A small host-engine configuration (few threads: CI has two cores)."""
    base = dict(backend="host", io_threads=2, decode_threads=1)
    base.update(knobs)
    return damacy.Config(**base)
