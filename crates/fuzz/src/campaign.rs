//! A fuzzing campaign: one target's seed corpus and the deterministic sequence of inputs
//! derived from it.
//!
//! Input `i` is a pure function of the seed, `i` and the corpus: the first inputs are the
//! corpus files themselves, every later one a mutation of a corpus file (spliced with
//! another) by a generator seeded from `(seed, i)`. So `--seed` replays a run, and any
//! one input can be rebuilt from its index without replaying those before it.

use std::io;
use std::path::{Path, PathBuf};

use crate::mutate::Mutator;
use crate::rng::SplitMix64;
use crate::targets::Target;

/// The folder holding every target's seed corpus (`corpus/<target>/`).
pub fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

/// The files of one corpus folder, sorted by name so that the order (and with it every
/// derived input) does not depend on the file system.
///
/// # Errors
/// The I/O error of reading the folder or a file, with the path.
pub fn read_corpus(dir: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let with_path = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", dir.display()));
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(with_path)? {
        let path = entry.map_err(with_path)?.path();
        if !path.is_file() {
            continue;
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let bytes = std::fs::read(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        files.push((name, bytes));
    }
    files.sort();
    Ok(files)
}

/// One target's corpus and the inputs derived from it.
#[derive(Debug)]
pub struct Campaign {
    corpus: Vec<Vec<u8>>,
    seed: u64,
    mutator: Mutator,
}

impl Campaign {
    /// A campaign over `corpus` (not empty) for `target`, with inputs of at most
    /// `max_len` bytes.
    pub fn new(target: &Target, corpus: Vec<Vec<u8>>, seed: u64, max_len: usize) -> Self {
        let mutator = Mutator { max_len, json: target.json };
        Self { corpus, seed, mutator }
    }

    /// A campaign over the committed corpus of `target`, with inputs of at most `max_len`
    /// bytes (usually [`crate::mutate::MAX_INPUT_LEN`]).
    ///
    /// # Errors
    /// As [`read_corpus`], and `InvalidData` for an empty corpus.
    pub fn committed(target: &Target, seed: u64, max_len: usize) -> io::Result<Self> {
        let dir = corpus_root().join(target.name);
        let corpus: Vec<Vec<u8>> = read_corpus(&dir)?.into_iter().map(|(_, b)| b).collect();
        if corpus.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: no seed files", dir.display()),
            ));
        }
        Ok(Self::new(target, corpus, seed, max_len))
    }

    /// Number of corpus files (the first inputs).
    pub fn corpus_len(&self) -> usize {
        self.corpus.len()
    }

    /// Writes input `i` into `out`.
    pub fn input(&self, i: u64, out: &mut Vec<u8>) {
        let n = self.corpus.len() as u64;
        if i < n {
            out.clear();
            out.extend_from_slice(&self.corpus[i as usize]);
            return;
        }
        // Each input gets its own generator, so input i does not depend on those before
        // it. The index goes through one splitmix step first: seeding with `seed + i`
        // would make neighbouring inputs' sequences overlap.
        let mut rng = SplitMix64::new(self.seed ^ SplitMix64::new(i).next_u64());
        let base = &self.corpus[rng.index(self.corpus.len())];
        let other = &self.corpus[rng.index(self.corpus.len())];
        self.mutator.mutate(&mut rng, base, other, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets;

    #[test]
    fn inputs_start_with_the_corpus_and_replay_by_index() {
        let t = targets::by_name("blosc").unwrap();
        let corpus = vec![b"first".to_vec(), b"second input".to_vec()];
        let a = Campaign::new(t, corpus.clone(), 42, 100);
        let b = Campaign::new(t, corpus.clone(), 42, 100);
        let c = Campaign::new(t, corpus, 43, 100);
        let (mut x, mut y, mut z) = (Vec::new(), Vec::new(), Vec::new());
        a.input(0, &mut x);
        assert_eq!(x, b"first");
        a.input(1, &mut x);
        assert_eq!(x, b"second input");
        let mut differs = 0;
        for i in (2..200).rev() {
            a.input(i, &mut x);
            b.input(i, &mut y);
            c.input(i, &mut z);
            assert_eq!(x, y);
            assert!(x.len() <= 100);
            differs += usize::from(x != z);
        }
        assert!(differs > 150, "seeds 42 and 43 agree on {} of 198 inputs", 198 - differs);
    }

    /// Every committed seed passes its target: the corpus is valid input, and a finding
    /// on it would be a regression in the parser.
    #[test]
    fn every_committed_corpus_file_passes_its_target() {
        for t in &targets::ALL {
            let files = read_corpus(&corpus_root().join(t.name)).unwrap();
            assert!(files.len() >= 3, "{}: only {} seeds", t.name, files.len());
            for (name, bytes) in files {
                assert!(
                    bytes.len() <= crate::mutate::MAX_INPUT_LEN,
                    "{}/{name} is {} bytes",
                    t.name,
                    bytes.len()
                );
                let r = crate::exec::run(t.run_one, &bytes, crate::allocation::CAP);
                assert!(r.is_ok(), "{}/{name}: {}", t.name, r.unwrap_err());
            }
        }
    }
}
