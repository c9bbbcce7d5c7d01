//! A `tools/call` result as text for the model: text blocks as they are, structured
//! content as JSON when no text carries it, and images, audio and resources described
//! (kind, MIME type, size, URI) so the model knows they exist even though it cannot see
//! them.

use serde_json::Value;

/// The result's text and whether the tool reported an error (`isError`).
pub fn render(result: &Value) -> (String, bool) {
    let is_error = result["isError"].as_bool().unwrap_or(false);
    let mut parts: Vec<String> = Vec::new();
    let mut has_text = false;
    for block in result["content"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        if block["type"] == "text" {
            has_text = true;
        }
        parts.push(describe(block));
    }
    // Servers SHOULD repeat structured content as text; when one does not, it is the
    // whole answer.
    let structured = &result["structuredContent"];
    if !has_text && !structured.is_null() {
        parts.push(structured.to_string());
    }
    let text = if parts.is_empty() {
        if is_error {
            "the tool failed without saying why".to_string()
        } else {
            "(the tool returned no content)".to_string()
        }
    } else {
        parts.join("\n")
    };
    (text, is_error)
}

fn describe(block: &Value) -> String {
    let kind = block["type"].as_str().unwrap_or("unknown");
    match kind {
        "text" => block["text"].as_str().unwrap_or("").to_string(),
        "image" | "audio" => format!(
            "[{kind}: {}, {} bytes; not shown]",
            mime(block),
            base64_len(&block["data"])
        ),
        "resource_link" => {
            let mut s = format!("[resource link: {}", block["uri"].as_str().unwrap_or("?"));
            if let Some(name) = block["name"].as_str() {
                s.push_str(&format!(" ({name})"));
            }
            if block["mimeType"].is_string() {
                s.push_str(&format!(", {}", mime(block)));
            }
            if let Some(size) = block["size"].as_u64() {
                s.push_str(&format!(", {size} bytes"));
            }
            if let Some(d) = block["description"].as_str() {
                s.push_str(&format!(": {d}"));
            }
            s.push(']');
            s
        }
        "resource" => {
            let r = &block["resource"];
            let uri = r["uri"].as_str().unwrap_or("?");
            match (r["text"].as_str(), &r["blob"]) {
                (Some(text), _) => format!("[resource {uri}, {}]\n{text}", mime(r)),
                (None, blob) => format!(
                    "[resource {uri}: {}, {} bytes; not shown]",
                    mime(r),
                    base64_len(blob)
                ),
            }
        }
        other => format!("[{other} content; not shown]"),
    }
}

fn mime(v: &Value) -> &str {
    v["mimeType"].as_str().unwrap_or("unknown type")
}

/// Decoded size of base64 text, without decoding it.
fn base64_len(data: &Value) -> usize {
    let s = data.as_str().unwrap_or("");
    let padding = s.bytes().rev().take_while(|b| *b == b'=').count();
    (s.len() / 4 * 3).saturating_sub(padding.min(2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_and_errors() {
        let r = json!({"content": [{"type": "text", "text": "12:00"}, {"type": "text", "text": "UTC"}]});
        assert_eq!(render(&r), ("12:00\nUTC".into(), false));
        let e = json!({"content": [{"type": "text", "text": "no such zone"}], "isError": true});
        assert_eq!(render(&e), ("no such zone".into(), true));
        assert!(render(&json!({"content": [], "isError": true})).1);
        assert!(render(&json!({})).0.contains("no content"));
    }

    #[test]
    fn structured_only_when_no_text() {
        let both = json!({"content": [{"type": "text", "text": "{\"t\":1}"}], "structuredContent": {"t": 1}});
        assert_eq!(render(&both).0, "{\"t\":1}");
        let only = json!({"content": [], "structuredContent": {"t": 1}});
        assert_eq!(render(&only).0, "{\"t\":1}");
    }

    #[test]
    fn media_and_resources_are_described() {
        let r = json!({"content": [
            {"type": "image", "data": "aGVsbG8=", "mimeType": "image/png"},
            {"type": "audio", "data": "AAAA", "mimeType": "audio/wav"},
            {"type": "resource_link", "uri": "file:///a.rs", "name": "a.rs", "mimeType": "text/x-rust"},
            {"type": "resource", "resource": {"uri": "file:///b.txt", "mimeType": "text/plain", "text": "hello"}},
            {"type": "resource", "resource": {"uri": "file:///c.bin", "blob": "AAAAAA=="}},
            {"type": "hologram"}
        ]});
        let (text, err) = render(&r);
        assert!(!err);
        for want in [
            "[image: image/png, 5 bytes; not shown]",
            "[audio: audio/wav, 3 bytes; not shown]",
            "[resource link: file:///a.rs (a.rs), text/x-rust]",
            "[resource file:///b.txt, text/plain]\nhello",
            "[resource file:///c.bin: unknown type, 4 bytes; not shown]",
            "[hologram content; not shown]",
        ] {
            assert!(text.contains(want), "{want} in {text}");
        }
    }
}
