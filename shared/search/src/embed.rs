//! Sentence embeddings: a BERT-family sentence-transformer (all-MiniLM-L6-v2 by default, any
//! model in the same Hugging Face layout works) run in-process on candle's CPU backend. A text
//! becomes the mean of its token states, L2-normalised, so the dot product of two embeddings is
//! their cosine similarity.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{Tokenizer, TruncationParams};

use crate::{Result, SearchError};

/// Tokens a text is cut to (the model was trained with 256; longer costs time for nothing).
pub const MAX_TOKENS: usize = 256;

pub struct Embedder {
    model: BertModel,
    tokenizer: Tokenizer,
    dimensions: usize,
    dir: PathBuf,
    model_id: String,
}

impl Embedder {
    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from `dir`.
    pub fn load(dir: &Path) -> Result<Embedder> {
        let failed = |file: &str, message: String| SearchError::Model { path: dir.join(file).display().to_string(), message };
        let config: Config = {
            let text = std::fs::read_to_string(dir.join("config.json")).map_err(|e| failed("config.json", e.to_string()))?;
            serde_json::from_str(&text).map_err(|e| failed("config.json", e.to_string()))?
        };
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| failed("tokenizer.json", e.to_string()))?;
        // The file pads and truncates to 128 for batches; one text at a time needs no padding.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: MAX_TOKENS, ..TruncationParams::default() }))
            .map_err(|e| failed("tokenizer.json", e.to_string()))?;
        let weights = std::fs::read(dir.join("model.safetensors")).map_err(|e| failed("model.safetensors", e.to_string()))?;
        let model_id = model_id(dir, &weights)?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu).map_err(|e| failed("model.safetensors", e.to_string()))?;
        let model = BertModel::load(vb, &config).map_err(|e| failed("model.safetensors", e.to_string()))?;
        Ok(Embedder { model, tokenizer, dimensions: config.hidden_size, dir: dir.to_owned(), model_id })
    }

    /// Names these exact weights and tokenizer (`{dir name}@{hash}`): embeddings stored under
    /// another id were made by another model and are recomputed.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// Where the model was loaded from (for logs and `/readyz`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The token ids `text` is embedded from (special tokens included, cut to [`MAX_TOKENS`]).
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self.tokenizer.encode(text, true).map_err(|e| SearchError::Embed(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The normalised embedding of `text`. CPU-bound (milliseconds to tens of them): async
    /// callers run it on a blocking thread.
    pub fn embed(&self, text: &str) -> Result<Vec<f32>> {
        let ids = self.token_ids(text)?;
        let failed = |e: candle_core::Error| SearchError::Embed(e.to_string());
        let input = Tensor::new(ids.as_slice(), &Device::Cpu).and_then(|t| t.unsqueeze(0)).map_err(failed)?;
        let types = input.zeros_like().map_err(failed)?;
        // One unpadded text: every token counts, so the masked mean is the plain mean.
        let states = self.model.forward(&input, &types, None).map_err(failed)?;
        let mean: Vec<f32> = states.mean(1).and_then(|m| m.squeeze(0)).and_then(|m| m.to_vec1()).map_err(failed)?;
        Ok(normalised(mean))
    }
}

fn model_id(dir: &Path, weights: &[u8]) -> Result<String> {
    let mut hash = crate::FNV_OFFSET;
    for file in ["config.json", "tokenizer.json"] {
        let bytes = std::fs::read(dir.join(file)).map_err(|e| SearchError::Model { path: dir.join(file).display().to_string(), message: e.to_string() })?;
        hash = crate::fnv1a(&bytes, hash);
    }
    // The weights' length and a sample of them: hashing all 90 MB would cost a start-up second.
    hash = crate::fnv1a(&(weights.len() as u64).to_le_bytes(), hash);
    for chunk in weights.chunks(weights.len().div_ceil(64).max(1)) {
        hash = crate::fnv1a(&chunk[..chunk.len().min(256)], hash);
    }
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(format!("{name}@{hash:016x}"))
}

/// `v` scaled to unit length (a zero vector stays zero).
pub fn normalised(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_model_is_a_typed_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        match Embedder::load(dir.path()) {
            Err(SearchError::Model { path, .. }) => assert!(path.ends_with("config.json"), "{path}"),
            other => panic!("expected a model error, got {:?}", other.err()),
        }
        std::fs::write(dir.path().join("config.json"), "{ not json").unwrap();
        assert!(matches!(Embedder::load(dir.path()), Err(SearchError::Model { .. })));
    }

    #[test]
    fn normalised_vectors_have_unit_length() {
        let v = normalised(vec![3.0, 4.0]);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        assert_eq!(normalised(vec![0.0, 0.0]), vec![0.0, 0.0]);
    }
}
