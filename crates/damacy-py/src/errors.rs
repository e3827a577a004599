//! The `damacy.Error` hierarchy and the one mapping from the facade's `damacy::Error` to
//! it: each Rust error kind becomes one Python class, with the numbers a person needs as
//! attributes (`SampleError.index/.uri/.chunk`, `ConfigError.knob`, ...).

use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::{PyErr, create_exception};

create_exception!(damacy, Error, PyException, "The base of every error damacy raises.");
create_exception!(
    damacy,
    ConfigError,
    Error,
    "A configuration knob is invalid: `.knob` names it; `.value`, `.min`, `.max` or \
     `.expected` say the bound where there is one."
);
create_exception!(
    damacy,
    BudgetError,
    Error,
    "A resource budget is too small: `.knob` is the knob to raise, `.needed` what is needed, \
     `.limit` what it is."
);
create_exception!(
    damacy,
    SampleError,
    Error,
    "A sample could not be read or is invalid: `.index` (push index, or None for a sample \
     that was never pushed), `.uri` (the array's path) and `.chunk` (grid coordinates of the \
     failing chunk, or None)."
);
create_exception!(
    damacy,
    StoreError,
    Error,
    "The byte store could not be set up (its configuration or its threads)."
);
create_exception!(
    damacy,
    GpuError,
    Error,
    "A CUDA engine, driver, kernel or nvCOMP failure, or a requested CUDA backend that cannot \
     run here."
);
create_exception!(
    damacy,
    SourceError,
    Error,
    "The iterable given to `Pipeline.push` raised (its exception is `__cause__`) while \
     producing sample `.index`; the batches before it were delivered."
);
create_exception!(
    damacy,
    ImageError,
    Error,
    "An OME-NGFF image group could not be opened (missing, not an image, malformed \
     metadata, a level path holding no array), or a physical box does not map into a level: \
     `.uri` is the image group, `.level` the level (or None)."
);
create_exception!(damacy, ClosedError, Error, "The pipeline is closed: no further batches come.");
create_exception!(
    damacy,
    TimeoutError,
    Error,
    "`pop(timeout=...)` found no batch ready in time; nothing was lost."
);
create_exception!(
    damacy,
    InternalError,
    Error,
    "A thread of the pipeline panicked or the machine refused a thread (a bug in damacy or a \
     failure of the machine)."
);
create_exception!(
    damacy,
    DlpackError,
    Error,
    "A batch cannot be exported as asked (device, copy, stream or a released batch)."
);

/// Registers the exception classes on the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("Error", py.get_type::<Error>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("BudgetError", py.get_type::<BudgetError>())?;
    m.add("SampleError", py.get_type::<SampleError>())?;
    m.add("StoreError", py.get_type::<StoreError>())?;
    m.add("GpuError", py.get_type::<GpuError>())?;
    m.add("SourceError", py.get_type::<SourceError>())?;
    m.add("ClosedError", py.get_type::<ClosedError>())?;
    m.add("TimeoutError", py.get_type::<TimeoutError>())?;
    m.add("InternalError", py.get_type::<InternalError>())?;
    m.add("DlpackError", py.get_type::<DlpackError>())?;
    m.add("ImageError", py.get_type::<ImageError>())?;
    Ok(())
}

/// One attribute of a raised exception.
pub(crate) enum Attr {
    Int(u64),
    Str(String),
    Ints(Vec<u64>),
    None,
}

/// Builds `cls(message)` with `attrs` set on the instance.
pub(crate) fn raise_with(py: Python<'_>, err: PyErr, attrs: &[(&'static str, Attr)]) -> PyErr {
    let value = err.value(py);
    for (name, attr) in attrs {
        let set = match attr {
            Attr::Int(v) => value.setattr(*name, *v),
            Attr::Str(s) => value.setattr(*name, s.as_str()),
            Attr::Ints(v) => value.setattr(
                *name,
                pyo3::types::PyTuple::new(py, v.iter().copied())
                    .map(|t| t.into_any())
                    .unwrap_or_else(|_| py.None().into_bound(py)),
            ),
            Attr::None => value.setattr(*name, py.None()),
        };
        if let Err(e) = set {
            return e;
        }
    }
    err
}

/// The chunk a sample error names, where it names one.
fn chunk_of(e: &damacy::SampleError) -> Option<Vec<u64>> {
    match e {
        damacy::SampleError::Decode { chunk, .. } => Some(chunk.clone()),
        damacy::SampleError::Gpu { chunk, .. } => chunk.clone(),
        damacy::SampleError::SharedDecodeFailed { chunk, .. } => Some(chunk.clone()),
        _ => None,
    }
}

fn opt_chunk(c: Option<Vec<u64>>) -> Attr {
    c.map_or(Attr::None, Attr::Ints)
}

/// The Python exception for a facade error.
pub(crate) fn to_py(py: Python<'_>, e: damacy::Error) -> PyErr {
    use damacy::Error as E;
    let msg = e.to_string();
    match e {
        E::ConfigRange { knob, value, min, max } => raise_with(
            py,
            ConfigError::new_err(msg),
            &[
                ("knob", Attr::Str(knob.into())),
                ("value", Attr::Int(value)),
                ("min", Attr::Int(min)),
                ("max", Attr::Int(max)),
            ],
        ),
        E::ConfigValue { knob, value, expected } => raise_with(
            py,
            ConfigError::new_err(msg),
            &[
                ("knob", Attr::Str(knob.into())),
                ("value", Attr::Int(value)),
                ("expected", Attr::Str(expected.into())),
            ],
        ),
        E::ConfigOverflow { knob } => {
            raise_with(py, ConfigError::new_err(msg), &[("knob", Attr::Str(knob.into()))])
        }
        E::ConfigParse { .. } => raise_with(py, ConfigError::new_err(msg), &[("knob", Attr::None)]),
        E::Budget { knob, needed, limit } => raise_with(
            py,
            BudgetError::new_err(msg),
            &[
                ("knob", Attr::Str(knob.into())),
                ("needed", Attr::Int(needed)),
                ("limit", Attr::Int(limit)),
            ],
        ),
        E::SampleShape { index, uri, .. } | E::NativeDtypeMismatch { index, uri, .. } => {
            sample_error(py, msg, Some(index), &uri, None)
        }
        E::Sample { index, uri, source } => {
            sample_error(py, msg, Some(index), &uri, chunk_of(&source))
        }
        E::InvalidSample { uri, source } => sample_error(py, msg, None, &uri, chunk_of(&source)),
        E::Image { uri, .. } => raise_with(
            py,
            ImageError::new_err(msg),
            &[("uri", Attr::Str(uri.to_string_lossy().into_owned())), ("level", Attr::None)],
        ),
        E::PhysicalBox { uri, level, .. } => raise_with(
            py,
            ImageError::new_err(msg),
            &[
                ("uri", Attr::Str(uri.to_string_lossy().into_owned())),
                ("level", Attr::Int(level as u64)),
            ],
        ),
        E::Store(_) => StoreError::new_err(msg),
        E::BackendUnavailable { .. }
        | E::GdsUnavailable { .. }
        | E::Gpu { .. }
        | E::DeviceBroken { .. }
        // Only the CUDA engine fails a plan's batches together.
        | E::PlannedWith { .. } => GpuError::new_err(msg),
        E::Timeout { .. } => TimeoutError::new_err(msg),
        E::Closed => ClosedError::new_err(msg),
        E::SourcePanicked { index } => {
            raise_with(py, SourceError::new_err(msg), &[("index", Attr::Int(index))])
        }
        // Prefetch-setup failures, thread spawns, panics of the pipeline's threads, and
        // kinds added to the facade later.
        _ => InternalError::new_err(msg),
    }
}

fn sample_error(
    py: Python<'_>,
    msg: String,
    index: Option<u64>,
    uri: &std::path::Path,
    chunk: Option<Vec<u64>>,
) -> PyErr {
    raise_with(
        py,
        SampleError::new_err(msg),
        &[
            ("index", index.map_or(Attr::None, Attr::Int)),
            ("uri", Attr::Str(uri.to_string_lossy().into_owned())),
            ("chunk", opt_chunk(chunk)),
        ],
    )
}
