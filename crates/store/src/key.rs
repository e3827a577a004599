//! Keys → paths. A key is a `/`-separated path relative to the store root, or an absolute
//! path; a `..` component is refused so a relative key cannot leave the root.

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// Resolves `key` against `root`.
///
/// # Errors
/// [`Error::EmptyKey`] for `""`, [`Error::KeyEscapesRoot`] for any `..` component.
pub(crate) fn resolve(root: &Path, key: &str) -> Result<PathBuf> {
    if key.is_empty() {
        return Err(Error::EmptyKey);
    }
    let p = Path::new(key);
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(Error::KeyEscapesRoot { key: key.to_owned() });
    }
    Ok(if p.is_absolute() { p.to_owned() } else { root.join(p) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_keys_join_the_root_and_absolute_keys_stand_alone() {
        let root = Path::new("/data/root");
        assert_eq!(resolve(root, "a/b/c").unwrap(), PathBuf::from("/data/root/a/b/c"));
        assert_eq!(resolve(root, "./a").unwrap(), PathBuf::from("/data/root/a"));
        assert_eq!(resolve(root, "/abs/x").unwrap(), PathBuf::from("/abs/x"));
    }

    #[test]
    fn dot_dot_and_empty_keys_are_refused() {
        let root = Path::new("/r");
        for key in ["..", "../x", "a/../../x", "a/..", "/abs/../etc/passwd"] {
            assert_eq!(
                resolve(root, key),
                Err(Error::KeyEscapesRoot { key: key.to_owned() }),
                "{key}"
            );
        }
        assert_eq!(resolve(root, ""), Err(Error::EmptyKey));
        // A name that merely contains dots is fine.
        assert_eq!(resolve(root, "a..b/..c").unwrap(), PathBuf::from("/r/a..b/..c"));
    }
}
