//! `GET /api/memory/search`, `GET /api/memory/stats`, `POST /api/memory/reindex`.

use serde::Serialize;

use crate::app::App;
use crate::memory::{
    DEFAULT_LIMIT, MAX_LIMIT, MAX_QUERY_CHARS, MemoryError, SearchHit, SearchMode,
};
use crate::server::error::ApiError;
use crate::server::http::{ApiRequest, ApiResponse, Fields};

impl From<MemoryError> for ApiError {
    fn from(e: MemoryError) -> ApiError {
        match e {
            MemoryError::OutsideWorkspace(_) => ApiError::invalid_request(e.to_string()),
            other => {
                log::error!("{other}");
                ApiError::internal(format!("{other}"))
            }
        }
    }
}

/// The search answer: `total` is the number of results returned, `mode` how they were
/// ranked (lexically when vectors could not be used, whatever was asked).
#[derive(Debug, Serialize)]
pub struct SearchAnswer<'a> {
    pub query: &'a str,
    pub results: Vec<SearchHit>,
    pub total: usize,
    pub mode: SearchMode,
}

/// `GET /api/memory/search?q=<text>&limit=<1..100>&mode=<hybrid|lexical|vector>`.
pub fn search(app: &App, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
    let q = search_text(req.query("q"))?;
    let limit = search_limit(req.query("limit"))?;
    let mode = search_mode(req.query("mode"))?;
    let outcome = app.agent.memory.search_with(q, limit, mode)?;
    Ok(ApiResponse::ok(&SearchAnswer {
        query: q,
        total: outcome.hits.len(),
        results: outcome.hits,
        mode: outcome.mode,
    }))
}

/// `GET /api/memory/stats`.
pub fn stats(app: &App) -> Result<ApiResponse, ApiError> {
    Ok(ApiResponse::ok(&app.agent.memory.stats()?))
}

/// `POST /api/memory/reindex` with an optional body `{"force": bool}`.
pub fn reindex(app: &App, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
    let body = req.json_object(true)?;
    let force = Fields(&body).opt_bool("force")?.unwrap_or(false);
    Ok(ApiResponse::ok(&app.agent.memory.reindex(force, None)?))
}

fn search_text(q: Option<&str>) -> Result<&str, ApiError> {
    match q {
        None => Err(ApiError::invalid_request(
            "missing required parameter 'q' (the search text), e.g. /api/memory/search?q=rust",
        )),
        Some(q) if q.trim().is_empty() => {
            Err(ApiError::invalid_request("parameter 'q' must not be empty"))
        }
        Some(q) if q.chars().count() > MAX_QUERY_CHARS => Err(ApiError::invalid_request(format!(
            "parameter 'q' is longer than {MAX_QUERY_CHARS} characters"
        ))),
        Some(q) => Ok(q),
    }
}

/// `limit` is an integer from 1 to [`MAX_LIMIT`]; a larger one is refused rather than
/// clamped, so a client learns the bound instead of silently getting fewer results.
fn search_limit(limit: Option<&str>) -> Result<usize, ApiError> {
    let Some(text) = limit else {
        return Ok(DEFAULT_LIMIT);
    };
    text.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_LIMIT).contains(n))
        .ok_or_else(|| {
            ApiError::invalid_request(format!(
                "parameter 'limit' must be an integer from 1 to {MAX_LIMIT}, got {text:?}"
            ))
        })
}

/// `mode` is one of the [`SearchMode`] names; absent means the memory's default.
fn search_mode(mode: Option<&str>) -> Result<Option<SearchMode>, ApiError> {
    mode.map(|m| {
        m.parse().map_err(|_| {
            ApiError::invalid_request(format!(
                "parameter 'mode' must be {}, got {m:?}",
                SearchMode::NAMES
            ))
        })
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_is_checked() {
        assert_eq!(search_mode(None).unwrap(), None);
        assert_eq!(
            search_mode(Some("vector")).unwrap(),
            Some(SearchMode::Vector)
        );
        for bad in ["", "fuzzy", "hybrid,lexical"] {
            let e = search_mode(Some(bad)).unwrap_err();
            assert_eq!(e.status, 400);
            assert!(e.message.contains("'mode'"), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn q_is_checked() {
        assert!(search_text(None).unwrap_err().message.contains("'q'"));
        assert!(search_text(Some("  ")).unwrap_err().message.contains("'q'"));
        let long = "é".repeat(MAX_QUERY_CHARS + 1);
        assert!(
            search_text(Some(&long))
                .unwrap_err()
                .message
                .contains("'q'")
        );
        let max = "é".repeat(MAX_QUERY_CHARS);
        assert!(
            search_text(Some(&max)).is_ok(),
            "the bound counts characters"
        );
    }

    #[test]
    fn limit_is_checked() {
        assert_eq!(search_limit(None).unwrap(), DEFAULT_LIMIT);
        assert_eq!(search_limit(Some("1")).unwrap(), 1);
        assert_eq!(search_limit(Some("100")).unwrap(), 100);
        for bad in [
            "0",
            "101",
            "-1",
            "1.5",
            "ten",
            "",
            "99999999999999999999999",
        ] {
            let e = search_limit(Some(bad)).unwrap_err();
            assert_eq!(e.status, 400);
            assert!(e.message.contains("'limit'"), "{bad}: {}", e.message);
        }
    }
}
