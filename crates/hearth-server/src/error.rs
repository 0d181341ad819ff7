//! One error type for every route and its one mapping to a status code, rendered in the calling API's
//! own format: OpenAI's `{"error":{"message","type","param","code"}}` or Ollama's `{"error":"..."}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hearth_engine::EngineError;
use serde_json::json;

/// Which API a route belongs to, so its errors look the way that API's clients expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    OpenAi,
    Ollama,
}

/// What went wrong, independent of the wire format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed or invalid input (400).
    BadRequest,
    /// Missing or wrong API key (401).
    Unauthorized,
    /// Unknown model or route (404).
    NotFound,
    /// The body is larger than the configured limit (413).
    TooLarge,
    /// The queue is full or models are busy; retry later (503 with Retry-After).
    Overloaded,
    /// A model does not fit the memory budget at all (507).
    InsufficientMemory,
    /// Not implemented yet (501).
    NotImplemented,
    /// A model failed to load or the engine stopped (500).
    Internal,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
    /// The request field at fault, when one is.
    pub param: Option<String>,
    /// A machine-readable code (`model_not_found`, `context_length_exceeded`, ...).
    pub code: Option<&'static str>,
    pub api: Api,
}

/// Seconds a client is told to wait after a 503.
const RETRY_AFTER_SECONDS: u32 = 1;

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), param: None, code: None, api: Api::OpenAi }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }

    /// A bad value of one request field.
    pub fn bad_param(param: &str, message: impl Into<String>) -> Self {
        Self::bad_request(message).with_param(param)
    }

    pub fn model_not_found(name: &str) -> Self {
        let mut e = Self::new(ErrorKind::NotFound, format!("model '{name}' not found"));
        e.param = Some("model".into());
        e.code = Some("model_not_found");
        e
    }

    pub fn overloaded(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Overloaded, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    pub fn with_param(mut self, param: &str) -> Self {
        self.param = Some(param.to_string());
        self
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// Render for `api`'s clients.
    pub fn for_api(mut self, api: Api) -> Self {
        self.api = api;
        self
    }

    pub fn status(&self) -> StatusCode {
        match self.kind {
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::InsufficientMemory => StatusCode::INSUFFICIENT_STORAGE,
            ErrorKind::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// OpenAI's error `type` for this kind.
    fn openai_type(&self) -> &'static str {
        match self.kind {
            ErrorKind::BadRequest | ErrorKind::TooLarge => "invalid_request_error",
            ErrorKind::Unauthorized => "authentication_error",
            ErrorKind::NotFound => "not_found_error",
            ErrorKind::Overloaded | ErrorKind::InsufficientMemory => "server_overloaded",
            ErrorKind::NotImplemented => "not_implemented",
            ErrorKind::Internal => "server_error",
        }
    }

    /// The error as a JSON body (also used inside a stream that fails after it started).
    pub fn body(&self) -> serde_json::Value {
        match self.api {
            Api::OpenAi => json!({"error": {
                "message": self.message,
                "type": self.openai_type(),
                "param": self.param,
                "code": self.code,
            }}),
            Api::Ollama => json!({"error": self.message}),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if self.kind == ErrorKind::Internal {
            tracing::warn!(status = status.as_u16(), "{}", self.message);
        }
        let mut response = (status, axum::Json(self.body())).into_response();
        if self.kind == ErrorKind::Overloaded {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        response
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match &e {
            EngineError::PromptTooLong { .. } => {
                ApiError::bad_request(e.to_string()).with_code("context_length_exceeded").with_param("messages")
            }
            EngineError::BadRequest(_) => ApiError::bad_request(e.to_string()),
            EngineError::Stopped => ApiError::overloaded("the model's engine stopped; retry"),
            _ => ApiError::internal(e.to_string()),
        }
    }
}

pub type ApiResult<T> = std::result::Result<T, ApiError>;
