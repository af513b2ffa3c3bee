//! The built-in learned embedder: all-MiniLM-L6-v2 (BERT, 6 layers, 384 dimensions) run on
//! the CPU with candle, tokenised with `tokenizers` (no C dependencies). Output = masked mean
//! pooling of the last hidden state, L2-normalised: the sentence-transformers recipe.
//!
//! Inference is CPU-bound: at most `max_parallel` batches run at once and at most
//! `max_queued_texts` texts may wait; beyond that callers get [`StorageError::Overloaded`]
//! (503 + Retry-After) instead of unbounded memory growth. Callers run it on blocking threads.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use parking_lot::{Condvar, Mutex};
use sha2::{Digest, Sha256};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::embed::Embedder;
use crate::error::{Result, StorageError};

pub const PROVIDER: &str = "builtin-minilm";
pub const MODEL_NAME: &str = "all-MiniLM-L6-v2";
pub const DIMENSION: usize = 384;
/// sentence-transformers' max_seq_length for this model.
const MAX_TOKENS: usize = 256;
/// Texts per forward pass (bounded memory per batch).
const BATCH: usize = 32;

/// The three files the embedder needs, with their SHA-256 (the published model).
pub const MODEL_FILES: [(&str, &str); 3] = [
    ("config.json", "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
    ("tokenizer.json", "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
    ("model.safetensors", "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
];

/// Check that `dir` holds the model files with the expected digests.
pub fn verify_dir(dir: &Path) -> Result<()> {
    for (name, want) in MODEL_FILES {
        let path = dir.join(name);
        let bytes = std::fs::read(&path).map_err(|e| StorageError::Embedding(format!("{}: {e}", path.display())))?;
        let got = hex::encode(Sha256::digest(&bytes));
        if got != want {
            return Err(StorageError::Embedding(format!("{} has SHA-256 {got}, expected {want}", path.display())));
        }
    }
    Ok(())
}

struct Gate {
    running: usize,
    queued_texts: usize,
}

pub struct MiniLm {
    model: BertModel,
    tokenizer: Tokenizer,
    /// The same tokenizer without truncation or padding: counts the tokens of a whole text.
    counter: Tokenizer,
    device: Device,
    gate: Mutex<Gate>,
    freed: Condvar,
    max_parallel: usize,
    max_queued_texts: usize,
    pub dir: PathBuf,
}

impl MiniLm {
    /// Load from a directory in the Hugging Face layout (files verified by SHA-256).
    pub fn load(dir: &Path) -> Result<Arc<Self>> {
        Self::load_unshared(dir).map(Arc::new)
    }

    pub fn load_unshared(dir: &Path) -> Result<Self> {
        verify_dir(dir)?;
        let err = |e: &dyn std::fmt::Display| StorageError::Embedding(format!("loading {MODEL_NAME}: {e}"));
        let config: Config = serde_json::from_slice(&std::fs::read(dir.join("config.json"))?).map_err(|e| err(&e))?;
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| err(&e))?;
        let mut counter = tokenizer.clone();
        counter.with_padding(None);
        counter.with_truncation(None).map_err(|e| err(&e))?;
        tokenizer.with_padding(Some(PaddingParams { strategy: PaddingStrategy::BatchLongest, ..Default::default() }));
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: MAX_TOKENS, ..Default::default() }))
            .map_err(|e| err(&e))?;
        let device = Device::Cpu;
        let weights = std::fs::read(dir.join("model.safetensors"))?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device).map_err(|e| err(&e))?;
        let model = BertModel::load(vb, &config).map_err(|e| err(&e))?;
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        Ok(MiniLm {
            model,
            tokenizer,
            counter,
            device,
            gate: Mutex::new(Gate { running: 0, queued_texts: 0 }),
            freed: Condvar::new(),
            max_parallel: cores.clamp(1, 4),
            max_queued_texts: 4096,
            dir: dir.to_path_buf(),
        })
    }

    /// Change the admission limits (tests, tuning).
    pub fn set_limits(&mut self, max_parallel: usize, max_queued_texts: usize) {
        self.max_parallel = max_parallel.max(1);
        self.max_queued_texts = max_queued_texts;
    }

    fn forward(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let e = |e: &dyn std::fmt::Display| StorageError::Embedding(e.to_string());
        let enc = self.tokenizer.encode_batch(texts.to_vec(), true).map_err(|x| e(&x))?;
        let n = enc.len();
        let len = enc.first().map_or(0, |x| x.get_ids().len());
        let mut ids = Vec::with_capacity(n * len);
        let mut mask = Vec::with_capacity(n * len);
        for x in &enc {
            ids.extend(x.get_ids().iter().map(|v| *v as i64));
            mask.extend(x.get_attention_mask().iter().map(|v| *v as i64));
        }
        let ids = Tensor::from_vec(ids, (n, len), &self.device).map_err(|x| e(&x))?;
        let mask = Tensor::from_vec(mask, (n, len), &self.device).map_err(|x| e(&x))?;
        let types = ids.zeros_like().map_err(|x| e(&x))?;
        let hidden = self.model.forward(&ids, &types, Some(&mask)).map_err(|x| e(&x))?;
        // Masked mean over tokens, then L2 normalisation.
        let m = mask.to_dtype(DType::F32).map_err(|x| e(&x))?.unsqueeze(2).map_err(|x| e(&x))?;
        let summed = hidden.broadcast_mul(&m).and_then(|t| t.sum(1)).map_err(|x| e(&x))?;
        let counts = m.sum(1).and_then(|c| c.clamp(1e-9f32, f32::MAX)).map_err(|x| e(&x))?;
        let mean = summed.broadcast_div(&counts).map_err(|x| e(&x))?;
        let norms = mean.sqr().and_then(|t| t.sum_keepdim(1)).and_then(|t| t.sqrt()).map_err(|x| e(&x))?;
        let unit = mean.broadcast_div(&norms.clamp(1e-12f32, f32::MAX).map_err(|x| e(&x))?).map_err(|x| e(&x))?;
        unit.to_vec2::<f32>().map_err(|x| e(&x))
    }
}

impl Embedder for MiniLm {
    fn provider(&self) -> &str {
        PROVIDER
    }

    fn dimension(&self) -> usize {
        DIMENSION
    }

    fn max_tokens(&self) -> Option<usize> {
        Some(MAX_TOKENS)
    }

    fn count_tokens(&self, text: &str) -> Option<(usize, bool)> {
        self.counter.encode(text, true).ok().map(|e| (e.get_ids().len(), false))
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        // Admission: refuse rather than queue without bound.
        {
            let mut g = self.gate.lock();
            if g.queued_texts + texts.len() > self.max_queued_texts {
                return Err(StorageError::Overloaded(format!(
                    "{} texts are waiting for the embedder; retry shortly",
                    g.queued_texts
                )));
            }
            g.queued_texts += texts.len();
            while g.running >= self.max_parallel {
                self.freed.wait(&mut g);
            }
            g.running += 1;
            g.queued_texts -= texts.len();
        }
        let res = texts.chunks(BATCH).try_fold(Vec::with_capacity(texts.len()), |mut acc, chunk| {
            acc.extend(self.forward(chunk)?);
            Ok(acc)
        });
        {
            let mut g = self.gate.lock();
            g.running -= 1;
        }
        self.freed.notify_one();
        res
    }
}
