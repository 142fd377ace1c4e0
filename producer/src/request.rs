//! Reading a cover-letter request: JSON or multipart, into checked, extracted text.
//!
//! Files are recognised by their content (not their name) and extracted in memory on an isolated
//! thread; pasted text goes through the same normalisation and checks. Nothing here is logged.

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header::CONTENT_TYPE;
use letterbox::LetterOptions;
use letterbox_extract::{DocumentKind, ExtractError, Limits};
use serde::Deserialize;

use crate::error::ApiError;

/// A request whose documents are extracted and checked, ready to become a job.
pub struct CheckedRequest {
    pub resume: String,
    pub job_description: String,
    pub options: LetterOptions,
    /// Where to POST the letter instead of answering with it (checked by the caller).
    pub callback_url: Option<String>,
}

/// Extraction limits for the two documents.
#[derive(Clone)]
pub struct DocumentLimits {
    pub resume: Limits,
    pub job_description: Limits,
    pub max_body_bytes: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRequest {
    resume_text: Option<String>,
    job_description: Option<String>,
    #[serde(default)]
    options: Option<LetterOptions>,
    #[serde(default)]
    callback_url: Option<String>,
}

/// JSON bodies up to this size are checked on the task that read them; larger ones on the
/// blocking pool.
const INLINE_CHECK_MAX_BYTES: usize = 32 * 1024;

/// The option fields a multipart form may send one by one instead of an `options` JSON field.
const FLAT_OPTION_FIELDS: [&str; 8] = [
    "tone",
    "length",
    "target_words",
    "language",
    "company",
    "hiring_manager",
    "role",
    "timeout_ms",
];

pub async fn read(request: Request, limits: &DocumentLimits) -> Result<CheckedRequest, ApiError> {
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    // The media type's essence, without parameters such as `charset` or `boundary`.
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if essence == "application/json" {
        read_json(request, limits).await
    } else if essence == "multipart/form-data" {
        read_multipart(request, limits).await
    } else {
        Err(ApiError::UnsupportedContentType)
    }
}

async fn read_json(request: Request, limits: &DocumentLimits) -> Result<CheckedRequest, ApiError> {
    let body = Bytes::from_request(request, &())
        .await
        .map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::BodyTooLarge {
                    limit_bytes: limits.max_body_bytes,
                }
            } else {
                ApiError::bad_request("unreadable_body", "the request body could not be read")
            }
        })?;
    // A typical request (a few kilobytes) is checked in a few tens of microseconds, less than
    // handing it to another thread costs. Parsing and normalising megabytes of text is real CPU
    // work: that goes to the blocking pool, so the async workers stay free to answer other
    // requests (and health checks).
    if body.len() <= INLINE_CHECK_MAX_BYTES {
        return check_json(&body, limits);
    }
    let limits = limits.clone();
    tokio::task::spawn_blocking(move || check_json(&body, &limits))
        .await
        .map_err(|_| ApiError::Internal)?
}

fn check_json(body: &[u8], limits: &DocumentLimits) -> Result<CheckedRequest, ApiError> {
    let parsed: JsonRequest = serde_json::from_slice(body).map_err(json_error)?;
    let resume = required_text("resume_text", parsed.resume_text)?;
    let job_description = required_text("job_description", parsed.job_description)?;
    let options = parsed.options.unwrap_or_default();
    let callback_url = parsed.callback_url;
    let resume = letterbox_extract::prepare_text(&resume, &limits.resume)
        .map_err(|error| pasted_text_error("resume_text", error, &limits.resume))?;
    let job_description =
        letterbox_extract::prepare_text(&job_description, &limits.job_description).map_err(
            |error| pasted_text_error("job_description", error, &limits.job_description),
        )?;
    finish(resume, job_description, options, callback_url)
}

async fn read_multipart(
    request: Request,
    limits: &DocumentLimits,
) -> Result<CheckedRequest, ApiError> {
    let mut multipart = Multipart::from_request(request, &()).await.map_err(|_| {
        ApiError::bad_request(
            "malformed_multipart",
            "the multipart body has no valid boundary",
        )
    })?;
    let mut resume: Option<Upload> = None;
    let mut job_description: Option<Upload> = None;
    let mut options_json: Option<Upload> = None;
    let mut flat = serde_json::Map::new();
    let mut callback_url: Option<String> = None;
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| multipart_error(&e, limits))?
    {
        let name = field.name().unwrap_or_default().to_owned();
        let slot = match name.as_str() {
            "resume" | "resume_text" => &mut resume,
            "job_description" => &mut job_description,
            "options" => &mut options_json,
            "callback_url" => {
                let bytes = field
                    .bytes()
                    .await
                    .map_err(|e| multipart_error(&e, limits))?;
                let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
                    ApiError::bad_request("invalid_callback_url", "callback_url must be UTF-8 text")
                })?;
                if callback_url.replace(text).is_some() {
                    return Err(ApiError::bad_request(
                        "duplicate_field",
                        "callback_url was sent twice",
                    ));
                }
                continue;
            }
            flat_name if FLAT_OPTION_FIELDS.contains(&flat_name) => {
                let bytes = field
                    .bytes()
                    .await
                    .map_err(|e| multipart_error(&e, limits))?;
                let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
                    ApiError::bad_request("invalid_option", format!("{name} must be UTF-8 text"))
                })?;
                let value = if name == "target_words" || name == "timeout_ms" {
                    text.trim()
                        .parse::<u64>()
                        .map(serde_json::Value::from)
                        .map_err(|_| {
                            ApiError::bad_request(
                                "invalid_option",
                                format!("{name} must be a whole number"),
                            )
                        })?
                } else {
                    serde_json::Value::from(text)
                };
                if flat.insert(name.clone(), value).is_some() {
                    return Err(ApiError::bad_request(
                        "duplicate_field",
                        format!("{name} was sent twice"),
                    ));
                }
                continue;
            }
            "" => {
                return Err(ApiError::bad_request(
                    "malformed_multipart",
                    "a form field has no name",
                ));
            }
            _ => {
                return Err(ApiError::bad_request(
                    "unknown_field",
                    format!(
                        "unknown form field {:?}; expected resume, job_description, options, \
                         callback_url or one of {}",
                        // Echo enough of the name to recognise a typo, not a megabyte of it.
                        name.chars().take(64).collect::<String>(),
                        FLAT_OPTION_FIELDS.join(", ")
                    ),
                ));
            }
        };
        if slot.is_some() {
            return Err(ApiError::bad_request(
                "duplicate_field",
                format!("{name} was sent twice"),
            ));
        }
        // What the client says the file is; the content still decides how it is read.
        let declared = field
            .file_name()
            .and_then(DocumentKind::from_file_name)
            .or_else(|| field.content_type().and_then(DocumentKind::from_media_type));
        let bytes = field
            .bytes()
            .await
            .map_err(|e| multipart_error(&e, limits))?;
        *slot = Some(Upload { bytes, declared });
    }

    let resume = required_bytes("resume", resume)?;
    let job_description = required_bytes("job_description", job_description)?;
    let options = match (options_json, flat.is_empty()) {
        (Some(_), false) => {
            return Err(ApiError::bad_request(
                "duplicate_field",
                "send options either as one JSON field or as separate fields, not both",
            ));
        }
        (Some(json), true) => {
            serde_json::from_slice::<LetterOptions>(&json.bytes).map_err(|e| options_error(&e))?
        }
        (None, _) => serde_json::from_value::<LetterOptions>(serde_json::Value::Object(flat))
            .map_err(|e| options_error(&e))?,
    };

    // Both documents are extracted concurrently, each on its own isolated thread.
    let (resume, job_description) = tokio::join!(
        letterbox_extract::extract_isolated_declared(
            resume.bytes.to_vec(),
            resume.declared,
            limits.resume
        ),
        letterbox_extract::extract_isolated_declared(
            job_description.bytes.to_vec(),
            job_description.declared,
            limits.job_description,
        ),
    );
    let resume = resume.map_err(|error| ApiError::Document {
        field: "resume",
        error,
    })?;
    let job_description = job_description.map_err(|error| ApiError::Document {
        field: "job_description",
        error,
    })?;
    finish(resume.text, job_description.text, options, callback_url)
}

/// Extraction's words for a scanned document ("no text could be extracted") would mislead
/// about pasted text: say what is wrong with the text itself.
fn pasted_text_error(field: &'static str, error: ExtractError, limits: &Limits) -> ApiError {
    match error {
        ExtractError::NoText => ApiError::TextTooShort {
            field,
            min_letters: limits.min_letters,
        },
        ExtractError::Garbled => ApiError::TextGarbled { field },
        ExtractError::TooLarge { .. } | ExtractError::TooLong { .. } => ApiError::TextTooLong {
            field,
            limit_chars: limits.max_chars,
        },
        error => ApiError::Document { field, error },
    }
}

fn finish(
    resume: String,
    job_description: String,
    mut options: LetterOptions,
    callback_url: Option<String>,
) -> Result<CheckedRequest, ApiError> {
    // Names go into the prompt and the letter: the same clean-up as documents (no controls, no
    // bidirectional overrides, no invisible characters).
    for value in [
        &mut options.company,
        &mut options.hiring_manager,
        &mut options.role,
    ]
    .into_iter()
    .flatten()
    {
        *value = letterbox_extract::normalize(value);
    }
    options
        .validate()
        .map_err(|message| ApiError::bad_request("invalid_options", message))?;
    Ok(CheckedRequest {
        resume,
        job_description,
        options,
        callback_url,
    })
}

fn required_text(field: &'static str, value: Option<String>) -> Result<String, ApiError> {
    match value {
        None => Err(ApiError::bad_request(
            "missing_field",
            format!("{field} is required"),
        )),
        Some(text) if text.trim().is_empty() => Err(ApiError::bad_request(
            "empty_field",
            format!("{field} is empty"),
        )),
        Some(text) => Ok(text),
    }
}

/// A multipart part: its bytes and the type its file name or content type claims.
struct Upload {
    bytes: Bytes,
    declared: Option<DocumentKind>,
}

fn required_bytes(field: &'static str, value: Option<Upload>) -> Result<Upload, ApiError> {
    match value {
        None => Err(ApiError::bad_request(
            "missing_field",
            format!("{field} is required"),
        )),
        Some(upload) if upload.bytes.iter().all(u8::is_ascii_whitespace) => Err(
            ApiError::bad_request("empty_field", format!("{field} is empty")),
        ),
        Some(upload) => Ok(upload),
    }
}

fn multipart_error(
    error: &axum::extract::multipart::MultipartError,
    limits: &DocumentLimits,
) -> ApiError {
    if error.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::BodyTooLarge {
            limit_bytes: limits.max_body_bytes,
        }
    } else {
        ApiError::bad_request(
            "malformed_multipart",
            "the multipart body could not be read",
        )
    }
}

fn json_error(error: serde_json::Error) -> ApiError {
    let (code, message) = describe_json_error(&error, "the body");
    ApiError::bad_request(code, message)
}

fn options_error(error: &serde_json::Error) -> ApiError {
    let (code, message) = describe_json_error(error, "options");
    let code = if code == "invalid_json" {
        "invalid_options"
    } else {
        code
    };
    ApiError::bad_request(code, message)
}

/// A code and a message for a JSON error. serde_json's messages can quote the offending value,
/// which may be document text: keep field names, what was expected and where, never the value.
fn describe_json_error(error: &serde_json::Error, subject: &str) -> (&'static str, String) {
    use serde_json::error::Category;
    // Values built from form fields have no position.
    let at = if error.line() == 0 {
        String::new()
    } else {
        format!(" (line {}, column {})", error.line(), error.column())
    };
    if matches!(
        error.classify(),
        Category::Syntax | Category::Eof | Category::Io
    ) {
        return ("invalid_json", format!("{subject} is not valid JSON{at}"));
    }
    let message = error.to_string();
    let bare = message.split(" at line ").next().unwrap_or(&message);
    let expected = bare.split("expected ").nth(1);
    // Field names only, e.g. "unknown field `resume`, expected one of …".
    for (prefix, code) in [
        ("unknown field", "unknown_field"),
        ("duplicate field", "duplicate_field"),
        ("missing field", "missing_field"),
    ] {
        if bare.starts_with(prefix) {
            return (code, format!("{}{at}", shorten_field_name(bare)));
        }
    }
    if bare.starts_with("unknown variant") {
        let expected = expected.unwrap_or("one of the documented values");
        return (
            "invalid_options",
            format!("an option has an unknown value: expected {expected}{at}"),
        );
    }
    match expected {
        Some(expected) => (
            "invalid_json",
            format!("a field has the wrong type or value: expected {expected}{at}"),
        ),
        None => (
            "invalid_json",
            format!("a field has the wrong type or value{at}"),
        ),
    }
}

/// A field name in serde's message, cut to 64 characters: enough to recognise a typo, not a
/// document pasted as a key.
fn shorten_field_name(message: &str) -> String {
    let Some(start) = message.find('`').map(|i| i + 1) else {
        return message.to_owned();
    };
    let end = message
        .rfind("`, expected")
        .or_else(|| message.rfind("`, there are no fields"))
        .or_else(|| message.ends_with('`').then(|| message.len() - 1))
        .filter(|&end| end >= start);
    let Some(end) = end else {
        return message.to_owned();
    };
    let name = &message[start..end];
    if name.chars().count() <= 64 {
        return message.to_owned();
    }
    let short: String = name.chars().take(64).collect();
    format!("{}{short}…{}", &message[..start], &message[end..])
}

/// Limits derived from the settings, for the resume and the job description.
pub fn limits_from(settings: &crate::ProducerSettings) -> DocumentLimits {
    let resume = Limits {
        max_bytes: settings.max_upload_bytes,
        max_chars: settings.max_resume_chars,
        ..Limits::default()
    };
    let job_description = Limits {
        max_bytes: settings.max_upload_bytes,
        max_chars: settings.max_job_description_chars,
        min_letters: 10,
        ..Limits::default()
    };
    DocumentLimits {
        resume,
        job_description,
        // Room for both documents and the form's own framing.
        max_body_bytes: settings
            .max_upload_bytes
            .saturating_mul(2)
            .saturating_add(64 * 1024),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_field_is_named_but_never_at_length() {
        let name = "x".repeat(200);
        let body = format!(r#"{{"resume_text": "a", "{name}": 1}}"#);
        let error = serde_json::from_str::<JsonRequest>(&body).err().unwrap();
        let (code, message) = describe_json_error(&error, "the body");
        assert_eq!(code, "unknown_field");
        assert!(
            message.starts_with(&format!(
                "unknown field `{}…`, expected one of",
                "x".repeat(64)
            )),
            "{message}"
        );
        let error = serde_json::from_str::<JsonRequest>(r#"{"resume_txt": "a"}"#)
            .err()
            .unwrap();
        let (_, message) = describe_json_error(&error, "the body");
        assert!(
            message.starts_with("unknown field `resume_txt`, expected one of"),
            "{message}"
        );
    }

    #[test]
    fn json_errors_never_quote_values() {
        let error = serde_json::from_str::<JsonRequest>(
            r#"{"resume_text": "Jane Roe", "job_description": "x", "options": {"target_words": "Jane Roe secret"}}"#,
        )
        .err()
        .unwrap();
        let (code, message) = describe_json_error(&error, "the body");
        assert_eq!(code, "invalid_json");
        assert!(!message.contains("Jane"), "{message}");
        assert!(
            message.starts_with("a field has the wrong type or value: expected u16"),
            "{message}"
        );
    }

    #[test]
    fn unknown_fields_are_named() {
        let error = serde_json::from_str::<JsonRequest>(r#"{"resume": "x"}"#)
            .err()
            .unwrap();
        let (code, message) = describe_json_error(&error, "the body");
        assert_eq!(code, "unknown_field");
        assert!(
            message.starts_with("unknown field `resume`, expected one of"),
            "{message}"
        );
    }

    #[test]
    fn duplicate_keys_and_unknown_option_values_get_their_own_codes() {
        let error =
            serde_json::from_str::<JsonRequest>(r#"{"resume_text": "a", "resume_text": "b"}"#)
                .err()
                .unwrap();
        assert_eq!(
            describe_json_error(&error, "the body"),
            (
                "duplicate_field",
                "duplicate field `resume_text` (line 1, column 34)".to_owned()
            )
        );
        let error = serde_json::from_str::<JsonRequest>(r#"{"options": {"tone": "Jane Roe"}}"#)
            .err()
            .unwrap();
        let (code, message) = describe_json_error(&error, "the body");
        assert_eq!(code, "invalid_options");
        assert!(!message.contains("Jane"), "{message}");
        assert!(
            message.starts_with("an option has an unknown value: expected one of `professional`"),
            "{message}"
        );
    }

    #[test]
    fn blank_documents_are_refused_as_empty() {
        assert!(matches!(
            required_text("resume_text", Some(" \n\t".into())),
            Err(ApiError::BadRequest {
                code: "empty_field",
                ..
            })
        ));
        assert!(matches!(
            required_text("resume_text", None),
            Err(ApiError::BadRequest {
                code: "missing_field",
                ..
            })
        ));
    }
}
