//! Turning an `object_store` error into this crate's typed [`Error`]: the kind of
//! failure comes from the error's variant and the `HttpError` in its source chain.
//!
//! The HTTP status of a failed request is kept in `object_store`'s private retry error;
//! its one public trace is the message, `... status code: 503 Service Unavailable ...`,
//! so the status is read from there (and is `None` where that text is absent). Nothing
//! else depends on message text: a range past the end of an object is recognised by a
//! HEAD, not by its 416.

use std::error::Error as StdError;

use object_store::client::{HttpError, HttpErrorKind};

use crate::error::{Error, RemoteFailure};

/// The HTTP status of a failed request, from the variant or the retry error's message.
fn status(e: &object_store::Error) -> Option<u16> {
    match e {
        object_store::Error::NotFound { .. } => return Some(404),
        object_store::Error::PermissionDenied { .. } => return Some(403),
        object_store::Error::Unauthenticated { .. } => return Some(401),
        object_store::Error::Precondition { .. } => return Some(412),
        _ => {}
    }
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if let Some(at) = text.find("status code: ") {
            let digits = text.get(at + 13..at + 16)?;
            return digits.parse().ok().filter(|s| (100..600).contains(s));
        }
        cur = err.source();
    }
    None
}

/// The kind of HTTP failure somewhere in `e`'s source chain.
fn http_kind(e: &(dyn StdError + 'static)) -> Option<HttpErrorKind> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<HttpError>() {
            return Some(h.kind());
        }
        cur = err.source();
    }
    None
}

/// True for an error a HEAD could explain as "the range starts past the end of the
/// object": a refusal by status (not a dropped connection, a timeout or a missing
/// object, which a HEAD cannot turn into success).
pub(super) fn may_be_past_end(e: &object_store::Error) -> bool {
    match status(e) {
        Some(s) => s == 416,
        None => matches!(e, object_store::Error::Generic { .. }) && http_kind(e).is_none(),
    }
}

/// The typed error for `e`, a request for `url` (and `range`) that failed.
pub(super) fn error(e: &object_store::Error, url: &str, range: Option<(u64, u64)>) -> Error {
    if let object_store::Error::NotFound { .. } = e {
        return Error::NotFound { path: url.into() };
    }
    let status = status(e);
    let failure = match (e, status, http_kind(e)) {
        (
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. },
            ..,
        )
        | (_, Some(401 | 403), _) => RemoteFailure::Denied,
        (_, Some(_), _) => RemoteFailure::Status,
        (_, None, Some(HttpErrorKind::Timeout)) => RemoteFailure::Timeout,
        (_, None, Some(HttpErrorKind::Connect | HttpErrorKind::Request)) => RemoteFailure::Connect,
        (_, None, Some(HttpErrorKind::Interrupted | HttpErrorKind::Decode)) => RemoteFailure::Body,
        (_, None, _) => RemoteFailure::Response,
    };
    Error::Remote { url: url.to_owned(), range, status, failure, detail: e.to_string() }
}
