//! The agent: prompt assembly, the tool loop, tools and their approval.

pub mod approval;
pub mod chat;
pub mod prompt;
pub mod tools;
pub mod turn;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::config::ProvidersConfig;
use crate::providers::{self, Provider};

/// Provider clients, built on first use and kept, so connection pools and TLS setup are
/// reused across turns.
pub struct Providers {
    config: ProvidersConfig,
    built: Mutex<HashMap<String, Arc<dyn Provider>>>,
}

impl Providers {
    pub fn new(config: &ProvidersConfig) -> Providers {
        Providers {
            config: config.clone(),
            built: Mutex::new(HashMap::new()),
        }
    }

    /// The provider for `provider/model` and the bare model name.
    pub fn get(&self, model: &str) -> Result<(Arc<dyn Provider>, String), String> {
        let (prefix, name) = crate::config::split_model(model)?;
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = built.get(prefix) {
            return Ok((p.clone(), name.to_string()));
        }
        let (p, name) = providers::for_model(&self.config, model)?;
        let p: Arc<dyn Provider> = Arc::from(p);
        built.insert(prefix.to_string(), p.clone());
        Ok((p, name))
    }
}
