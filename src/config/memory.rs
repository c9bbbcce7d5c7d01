//! `[memory]` and `[memory.embeddings]`: the workspace, chunking, results, and the
//! embedding server behind search by meaning.

use serde::{Deserialize, Serialize};

use super::{ConfigError, ProvidersConfig, Span, invalid};

/// `[memory]`: the workspace, how it is indexed, what a search returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryConfig {
    /// Empty: `<data dir>/workspace`.
    pub workspace: String,
    /// How often the workspace is stat-scanned for edits made outside the daemon.
    pub scan_interval: Span,
    pub chunk_chars: usize,
    pub chunk_overlap_lines: usize,
    /// Longest `content` returned by a search result.
    pub result_chars: usize,
    /// Larger Markdown files are not indexed (logged once), so one huge file cannot
    /// exhaust a small machine's memory.
    pub max_file_bytes: u64,
    /// Most word pieces (estimated) in one chunk, so a chunk fits an embedder's context.
    pub chunk_tokens: usize,
    pub embeddings: EmbeddingsConfig,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            workspace: String::new(),
            scan_interval: Span::secs(3),
            chunk_chars: 1600,
            chunk_overlap_lines: 2,
            result_chars: 700,
            max_file_bytes: 32 * 1024 * 1024,
            chunk_tokens: 200,
            embeddings: EmbeddingsConfig::default(),
        }
    }
}

/// Embedding providers `memory.embeddings.provider` may name (`""`: off).
pub const EMBEDDING_PROVIDERS: &[&str] = &["", "openai", "ollama"];

/// `[memory.embeddings]`: vectors for the chunks from an embedding server, for search by
/// meaning (hybrid with the lexical index).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddingsConfig {
    /// `""`: off; `"openai"`: any OpenAI-compatible `/v1/embeddings`; `"ollama"`: `/api/embed`.
    pub provider: String,
    pub model: String,
    /// Empty: that provider's `base_url` from `[providers.*]`.
    pub base_url: String,
    /// Empty: `providers.openai.api_key` when `base_url` is inherited from it too (a key
    /// is never sent to a server it was not configured for).
    pub api_key: String,
    /// Texts sent in one request.
    pub batch_size: usize,
    pub connect_timeout: Span,
    /// Longest silence while a batch is embedded.
    pub read_timeout: Span,
    /// Longest a search waits for its own text's vector before answering lexically.
    pub query_timeout: Span,
    /// Longest pause between two attempts to reach an embedder that is down.
    pub max_backoff: Span,
    /// How hybrid search merges the two rankings: `"rrf"` (by rank) or `"weighted"` (by
    /// score, each normalised to its best).
    pub fusion: String,
    /// Share of the vector ranking in a hybrid ranking, 0 to 1.
    pub vector_weight: f64,
}

impl Default for EmbeddingsConfig {
    fn default() -> Self {
        EmbeddingsConfig {
            provider: String::new(),
            model: String::new(),
            base_url: String::new(),
            api_key: String::new(),
            batch_size: 32,
            connect_timeout: Span::secs(5),
            read_timeout: Span::secs(60),
            query_timeout: Span::secs(2),
            max_backoff: Span::secs(300),
            fusion: "weighted".into(),
            vector_weight: 0.7,
        }
    }
}

impl EmbeddingsConfig {
    /// True when a provider is configured.
    pub fn enabled(&self) -> bool {
        !self.provider.is_empty()
    }

    /// Fills an empty `base_url` (and with it an empty `api_key`) from the provider's own
    /// section, so one local server configured once serves chat and embeddings.
    pub fn inherit(&mut self, providers: &ProvidersConfig) {
        if !self.base_url.is_empty() {
            return;
        }
        match self.provider.as_str() {
            "openai" => {
                self.base_url = providers.openai.base_url.clone();
                if self.api_key.is_empty() {
                    self.api_key = providers.openai.api_key.clone();
                }
            }
            "ollama" => self.base_url = providers.ollama.base_url.clone(),
            _ => {}
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !EMBEDDING_PROVIDERS.contains(&self.provider.as_str()) {
            return Err(invalid(
                "memory.embeddings.provider",
                &self.provider,
                "must be \"\" (off), \"openai\" (any /v1/embeddings server) or \"ollama\"",
            ));
        }
        if !self.enabled() {
            return Ok(());
        }
        if self.model.trim().is_empty() {
            return Err(invalid(
                "memory.embeddings.model",
                &self.model,
                "must name the embedding model, e.g. \"all-minilm\" or \"text-embedding-3-small\"",
            ));
        }
        let url = &self.base_url;
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid(
                "memory.embeddings.base_url",
                &self.base_url,
                "must start with http:// or https:// (empty: the provider's base_url)",
            ));
        }
        if !(1..=2048).contains(&self.batch_size) {
            return Err(invalid(
                "memory.embeddings.batch_size",
                self.batch_size,
                "must be from 1 to 2048",
            ));
        }
        for (key, span) in [
            ("memory.embeddings.connect_timeout", self.connect_timeout),
            ("memory.embeddings.read_timeout", self.read_timeout),
            ("memory.embeddings.query_timeout", self.query_timeout),
        ] {
            if span.get().is_zero() {
                return Err(invalid(
                    key,
                    String::from(span),
                    "must be above zero, or a stalled embedder would hang its caller",
                ));
            }
        }
        if !matches!(self.fusion.as_str(), "rrf" | "weighted") {
            return Err(invalid(
                "memory.embeddings.fusion",
                &self.fusion,
                "must be \"rrf\" (merge by rank) or \"weighted\" (merge by normalised score)",
            ));
        }
        if !(0.0..=1.0).contains(&self.vector_weight) {
            return Err(invalid(
                "memory.embeddings.vector_weight",
                self.vector_weight,
                "must be from 0 (lexical ranking only) to 1 (vector ranking only)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use std::path::Path;

    fn parse(text: &str) -> Result<Config, super::ConfigError> {
        let c = Config::parse(Path::new("t.toml"), text)?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn embeddings_inherit_the_providers_server_and_are_checked() {
        let mut c = parse("[memory.embeddings]\nprovider = \"openai\"\nmodel = \"m\"\n").unwrap();
        c.providers.openai.api_key = "sk-x".into();
        c.memory.embeddings.inherit(&c.providers);
        assert_eq!(c.memory.embeddings.base_url, "https://api.openai.com/v1");
        assert_eq!(c.memory.embeddings.api_key, "sk-x");
        assert!(!c.redacted_toml().contains("sk-x"));
        // A server of its own never gets the provider's key.
        let mut c = parse(
            "[memory.embeddings]\nprovider = \"openai\"\nmodel = \"m\"\nbase_url = \"http://h:1/v1\"\n",
        )
        .unwrap();
        c.providers.openai.api_key = "sk-x".into();
        c.memory.embeddings.inherit(&c.providers);
        assert_eq!(c.memory.embeddings.api_key, "");
        let mut c = parse("[memory.embeddings]\nprovider = \"ollama\"\nmodel = \"m\"\n").unwrap();
        c.memory.embeddings.inherit(&c.providers);
        assert_eq!(c.memory.embeddings.base_url, "http://127.0.0.1:11434");
        for (text, key) in [
            ("provider = \"cohere\"", "memory.embeddings.provider"),
            ("provider = \"openai\"", "memory.embeddings.model"),
            (
                "provider = \"openai\"\nmodel = \"m\"\nbase_url = \"h:1\"",
                "memory.embeddings.base_url",
            ),
            (
                "provider = \"openai\"\nmodel = \"m\"\nbatch_size = 0",
                "memory.embeddings.batch_size",
            ),
            (
                "provider = \"openai\"\nmodel = \"m\"\nvector_weight = 1.5",
                "memory.embeddings.vector_weight",
            ),
            (
                "provider = \"openai\"\nmodel = \"m\"\nquery_timeout = \"0\"",
                "memory.embeddings.query_timeout",
            ),
        ] {
            let e = parse(&format!("[memory.embeddings]\n{text}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }
}
