//! The docs in the repository stay true to the code: the route reference in `docs/api.md`
//! is rendered from `src/server/openapi.json` (the document `GET /api/openapi.json`
//! serves, itself held to the daemon by `tests/openapi.rs`), every error code the API
//! answers is explained there, and every link between the docs leads to a file.
//!
//! After changing `openapi.json`, rewrite the section with
//! `LOCALGPT_WRITE_DOCS=1 cargo test --test docs`.

use std::fs;
use std::path::Path;

use serde_json::Value;

const BEGIN: &str = "<!-- routes: rendered from src/server/openapi.json by tests/docs.rs -->";
const END: &str = "<!-- end of routes -->";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn openapi() -> Value {
    let text = fs::read_to_string(root().join("src/server/openapi.json")).expect("openapi.json");
    serde_json::from_str(&text).expect("openapi.json is JSON")
}

/// The last segment of a `$ref`.
fn ref_name(v: &Value) -> Option<&str> {
    v.get("$ref")?.as_str()?.rsplit('/').next()
}

fn schema_text(schema: &Value) -> String {
    if let Some(name) = ref_name(schema) {
        return format!("`{name}`");
    }
    let kind = schema["type"].as_str().unwrap_or("value");
    let mut facts = Vec::new();
    if let Some(values) = schema["enum"].as_array() {
        let values: Vec<String> = values
            .iter()
            .map(|v| format!("`{}`", v.as_str().unwrap_or("?")))
            .collect();
        facts.push(format!("one of {}", values.join(", ")));
    }
    match (schema["minimum"].as_i64(), schema["maximum"].as_i64()) {
        (Some(lo), Some(hi)) => facts.push(format!("{lo}–{hi}")),
        (Some(lo), None) => facts.push(format!("≥ {lo}")),
        _ => {}
    }
    if let Some(d) = schema.get("default") {
        facts.push(format!("default `{d}`"));
    }
    if facts.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}, {}", facts.join(", "))
    }
}

/// The routes section of `docs/api.md`.
fn render_routes(doc: &Value) -> String {
    let mut out = String::new();
    out.push_str("| method | path | what |\n|---|---|---|\n");
    let paths = doc["paths"].as_object().expect("paths");
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            out.push_str(&format!(
                "| {} | [`{path}`](#{}) | {} |\n",
                method.to_uppercase(),
                anchor(method, path),
                op["summary"].as_str().unwrap_or("")
            ));
        }
    }
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            out.push_str(&format!("\n### {} {path}\n\n", method.to_uppercase()));
            out.push_str(&format!("**{}.**", op["summary"].as_str().unwrap_or("")));
            if let Some(d) = op["description"].as_str() {
                out.push_str(&format!(" {d}"));
            }
            out.push('\n');
            if let Some(params) = op["parameters"].as_array()
                && !params.is_empty()
            {
                out.push_str("\nParameters:\n");
                for p in params {
                    let required = if p["required"] == true {
                        ", required"
                    } else {
                        ""
                    };
                    let mut line = format!(
                        "- `{}` ({}{required}): {}",
                        p["name"].as_str().unwrap_or("?"),
                        p["in"].as_str().unwrap_or("?"),
                        schema_text(&p["schema"])
                    );
                    if let Some(d) = p["description"].as_str() {
                        line.push_str(&format!(". {d}"));
                    }
                    out.push_str(&line);
                    out.push('\n');
                }
            }
            if let Some(body) = op.get("requestBody") {
                let required = if body["required"] == true {
                    "required"
                } else {
                    "optional"
                };
                let schema = body["content"]["application/json"]["schema"].clone();
                out.push_str(&format!(
                    "\nBody ({required}, JSON): {}\n",
                    schema_text(&schema)
                ));
            }
            let mut answers = Vec::new();
            for (status, resp) in op["responses"].as_object().expect("responses") {
                let text = match ref_name(resp) {
                    Some(name) => format!("{status} ({name})"),
                    None => {
                        let schema = resp["content"]
                            .as_object()
                            .and_then(|c| c.values().next())
                            .map(|c| &c["schema"]);
                        match schema.and_then(ref_name) {
                            Some(name) => format!("{status} `{name}`"),
                            None => {
                                format!("{status} {}", resp["description"].as_str().unwrap_or(""))
                            }
                        }
                    }
                };
                answers.push(text);
            }
            out.push_str(&format!("\nAnswers: {}.\n", answers.join(" · ")));
        }
    }
    out
}

/// The anchor GitHub-style Markdown gives `### METHOD path`.
fn anchor(method: &str, path: &str) -> String {
    format!("{method} {path}")
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '_' => Some(c),
            ' ' => Some('-'),
            _ => None,
        })
        .collect()
}

#[test]
fn api_reference_matches_openapi() {
    let path = root().join("docs/api.md");
    let text = fs::read_to_string(&path).expect("docs/api.md");
    let (head, rest) = text
        .split_once(BEGIN)
        .expect("the routes marker in docs/api.md");
    let (current, tail) = rest.split_once(END).expect("the end-of-routes marker");
    let rendered = format!("\n{}\n", render_routes(&openapi()));
    if current != rendered {
        if std::env::var_os("LOCALGPT_WRITE_DOCS").is_some() {
            fs::write(&path, format!("{head}{BEGIN}{rendered}{END}{tail}")).expect("write");
        } else {
            panic!(
                "docs/api.md's routes differ from openapi.json: run \
                 LOCALGPT_WRITE_DOCS=1 cargo test --test docs"
            );
        }
    }
}

#[test]
fn every_error_code_is_explained() {
    let text = fs::read_to_string(root().join("docs/api.md")).expect("docs/api.md");
    let error = fs::read_to_string(root().join("src/server/error.rs")).expect("error.rs");
    // Every code the one error type can carry: the string after each `ApiError::new(status,`.
    let mut codes: Vec<&str> = error
        .split("ApiError::new(")
        .skip(1)
        .filter_map(|rest| rest.split('"').nth(1))
        .filter(|c| c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_'))
        .collect();
    codes.sort();
    codes.dedup();
    assert!(codes.len() >= 10, "found codes: {codes:?}");
    for code in codes {
        assert!(
            text.contains(&format!("`{code}`")),
            "docs/api.md does not explain error code {code}"
        );
    }
}

#[test]
fn links_between_docs_lead_somewhere() {
    let mut files = vec![root().join("README.md")];
    for entry in fs::read_dir(root().join("docs")).expect("docs/") {
        files.push(entry.expect("entry").path());
    }
    for file in files {
        let text = fs::read_to_string(&file).expect("read");
        for (i, _) in text.match_indices("](") {
            let target = text[i + 2..].split(')').next().unwrap_or("");
            let target = target.split('#').next().unwrap_or("");
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let resolved = file.parent().expect("dir").join(target);
            let real = resolved.canonicalize().unwrap_or_else(|_| {
                panic!("{} links to {target}, which does not exist", file.display())
            });
            let repo = root().canonicalize().expect("repository root");
            assert!(
                real.starts_with(&repo),
                "{} links outside the repository: {target}",
                file.display()
            );
        }
    }
}
