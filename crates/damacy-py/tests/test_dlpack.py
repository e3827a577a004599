"""The DLPack producer: zero copy, legacy and versioned capsules (inspected through
ctypes), dtypes (bf16 as kDLBfloat), copies and the stream argument of host batches."""

import ctypes
import itertools

import numpy as np
import pytest

import damacy
from conftest import host_config

KDL_CPU = 1


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


class DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", ctypes.c_void_p)]


class DLPackVersion(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32)]


class DLManagedTensorVersioned(ctypes.Structure):
    _fields_ = [
        ("version", DLPackVersion),
        ("manager_ctx", ctypes.c_void_p),
        ("deleter", ctypes.c_void_p),
        ("flags", ctypes.c_uint64),
        ("dl_tensor", DLTensor),
    ]


_api = ctypes.pythonapi
_api.PyCapsule_GetName.restype = ctypes.c_char_p
_api.PyCapsule_GetName.argtypes = [ctypes.py_object]
_api.PyCapsule_GetPointer.restype = ctypes.c_void_p
_api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def inspect(capsule):
    """(name, managed struct, capsule) of a capsule, read without consuming it; the
    struct lives as long as the capsule returned with it."""
    name = _api.PyCapsule_GetName(capsule)
    ptr = _api.PyCapsule_GetPointer(capsule, name)
    cls = DLManagedTensorVersioned if name == b"dltensor_versioned" else DLManagedTensor
    return name, cls.from_address(ptr), capsule


def tensor_facts(t):
    shape = tuple(t.shape[i] for i in range(t.ndim))
    strides = tuple(t.strides[i] for i in range(t.ndim)) if t.strides else None
    return shape, strides


class Legacy:
    """A consumer view that only knows the pre-1.0 protocol (no max_version)."""

    def __init__(self, batch):
        self.batch = batch

    def __dlpack__(self, stream=None, **_):
        return self.batch.__dlpack__(stream=stream)

    def __dlpack_device__(self):
        return self.batch.__dlpack_device__()


@pytest.fixture
def pipeline(smoke):
    def make(**knobs):
        cfg = host_config(sample_shape=smoke.sample_shape, samples_per_batch=4, **knobs)
        p = damacy.Pipeline(cfg)
        p.push(itertools.islice(smoke.samples(), 40))
        p.finish()
        return p

    return make


def test_host_batches_are_kdlcpu_and_zero_copy(pipeline):
    with pipeline() as p:
        batch = p.pop()
        assert batch.__dlpack_device__() == (KDL_CPU, 0)
        assert batch.device == "cpu" and p.device == "cpu"
        a = np.from_dlpack(batch)
        b = np.from_dlpack(batch)
        # Two imports share one buffer, the batch's own.
        assert a.ctypes.data == b.ctypes.data == batch.data_ptr
        assert np.shares_memory(a, b)
        assert np.asarray(batch).ctypes.data == batch.data_ptr
        assert a.shape == batch.shape == (4, 16, 16, 16)
        assert a.dtype == np.float32 and batch.dtype == "float32"
        batch.release()


def test_versioned_and_legacy_capsules(pipeline):
    with pipeline() as p:
        batch = p.pop()
        name, m, _cap = inspect(batch.__dlpack__(max_version=(1, 0)))
        assert name == b"dltensor_versioned"
        assert (m.version.major, m.version.minor) == (1, 0)
        assert m.flags == 0  # neither read-only nor a copy
        t = m.dl_tensor
        assert t.data == batch.data_ptr and t.byte_offset == 0
        assert (t.device.device_type, t.device.device_id) == (KDL_CPU, 0)
        assert (t.dtype.code, t.dtype.bits, t.dtype.lanes) == (2, 32, 1)  # kDLFloat
        assert tensor_facts(t) == ((4, 16, 16, 16), (4096, 256, 16, 1))

        for kwargs in ({}, {"max_version": None}, {"max_version": (0, 8)}):
            name, m, _cap = inspect(batch.__dlpack__(**kwargs))
            assert name == b"dltensor", kwargs
            assert m.dl_tensor.data == batch.data_ptr
            assert tensor_facts(m.dl_tensor) == ((4, 16, 16, 16), (4096, 256, 16, 1))

        # numpy consumes both: it asks for a versioned capsule, the wrapper for a legacy one.
        v1 = np.from_dlpack(batch)
        v0 = np.from_dlpack(Legacy(batch))
        assert v0.ctypes.data == v1.ctypes.data == batch.data_ptr
        np.testing.assert_array_equal(v0, v1)
        batch.release()


def test_an_unconsumed_capsule_frees_its_reference(pipeline):
    # batches_in_flight=1: the only buffer comes back only if the dropped capsules let go.
    with pipeline(batches_in_flight=1) as p:
        for _ in range(3):
            batch = p.pop()
            for v in ((1, 0), None):
                batch.__dlpack__(max_version=v)  # dropped at once, never consumed
            batch.release()


def test_bf16_is_kdlbfloat_and_numpy_sees_its_bits(pipeline):
    with pipeline(dtype="f32", batches_in_flight=1) as p:
        f32 = np.from_dlpack(p.pop()).copy()
    with pipeline(dtype="bf16") as p:
        batch = p.pop()
        assert batch.dtype == "bfloat16"
        _, m, _cap = inspect(batch.__dlpack__(max_version=(1, 0)))
        assert (m.dl_tensor.dtype.code, m.dl_tensor.dtype.bits) == (4, 16)  # kDLBfloat
        bits = np.asarray(batch)
        assert bits.dtype == np.uint16 and bits.ctypes.data == batch.data_ptr
        # bf16 is f32 rounded to nearest even (no NaN in this data).
        u = f32.view(np.uint32).astype(np.uint64)
        want = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
        np.testing.assert_array_equal(bits, want)
        batch.release()


def test_f16_and_native_dtypes(pipeline):
    with pipeline(dtype="f32", batches_in_flight=1) as p:
        f32 = np.from_dlpack(p.pop()).copy()
    with pipeline(dtype="f16") as p:
        got = np.from_dlpack(p.pop())
        assert got.dtype == np.float16
        np.testing.assert_array_equal(got, f32.astype(np.float16))
    with pipeline(dtype="native") as p:
        got = np.from_dlpack(p.pop())
        assert got.dtype == np.uint16
        np.testing.assert_array_equal(got.astype(np.float32), f32)


def test_copy_true_copies_and_says_so(pipeline):
    with pipeline() as p:
        batch = p.pop()
        name, m, _cap = inspect(batch.__dlpack__(max_version=(1, 0), copy=True))
        assert name == b"dltensor_versioned"
        assert m.flags & 2  # DLPACK_FLAG_BITMASK_IS_COPIED
        assert m.dl_tensor.data != batch.data_ptr
        c = np.from_dlpack(batch, copy=True)
        assert c.ctypes.data != batch.data_ptr
        np.testing.assert_array_equal(c, np.from_dlpack(batch))
        arr = np.array(batch)  # numpy's copying constructor
        assert arr.ctypes.data != batch.data_ptr
        np.testing.assert_array_equal(arr, c)
        batch.release()


def test_host_batches_refuse_a_stream_and_another_device(pipeline):
    with pipeline() as p:
        batch = p.pop()
        with pytest.raises(BufferError, match="no stream"):
            batch.__dlpack__(stream=5)
        with pytest.raises(BufferError, match="cannot be exported"):
            batch.__dlpack__(dl_device=(2, 0))
        # -1 (no synchronization) and the own device are fine.
        _, m, _cap = inspect(batch.__dlpack__(stream=-1, dl_device=(KDL_CPU, 0)))
        assert m.dl_tensor.data == batch.data_ptr
        batch.release()
        with pytest.raises(damacy.DlpackError, match="released"):
            batch.__dlpack__()
        assert batch.released
