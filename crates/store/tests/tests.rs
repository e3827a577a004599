//! Integration tests of the `store` crate (one binary; the modules below).

mod batch;
mod errors;
mod latency;
#[cfg(not(damacy_loom))]
mod remote;
mod stress;

use std::path::{Path, PathBuf};

use splitmix::splitmix64;
use store::{FsStore, FsStoreConfig};

/// The byte at `pos` of test file `file`: position-dependent so a misplaced byte fails
/// (the top byte of output `pos` of the splitmix64 stream seeded by `file`).
pub fn byte(file: u64, pos: u64) -> u8 {
    (splitmix64(file, pos) >> 56) as u8
}

/// Writes `name` with `len` bytes of `byte(file, _)` and returns its path.
pub fn write_file(dir: &Path, name: &str, file: u64, len: u64) -> PathBuf {
    let p = dir.join(name);
    let data: Vec<u8> = (0..len).map(|i| byte(file, i)).collect();
    std::fs::write(&p, data).unwrap();
    p
}

pub fn small_store(dir: &Path) -> FsStore {
    FsStore::new(dir, FsStoreConfig { io_threads: 2, ..Default::default() }).unwrap()
}
