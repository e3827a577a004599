// damacy kernels: gather + cast (assemble), fill, blosc unshuffle, batched memcpy and the
// decode-status reduction. Compiled at run time with NVRTC (see kernels/src/module.rs);
// the struct layouts here must match kernels/src/desc.rs byte for byte (a host test
// checks the sizes and offsets that Rust packs).

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef signed char i8;
typedef short i16;
typedef int i32;
typedef long long i64;

#define MAX_RANK 8

// Source dtype codes (kernels::src_code of zarr::DataType).
#define DT_BOOL 0
#define DT_I8 1
#define DT_I16 2
#define DT_I32 3
#define DT_I64 4
#define DT_U8 5
#define DT_U16 6
#define DT_U32 7
#define DT_U64 8
#define DT_F16 9
#define DT_BF16 10
#define DT_F32 11
#define DT_F64 12

// Output codes (zarr::OutDtype).
#define OUT_F32 0
#define OUT_BF16 1
#define OUT_F16 2
#define OUT_NATIVE 3

// Shuffle codes (kernels::Shuffle).
#define SH_NONE 0
#define SH_BYTE 1
#define SH_BIT 2

struct Placement {
    u64 src;          // device address of the chunk's decoded (possibly still shuffled) bytes
    u64 src_base;     // element offset of the box's first element inside the chunk
    u64 dst_base;     // element offset of the box's first element inside the output
    u64 blocksize;    // blosc block size in bytes (shuffled sources)
    u64 nbytes;       // bytes of the whole chunk (shuffled sources: the last block's length)
    u32 rank;
    u32 src_dtype;
    u32 shuffle;
    u32 typesize;     // blosc typesize (shuffled sources)
    u32 count;        // elements in the box
    u32 pad;
    u32 extent[MAX_RANK];
    u64 src_stride[MAX_RANK];
    u64 dst_stride[MAX_RANK];
};

struct FillBox {
    u64 dst_base;     // element offset of the box's first element inside the output
    u64 value;        // the element's bytes (little end first), elem_size of them used
    u32 rank;
    u32 count;
    u32 extent[MAX_RANK];
    u64 dst_stride[MAX_RANK];
};

struct CopyRange {
    u64 src;
    u64 dst;
    u64 len;
};

// ---- casts (bit-exact with crates/damacy/src/cast.rs) ----

__device__ __forceinline__ u16 f32_to_bf16_bits(float x) {
    u32 bits = __float_as_uint(x);
    if (x != x) {
        return (u16)(0x7fc0u | ((bits >> 16) & 0x8000u));
    }
    u32 lsb = (bits >> 16) & 1u;
    return (u16)((bits + 0x7fffu + lsb) >> 16);
}

__device__ __forceinline__ u16 f32_to_f16_bits(float x) {
    u32 bits = __float_as_uint(x);
    u16 sign = (u16)((bits >> 16) & 0x8000u);
    if (x != x) {
        return sign | 0x7e00u;
    }
    int exp = (int)((bits >> 23) & 0xffu);
    u32 man = bits & 0x007fffffu;
    int e = exp - 127 + 15;
    if (exp == 0xff || e >= 0x1f) {
        return sign | 0x7c00u;
    }
    if (e <= 0) {
        if (e < -10) {
            return sign;
        }
        u32 m = man | 0x00800000u;
        u32 shift = (u32)(14 - e);
        u32 half = 1u << (shift - 1);
        u32 rem = m & ((1u << shift) - 1u);
        u32 h = m >> shift;
        if (rem > half || (rem == half && (h & 1u) == 1u)) {
            h += 1u;
        }
        return sign | (u16)h;
    }
    u32 h = ((u32)e << 10) | (man >> 13);
    u32 rem = man & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u) == 1u)) {
        h += 1u;
    }
    return sign | (u16)h;
}

__device__ __forceinline__ float f16_bits_to_f32(u16 h) {
    u32 sign = ((u32)h & 0x8000u) << 16;
    u32 exp = ((u32)h >> 10) & 0x1fu;
    u32 man = (u32)h & 0x3ffu;
    if (exp == 0x1f) {
        // inf, or NaN with its payload kept and the quiet bit set (the half crate's rule).
        return __uint_as_float(sign | (man == 0 ? 0x7f800000u : (0x7fc00000u | (man << 13))));
    }
    if (exp == 0) {
        if (man == 0) {
            return __uint_as_float(sign);
        }
        // Subnormal: exact, man * 2^-24.
        float v = (float)man * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    return __uint_as_float(sign | ((exp + 112u) << 23) | (man << 13));
}

// Integer and f64 conversions round to nearest even (the __*_rn intrinsics), like Rust's `as`.
template <int SRC> __device__ __forceinline__ float to_f32(u64 raw);
template <> __device__ __forceinline__ float to_f32<DT_BOOL>(u64 raw) { return (raw & 0xffu) != 0 ? 1.0f : 0.0f; }
template <> __device__ __forceinline__ float to_f32<DT_I8>(u64 raw) { return (float)(i8)(u8)raw; }
template <> __device__ __forceinline__ float to_f32<DT_U8>(u64 raw) { return (float)(u8)raw; }
template <> __device__ __forceinline__ float to_f32<DT_I16>(u64 raw) { return (float)(i16)(u16)raw; }
template <> __device__ __forceinline__ float to_f32<DT_U16>(u64 raw) { return (float)(u16)raw; }
template <> __device__ __forceinline__ float to_f32<DT_I32>(u64 raw) { return __int2float_rn((i32)(u32)raw); }
template <> __device__ __forceinline__ float to_f32<DT_U32>(u64 raw) { return __uint2float_rn((u32)raw); }
template <> __device__ __forceinline__ float to_f32<DT_I64>(u64 raw) { return __ll2float_rn((i64)raw); }
template <> __device__ __forceinline__ float to_f32<DT_U64>(u64 raw) { return __ull2float_rn(raw); }
template <> __device__ __forceinline__ float to_f32<DT_F16>(u64 raw) { return f16_bits_to_f32((u16)raw); }
template <> __device__ __forceinline__ float to_f32<DT_BF16>(u64 raw) { return __uint_as_float(((u32)(u16)raw) << 16); }
template <> __device__ __forceinline__ float to_f32<DT_F32>(u64 raw) { return __uint_as_float((u32)raw); }
template <> __device__ __forceinline__ float to_f32<DT_F64>(u64 raw) {
    double d = __longlong_as_double((i64)raw);
    if (d != d) {
        // NaN: what x86's cvtsd2ss (Rust's `as` on the host) gives: sign, quiet bit, and
        // the top 22 payload bits; the GPU's own conversion would return a canonical NaN.
        return __uint_as_float((u32)((raw >> 32) & 0x80000000ull) | 0x7fc00000u | (u32)((raw >> 29) & 0x3fffffull));
    }
    return __double2float_rn(d);
}

template <int SRC> struct SrcSize { static const u32 v = 1; };
template <> struct SrcSize<DT_I16> { static const u32 v = 2; };
template <> struct SrcSize<DT_U16> { static const u32 v = 2; };
template <> struct SrcSize<DT_F16> { static const u32 v = 2; };
template <> struct SrcSize<DT_BF16> { static const u32 v = 2; };
template <> struct SrcSize<DT_I32> { static const u32 v = 4; };
template <> struct SrcSize<DT_U32> { static const u32 v = 4; };
template <> struct SrcSize<DT_F32> { static const u32 v = 4; };
template <> struct SrcSize<DT_I64> { static const u32 v = 8; };
template <> struct SrcSize<DT_U64> { static const u32 v = 8; };
template <> struct SrcSize<DT_F64> { static const u32 v = 8; };

// ---- blosc unshuffle, as an address map from unshuffled byte to shuffled bytes ----

// Byte `b` of the unshuffled chunk, read from the shuffled chunk `src` (c-blosc 1.x layout:
// blocks of `blocksize` bytes, the last one shorter; in each block the whole elements are
// byte- or bit-transposed and a trailing partial element stays in place).
__device__ __forceinline__ u8 shuffled_byte(const u8* src, u64 b, u32 shuffle, u32 ts, u64 blocksize, u64 nbytes) {
    if (shuffle == SH_NONE || (ts <= 1 && shuffle == SH_BYTE)) {
        return src[b];
    }
    u64 block = b / blocksize;
    u64 start = block * blocksize;
    u64 len = nbytes - start < blocksize ? nbytes - start : blocksize;
    u64 o = b - start;
    u64 n = len / ts;
    if (o >= n * ts) {
        return src[b];
    }
    u64 i = o / ts;
    u64 j = o - i * ts;
    if (shuffle == SH_BYTE) {
        return src[start + j * n + i];
    }
    // Bit shuffle applies only to blocks whose whole-element count is a multiple of 8.
    if (len < ts || (n & 7u) != 0) {
        return src[b];
    }
    u64 row = n >> 3;
    const u8* planes = src + start + j * 8 * row + (i >> 3);
    u32 bit = (u32)(i & 7u);
    u32 v = 0;
#pragma unroll
    for (u32 k = 0; k < 8; ++k) {
        v |= (((u32)planes[k * row] >> bit) & 1u) << k;
    }
    return (u8)v;
}

template <int SRC> __device__ __forceinline__ u64 load_raw(const Placement& p, u64 elem) {
    const u32 size = SrcSize<SRC>::v;
    const u8* base = (const u8*)p.src;
    if (p.shuffle == SH_NONE) {
        if (size == 1) return base[elem];
        if (size == 2) return ((const u16*)base)[elem];
        if (size == 4) return ((const u32*)base)[elem];
        return ((const u64*)base)[elem];
    }
    u64 v = 0;
    u64 b = elem * size;
#pragma unroll
    for (u32 k = 0; k < size; ++k) {
        v |= (u64)shuffled_byte(base, b + k, p.shuffle, p.typesize, p.blocksize, p.nbytes) << (8 * k);
    }
    return v;
}

template <int SRC, int OUT> __device__ __forceinline__ void store(u8* out, u64 d, u64 raw) {
    if (OUT == OUT_F32) {
        ((float*)out)[d] = to_f32<SRC>(raw);
    } else if (OUT == OUT_BF16) {
        ((u16*)out)[d] = f32_to_bf16_bits(to_f32<SRC>(raw));
    } else if (OUT == OUT_F16) {
        ((u16*)out)[d] = f32_to_f16_bits(to_f32<SRC>(raw));
    } else {
        const u32 size = SrcSize<SRC>::v;
        if (size == 1) ((u8*)out)[d] = (u8)raw;
        else if (size == 2) ((u16*)out)[d] = (u16)raw;
        else if (size == 4) ((u32*)out)[d] = (u32)raw;
        else ((u64*)out)[d] = raw;
    }
}

// Element offsets (source, destination) of element `e` of the box, in C order. The
// last axis is contiguous in both, so consecutive threads touch consecutive addresses.
__device__ __forceinline__ void box_offsets(const u32* extent, const u64* ss, const u64* ds, u32 rank, u32 e, u64& so, u64& dof) {
    u32 last = extent[rank - 1];
    u32 row = e / last;
    u32 col = e - row * last;
    so = (u64)col * ss[rank - 1];
    dof = (u64)col * ds[rank - 1];
    for (int a = (int)rank - 2; a >= 0; --a) {
        u32 ext = extent[a];
        u32 q = row / ext;
        u32 c = row - q * ext;
        so += (u64)c * ss[a];
        dof += (u64)c * ds[a];
        row = q;
    }
}

template <int SRC, int OUT> __device__ void assemble_box(const Placement& p, u8* out) {
    for (u32 e = threadIdx.x; e < p.count; e += blockDim.x) {
        u64 so, dof;
        box_offsets(p.extent, p.src_stride, p.dst_stride, p.rank, e, so, dof);
        u64 raw = load_raw<SRC>(p, p.src_base + so);
        store<SRC, OUT>(out, p.dst_base + dof, raw);
    }
}

template <int OUT> __device__ void assemble_any(const Placement& p, u8* out) {
    switch (p.src_dtype) {
    case DT_BOOL: assemble_box<DT_BOOL, OUT>(p, out); break;
    case DT_I8: assemble_box<DT_I8, OUT>(p, out); break;
    case DT_I16: assemble_box<DT_I16, OUT>(p, out); break;
    case DT_I32: assemble_box<DT_I32, OUT>(p, out); break;
    case DT_I64: assemble_box<DT_I64, OUT>(p, out); break;
    case DT_U8: assemble_box<DT_U8, OUT>(p, out); break;
    case DT_U16: assemble_box<DT_U16, OUT>(p, out); break;
    case DT_U32: assemble_box<DT_U32, OUT>(p, out); break;
    case DT_U64: assemble_box<DT_U64, OUT>(p, out); break;
    case DT_F16: assemble_box<DT_F16, OUT>(p, out); break;
    case DT_BF16: assemble_box<DT_BF16, OUT>(p, out); break;
    case DT_F32: assemble_box<DT_F32, OUT>(p, out); break;
    case DT_F64: assemble_box<DT_F64, OUT>(p, out); break;
    default: break;
    }
}

// One block per placement (grid-stride over placements); the block's threads stride over
// the placement's elements. The descriptor is staged in shared memory once per block.
#define ASSEMBLE_KERNEL(NAME, OUT) \
extern "C" __global__ void NAME(const Placement* __restrict__ ps, u32 n, u8* __restrict__ out) { \
    __shared__ Placement p; \
    for (u32 k = blockIdx.x; k < n; k += gridDim.x) { \
        __syncthreads(); \
        if (threadIdx.x == 0) p = ps[k]; \
        __syncthreads(); \
        assemble_any<OUT>(p, out); \
    } \
}

ASSEMBLE_KERNEL(damacy_assemble_f32, OUT_F32)
ASSEMBLE_KERNEL(damacy_assemble_bf16, OUT_BF16)
ASSEMBLE_KERNEL(damacy_assemble_f16, OUT_F16)
ASSEMBLE_KERNEL(damacy_assemble_native, OUT_NATIVE)

// Writes `value` (elem_size bytes) over each box.
extern "C" __global__ void damacy_fill(const FillBox* __restrict__ boxes, u32 n, u32 elem_size, u8* __restrict__ out) {
    __shared__ FillBox f;
    u64 zero[MAX_RANK] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (u32 k = blockIdx.x; k < n; k += gridDim.x) {
        __syncthreads();
        if (threadIdx.x == 0) f = boxes[k];
        __syncthreads();
        for (u32 e = threadIdx.x; e < f.count; e += blockDim.x) {
            u64 unused, dof;
            box_offsets(f.extent, zero, f.dst_stride, f.rank, e, unused, dof);
            u64 d = f.dst_base + dof;
            if (elem_size == 1) out[d] = (u8)f.value;
            else if (elem_size == 2) ((u16*)out)[d] = (u16)f.value;
            else if (elem_size == 4) ((u32*)out)[d] = (u32)f.value;
            else ((u64*)out)[d] = f.value;
        }
    }
}

// Standalone unshuffle of a whole blosc chunk (`nbytes` bytes): one thread per output byte.
extern "C" __global__ void damacy_unshuffle(const u8* __restrict__ src, u8* __restrict__ dst, u64 nbytes, u32 shuffle, u32 typesize, u64 blocksize) {
    for (u64 b = (u64)blockIdx.x * blockDim.x + threadIdx.x; b < nbytes; b += (u64)gridDim.x * blockDim.x) {
        dst[b] = shuffled_byte(src, b, shuffle, typesize, blocksize, nbytes);
    }
}

// Many raw copies in one launch: one block per range (grid-stride), 16-byte words where
// both ends and the length allow it.
extern "C" __global__ void damacy_memcpy(const CopyRange* __restrict__ ranges, u32 n) {
    for (u32 k = blockIdx.x; k < n; k += gridDim.x) {
        CopyRange r = ranges[k];
        if (((r.src | r.dst | r.len) & 15u) == 0) {
            const uint4* s = (const uint4*)r.src;
            uint4* d = (uint4*)r.dst;
            u64 words = r.len >> 4;
            for (u64 w = threadIdx.x; w < words; w += blockDim.x) d[w] = s[w];
        } else {
            const u8* s = (const u8*)r.src;
            u8* d = (u8*)r.dst;
            for (u64 b = threadIdx.x; b < r.len; b += blockDim.x) d[b] = s[b];
        }
    }
}

// Decode-status reduction: chunk i failed when its status is non-zero or its actual size
// differs from the expected one. report[0] = first failing index (0xffffffff if none,
// pre-set by the host), report[1] = number of failing chunks (pre-set to 0).
extern "C" __global__ void damacy_status_reduce(const i32* __restrict__ statuses, const u64* __restrict__ actual, const u64* __restrict__ expected, u32 n, u32* report) {
    for (u32 i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        if (statuses[i] != 0 || actual[i] != expected[i]) {
            atomicMin(&report[0], i);
            atomicAdd(&report[1], 1u);
        }
    }
}

// ---- zstd frame check (the device twin of kernels/src/zstd_frame.rs) ----

// Fault codes (kernels::zstd_frame::FrameFault); 0 means the frame passed.
#define ZF_OK 0
#define ZF_MAGIC 1
#define ZF_RESERVED_BIT 2
#define ZF_WINDOW_LOG 3
#define ZF_DICTIONARY 4
#define ZF_NO_CONTENT_SIZE 5
#define ZF_CONTENT_SIZE 6
#define ZF_RESERVED_BLOCK_TYPE 7
#define ZF_BLOCK_TOO_LARGE 8
#define ZF_RAW_RLE_PAST_CONTENT 9
#define ZF_BLOCK_PAST_END 10
#define ZF_CHECKSUM_PAST_END 11
#define ZF_TRAILING_BYTES 12
#define ZF_HEADER_PAST_END 13

#define ZF_MAGIC_NUMBER 0xfd2fb528ull
#define ZF_BLOCK_MAX (128ull << 10)
#define ZF_WINDOW_LOG_MAX 31ull

struct FrameVerdict {
    u32 code;         // ZF_* code
    u32 pad;
    u64 offset;       // byte offset of the fault in the frame
    u64 value;        // the offending value
};

// `n` bytes little end first at `at`, reading nothing past `len`; false past the end.
__device__ __forceinline__ bool zf_le(const u8* f, u64 len, u64 at, u64 n, u64& out) {
    if (at > len || n > len - at) {
        return false;
    }
    u64 v = 0;
    for (u64 k = n; k > 0; --k) {
        v = (v << 8) | (u64)f[at + k - 1];
    }
    out = v;
    return true;
}

__device__ __forceinline__ FrameVerdict zf_fail(u32 code, u64 offset, u64 value) {
    FrameVerdict v;
    v.code = code;
    v.pad = 0;
    v.offset = offset;
    v.value = value;
    return v;
}

// The check of one frame, step for step as kernels::check_zstd_frame (whose verdict is
// kernels::host::zstd_frame_verdict): frame header, then every block header in a loop.
__device__ FrameVerdict zf_check(const u8* f, u64 len, u64 expected) {
    u64 magic, fhd, descriptor, id, content, header;
    if (!zf_le(f, len, 0, 4, magic)) return zf_fail(ZF_HEADER_PAST_END, 0, 4);
    if (magic != ZF_MAGIC_NUMBER) return zf_fail(ZF_MAGIC, 0, magic);
    if (!zf_le(f, len, 4, 1, fhd)) return zf_fail(ZF_HEADER_PAST_END, 4, 1);
    if (fhd & 0x08ull) return zf_fail(ZF_RESERVED_BIT, 4, fhd);
    bool single_segment = (fhd & 0x20ull) != 0;
    bool checksum = (fhd & 0x04ull) != 0;
    u64 dict_bytes = (fhd & 3ull) == 3 ? 4 : (fhd & 3ull);
    u64 fcs_code = fhd >> 6;
    u64 fcs_bytes = fcs_code == 0 ? (single_segment ? 1 : 0) : fcs_code == 1 ? 2 : fcs_code == 2 ? 4 : 8;
    u64 at = single_segment ? 5 : 6;
    if (!single_segment) {
        if (!zf_le(f, len, 5, 1, descriptor)) return zf_fail(ZF_HEADER_PAST_END, 5, 1);
        if ((descriptor >> 3) + 10 > ZF_WINDOW_LOG_MAX) return zf_fail(ZF_WINDOW_LOG, 5, descriptor);
    }
    if (dict_bytes > 0) {
        if (!zf_le(f, len, at, dict_bytes, id)) return zf_fail(ZF_HEADER_PAST_END, at, dict_bytes);
        if (id != 0) return zf_fail(ZF_DICTIONARY, at, dict_bytes);
    }
    at += dict_bytes;
    if (fcs_bytes == 0) return zf_fail(ZF_NO_CONTENT_SIZE, 4, fhd);
    if (!zf_le(f, len, at, fcs_bytes, content)) return zf_fail(ZF_HEADER_PAST_END, at, fcs_bytes);
    if (fcs_bytes == 2) content += 256;
    if (content != expected) return zf_fail(ZF_CONTENT_SIZE, at, content);
    at += fcs_bytes;
    u64 exact = 0;
    for (;;) {
        if (!zf_le(f, len, at, 3, header)) return zf_fail(ZF_HEADER_PAST_END, at, 3);
        bool last = (header & 1ull) != 0;
        u64 kind = (header >> 1) & 3ull;
        u64 size = header >> 3;
        u64 stored;
        if (kind == 0) {
            exact += size;
            stored = size;
        } else if (kind == 1) {
            exact += size;
            stored = 1;
        } else if (kind == 2) {
            stored = size;
        } else {
            return zf_fail(ZF_RESERVED_BLOCK_TYPE, at, kind);
        }
        if (size > ZF_BLOCK_MAX) return zf_fail(ZF_BLOCK_TOO_LARGE, at, size);
        if (exact > expected) return zf_fail(ZF_RAW_RLE_PAST_CONTENT, at, exact);
        at += 3;
        if (stored > len - at) return zf_fail(ZF_BLOCK_PAST_END, at, stored);
        at += stored;
        if (last) break;
    }
    if (checksum) {
        if (4 > len - at) return zf_fail(ZF_CHECKSUM_PAST_END, at, 4);
        at += 4;
    }
    if (at != len) return zf_fail(ZF_TRAILING_BYTES, at, len - at);
    return zf_fail(ZF_OK, 0, 0);
}

// One thread per frame (grid-stride): the arrays nvCOMP's batched decode takes (frame
// pointers, compressed sizes, the decoded size each frame must declare), one verdict out.
extern "C" __global__ void damacy_zstd_frame_check(const u64* __restrict__ comp_ptrs, const u64* __restrict__ comp_bytes, const u64* __restrict__ expected, u32 n, FrameVerdict* __restrict__ verdicts) {
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) {
        verdicts[i] = zf_check((const u8*)comp_ptrs[i], comp_bytes[i], expected[i]);
    }
}
