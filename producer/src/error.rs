//! Every way a request can be refused, as an HTTP status and a JSON body
//! `{"error": {"code", "message"}}`. Messages are written for the caller; none carries document
//! text, broker internals or secrets.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use letterbox::FailureCode;
use letterbox_extract::ExtractError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("{field}: {error}")]
    Document {
        field: &'static str,
        error: ExtractError,
    },
    #[error("{field} is too short to write a letter from: it needs at least {min_letters} letters")]
    TextTooShort {
        field: &'static str,
        min_letters: usize,
    },
    #[error("{field} is mostly symbols rather than words; send the text itself")]
    TextGarbled { field: &'static str },
    #[error("{field} is longer than {limit_chars} characters")]
    TextTooLong {
        field: &'static str,
        limit_chars: usize,
    },
    #[error("the request body is larger than {limit_bytes} bytes")]
    BodyTooLarge { limit_bytes: usize },
    #[error("send application/json or multipart/form-data")]
    UnsupportedContentType,
    #[error("{message}")]
    Unavailable {
        code: &'static str,
        message: String,
        retry_after_secs: u32,
    },
    #[error("no letter within the deadline of {deadline_ms} ms")]
    DeadlineExceeded { deadline_ms: u64 },
    #[error("{message}")]
    Job {
        code: FailureCode,
        message: String,
        /// From the provider's own `Retry-After`, when it rate-limited the job.
        retry_after_secs: Option<u32>,
    },
    #[error("the connection to the job queue was lost before the letter arrived; retry shortly")]
    ReplyLost,
    #[error("no such endpoint; see the API in the README")]
    NotFound,
    #[error("this endpoint does not take that method")]
    MethodNotAllowed,
    #[error("the request was not received and checked within {deadline_ms} ms")]
    RequestTimeout { deadline_ms: u64 },
    #[error("something went wrong in Letterbox; try again")]
    Internal,
    #[error("{0}")]
    Auth(#[from] letterbox_vault::auth::AuthError),
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Document { error, .. } => match error {
                ExtractError::TooLarge { .. } | ExtractError::TooLong { .. } => {
                    StatusCode::PAYLOAD_TOO_LARGE
                }
                ExtractError::Unsupported { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ExtractError::Busy => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            },
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TextTooShort { .. } | Self::TextGarbled { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::TextTooLong { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedContentType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::DeadlineExceeded { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Job { code, .. } => match code {
                FailureCode::LlmFailed => StatusCode::BAD_GATEWAY,
                FailureCode::LlmRateLimited => StatusCode::SERVICE_UNAVAILABLE,
                FailureCode::LlmTimeout | FailureCode::Expired => StatusCode::GATEWAY_TIMEOUT,
                FailureCode::SecretUnavailable => StatusCode::SERVICE_UNAVAILABLE,
                FailureCode::InvalidJob | FailureCode::DeliveryLimit => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            },
            Self::ReplyLost => StatusCode::SERVICE_UNAVAILABLE,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Auth(error) => {
                StatusCode::from_u16(error.status()).unwrap_or(StatusCode::UNAUTHORIZED)
            }
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. } | Self::Unavailable { code, .. } => code,
            Self::Document { error, .. } => error.code(),
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::TextTooShort { .. } => "text_too_short",
            Self::TextGarbled { .. } => "garbled_text",
            Self::TextTooLong { .. } => "text_too_long",
            Self::UnsupportedContentType => "unsupported_content_type",
            Self::DeadlineExceeded { .. } => "timeout",
            Self::Job { code, .. } => code.as_str(),
            Self::ReplyLost => "reply_lost",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::RequestTimeout { .. } => "request_timeout",
            Self::Internal => "internal_error",
            Self::Auth(error) => error.code(),
        }
    }

    fn retry_after_secs(&self) -> Option<u32> {
        match self {
            Self::Unavailable {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            Self::Auth(error) => error.retry_after_secs(),
            Self::ReplyLost => Some(2),
            Self::Document {
                error: ExtractError::Busy,
                ..
            } => Some(2),
            Self::Job {
                code: FailureCode::SecretUnavailable,
                ..
            } => Some(5),
            Self::Job {
                code: FailureCode::LlmRateLimited,
                retry_after_secs,
                ..
            } => Some(retry_after_secs.unwrap_or(5)),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = crate::openapi::ErrorBody {
            error: crate::openapi::ErrorDetail {
                code: self.code(),
                message: self.to_string(),
            },
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(seconds) = self.retry_after_secs() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;
    use serde_json::json;

    use super::*;

    async fn body_of(error: ApiError) -> (StatusCode, Option<String>, serde_json::Value) {
        let response = error.into_response();
        let status = response.status();
        let retry = response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = to_bytes(response.into_body(), 1 << 16).await.unwrap();
        (status, retry, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn a_full_queue_is_a_503_with_retry_after() {
        let (status, retry, body) = body_of(ApiError::Unavailable {
            code: "queue_full",
            message: "Letterbox is at capacity; retry shortly".into(),
            retry_after_secs: 2,
        })
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry.as_deref(), Some("2"));
        assert_eq!(
            body,
            json!({"error": {"code": "queue_full", "message": "Letterbox is at capacity; retry shortly"}})
        );
    }

    #[tokio::test]
    async fn document_errors_map_to_their_statuses() {
        let cases = [
            (
                ExtractError::TooLarge { limit_bytes: 10 },
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            (
                ExtractError::Unsupported {
                    what: "an image (PNG)",
                },
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            (ExtractError::NoText, StatusCode::UNPROCESSABLE_ENTITY),
            (ExtractError::Encrypted, StatusCode::UNPROCESSABLE_ENTITY),
        ];
        for (error, expected) in cases {
            let code = error.code();
            let (status, _, body) = body_of(ApiError::Document {
                field: "resume",
                error,
            })
            .await;
            assert_eq!(status, expected);
            assert_eq!(body["error"]["code"], code);
        }
    }

    #[tokio::test]
    async fn an_llm_failure_is_a_502() {
        let (status, retry, body) = body_of(ApiError::Job {
            code: FailureCode::LlmFailed,
            message: "The LLM provider answered 500.".into(),
            retry_after_secs: None,
        })
        .await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert_eq!(retry, None);
        assert_eq!(body["error"]["code"], "llm_failed");
    }
}

#[cfg(test)]
mod rate_limit_tests {
    use super::*;

    #[test]
    fn a_provider_rate_limit_is_a_503_carrying_the_providers_retry_after() {
        let error = ApiError::Job {
            code: FailureCode::LlmRateLimited,
            message: "the LLM provider is rate-limiting Letterbox (429)".into(),
            retry_after_secs: Some(7),
        };
        assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(error.retry_after_secs(), Some(7));
        assert_eq!(error.code(), "llm_rate_limited");
    }
}
