//! Embedders that are not built into storage: client-supplied vectors and an OpenAI-compatible
//! HTTP endpoint (Ollama, vLLM, Text Embeddings Inference).

use std::time::Duration;

use loci_storage::embed::Embedder;
use loci_storage::{Result, StorageError};
use serde_json::json;

/// `client`: the namespace takes vectors with every request; there is nothing to compute.
pub struct ClientVectors {
    pub dimension: usize,
}

impl Embedder for ClientVectors {
    fn provider(&self) -> &str {
        "client"
    }
    fn dimension(&self) -> usize {
        self.dimension
    }
    fn embed(&self, _texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        Err(StorageError::Invalid(format!(
            "this namespace uses client-supplied vectors: send `embedding` ({} floats) with the request",
            self.dimension
        )))
    }
}

#[derive(Clone, Debug)]
pub struct OpenAiConfig {
    /// Base URL, e.g. `http://127.0.0.1:11434` (`/v1/embeddings` is appended).
    pub url: String,
    pub model: String,
    pub api_key: Option<String>,
    pub timeout: Duration,
    pub retries: u32,
}

/// Stands in for an embedder this node cannot provide: everything but embedding still works.
pub struct Unavailable {
    pub provider: String,
    pub dimension: usize,
    pub reason: String,
}

impl Embedder for Unavailable {
    fn provider(&self) -> &str {
        &self.provider
    }
    fn dimension(&self) -> usize {
        self.dimension
    }
    fn embed(&self, _texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        Err(StorageError::Embedding(self.reason.clone()))
    }
}

/// `openai-compatible`: POST `{model, input: [texts]}` to `/v1/embeddings`.
pub struct OpenAiCompatible {
    pub config: OpenAiConfig,
    pub dimension: usize,
    client: crate::upstream::LazyClient,
}

impl OpenAiCompatible {
    pub fn new(config: OpenAiConfig, dimension: usize) -> Self {
        OpenAiCompatible { config, dimension, client: Default::default() }
    }

    fn call(&self, texts: &[&str]) -> std::result::Result<Vec<Vec<f32>>, String> {
        let url = format!("{}/v1/embeddings", self.config.url.trim_end_matches('/'));
        let body = crate::upstream::post_json(
            self.client.get(self.config.timeout),
            &url,
            self.config.api_key.as_deref(),
            &json!({"model": self.config.model, "input": texts}),
        )?;
        let mut data: Vec<(usize, Vec<f32>)> = body["data"]
            .as_array()
            .ok_or_else(|| format!("{url}: no `data` in the answer"))?
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let idx = d["index"].as_u64().map_or(i, |x| x as usize);
                let v = d["embedding"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|x| x.as_f64()).map(|x| x as f32).collect())
                    .unwrap_or_default();
                (idx, v)
            })
            .collect();
        data.sort_by_key(|(i, _)| *i);
        // Unit length, as every embedder promises (dot-product and euclidean namespaces rely on it).
        let out: Vec<Vec<f32>> = data
            .into_iter()
            .map(|(_, mut v)| {
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                if norm > 0.0 {
                    v.iter_mut().for_each(|x| *x /= norm);
                }
                v
            })
            .collect();
        if out.len() != texts.len() {
            return Err(format!("{url}: {} embeddings for {} inputs", out.len(), texts.len()));
        }
        if let Some(bad) = out.iter().find(|v| v.len() != self.dimension) {
            return Err(format!(
                "{url}: embeddings of dimension {} where the namespace has {}",
                bad.len(),
                self.dimension
            ));
        }
        Ok(out)
    }
}

impl Embedder for OpenAiCompatible {
    fn provider(&self) -> &str {
        "openai-compatible"
    }
    fn dimension(&self) -> usize {
        self.dimension
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        crate::upstream::with_retries(self.config.retries, || self.call(texts)).map_err(StorageError::EmbeddingUpstream)
    }
}
