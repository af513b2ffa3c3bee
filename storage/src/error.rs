//! The storage crate's single error type.

/// Everything that can go wrong below the network layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("text index: {0}")]
    Text(#[from] tantivy::TantivyError),
    #[error("text index query: {0}")]
    TextQuery(#[from] tantivy::query::QueryParserError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("encoding: {0}")]
    Encoding(String),
    /// Authentication of a ciphertext failed: wrong key, or a record moved or tampered with.
    #[error("decryption failed: {0}")]
    Decrypt(&'static str),
    #[error("encryption key: {0}")]
    Key(String),
    /// The caller asked for something that does not fit the data (maps to 4xx).
    #[error("{0}")]
    Invalid(String),
    #[error("dimension mismatch: namespace expects {expected}, got {got}")]
    DimensionMismatch { expected: usize, got: usize },
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("embedding failed: {0}")]
    Embedding(String),
    #[error("namespace is being dropped")]
    Dropped,
    #[error("{0}")]
    QuotaExceeded(String),
    /// The external embedding service failed (maps to 502).
    #[error("embedding service: {0}")]
    EmbeddingUpstream(String),
    /// The external entity extractor failed (maps to 502 on an explicit extraction; on the
    /// extraction queue it is counted and logged).
    #[error("entity extractor: {0}")]
    ExtractorUpstream(String),
    /// Too much work queued (the embedder): retry later.
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// A newer primary (placement epoch) has fenced this replica: it may no longer write.
    #[error("fenced by placement epoch {0}")]
    Fenced(u64),
}

impl From<serde_json::Error> for StorageError {
    fn from(e: serde_json::Error) -> Self {
        StorageError::Encoding(e.to_string())
    }
}

impl From<postcard::Error> for StorageError {
    fn from(e: postcard::Error) -> Self {
        StorageError::Encoding(e.to_string())
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
