//! Store errors: a small kind to branch on, the cause kept.

/// What a caller can do about a failed store call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request itself is wrong; sending it again cannot help.
    BadRequest,
    /// A passing condition (overload, a lost connection); try again later.
    Retryable,
    /// The store is down or not configured.
    Unavailable,
    /// A bug or a broken invariant.
    Internal,
}

impl ErrorKind {
    /// The HTTP status a failed store call becomes, wherever it is answered: 503 tells agents
    /// and clients to send again later, 400 not to.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::BadRequest => 400,
            ErrorKind::Retryable | ErrorKind::Unavailable => 503,
            ErrorKind::Internal => 500,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    pub kind: ErrorKind,
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> StoreError {
        StoreError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> StoreError {
        self.source = Some(Box::new(source));
        self
    }
}
