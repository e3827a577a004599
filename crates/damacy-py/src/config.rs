//! `damacy.Config`: the facade's `Config`, built from keyword arguments, a dict, JSON or
//! TOML, and validated by the facade itself (same knobs, same names, same bounds).

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::errors::{Attr, ConfigError, raise_with, to_py};

/// A validated pipeline configuration. Every knob of the Rust `Config` is a keyword
/// argument of the same name; unknown knobs, wrong types and out-of-range values raise
/// `ConfigError` (or `BudgetError`) naming the knob and its bound.
#[pyclass(frozen, name = "Config", module = "damacy")]
#[derive(Debug, Clone)]
pub(crate) struct PyConfig {
    pub(crate) inner: damacy::Config,
}

/// `json.dumps(value)`, with integer-like objects (numpy's integers) as integers.
fn dumps(value: &Bound<'_, PyAny>) -> PyResult<String> {
    let py = value.py();
    let kwargs = PyDict::new(py);
    kwargs.set_item("default", py.import("operator")?.getattr("index")?)?;
    py.import("json")?.call_method("dumps", (value,), Some(&kwargs))?.extract()
}

/// Spellings Python users reach for, mapped to the serde form: `backend="host"`,
/// `"auto"`, `"cuda"`, `"cuda:1"`; `dtype=numpy.float32`-like names as strings stay as
/// they are (the facade names `f32`, `bf16`, `f16`, `native`).
fn normalize<'py>(knobs: &Bound<'py, PyDict>) -> PyResult<Bound<'py, PyDict>> {
    let py = knobs.py();
    let out = PyDict::new(py);
    for (k, v) in knobs.iter() {
        let key: String = k.extract()?;
        let v = if key == "backend" && v.is_instance_of::<PyString>() {
            let s: String = v.extract()?;
            let d = PyDict::new(py);
            match s.as_str() {
                "auto" | "host" | "cuda" => {
                    d.set_item("kind", s.as_str())?;
                    if s == "cuda" {
                        d.set_item("device", 0)?;
                    }
                }
                other => match other.strip_prefix("cuda:").map(str::parse::<u64>) {
                    Some(Ok(device)) => {
                        d.set_item("kind", "cuda")?;
                        d.set_item("device", device)?;
                    }
                    _ => {
                        return Err(raise_with(
                            py,
                            ConfigError::new_err(format!(
                                "config: `backend` is {other:?}, expected \"auto\", \"host\", \"cuda\" or \"cuda:N\""
                            )),
                            &[("knob", Attr::Str("backend".into()))],
                        ));
                    }
                },
            }
            d.into_any()
        } else if v.is_instance_of::<pyo3::types::PyTuple>() {
            v.call_method0("__iter__")
                .and_then(|it| py.import("builtins")?.getattr("list")?.call1((it,)))?
        } else {
            v
        };
        out.set_item(key, v)?;
    }
    Ok(out)
}

/// Parses `knobs` (a dict) into a validated `Config`, naming the knob that does not parse.
pub(crate) fn from_knobs(knobs: &Bound<'_, PyDict>) -> PyResult<damacy::Config> {
    let py = knobs.py();
    let knobs = normalize(knobs)?;
    let text = dumps(knobs.as_any()).map_err(|e| {
        raise_with(
            py,
            ConfigError::new_err(format!("config: a knob's value is not plain data: {e}")),
            &[("knob", Attr::None)],
        )
    })?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| ConfigError::new_err(format!("config: the knobs do not form JSON: {e}")))?;
    match serde_json::from_value::<damacy::Config>(value.clone()) {
        Ok(cfg) => {
            cfg.validate().map_err(|e| to_py(py, e))?;
            Ok(cfg)
        }
        Err(whole) => Err(parse_error(py, &value, &whole)),
    }
}

/// The knob that makes `value` fail to parse (each knob parsed alone: the `Config`
/// defaults every other), as a `ConfigError` naming it.
fn parse_error(py: Python<'_>, value: &serde_json::Value, whole: &serde_json::Error) -> PyErr {
    if let serde_json::Value::Object(map) = value {
        for (k, v) in map {
            let mut one = serde_json::Map::new();
            one.insert(k.clone(), v.clone());
            if let Err(e) = serde_json::from_value::<damacy::Config>(serde_json::Value::Object(one))
            {
                let known = e.to_string().starts_with("unknown field");
                let msg = if known {
                    format!("config: unknown knob `{k}` ({e})")
                } else {
                    format!("config: `{k}` is {v}: {e}")
                };
                return raise_with(
                    py,
                    ConfigError::new_err(msg),
                    &[("knob", Attr::Str(k.clone()))],
                );
            }
        }
    }
    raise_with(py, ConfigError::new_err(format!("config: {whole}")), &[("knob", Attr::None)])
}

#[pymethods]
impl PyConfig {
    #[new]
    #[pyo3(signature = (**knobs))]
    fn new(py: Python<'_>, knobs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let empty = PyDict::new(py);
        let knobs = knobs.unwrap_or(&empty);
        Ok(Self { inner: from_knobs(knobs)? })
    }

    /// A configuration from a dict of knobs (as `Config(**d)`).
    #[staticmethod]
    fn from_dict(d: &Bound<'_, PyDict>) -> PyResult<Self> {
        Ok(Self { inner: from_knobs(d)? })
    }

    /// A configuration from JSON text (the Rust `Config::from_json`).
    #[staticmethod]
    fn from_json(py: Python<'_>, text: &str) -> PyResult<Self> {
        damacy::Config::from_json(text).map(|inner| Self { inner }).map_err(|e| to_py(py, e))
    }

    /// A configuration from TOML text (the Rust `Config::from_toml`).
    #[staticmethod]
    fn from_toml(py: Python<'_>, text: &str) -> PyResult<Self> {
        damacy::Config::from_toml(text).map(|inner| Self { inner }).map_err(|e| to_py(py, e))
    }

    /// Every knob and its value, as `Config.from_dict` takes them.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let text = self.to_json()?;
        py.import("json")?.call_method1("loads", (text,))
    }

    /// The configuration as JSON (as `Config.from_json` takes it).
    fn to_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.inner)
            .map_err(|e| ConfigError::new_err(format!("config: cannot serialize: {e}")))
    }

    /// A knob's value (`cfg.samples_per_batch`).
    fn __getattr__<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
        let d = self.to_dict(py)?;
        match d.get_item(name) {
            Ok(v) => Ok(v),
            Err(_) => Err(pyo3::exceptions::PyAttributeError::new_err(format!(
                "Config has no knob `{name}`"
            ))),
        }
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<PyConfig>().is_ok_and(|o| o.get().inner == self.inner)
    }

    fn __repr__(&self) -> PyResult<String> {
        Ok(format!("damacy.Config.from_json({:?})", self.to_json()?))
    }
}
