//! JSON-RPC 2.0 as MCP speaks it over stdio: one message a line (serde_json escapes every
//! newline inside strings, so a serialised message never spans lines), request ids that
//! are never null, and the error object `{code, message, data?}`.

use std::fmt;

use serde_json::{Map, Value, json};

/// JSON-RPC's "the method does not exist" code: our answer to server requests for features
/// we did not declare (sampling, roots, elicitation).
pub const METHOD_NOT_FOUND: i64 = -32601;

/// An error object a server answered with.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.message, self.code)?;
        if let Some(data) = &self.data {
            write!(f, " {data}")?;
        }
        Ok(())
    }
}

/// One message read from a server.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// The answer to one of our requests (we only send integer ids).
    Response {
        id: u64,
        outcome: Result<Value, RemoteError>,
    },
    /// A request from the server; it must be answered with the same `id`.
    Request {
        id: Value,
        method: String,
        params: Value,
    },
    Notification {
        method: String,
        params: Value,
    },
    /// Not a JSON-RPC message we can use; the text says why.
    Invalid(String),
}

/// Reads one line. A JSON array is a batch (allowed by protocol 2025-03-26): each element
/// is one message.
pub fn parse_line(line: &[u8]) -> Vec<Incoming> {
    match serde_json::from_slice::<Value>(line) {
        Ok(Value::Array(batch)) => batch.into_iter().map(classify).collect(),
        Ok(v) => vec![classify(v)],
        Err(e) => vec![Incoming::Invalid(format!("not JSON: {e}"))],
    }
}

fn classify(v: Value) -> Incoming {
    let Value::Object(mut m) = v else {
        return Incoming::Invalid("not a JSON object".into());
    };
    let params = m.remove("params").unwrap_or(Value::Null);
    match (m.remove("method"), m.remove("id")) {
        (Some(Value::String(method)), Some(id)) if !id.is_null() => {
            Incoming::Request { id, method, params }
        }
        (Some(Value::String(method)), _) => Incoming::Notification { method, params },
        (None, Some(id)) => {
            // Some servers echo a number id as a string; both name our request.
            let Some(id) = id
                .as_u64()
                .or_else(|| id.as_str().and_then(|s| s.parse().ok()))
            else {
                return Incoming::Invalid(format!("a response to an id we never sent: {id}"));
            };
            let outcome = match (m.remove("result"), m.remove("error")) {
                (_, Some(e)) => Err(remote_error(e)),
                (Some(result), None) => Ok(result),
                (None, None) => {
                    return Incoming::Invalid("a response with neither result nor error".into());
                }
            };
            Incoming::Response { id, outcome }
        }
        _ => Incoming::Invalid("neither a request, a notification nor a response".into()),
    }
}

fn remote_error(e: Value) -> RemoteError {
    RemoteError {
        code: e.get("code").and_then(Value::as_i64).unwrap_or(0),
        message: e
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("(no message)")
            .to_string(),
        data: e.get("data").filter(|d| !d.is_null()).cloned(),
    }
}

/// A request line, newline included.
pub fn request(id: u64, method: &str, params: Value) -> Vec<u8> {
    let mut m = Map::new();
    m.insert("jsonrpc".into(), "2.0".into());
    m.insert("id".into(), id.into());
    m.insert("method".into(), method.into());
    if !params.is_null() {
        m.insert("params".into(), params);
    }
    line(Value::Object(m))
}

/// A notification line (no id: nothing answers it).
pub fn notification(method: &str, params: Value) -> Vec<u8> {
    let mut m = Map::new();
    m.insert("jsonrpc".into(), "2.0".into());
    m.insert("method".into(), method.into());
    if !params.is_null() {
        m.insert("params".into(), params);
    }
    line(Value::Object(m))
}

/// The answer to a server's request.
pub fn result(id: &Value, result: Value) -> Vec<u8> {
    line(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

/// An error answer to a server's request.
pub fn error(id: &Value, code: i64, message: &str) -> Vec<u8> {
    line(json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}))
}

fn line(v: Value) -> Vec<u8> {
    let mut out = v.to_string().into_bytes();
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_of_message() {
        let got = parse_line(br#"{"jsonrpc":"2.0","id":3,"result":{"ok":true}}"#);
        assert_eq!(
            got,
            [Incoming::Response {
                id: 3,
                outcome: Ok(json!({"ok": true}))
            }]
        );
        let got =
            parse_line(br#"{"jsonrpc":"2.0","id":"4","error":{"code":-32602,"message":"bad"}}"#);
        let Incoming::Response {
            id: 4,
            outcome: Err(e),
        } = &got[0]
        else {
            panic!("{got:?}")
        };
        assert_eq!((e.code, e.message.as_str()), (-32602, "bad"));
        let got = parse_line(br#"{"jsonrpc":"2.0","id":"p1","method":"ping"}"#);
        assert!(matches!(&got[0], Incoming::Request { method, .. } if method == "ping"));
        let got = parse_line(br#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#);
        assert!(matches!(&got[0], Incoming::Notification { .. }));
        let got =
            parse_line(br#"[{"jsonrpc":"2.0","id":1,"result":{}},{"jsonrpc":"2.0","method":"x"}]"#);
        assert_eq!(got.len(), 2);
        for bad in [
            &b"nope"[..],
            b"3",
            br#"{"id":"abc","result":{}}"#,
            br#"{"id":1}"#,
        ] {
            assert!(
                matches!(parse_line(bad)[0], Incoming::Invalid(_)),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn lines_are_single_lines() {
        let l = request(7, "tools/call", json!({"arguments": {"text": "a\nb"}}));
        assert_eq!(l.iter().filter(|b| **b == b'\n').count(), 1);
        assert!(l.ends_with(b"\n"));
        let v: Value = serde_json::from_slice(&l).unwrap();
        assert_eq!(v["id"], 7);
        assert_eq!(v["jsonrpc"], "2.0");
        let n: Value =
            serde_json::from_slice(&notification("notifications/initialized", Value::Null))
                .unwrap();
        assert!(n.get("id").is_none() && n.get("params").is_none());
        let e: Value = serde_json::from_slice(&error(&json!("x"), METHOD_NOT_FOUND, "no")).unwrap();
        assert_eq!(e["error"]["code"], -32601);
        assert_eq!(e["id"], "x");
    }
}
