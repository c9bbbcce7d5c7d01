//! Plain request and response values the handlers work on, free of any socket.

use std::io::Cursor;

use percent_encoding::percent_decode_str;
use serde::Serialize;
use serde_json::{Map, Value};

use super::error::ApiError;

/// A request as a handler sees it: already checked (host, auth, size) and fully read.
#[derive(Debug, Clone, Default)]
pub struct ApiRequest {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ApiRequest {
    /// Splits a request target into path and decoded query pairs.
    pub fn new(method: &str, target: &str, headers: Vec<(String, String)>, body: Vec<u8>) -> Self {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, parse_query(q)),
            None => (target, Vec::new()),
        };
        ApiRequest {
            method: method.to_string(),
            path: path.to_string(),
            query,
            headers,
            body,
        }
    }

    /// The first value of a query parameter.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The body as a JSON object; an empty body is an empty object when `allow_empty`.
    pub fn json_object(&self, allow_empty: bool) -> Result<Map<String, Value>, ApiError> {
        if self.body.iter().all(|b| b.is_ascii_whitespace()) {
            return if allow_empty {
                Ok(Map::new())
            } else {
                Err(ApiError::invalid_request(
                    "request body is empty; send a JSON object (Content-Type: application/json)",
                ))
            };
        }
        match serde_json::from_slice::<Value>(&self.body) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(ApiError::invalid_request(
                "request body must be a JSON object",
            )),
            Err(e) => Err(ApiError::invalid_request(format!(
                "request body is not valid JSON: {e}"
            ))),
        }
    }
}

/// The first value of header `name` (names compare without case).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Every value of header `name`, in order.
pub fn header_values<'a>(
    headers: &'a [(String, String)],
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .iter()
        .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A tiny_http request's headers as plain pairs.
pub fn headers_of(request: &tiny_http::Request) -> Vec<(String, String)> {
    request
        .headers()
        .iter()
        .map(|h| {
            (
                h.field.as_str().as_str().to_owned(),
                h.value.as_str().to_owned(),
            )
        })
        .collect()
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_decode_str(&plus).decode_utf8_lossy().into_owned()
}

/// Reads typed fields out of a JSON object body, naming the field on a wrong type.
pub struct Fields<'a>(pub &'a Map<String, Value>);

impl Fields<'_> {
    /// An optional string; `null` counts as absent.
    pub fn opt_str(&self, name: &str) -> Result<Option<&str>, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(wrong_type(name, "a string", other)),
        }
    }

    /// A required string that is not blank.
    pub fn req_str(&self, name: &str) -> Result<&str, ApiError> {
        match self.opt_str(name)? {
            Some(s) if !s.trim().is_empty() => Ok(s),
            Some(_) => Err(ApiError::invalid_request(format!(
                "field '{name}' must not be empty"
            ))),
            None => Err(ApiError::invalid_request(format!(
                "missing required field '{name}'"
            ))),
        }
    }

    pub fn opt_bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(wrong_type(name, "a boolean", other)),
        }
    }
}

fn wrong_type(name: &str, want: &str, got: &Value) -> ApiError {
    let kind = json_kind(got);
    ApiError::invalid_request(format!("field '{name}' must be {want}, got {kind}"))
}

/// What kind of JSON value `v` is, as an error message says it ("a number").
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A complete (non-streaming) response.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl ApiResponse {
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> ApiResponse {
        let body = serde_json::to_vec(value).unwrap_or_else(|e| {
            format!(
                r#"{{"error":{{"code":"internal_error","message":"cannot encode response: {e}"}}}}"#
            )
            .into_bytes()
        });
        ApiResponse {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body,
        }
    }

    pub fn ok<T: Serialize + ?Sized>(value: &T) -> ApiResponse {
        ApiResponse::json(200, value)
    }

    pub fn empty(status: u16) -> ApiResponse {
        ApiResponse {
            status,
            content_type: "text/plain",
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> ApiResponse {
        self.headers.push((name, value.into()));
        self
    }

    /// Converts into a `tiny_http` response with our standard headers.
    pub fn into_tiny(self) -> tiny_http::Response<Cursor<Vec<u8>>> {
        let mut resp = tiny_http::Response::from_data(self.body).with_status_code(self.status);
        let mut add = |name: &str, value: &str| {
            if let Ok(h) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
                resp.add_header(h);
            }
        };
        add("Content-Type", self.content_type);
        add("Cache-Control", "no-store");
        for (name, value) in &self.headers {
            add(name, value);
        }
        resp
    }
}

impl From<ApiError> for ApiResponse {
    fn from(e: ApiError) -> ApiResponse {
        let mut resp = ApiResponse::json(e.status, &e.body());
        if let Some(secs) = e.retry_after {
            resp.headers.push(("Retry-After", secs.to_string()));
        }
        if let Some(allow) = e.allow {
            resp.headers.push(("Allow", allow));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_decoded() {
        let r = ApiRequest::new(
            "GET",
            "/api/memory/search?q=rust%20async+notes&limit=5&x",
            vec![],
            vec![],
        );
        assert_eq!(r.path, "/api/memory/search");
        assert_eq!(r.query("q"), Some("rust async notes"));
        assert_eq!(r.query("limit"), Some("5"));
        assert_eq!(r.query("x"), Some(""));
        assert_eq!(r.query("nope"), None);
        let r = ApiRequest::new("GET", "/s?q=%FF%FE", vec![], vec![]);
        assert!(r.query("q").is_some());
    }

    #[test]
    fn fields_name_the_bad_one() {
        let map = match serde_json::json!({"message": 5, "include_memory": "yes", "empty": " "}) {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let f = Fields(&map);
        let e = f.req_str("message").unwrap_err();
        assert!(e.message.contains("'message'") && e.message.contains("number"));
        assert!(
            f.opt_bool("include_memory")
                .unwrap_err()
                .message
                .contains("include_memory")
        );
        assert!(f.req_str("empty").unwrap_err().message.contains("empty"));
        assert!(f.req_str("absent").unwrap_err().message.contains("missing"));
    }

    #[test]
    fn body_must_be_object() {
        let r = ApiRequest::new("POST", "/", vec![], b"[1]".to_vec());
        assert_eq!(r.json_object(false).unwrap_err().status, 400);
        let r = ApiRequest::new("POST", "/", vec![], b"{bad".to_vec());
        assert!(
            r.json_object(false)
                .unwrap_err()
                .message
                .contains("not valid JSON")
        );
        let r = ApiRequest::new("POST", "/", vec![], Vec::new());
        assert!(r.json_object(true).unwrap().is_empty());
    }
}
