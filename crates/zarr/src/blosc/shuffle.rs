//! Byte shuffle and bit shuffle of one blosc block, with c-blosc 1.x's exact handling of
//! the bytes that do not fill a whole element (`shuffle-generic.c`, `bitshuffle-generic.c`,
//! `shuffle.c` in c-blosc 1.21).
//!
//! All functions take `src` and `dst` of equal length (the block) and never panic: the
//! callers guarantee equal lengths and `typesize >= 1`, and the functions fall back to a
//! plain copy where a length does not fit.

/// Byte shuffle: byte `j` of element `i` goes to `dst[j * n + i]` for the `n` whole
/// elements; the trailing `len % typesize` bytes are copied unchanged.
pub(crate) fn shuffle(typesize: usize, src: &[u8], dst: &mut [u8]) {
    transpose_bytes(typesize, src, dst, false);
}

/// Inverse of [`shuffle`].
pub(crate) fn unshuffle(typesize: usize, src: &[u8], dst: &mut [u8]) {
    transpose_bytes(typesize, src, dst, true);
}

fn transpose_bytes(typesize: usize, src: &[u8], dst: &mut [u8], inverse: bool) {
    let len = src.len().min(dst.len());
    let (src, dst) = (&src[..len], &mut dst[..len]);
    if typesize <= 1 {
        dst.copy_from_slice(src);
        return;
    }
    let n = len / typesize;
    let body = n * typesize;
    // Two element sizes cover nearly all zarr data; giving the compiler a constant
    // stride lets it vectorise the loop.
    match (typesize, inverse) {
        (2, false) => transpose_fixed::<2>(n, src, dst, false),
        (2, true) => transpose_fixed::<2>(n, src, dst, true),
        (4, false) => transpose_fixed::<4>(n, src, dst, false),
        (4, true) => transpose_fixed::<4>(n, src, dst, true),
        (8, false) => transpose_fixed::<8>(n, src, dst, false),
        (8, true) => transpose_fixed::<8>(n, src, dst, true),
        _ => {
            for j in 0..typesize {
                for i in 0..n {
                    if inverse {
                        dst[i * typesize + j] = src[j * n + i];
                    } else {
                        dst[j * n + i] = src[i * typesize + j];
                    }
                }
            }
        }
    }
    dst[body..].copy_from_slice(&src[body..]);
}

fn transpose_fixed<const T: usize>(n: usize, src: &[u8], dst: &mut [u8], inverse: bool) {
    if inverse {
        let (planes, elems) = (&src[..n * T], &mut dst[..n * T]);
        for (i, elem) in elems.chunks_exact_mut(T).enumerate() {
            for (j, byte) in elem.iter_mut().enumerate() {
                *byte = planes[j * n + i];
            }
        }
    } else {
        let (elems, planes) = (&src[..n * T], &mut dst[..n * T]);
        for (i, elem) in elems.chunks_exact(T).enumerate() {
            for (j, byte) in elem.iter().enumerate() {
                planes[j * n + i] = *byte;
            }
        }
    }
}

/// Whether c-blosc 1.x bit-shuffles a block of `len` bytes at all: only when the number
/// of whole elements is a multiple of 8 (`blosc_internal_bitshuffle` copies the block
/// unchanged otherwise).
pub(crate) fn bitshuffle_applies(typesize: usize, len: usize) -> bool {
    typesize >= 1 && (len / typesize).is_multiple_of(8)
}

/// Bit shuffle as c-blosc 1.x applies it to one block: the whole elements are
/// bit-transposed when their count is a multiple of 8 and the trailing partial element
/// is copied; otherwise the whole block is copied.
pub(crate) fn bitshuffle(typesize: usize, src: &[u8], dst: &mut [u8]) {
    bit_transpose(typesize, src, dst, false);
}

/// Inverse of [`bitshuffle`].
pub(crate) fn bitunshuffle(typesize: usize, src: &[u8], dst: &mut [u8]) {
    bit_transpose(typesize, src, dst, true);
}

fn bit_transpose(typesize: usize, src: &[u8], dst: &mut [u8], inverse: bool) {
    let len = src.len().min(dst.len());
    let (src, dst) = (&src[..len], &mut dst[..len]);
    if !bitshuffle_applies(typesize, len) {
        dst.copy_from_slice(src);
        return;
    }
    let n = len / typesize;
    let body = n * typesize;
    if inverse {
        untrans_bit_elem(&src[..body], &mut dst[..body], n, typesize);
    } else {
        let mut tmp = vec![0u8; body];
        trans_byte_elem(&src[..body], &mut dst[..body], n, typesize);
        trans_bit_byte(&dst[..body], &mut tmp);
        trans_bitrow_eight(&tmp, &mut dst[..body], n, typesize);
    }
    dst[body..].copy_from_slice(&src[body..]);
}

/// Transposes the 8×8 bit matrix packed in `x` (bitshuffle's `TRANS_BIT_8X8`).
fn trans_bit_8x8(mut x: u64) -> u64 {
    let mut t = (x ^ (x >> 7)) & 0x00AA_00AA_00AA_00AA;
    x = x ^ t ^ (t << 7);
    t = (x ^ (x >> 14)) & 0x0000_CCCC_0000_CCCC;
    x = x ^ t ^ (t << 14);
    t = (x ^ (x >> 28)) & 0x0000_0000_F0F0_F0F0;
    x ^ t ^ (t << 28)
}

fn load_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    if let Some(s) = bytes.get(at..at + 8) {
        word.copy_from_slice(s);
    }
    u64::from_le_bytes(word)
}

/// `bshuf_trans_byte_elem_scal`: byte planes, `out[j * n + i] = in[i * es + j]`.
fn trans_byte_elem(input: &[u8], out: &mut [u8], n: usize, es: usize) {
    for (i, elem) in input.chunks_exact(es).take(n).enumerate() {
        for (j, byte) in elem.iter().enumerate() {
            out[j * n + i] = *byte;
        }
    }
}

/// `bshuf_trans_bit_byte_scal`: bit planes of every group of 8 bytes.
fn trans_bit_byte(input: &[u8], out: &mut [u8]) {
    let rows = input.len() / 8;
    for ii in 0..rows {
        let mut x = trans_bit_8x8(load_u64(input, ii * 8));
        for kk in 0..8 {
            out[kk * rows + ii] = x as u8;
            x >>= 8;
        }
    }
}

/// `bshuf_trans_bitrow_eight`: transpose of an 8 × `es` matrix of `n / 8`-byte rows.
fn trans_bitrow_eight(input: &[u8], out: &mut [u8], n: usize, es: usize) {
    let row = n / 8;
    for ii in 0..8 {
        for jj in 0..es {
            let from = (ii * es + jj) * row;
            let to = (jj * 8 + ii) * row;
            out[to..to + row].copy_from_slice(&input[from..from + row]);
        }
    }
}

/// `bshuf_untrans_bit_elem_scal` with its two passes fused and no scratch buffer:
/// `bshuf_trans_byte_bitrow_scal` gathers, for 8 elements `8 * ii..` and byte `jj`, the 8
/// bit-plane bytes `in[(jj * 8 + kk) * row + ii]`; `bshuf_shuffle_bit_eightelem_scal`
/// transposes them as one 8×8 bit matrix and writes byte `kk` of the result to byte
/// `jj` of element `8 * ii + kk`.
fn untrans_bit_elem(input: &[u8], out: &mut [u8], n: usize, es: usize) {
    let row = n / 8;
    for jj in 0..es {
        let planes = &input[jj * 8 * row..(jj + 1) * 8 * row];
        for ii in 0..row {
            let mut word = [0u8; 8];
            for (kk, byte) in word.iter_mut().enumerate() {
                *byte = planes[kk * row + ii];
            }
            let mut x = trans_bit_8x8(u64::from_le_bytes(word));
            for kk in 0..8 {
                out[(8 * ii + kk) * es + jj] = x as u8;
                x >>= 8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_shuffle_moves_bytes_into_planes_and_copies_the_tail() {
        let src = [1u8, 2, 3, 4, 5, 6, 7];
        let mut dst = [0u8; 7];
        shuffle(2, &src, &mut dst);
        assert_eq!(dst, [1, 3, 5, 2, 4, 6, 7]);
        let mut back = [0u8; 7];
        unshuffle(2, &dst, &mut back);
        assert_eq!(back, src);
    }

    #[test]
    fn byte_shuffle_generic_typesize_round_trips() {
        let src: Vec<u8> = (0..=200u8).collect();
        for ts in [1usize, 3, 5, 7, 16, 200] {
            let mut a = vec![0u8; src.len()];
            let mut b = vec![0u8; src.len()];
            shuffle(ts, &src, &mut a);
            unshuffle(ts, &a, &mut b);
            assert_eq!(b, src, "typesize {ts}");
        }
    }

    #[test]
    fn bitshuffle_of_eight_u8_is_the_bit_matrix_transpose() {
        // Element b has only bit b set, so bit plane k holds a single 1 at position k.
        let src: Vec<u8> = (0..8).map(|b| 1u8 << b).collect();
        let mut dst = vec![0u8; 8];
        bitshuffle(1, &src, &mut dst);
        assert_eq!(dst, (0..8).map(|k| 1u8 << k).collect::<Vec<_>>());
        // All-ones in element 0 set bit 0 of every plane.
        let mut src = vec![0u8; 8];
        src[0] = 0xff;
        bitshuffle(1, &src, &mut dst);
        assert_eq!(dst, vec![1u8; 8]);
    }

    #[test]
    fn bitshuffle_planes_are_ordered_byte_then_bit() {
        // 8 u16 elements; only element 3 has bit 1 of byte 1 set: plane 1*8+1 = 9,
        // row 0, bit 3.
        let mut src = vec![0u8; 16];
        src[3 * 2 + 1] = 0b10;
        let mut dst = vec![0u8; 16];
        bitshuffle(2, &src, &mut dst);
        let mut want = vec![0u8; 16];
        want[9] = 1 << 3;
        assert_eq!(dst, want);
        let mut back = vec![0u8; 16];
        bitunshuffle(2, &dst, &mut back);
        assert_eq!(back, src);
    }

    #[test]
    fn bitshuffle_copies_blocks_whose_element_count_is_not_a_multiple_of_8() {
        let src: Vec<u8> = (0..14).collect(); // 7 u16 elements
        let mut dst = vec![0u8; 14];
        bitshuffle(2, &src, &mut dst);
        assert_eq!(dst, src);
        // 16 u16 elements plus one stray byte: the byte is copied, the rest transposed.
        let src: Vec<u8> = (0..33).map(|i| (i * 37 + 11) as u8).collect();
        let mut dst = vec![0u8; 33];
        bitshuffle(2, &src, &mut dst);
        assert_eq!(dst[32], src[32]);
        assert_ne!(dst[..32], src[..32]);
        let mut back = vec![0u8; 33];
        bitunshuffle(2, &dst, &mut back);
        assert_eq!(back, src);
    }

    #[test]
    fn bitshuffle_round_trips_for_many_typesizes() {
        for ts in [1usize, 2, 3, 4, 8, 12, 16] {
            let len = ts * 64 + 3;
            let src: Vec<u8> = (0..len).map(|i| (i * 131 + 7) as u8).collect();
            let mut a = vec![0u8; len];
            let mut b = vec![0u8; len];
            bitshuffle(ts, &src, &mut a);
            bitunshuffle(ts, &a, &mut b);
            assert_eq!(b, src, "typesize {ts}");
        }
    }
}
