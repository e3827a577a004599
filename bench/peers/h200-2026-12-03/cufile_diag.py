"""cuFile diagnosis: which registrations work on this host, through ctypes (no damacy).
Usage: python3 cufile_diag.py <file> [direct]"""
import ctypes, os, sys
cuda = ctypes.CDLL("libcuda.so.1")
lib = ctypes.CDLL(os.environ.get("CUFILE_LIB", "/usr/local/cuda/lib64/libcufile.so.0"))
class Err(ctypes.Structure):
    _fields_ = [("err", ctypes.c_int), ("cu_err", ctypes.c_int)]
class U(ctypes.Union):
    _fields_ = [("fd", ctypes.c_int), ("handle", ctypes.c_void_p)]
class Descr(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("handle", U), ("fs_ops", ctypes.c_void_p)]
for n in ["cuFileDriverOpen", "cuFileHandleRegister", "cuFileBufRegister"]:
    getattr(lib, n).restype = Err
lib.cuFileRead.restype = ctypes.c_ssize_t
lib.cuFileRead.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_longlong, ctypes.c_longlong]
print("cuInit", cuda.cuInit(0))
dev = ctypes.c_int(); cuda.cuDeviceGet(ctypes.byref(dev), 0)
ctx = ctypes.c_void_p(); print("retain", cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev), "set", cuda.cuCtxSetCurrent(ctx))
e = lib.cuFileDriverOpen(); print("cuFileDriverOpen", e.err, e.cu_err)
path = sys.argv[1]; direct = len(sys.argv) > 2
data = os.urandom(1 << 20)
with open(path, "wb") as f: f.write(data)
flags = os.O_RDONLY | (os.O_DIRECT if direct else 0)
fd = os.open(path, flags)
d = Descr(); d.type = 1; d.handle.fd = fd; d.fs_ops = None
h = ctypes.c_void_p()
e = lib.cuFileHandleRegister(ctypes.byref(h), ctypes.byref(d))
print("cuFileHandleRegister", path, "O_DIRECT" if direct else "buffered", e.err, e.cu_err, "sizeof(Descr)", ctypes.sizeof(Descr))
if e.err == 0:
    p = ctypes.c_uint64(); print("cuMemAlloc", cuda.cuMemAlloc_v2(ctypes.byref(p), 1 << 20))
    e = lib.cuFileBufRegister(ctypes.c_void_p(p.value), 1 << 20, 0); print("cuFileBufRegister", e.err, e.cu_err)
    n = lib.cuFileRead(h, ctypes.c_void_p(p.value), 1 << 20, 0, 0); print("cuFileRead", n)
    out = ctypes.create_string_buffer(1 << 20)
    cuda.cuMemcpyDtoH_v2(out, p, 1 << 20)
    print("bytes equal", out.raw == data)
