//! The embedding server's client: OpenAI-compatible `/v1/embeddings` (llama.cpp, Ollama,
//! LM Studio, vLLM, OpenAI) and Ollama's own `/api/embed`, over the providers' `ureq`
//! agent (timeouts and the mapping of transport errors are theirs, see
//! `providers/http.rs`).

use std::fmt;
use std::io::Read;

use serde_json::{Value, json};

use crate::config::{EmbeddingsConfig, Span};
use crate::providers::ProviderError;
use crate::providers::http::{Http, TimeoutSettings, join_url, shown_url};

/// Why texts could not be embedded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EmbedError {
    /// Not reached, or no answer in time: the embedder is down; try again later.
    Unreachable(String),
    /// An error status: the model is unknown, the server failed, or a text was refused.
    Refused(String),
    /// An answer that holds no usable vectors.
    Malformed(String),
}

impl fmt::Display for EmbedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmbedError::Unreachable(d) | EmbedError::Refused(d) | EmbedError::Malformed(d) => {
                write!(f, "embedder: {d}")
            }
        }
    }
}

impl std::error::Error for EmbedError {}

/// Which wire format the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    OpenAi,
    Ollama,
}

/// A configured embedding server.
pub struct Embedder {
    api: Api,
    url: String,
    model: String,
    api_key: String,
    /// For batches: the configured connect and read timeouts.
    batch: Http,
    /// For a search's own text: bounded by `query_timeout`, so search stays fast.
    query: Http,
}

impl Embedder {
    /// The client for `config`; `None` when embeddings are off. An empty `base_url` must
    /// have been filled from the provider's section already
    /// ([`EmbeddingsConfig::inherit`]).
    pub fn new(config: &EmbeddingsConfig) -> Option<Embedder> {
        let api = match config.provider.as_str() {
            "openai" => Api::OpenAi,
            "ollama" => Api::Ollama,
            _ => return None,
        };
        let base = if config.base_url.is_empty() {
            match api {
                Api::OpenAi => "https://api.openai.com/v1",
                Api::Ollama => "http://127.0.0.1:11434",
            }
        } else {
            config.base_url.as_str()
        };
        let url = match api {
            Api::OpenAi => join_url(base, "embeddings"),
            Api::Ollama => join_url(base, "api/embed"),
        };
        let batch = Http::with_timeouts(
            "embeddings",
            config.connect_timeout,
            config.read_timeout,
            TimeoutSettings {
                connect: "memory.embeddings.connect_timeout",
                read: "memory.embeddings.read_timeout",
            },
        );
        let query_connect = Span(config.connect_timeout.get().min(config.query_timeout.get()));
        let query = Http::with_timeouts(
            "embeddings",
            query_connect,
            config.query_timeout,
            TimeoutSettings {
                connect: "memory.embeddings.query_timeout",
                read: "memory.embeddings.query_timeout",
            },
        );
        Some(Embedder {
            api,
            url,
            model: config.model.clone(),
            api_key: config.api_key.clone(),
            batch,
            query,
        })
    }

    /// The model name vectors are stored under.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The endpoint, without credentials, for messages.
    pub fn shown_url(&self) -> String {
        shown_url(&self.url)
    }

    /// One vector per text, in order (a background batch).
    pub fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.call(&self.batch, texts)
    }

    /// The vector of a search's text, within `query_timeout`.
    pub fn embed_query(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        self.call(&self.query, &[text.to_string()])?
            .pop()
            .ok_or_else(|| EmbedError::Malformed("no vector for the query".into()))
    }

    fn call(&self, http: &Http, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let body = match self.api {
            Api::OpenAi => json!({"model": self.model, "input": texts, "encoding_format": "float"}),
            Api::Ollama => json!({"model": self.model, "input": texts}),
        };
        let auth = format!("Bearer {}", self.api_key);
        let headers: Vec<(&str, &str)> = if self.api_key.is_empty() {
            Vec::new()
        } else {
            vec![("authorization", auth.as_str())]
        };
        let mut reader = http
            .post_stream(&self.url, &headers, &body)
            .map_err(classify)?;
        let mut text = String::new();
        reader
            .read_to_string(&mut text)
            .map_err(|e| classify(http.read_error(&self.url, e)))?;
        let value: Value = serde_json::from_str(&text).map_err(|e| {
            EmbedError::Malformed(format!(
                "{} answered with something not JSON: {e}",
                self.shown_url()
            ))
        })?;
        let vectors = match self.api {
            Api::OpenAi => openai_vectors(&value),
            Api::Ollama => value["embeddings"]
                .as_array()
                .map(|a| a.iter().map(floats).collect::<Option<Vec<_>>>())
                .unwrap_or(None),
        }
        .ok_or_else(|| {
            EmbedError::Malformed(format!(
                "{} answered without the expected vectors",
                self.shown_url()
            ))
        })?;
        if vectors.len() != texts.len() || vectors.iter().any(|v| v.is_empty()) {
            return Err(EmbedError::Malformed(format!(
                "{} answered {} vectors for {} texts",
                self.shown_url(),
                vectors.len(),
                texts.len()
            )));
        }
        Ok(vectors)
    }
}

/// Transport failures and timeouts mean "down"; an HTTP error status means "refused".
fn classify(e: ProviderError) -> EmbedError {
    match e {
        ProviderError::Timeout { detail, .. } => EmbedError::Unreachable(detail),
        ProviderError::Failed { detail, .. } if detail.starts_with("HTTP ") => {
            EmbedError::Refused(detail)
        }
        ProviderError::Failed { detail, .. } => EmbedError::Unreachable(detail),
        ProviderError::Cancelled => EmbedError::Unreachable("cancelled".into()),
    }
}

/// `{"data":[{"index":0,"embedding":[…]}, …]}`, put in `index` order when given.
fn openai_vectors(value: &Value) -> Option<Vec<Vec<f32>>> {
    let data = value["data"].as_array()?;
    let mut rows: Vec<(u64, Vec<f32>)> = Vec::with_capacity(data.len());
    for (i, item) in data.iter().enumerate() {
        let index = item["index"].as_u64().unwrap_or(i as u64);
        rows.push((index, floats(&item["embedding"])?));
    }
    rows.sort_by_key(|(i, _)| *i);
    Some(rows.into_iter().map(|(_, v)| v).collect())
}

fn floats(v: &Value) -> Option<Vec<f32>> {
    v.as_array()?
        .iter()
        .map(|x| x.as_f64().map(|f| f as f32))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_answers_are_put_in_index_order() {
        let v = json!({"data": [
            {"index": 1, "embedding": [0.0, 1.0]},
            {"index": 0, "embedding": [1.0, 0.0]}
        ]});
        assert_eq!(
            openai_vectors(&v).unwrap(),
            vec![vec![1.0, 0.0], vec![0.0, 1.0]]
        );
        assert!(openai_vectors(&json!({"data": [{"embedding": "x"}]})).is_none());
        assert!(openai_vectors(&json!({"error": "no"})).is_none());
    }

    #[test]
    fn endpoints_follow_the_provider() {
        let mut c = EmbeddingsConfig {
            provider: "openai".into(),
            model: "m".into(),
            base_url: "http://h:1/v1/".into(),
            ..EmbeddingsConfig::default()
        };
        assert_eq!(Embedder::new(&c).unwrap().url, "http://h:1/v1/embeddings");
        c.provider = "ollama".into();
        c.base_url = "http://h:2".into();
        assert_eq!(Embedder::new(&c).unwrap().url, "http://h:2/api/embed");
        c.provider = String::new();
        assert!(Embedder::new(&c).is_none());
    }

    #[test]
    fn transport_errors_are_down_and_statuses_refused() {
        let down = classify(ProviderError::Failed {
            provider: "embeddings".into(),
            detail: "connection refused by http://h".into(),
        });
        assert!(matches!(down, EmbedError::Unreachable(_)));
        let refused = classify(ProviderError::Failed {
            provider: "embeddings".into(),
            detail: "HTTP 404 Not Found from http://h: model not found".into(),
        });
        assert!(matches!(refused, EmbedError::Refused(_)));
        let slow = classify(ProviderError::Timeout {
            provider: "embeddings".into(),
            detail: "no data".into(),
        });
        assert!(matches!(slow, EmbedError::Unreachable(_)));
    }
}
