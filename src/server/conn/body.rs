//! Request bodies, read the way tiny_http 0.12 cannot be trusted to: framing checked before
//! anything is read, exactly the declared length read, and bodies too large to drop never
//! dropped.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::server::error::ApiError;
use crate::server::http::{header, header_values};

/// Refuses a request whose body length is ambiguous. tiny_http takes `Transfer-Encoding`
/// over `Content-Length`, decodes any transfer coding as chunked, believes the first of
/// several lengths and reads an unparsable one as "no body", whose bytes it then serves as
/// the next request. A proxy in front may well decide otherwise (request smuggling), so
/// only one plain decimal `Content-Length` or exactly `Transfer-Encoding: chunked` pass.
pub fn check_framing(headers: &[(String, String)]) -> Result<(), ApiError> {
    let lengths: Vec<&str> = header_values(headers, "Content-Length").collect();
    let codings: Vec<&str> = header_values(headers, "Transfer-Encoding")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    if !codings.is_empty() {
        if !lengths.is_empty() {
            return Err(ApiError::invalid_request(
                "the request has both Content-Length and Transfer-Encoding; send one",
            ));
        }
        if !matches!(codings.as_slice(), [c] if c.eq_ignore_ascii_case("chunked")) {
            return Err(ApiError::invalid_request(format!(
                "unsupported Transfer-Encoding {:?}; only \"chunked\" is accepted",
                codings.join(", ")
            )));
        }
    }
    if let Some(first) = lengths.first() {
        let plain = first.bytes().all(|b| b.is_ascii_digit()) && first.parse::<usize>().is_ok();
        if !plain || lengths.iter().any(|l| l != first) {
            return Err(ApiError::invalid_request(format!(
                "Content-Length must be one decimal number of bytes, got {lengths:?}"
            )));
        }
    }
    Ok(())
}

/// Declared bodies above this are never dropped: when tiny_http 0.12 drops a request with
/// unread body it allocates a buffer of the whole remaining declared length at once, and a
/// `Content-Length` of a terabyte aborts the process. Below it the allocation is harmless
/// (lazily mapped and filled only by bytes the client really sends).
const UNDROPPABLE_BODY: usize = 64 * 1024 * 1024;

/// True when dropping `request` could allocate its whole declared body (see
/// [`UNDROPPABLE_BODY`]): such a request is answered only by [`refuse_undroppable`].
pub fn too_big_to_drop(request: &tiny_http::Request) -> bool {
    request.body_length().is_some_and(|n| n > UNDROPPABLE_BODY)
}

/// Answers 413 to a request declaring an absurd body, and deliberately leaks the
/// connection (its socket and tiny_http's thread for it) instead of dropping the request.
/// Only a hostile client sends this; leaking one connection beats crashing the daemon.
pub fn refuse_undroppable(request: tiny_http::Request, max: usize) -> u16 {
    static LEAKED: AtomicUsize = AtomicUsize::new(0);
    let n = LEAKED.fetch_add(1, Ordering::Relaxed) + 1;
    log::warn!(
        "refused a request declaring a {}-byte body; its connection is abandoned ({n} so far)",
        request.body_length().unwrap_or(0)
    );
    let resp = ApiError::payload_too_large(max).response_for(request.url());
    let body = resp.body.clone();
    // `upgrade` writes the head and hands over the connection without dropping the body
    // reader, but it sends neither a length nor the body, and tiny_http's `add_header`
    // discards a `Content-Length`. Without one the client reads the body until the
    // connection closes, which this one never does: so the length rides in on the
    // protocol name (written verbatim as the `Upgrade` header, never acted on by a client
    // of a non-101 answer), and the body is written on the raw stream.
    let protocol = format!("none\r\nContent-Length: {}", body.len());
    let mut stream = request.upgrade(&protocol, resp.into_tiny());
    if let Err(e) = stream.write_all(&body).and_then(|()| stream.flush()) {
        log::debug!("client went away before the 413 was sent: {e}");
    }
    std::mem::forget(stream);
    413
}

/// Reads the whole body of `request` (whose headers are `headers`), at most `max` bytes.
pub fn read_body(
    request: &mut tiny_http::Request,
    headers: &[(String, String)],
    max: usize,
) -> Result<Vec<u8>, ApiError> {
    if request.body_length().is_some_and(|len| len > max) {
        return Err(ApiError::payload_too_large(max));
    }
    let chunked = header(headers, "Transfer-Encoding").is_some();
    // For a request whose (first) `Connection` header says "upgrade", as curl's h2c offer
    // does, tiny_http hands over the raw connection as the body, whatever its framing:
    // read exactly the declared length, or nothing, never "until the client closes",
    // which a client waiting for its answer never does.
    let raw =
        header(headers, "Connection").is_some_and(|v| v.to_ascii_lowercase().contains("upgrade"));
    let limit = match request.body_length() {
        Some(declared) => declared as u64,
        None if chunked && raw => {
            return Err(ApiError::invalid_request(
                "a chunked body cannot come with Connection: upgrade; send Content-Length",
            ));
        }
        None if chunked => max as u64 + 1,
        None => return Ok(Vec::new()),
    };
    let mut body = Vec::new();
    request
        .as_reader()
        .take(limit)
        .read_to_end(&mut body)
        .map_err(|e| ApiError::invalid_request(format!("cannot read the request body: {e}")))?;
    if body.len() > max {
        return Err(ApiError::payload_too_large(max));
    }
    // A connection closed early must not pass for a complete (if valid) request.
    if let Some(declared) = request.body_length()
        && body.len() < declared
    {
        return Err(ApiError::invalid_request(format!(
            "the request body ended after {} of the {declared} bytes its Content-Length declared",
            body.len()
        )));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing(headers: &[(&str, &str)]) -> Result<(), ApiError> {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        check_framing(&headers)
    }

    /// Regression: tiny_http served bodies framed ambiguously (Content-Length with
    /// Transfer-Encoding, two lengths, `Content-Length: abc`, `Transfer-Encoding: gzip,
    /// chunked`) by guessing, and a proxy may guess differently.
    #[test]
    fn r_ambiguous_body_framing_is_refused() {
        for ok in [
            &[][..],
            &[("Content-Length", "0")],
            &[("content-length", "17")],
            &[("Content-Length", "2"), ("Content-Length", "2")],
            &[("Transfer-Encoding", "chunked")],
            &[("transfer-encoding", "Chunked")],
        ] {
            assert!(framing(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            &[("Content-Length", "2"), ("Transfer-Encoding", "chunked")][..],
            &[("Content-Length", "2"), ("Content-Length", "3")],
            &[("Content-Length", "abc")],
            &[("Content-Length", "")],
            &[("Content-Length", "-1")],
            &[("Content-Length", "+2")],
            &[("Content-Length", "2, 2")],
            &[("Content-Length", "18446744073709551616")],
            &[("Transfer-Encoding", "gzip")],
            &[("Transfer-Encoding", "")],
            &[("Transfer-Encoding", "gzip, chunked")],
            &[("Transfer-Encoding", "chunked, chunked")],
            &[
                ("Transfer-Encoding", "chunked"),
                ("Transfer-Encoding", "chunked"),
            ],
            &[("Transfer-Encoding", "identity")],
        ] {
            let e = framing(bad).expect_err(&format!("{bad:?}"));
            assert_eq!(e.status, 400);
        }
    }
}
