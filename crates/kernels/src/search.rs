//! Where to look for the shared libraries loaded at run time (nvCOMP, cuFile), in order,
//! and the names of nvCOMP's status codes. Pure path logic (no loading), so it is tested
//! on any machine.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The environment variable naming the library file, or a folder holding it (an
/// unpacked `nvidia-libnvcomp` wheel's root, its `nvidia/libnvcomp` folder, or its
/// `lib`/`lib64` folder).
pub const NVCOMP_ENV: &str = "DAMACY_NVCOMP_LIB";

/// Library file names, newest ABI first (nvCOMP 6 and 5 share the batched zstd API).
pub const NVCOMP_SONAMES: [&str; 3] = ["libnvcomp.so.6", "libnvcomp.so.5", "libnvcomp.so"];

/// Where the library sits inside an unpacked wheel (`lib64` in the 6.x wheels, `lib` in
/// older ones).
const WHEEL_LIB_DIRS: [&str; 2] = ["nvidia/libnvcomp/lib64", "nvidia/libnvcomp/lib"];

/// One library's search: its environment variable, file names and wheel folders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LibrarySpec {
    /// The environment variable naming the library file or a folder holding it.
    pub env: &'static str,
    /// File names, newest ABI first.
    pub sonames: &'static [&'static str],
    /// Where the library sits inside an unpacked wheel (or a Python environment's
    /// site-packages).
    pub wheel_dirs: &'static [&'static str],
}

/// nvCOMP: [`NVCOMP_ENV`], [`NVCOMP_SONAMES`], the `nvidia-libnvcomp` wheels.
pub const NVCOMP: LibrarySpec =
    LibrarySpec { env: NVCOMP_ENV, sonames: &NVCOMP_SONAMES, wheel_dirs: &WHEEL_LIB_DIRS };

/// The environment variable naming cuFile's library (`libcufile.so`), or a folder holding
/// it (an unpacked `nvidia-cufile` wheel's root or Python site-packages, or the library's
/// own folder).
pub const CUFILE_ENV: &str = "DAMACY_CUFILE_LIB";

/// cuFile (GPUDirect Storage): [`CUFILE_ENV`], `libcufile.so.0`, the `nvidia-cufile`
/// wheels (`nvidia/cu13/lib` in the CUDA 13 wheel `nvidia-cufile` 1.20, `nvidia/cufile/lib`
/// in `nvidia-cufile-cu12`).
pub const CUFILE: LibrarySpec = LibrarySpec {
    env: CUFILE_ENV,
    sonames: &["libcufile.so.0", "libcufile.so"],
    wheel_dirs: &["nvidia/cu13/lib", "nvidia/cufile/lib", "nvidia/cufile/lib64"],
};

/// The inputs of the search, gathered from the process environment by
/// [`SearchInputs::from_env`] or given directly in tests.
#[derive(Debug, Clone, Default)]
pub struct SearchInputs {
    /// The value of [`NVCOMP_ENV`], if set.
    pub env: Option<OsString>,
    /// Folders that may hold an unpacked wheel's `nvidia/` tree (Python site-packages,
    /// the executable's folder).
    pub wheel_roots: Vec<PathBuf>,
}

impl SearchInputs {
    /// Reads [`NVCOMP_ENV`] and collects candidate wheel roots: the running executable's
    /// folder and its parent, `$VIRTUAL_ENV`'s and the user's and system Python
    /// site-packages (`python3.*` folders are listed, not guessed).
    pub fn from_env() -> Self {
        Self::from_env_for(&NVCOMP)
    }

    /// As [`SearchInputs::from_env`], reading `spec`'s environment variable.
    pub fn from_env_for(spec: &LibrarySpec) -> Self {
        let mut roots = Vec::new();
        if let Ok(exe) = std::env::current_exe()
            && let Some(dir) = exe.parent()
        {
            roots.push(dir.to_path_buf());
            if let Some(up) = dir.parent() {
                roots.push(up.to_path_buf());
            }
        }
        let mut lib_dirs = Vec::new();
        if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
            lib_dirs.push(PathBuf::from(venv).join("lib"));
        }
        if let Some(home) = std::env::var_os("HOME") {
            lib_dirs.push(PathBuf::from(home).join(".local/lib"));
        }
        lib_dirs.push(PathBuf::from("/usr/local/lib"));
        lib_dirs.push(PathBuf::from("/usr/lib"));
        for dir in lib_dirs {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            let mut pys: Vec<PathBuf> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("python3"))
                })
                .collect();
            pys.sort();
            for py in pys {
                roots.push(py.join("site-packages"));
                roots.push(py.join("dist-packages"));
            }
        }
        roots.push(PathBuf::from("/usr/lib/python3/dist-packages"));
        Self { env: std::env::var_os(spec.env), wheel_roots: roots }
    }
}

/// One place to try: a file path (loaded only if it exists) or a bare soname (resolved
/// by the dynamic loader's own search: `LD_LIBRARY_PATH`, the cache, the defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Candidate {
    /// A path to a file.
    File(PathBuf),
    /// A name for the loader.
    Soname(&'static str),
}

impl Candidate {
    /// The candidate as a path, for error reports.
    pub fn as_path(&self) -> PathBuf {
        match self {
            Candidate::File(p) => p.clone(),
            Candidate::Soname(s) => PathBuf::from(s),
        }
    }
}

fn files_in(spec: &LibrarySpec, dir: &Path, out: &mut Vec<Candidate>) {
    for name in spec.sonames {
        out.push(Candidate::File(dir.join(name)));
    }
}

/// The search order: (1) `DAMACY_NVCOMP_LIB` — a file as is, a folder as the library's
/// folder, a wheel's `nvidia/libnvcomp/lib64` or `lib` beneath it; (2) the loader path by
/// soname; (3) each wheel root's `nvidia/libnvcomp/lib64` and `lib`.
pub fn candidates(inputs: &SearchInputs) -> Vec<Candidate> {
    candidates_for(&NVCOMP, inputs)
}

/// [`candidates`] for any library: (1) `spec.env` — a file as is, a folder as the
/// library's folder, the wheel folders beneath it, its `lib64` and `lib`; (2) the loader
/// path by soname; (3) each wheel root's wheel folders.
pub fn candidates_for(spec: &LibrarySpec, inputs: &SearchInputs) -> Vec<Candidate> {
    let mut out = Vec::new();
    if let Some(env) = inputs.env.as_ref().filter(|e| !e.is_empty()) {
        let p = PathBuf::from(env);
        if p.is_dir() {
            files_in(spec, &p, &mut out);
            for sub in spec.wheel_dirs {
                files_in(spec, &p.join(sub), &mut out);
            }
            for sub in ["lib64", "lib"] {
                files_in(spec, &p.join(sub), &mut out);
            }
        } else {
            out.push(Candidate::File(p));
        }
    }
    for name in spec.sonames {
        out.push(Candidate::Soname(name));
    }
    for root in &inputs.wheel_roots {
        for sub in spec.wheel_dirs {
            files_in(spec, &root.join(sub), &mut out);
        }
    }
    out
}

/// Loads the first of `list` that the dynamic loader accepts: the library and the path
/// (or soname) it was found under; `None` when none loads.
pub(crate) fn load_first(list: &[Candidate]) -> Option<(libloading::Library, PathBuf)> {
    list.iter().find_map(|c| match c {
        Candidate::File(p) if p.is_file() => {
            // SAFETY: loading runs the library's initializers; nvCOMP's and libcufile's
            // are ordinary C++ static constructors with no preconditions.
            unsafe { libloading::Library::new(p) }.ok().map(|l| (l, p.clone()))
        }
        Candidate::File(_) => None,
        Candidate::Soname(name) => {
            // SAFETY: as above.
            unsafe { libloading::Library::new(name) }.ok().map(|l| (l, PathBuf::from(name)))
        }
    })
}

/// The name of an `nvcompStatus_t` value (`nvcomp/shared_types.h`).
pub fn nvcomp_status_name(status: i32) -> &'static str {
    match status {
        0 => "nvcompSuccess",
        10 => "nvcompErrorInvalidValue",
        11 => "nvcompErrorNotSupported",
        12 => "nvcompErrorCannotDecompress",
        13 => "nvcompErrorBadChecksum",
        14 => "nvcompErrorCannotVerifyChecksums",
        15 => "nvcompErrorOutputBufferTooSmall",
        16 => "nvcompErrorWrongHeaderLength",
        17 => "nvcompErrorAlignment",
        18 => "nvcompErrorChunkSizeTooLarge",
        19 => "nvcompErrorCannotCompress",
        20 => "nvcompErrorWrongInputLength",
        21 => "nvcompErrorBatchSizeTooLarge",
        22 => "nvcompErrorSubChunkCountTooLarge",
        23 => "nvcompErrorSubChunkCountTooSmall",
        24 => "nvcompErrorOutputBufferAlignmentTooSmall",
        1000 => "nvcompErrorCudaError",
        10000 => "nvcompErrorInternal",
        _ => "unknown status",
    }
}

/// Whether nvCOMP use is switched off by `DAMACY_NVCOMP=off` (or `0`): the CUDA engine
/// (on a GPU, or the simulated device's twin of nvCOMP) then decodes every chunk on CPU
/// threads, and the bench's nvCOMP ceiling is not measured (a ceiling for a decoder the
/// engine does not use would mislead).
pub fn nvcomp_disabled() -> bool {
    disabled_by(std::env::var("DAMACY_NVCOMP").ok().as_deref())
}

/// [`nvcomp_disabled`] for a given value of the variable.
pub(crate) fn disabled_by(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.eq_ignore_ascii_case("off") || v == "0")
}
