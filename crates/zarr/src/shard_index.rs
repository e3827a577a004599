//! Shard index decode and encode (sharding codec spec §"Binary shard format").
//!
//! The index is `n` pairs of `(offset, nbytes)` as u64, in C order of the inner chunk
//! grid, encoded through `index_codecs`: `bytes` (little or big endian), optionally
//! followed by `crc32c` which appends a 4-byte little-endian checksum. It sits at the start
//! or the end of the shard. Both fields `u64::MAX` mean the chunk is empty (fill value).

use std::ops::Range;

use crate::codec::{Endian, IndexFormat, IndexLocation, ShardingCodec};
use crate::error::{Error, Result};

/// Where an inner chunk's bytes are, per the shard index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChunkLocation {
    /// Not stored: the chunk is all fill value.
    Empty,
    /// Stored at `offset..offset + nbytes` of the shard object.
    Range { offset: u64, nbytes: u64 },
}

/// A decoded, validated shard index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardIndex {
    entries: Vec<ChunkLocation>,
}

impl ShardIndex {
    /// Checks that `index_codecs` is a supported index encoding.
    ///
    /// # Errors
    /// `CodecChain` naming what is not supported.
    pub fn validate_codecs(codec: &ShardingCodec) -> Result<()> {
        IndexFormat::of(&codec.index_codecs).map(|_| ())
    }

    /// Length in bytes of the encoded index of a shard with `n_chunks` inner chunks.
    ///
    /// # Errors
    /// `CodecChain` for an unsupported index encoding, `Overflow` for absurd counts.
    pub fn encoded_len(codec: &ShardingCodec, n_chunks: u64) -> Result<u64> {
        IndexFormat::of(&codec.index_codecs)?.encoded_len(n_chunks)
    }

    /// Where the index lies in a shard object of `shard_len` bytes.
    ///
    /// # Errors
    /// `ShardTooShort` when the shard cannot hold its index, plus [`ShardIndex::encoded_len`]'s.
    pub fn byte_range(codec: &ShardingCodec, n_chunks: u64, shard_len: u64) -> Result<Range<u64>> {
        let index_len = Self::encoded_len(codec, n_chunks)?;
        if shard_len < index_len {
            return Err(Error::ShardTooShort { shard_len, index_len });
        }
        Ok(match codec.index_location {
            IndexLocation::Start => 0..index_len,
            IndexLocation::End => shard_len - index_len..shard_len,
        })
    }

    /// Decodes and validates the index bytes of a shard of `shard_len` bytes holding
    /// `n_chunks` inner chunks.
    ///
    /// Every present entry is checked to lie inside the shard; an index at the start must
    /// also not point into itself (and one at the end likewise).
    ///
    /// # Errors
    /// `IndexLength`, `IndexChecksum`, `IndexEntryHalfEmpty`, `IndexEntryOutOfRange`,
    /// `ShardTooShort`, and `CodecChain` for an unsupported index encoding.
    pub fn decode(
        codec: &ShardingCodec,
        n_chunks: u64,
        shard_len: u64,
        index_bytes: &[u8],
    ) -> Result<Self> {
        let format = IndexFormat::of(&codec.index_codecs)?;
        let expected = format.encoded_len(n_chunks)?;
        if index_bytes.len() as u64 != expected {
            return Err(Error::IndexLength { expected, got: index_bytes.len() as u64 });
        }
        let data_range = Self::byte_range(codec, n_chunks, shard_len)?;
        // Chunk data must lie in the part of the shard that is not the index.
        let (data_lo, data_hi) = match codec.index_location {
            IndexLocation::Start => (data_range.end, shard_len),
            IndexLocation::End => (0, data_range.start),
        };
        let table_len = index_bytes.len() - if format.crc32c { 4 } else { 0 };
        let (table, tail) = index_bytes.split_at(table_len);
        if format.crc32c {
            let stored = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
            let computed = crc32c::crc32c(table);
            if stored != computed {
                return Err(Error::IndexChecksum { stored, computed });
            }
        }
        let read = |b: &[u8]| {
            let arr: [u8; 8] = b.try_into().unwrap_or([0; 8]);
            match format.endian {
                Endian::Little => u64::from_le_bytes(arr),
                Endian::Big => u64::from_be_bytes(arr),
            }
        };
        let mut entries = Vec::with_capacity(table.len() / 16);
        for (entry, pair) in (0u64..).zip(table.chunks_exact(16)) {
            let offset = read(&pair[..8]);
            let nbytes = read(&pair[8..]);
            let loc = match (offset == u64::MAX, nbytes == u64::MAX) {
                (true, true) => ChunkLocation::Empty,
                (true, false) | (false, true) => {
                    return Err(Error::IndexEntryHalfEmpty { entry, offset, nbytes });
                }
                (false, false) => {
                    let inside = offset
                        .checked_add(nbytes)
                        .is_some_and(|end| offset >= data_lo && end <= data_hi);
                    if !inside {
                        return Err(Error::IndexEntryOutOfRange {
                            entry,
                            offset,
                            nbytes,
                            shard_len,
                        });
                    }
                    ChunkLocation::Range { offset, nbytes }
                }
            };
            entries.push(loc);
        }
        Ok(Self { entries })
    }

    /// Reads and validates the index of a whole shard held in memory:
    /// [`ShardIndex::byte_range`] of `shard.len()`, then [`ShardIndex::decode`] of those
    /// bytes.
    ///
    /// # Errors
    /// As [`ShardIndex::byte_range`] and [`ShardIndex::decode`].
    pub fn of_shard(codec: &ShardingCodec, n_chunks: u64, shard: &[u8]) -> Result<Self> {
        let shard_len = shard.len() as u64;
        let range = Self::byte_range(codec, n_chunks, shard_len)?;
        // byte_range returned a range inside the shard; the conversions are checked anyway.
        let index_bytes = usize::try_from(range.start)
            .ok()
            .zip(usize::try_from(range.end).ok())
            .and_then(|(lo, hi)| shard.get(lo..hi))
            .ok_or(Error::ShardTooShort { shard_len, index_len: range.end - range.start })?;
        Self::decode(codec, n_chunks, shard_len, index_bytes)
    }

    /// Where inner chunk `chunk` (C order) lies in its shard: `None` for an empty entry.
    ///
    /// # Errors
    /// `ChunkNotInIndex` past the last entry; `Overflow` when the entry's end overflows
    /// (only an index built with [`ShardIndex::from_entries`] can hold one).
    pub fn chunk_range(&self, chunk: u64) -> Result<Option<Range<u64>>> {
        let entries = self.entries.len() as u64;
        match self.get(chunk).ok_or(Error::ChunkNotInIndex { chunk, entries })? {
            ChunkLocation::Empty => Ok(None),
            ChunkLocation::Range { offset, nbytes } => {
                let end = offset
                    .checked_add(nbytes)
                    .ok_or(Error::Overflow { what: "shard index entry end" })?;
                Ok(Some(offset..end))
            }
        }
    }

    /// The stored bytes of inner chunk `chunk` (C order) in `shard`, the shard object
    /// this index was read from: `None` for an empty entry (the chunk is fill value).
    ///
    /// # Errors
    /// As [`ShardIndex::chunk_range`]; `IndexEntryOutOfRange` when the entry does not lie
    /// inside `shard`.
    pub fn chunk_bytes<'a>(&self, shard: &'a [u8], chunk: u64) -> Result<Option<&'a [u8]>> {
        let Some(range) = self.chunk_range(chunk)? else { return Ok(None) };
        let outside = || Error::IndexEntryOutOfRange {
            entry: chunk,
            offset: range.start,
            nbytes: range.end - range.start,
            shard_len: shard.len() as u64,
        };
        let lo = usize::try_from(range.start).map_err(|_| outside())?;
        let hi = usize::try_from(range.end).map_err(|_| outside())?;
        shard.get(lo..hi).map(Some).ok_or_else(outside)
    }

    /// Encodes `entries` with the codec's index encoding (used by writers and tests).
    ///
    /// # Errors
    /// `CodecChain` for an unsupported index encoding.
    pub fn encode(codec: &ShardingCodec, entries: &[ChunkLocation]) -> Result<Vec<u8>> {
        let format = IndexFormat::of(&codec.index_codecs)?;
        let mut out = Vec::with_capacity(entries.len() * 16 + 4);
        for e in entries {
            let (o, n) = match *e {
                ChunkLocation::Empty => (u64::MAX, u64::MAX),
                ChunkLocation::Range { offset, nbytes } => (offset, nbytes),
            };
            for v in [o, n] {
                match format.endian {
                    Endian::Little => out.extend_from_slice(&v.to_le_bytes()),
                    Endian::Big => out.extend_from_slice(&v.to_be_bytes()),
                }
            }
        }
        if format.crc32c {
            let crc = crc32c::crc32c(&out);
            out.extend_from_slice(&crc.to_le_bytes());
        }
        Ok(out)
    }

    /// An index built from entries directly (for writers and tests; not validated
    /// against a shard length).
    pub fn from_entries(entries: Vec<ChunkLocation>) -> Self {
        Self { entries }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the index has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The location of inner chunk `i` (C order), or `None` past the end.
    pub fn get(&self, i: u64) -> Option<ChunkLocation> {
        usize::try_from(i).ok().and_then(|i| self.entries.get(i)).copied()
    }

    /// All entries in C order.
    pub fn entries(&self) -> &[ChunkLocation] {
        &self.entries
    }

    /// True when every entry is empty.
    pub fn all_empty(&self) -> bool {
        self.entries.iter().all(|e| *e == ChunkLocation::Empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{ArrayToBytes, BytesToBytes, CodecChain};
    use proptest::prelude::*;

    fn codec(loc: IndexLocation, endian: Endian, crc: bool) -> ShardingCodec {
        let bytes = CodecChain {
            array_to_array: vec![],
            array_to_bytes: ArrayToBytes::Bytes { endian: Some(Endian::Little) },
            bytes_to_bytes: vec![],
        };
        ShardingCodec {
            chunk_shape: vec![1],
            codecs: bytes,
            index_codecs: CodecChain {
                array_to_array: vec![],
                array_to_bytes: ArrayToBytes::Bytes { endian: Some(endian) },
                bytes_to_bytes: if crc { vec![BytesToBytes::Crc32c] } else { vec![] },
            },
            index_location: loc,
        }
    }

    #[test]
    fn end_index_with_crc_round_trips() {
        let c = codec(IndexLocation::End, Endian::Little, true);
        let e = vec![ChunkLocation::Range { offset: 0, nbytes: 10 }, ChunkLocation::Empty];
        let bytes = ShardIndex::encode(&c, &e).unwrap();
        assert_eq!(bytes.len(), 36);
        let idx = ShardIndex::decode(&c, 2, 10 + 36, &bytes).unwrap();
        assert_eq!(idx.entries(), &e[..]);
        assert_eq!(ShardIndex::byte_range(&c, 2, 46).unwrap(), 10..46);
    }

    #[test]
    fn corrupt_crc_is_reported_with_both_values() {
        let c = codec(IndexLocation::End, Endian::Little, true);
        let mut bytes =
            ShardIndex::encode(&c, &[ChunkLocation::Range { offset: 0, nbytes: 4 }]).unwrap();
        bytes[3] ^= 1;
        assert!(matches!(
            ShardIndex::decode(&c, 1, 24, &bytes),
            Err(Error::IndexChecksum { stored, computed }) if stored != computed
        ));
    }

    #[test]
    fn half_empty_and_out_of_range_entries_are_distinct_errors() {
        let c = codec(IndexLocation::Start, Endian::Big, false);
        let half = [u64::MAX.to_be_bytes(), 5u64.to_be_bytes()].concat();
        assert_eq!(
            ShardIndex::decode(&c, 1, 100, &half),
            Err(Error::IndexEntryHalfEmpty { entry: 0, offset: u64::MAX, nbytes: 5 })
        );
        // Points into the index itself (which occupies 0..16 at the start).
        let into_index = [0u64.to_be_bytes(), 8u64.to_be_bytes()].concat();
        assert!(matches!(
            ShardIndex::decode(&c, 1, 100, &into_index),
            Err(Error::IndexEntryOutOfRange { entry: 0, .. })
        ));
        let overflow = [(u64::MAX - 1).to_be_bytes(), 8u64.to_be_bytes()].concat();
        assert!(matches!(
            ShardIndex::decode(&c, 1, 100, &overflow),
            Err(Error::IndexEntryOutOfRange { entry: 0, .. })
        ));
        let past_end = [20u64.to_be_bytes(), 81u64.to_be_bytes()].concat();
        assert_eq!(
            ShardIndex::decode(&c, 1, 100, &past_end),
            Err(Error::IndexEntryOutOfRange { entry: 0, offset: 20, nbytes: 81, shard_len: 100 })
        );
    }

    #[test]
    fn short_shard_and_wrong_length_are_reported() {
        let c = codec(IndexLocation::End, Endian::Little, true);
        assert_eq!(
            ShardIndex::byte_range(&c, 4, 10),
            Err(Error::ShardTooShort { shard_len: 10, index_len: 68 })
        );
        assert_eq!(
            ShardIndex::decode(&c, 4, 100, &[0; 10]),
            Err(Error::IndexLength { expected: 68, got: 10 })
        );
    }

    #[test]
    fn chunk_bytes_slices_present_entries_and_reports_the_others() {
        for loc in [IndexLocation::Start, IndexLocation::End] {
            let c = codec(loc, Endian::Little, true);
            let index_len = ShardIndex::encoded_len(&c, 3).unwrap();
            let base = if loc == IndexLocation::Start { index_len } else { 0 };
            let body = b"abcdefg";
            let entries = [
                ChunkLocation::Range { offset: base + 3, nbytes: 4 },
                ChunkLocation::Empty,
                ChunkLocation::Range { offset: base, nbytes: 3 },
            ];
            let index = ShardIndex::encode(&c, &entries).unwrap();
            let shard = match loc {
                IndexLocation::Start => [&index[..], body].concat(),
                IndexLocation::End => [body, &index[..]].concat(),
            };
            let idx = ShardIndex::of_shard(&c, 3, &shard).unwrap();
            assert_eq!(idx.entries(), &entries[..]);
            assert_eq!(idx.chunk_bytes(&shard, 0), Ok(Some(&b"defg"[..])));
            assert_eq!(idx.chunk_bytes(&shard, 1), Ok(None));
            assert_eq!(idx.chunk_bytes(&shard, 2), Ok(Some(&b"abc"[..])));
            assert_eq!(idx.chunk_range(2), Ok(Some(base..base + 3)));
            assert_eq!(
                idx.chunk_bytes(&shard, 3),
                Err(Error::ChunkNotInIndex { chunk: 3, entries: 3 })
            );
            // Another (shorter) shard than the one the index was read from.
            assert_eq!(
                idx.chunk_bytes(&shard[..base as usize + 5], 0),
                Err(Error::IndexEntryOutOfRange {
                    entry: 0,
                    offset: base + 3,
                    nbytes: 4,
                    shard_len: base + 5
                })
            );
            // A shard too short for its index.
            assert_eq!(
                ShardIndex::of_shard(&c, 3, &shard[..10]),
                Err(Error::ShardTooShort { shard_len: 10, index_len })
            );
        }
        // Unvalidated entries: an overflowing end is an error, not a wrap.
        let forged = ShardIndex::from_entries(vec![ChunkLocation::Range {
            offset: u64::MAX - 1,
            nbytes: 4,
        }]);
        assert_eq!(forged.chunk_range(0), Err(Error::Overflow { what: "shard index entry end" }));
        assert!(matches!(forged.chunk_bytes(&[0; 8], 0), Err(Error::Overflow { .. })));
        let past = ShardIndex::from_entries(vec![ChunkLocation::Range { offset: 6, nbytes: 4 }]);
        assert_eq!(
            past.chunk_bytes(&[0; 8], 0),
            Err(Error::IndexEntryOutOfRange { entry: 0, offset: 6, nbytes: 4, shard_len: 8 })
        );
    }

    proptest! {
        #[test]
        fn chunk_bytes_never_panics(entries in prop::collection::vec(
                                        prop::option::of((any::<u64>(), any::<u64>())), 0..8),
                                    shard_len in 0usize..64, chunk in 0u64..10) {
            let entries = entries.into_iter().map(|e| match e {
                None => ChunkLocation::Empty,
                Some((offset, nbytes)) => ChunkLocation::Range { offset: offset % 80, nbytes: nbytes % 80 },
            }).collect();
            let idx = ShardIndex::from_entries(entries);
            let shard = vec![0u8; shard_len];
            if let Ok(Some(bytes)) = idx.chunk_bytes(&shard, chunk) {
                let r = idx.chunk_range(chunk).unwrap().unwrap();
                prop_assert_eq!(bytes.len() as u64, r.end - r.start);
                prop_assert!(r.end <= shard_len as u64);
            }
        }

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200),
                               n in 0u64..12, shard_len in any::<u64>(),
                               start in any::<bool>(), big in any::<bool>(), crc in any::<bool>()) {
            let c = codec(if start { IndexLocation::Start } else { IndexLocation::End },
                          if big { Endian::Big } else { Endian::Little }, crc);
            let _ = ShardIndex::decode(&c, n, shard_len, &bytes);
        }

        #[test]
        fn encode_decode_round_trip(sizes in prop::collection::vec(prop::option::of(0u64..1000), 1..20),
                                    start in any::<bool>(), big in any::<bool>(), crc in any::<bool>()) {
            let c = codec(if start { IndexLocation::Start } else { IndexLocation::End },
                          if big { Endian::Big } else { Endian::Little }, crc);
            let n = sizes.len() as u64;
            let index_len = ShardIndex::encoded_len(&c, n).unwrap();
            let mut offset = if start { index_len } else { 0 };
            let entries: Vec<_> = sizes.iter().map(|s| match s {
                None => ChunkLocation::Empty,
                Some(nb) => { let e = ChunkLocation::Range { offset, nbytes: *nb }; offset += nb; e }
            }).collect();
            let shard_len = offset + if start { 0 } else { index_len };
            let bytes = ShardIndex::encode(&c, &entries).unwrap();
            let idx = ShardIndex::decode(&c, n, shard_len, &bytes).unwrap();
            prop_assert_eq!(idx.entries(), &entries[..]);
        }
    }
}
