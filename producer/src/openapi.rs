//! The API's OpenAPI 3.1 document, served at `/openapi.json`: generated from the handlers'
//! `#[utoipa::path]` annotations and the request and response types themselves, so it cannot
//! drift from what the ingress does.

use std::sync::OnceLock;

use letterbox::job::{Length, LetterOptions, Tone};
use letterbox::telemetry::LatencySummary;
use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::metrics::{Latencies, Stats};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Letterbox",
        description = "Turns a resume and a job description into a cover letter with an LLM. \
                       Every endpoint but the health checks and this document takes a bearer \
                       token: `submit` for letters, `monitor` or `admin` for the figures.",
        license(name = "MIT OR Apache-2.0")
    ),
    paths(
        crate::app::create_cover_letter,
        crate::app::stats,
        crate::app::metrics,
        crate::app::healthz,
        crate::app::readyz,
        openapi_json
    ),
    components(schemas(
        CoverLetterJson,
        CoverLetterForm,
        LetterOptions,
        Tone,
        Length,
        CoverLetter,
        Accepted,
        CallbackBody,
        Timings,
        ErrorBody,
        ErrorDetail,
        Stats,
        Latencies,
        LatencySummary,
        Status
    )),
    modifiers(&BearerToken),
    security(("bearer" = []))
)]
struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The document as JSON, built once.
pub fn document() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut doc = ApiDoc::openapi();
        doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
        doc.to_pretty_json().unwrap_or_default()
    })
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json"))
)]
pub async fn openapi_json() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        document(),
    )
}

/// A request as JSON.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CoverLetterJson {
    /// The resume as plain text (at least 40 letters).
    #[schema(
        min_length = 40,
        example = "Avery Quinlan\nSenior Backend Engineer, Zurich\nSeven years of Rust services on RabbitMQ and PostgreSQL, run on Kubernetes."
    )]
    resume_text: String,
    /// The job post as plain text (at least 10 letters).
    #[schema(
        min_length = 10,
        example = "Senior Backend Engineer (Rust) at Harbourline Freight Systems: build the booking platform on RabbitMQ and PostgreSQL."
    )]
    job_description: String,
    options: Option<LetterOptions>,
    /// Makes the request asynchronous: answered 202 at once, the letter POSTed here when ready.
    #[schema(format = "uri", max_length = 2048)]
    callback_url: Option<String>,
}

/// A request as a form: the resume as a file, the job description as text or a file, the options
/// as one JSON field `options` or field by field.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CoverLetterForm {
    /// PDF, DOCX, Markdown or plain text, recognised by its content.
    #[schema(value_type = String, format = Binary)]
    resume: Vec<u8>,
    /// Text, or a file of the same kinds as the resume.
    job_description: String,
    /// The options as one JSON object (see `LetterOptions`), instead of the fields below.
    options: Option<String>,
    tone: Option<Tone>,
    length: Option<Length>,
    #[schema(minimum = 50, maximum = 1000)]
    target_words: Option<u16>,
    language: Option<String>,
    #[schema(max_length = 200)]
    company: Option<String>,
    #[schema(max_length = 200)]
    hiring_manager: Option<String>,
    #[schema(max_length = 200)]
    role: Option<String>,
    #[schema(minimum = 100, maximum = 3_600_000)]
    timeout_ms: Option<u64>,
    /// Makes the request asynchronous: answered 202 at once, the letter POSTed here when ready.
    #[schema(format = "uri", max_length = 2048)]
    callback_url: Option<String>,
}

/// A letter.
#[derive(Serialize, ToSchema)]
pub struct CoverLetter {
    pub job_id: uuid::Uuid,
    pub cover_letter: String,
    /// The model that wrote it, as the provider named it.
    pub model: String,
    pub timings_ms: Timings,
}

/// Where the request's time went, in milliseconds.
#[derive(Serialize, ToSchema)]
pub struct Timings {
    /// The job waited this long for a worker.
    pub queued: u64,
    /// The provider's time.
    pub llm: u64,
    /// The request's whole time in the ingress.
    pub total: u64,
    /// A streamed answer: from the request's arrival to its first piece of the letter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_token: Option<u64>,
}

/// The answer to a request with a `callback_url`.
#[derive(Serialize, ToSchema)]
pub struct Accepted {
    pub job_id: uuid::Uuid,
    /// `accepted`.
    pub status: &'static str,
}

/// What a callback receives: the letter with `"status": "done"`, or `"status": "failed"` and the
/// error a synchronous request would have been answered with.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum CallbackBody {
    Letter {
        status: &'static str,
        #[serde(flatten)]
        letter: CoverLetter,
    },
    Failed {
        job_id: uuid::Uuid,
        status: &'static str,
        error: ErrorDetail,
    },
}

/// Every refusal.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code (`text_too_short`, `rate_limited`, …).
    pub code: &'static str,
    /// What went wrong, for people; never quotes document text.
    pub message: String,
}

/// A health answer.
#[derive(Serialize, ToSchema)]
pub struct Status {
    /// `ok` (`/healthz`) or `ready` (`/readyz`).
    pub status: &'static str,
}
