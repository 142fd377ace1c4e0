//! The ingress application: build it from settings, run it until the shutdown token fires.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_server::accept::NoDelayAcceptor;
use letterbox::sealing::Sealer;
use letterbox::shutdown::CancellationToken;
use letterbox::telemetry::PROMETHEUS_CONTENT_TYPE;
use letterbox::{Job, Outcome};
use letterbox_rabbitmq::{BrokerError, Endpoint, PendingReply, SubmitLink, Topology};
use letterbox_vault::auth::{AuthMode, Authenticator, Caller};
use letterbox_vault::payload::TransitSealer;
use letterbox_vault::tokens::Role;
use letterbox_vault::{SecretStore, VaultSettings};
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::metrics::Stats;
#[allow(unused_imports)] // the schemas the handlers' `#[utoipa::path]` names
use crate::openapi::{
    Accepted, CallbackBody, CoverLetter, CoverLetterForm, CoverLetterJson, ErrorBody, ErrorDetail,
    Status, Timings,
};
use crate::request::{self, DocumentLimits};
use crate::settings::ProducerSettings;
use crate::web::{WebPage, WebSettings};
use crate::webhook::{CallbackError, WebhookSettings, Webhooks};

/// How long connecting, publishing and confirming may take before the broker counts as down.
const BROKER_TIMEOUT: Duration = Duration::from_secs(5);
/// Extra time to wait past a job's deadline, so a worker's own "too late" reply can arrive and
/// name the cause.
const REPLY_GRACE: Duration = Duration::from_millis(500);

/// What every request handler shares.
pub(crate) struct AppState {
    /// The broker session, reconnected after an outage.
    submitter: Arc<SubmitLink>,
    /// Checks bearer tokens and their rate limits; `None` when authentication is off.
    auth: Option<Arc<Authenticator>>,
    limits: DocumentLimits,
    metrics: Metrics,
    job_timeout: Duration,
    max_waiting: usize,
    /// Posts letters to callback URLs; `None` without Vault (nothing to sign them with).
    webhooks: Option<Arc<Webhooks>>,
    /// Owns the tasks that wait for a letter and deliver it to its callback or stream.
    tracker: TaskTracker,
    /// Keep-alive interval of a streamed answer.
    sse_keepalive: Duration,
    /// The page for end users and its sessions, when enabled.
    web: Option<Arc<WebPage>>,
}

pub struct Application {
    listener: TcpListener,
    /// Set when the API is served over HTTPS.
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    router: Router,
    state: Arc<AppState>,
    /// Owns the reply consumer and broker watcher tasks.
    tracker: TaskTracker,
    shutdown: CancellationToken,
    grace: Duration,
    /// How long a client may take to send its request headers.
    header_timeout: Duration,
}

impl Application {
    /// Connects to the broker, declares the topology, starts the reply router and binds the
    /// listener (port 0 picks a free port; see `local_addr`).
    pub async fn build(
        settings: ProducerSettings,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        letterbox_vault::auth::check_open_listener(settings.tokens.auth, settings.http_addr)
            .map_err(anyhow::Error::msg)?;
        // Documents are read in a subprocess; without its binary no upload could be read.
        let extractor = letterbox_extract::extractor().map_err(anyhow::Error::msg)?;
        tracing::debug!(path = %extractor.display(), "Document extractor found");
        let endpoint = Endpoint::from_settings(&settings.broker)?;
        let topology = Topology::from_settings(&settings.broker);
        let tracker = TaskTracker::new();
        // Client tokens live in Vault, and the data keys that seal job bodies come from its
        // transit engine; the ingress never reads the LLM key. Without Vault credentials the
        // ingress can do neither, which only a development setup without tokens may accept.
        let store = match VaultSettings::from_args(&settings.vault, Duration::from_secs(60)) {
            Ok(vault) => Some(Arc::new(
                SecretStore::connect(vault)
                    .await
                    .context("could not connect to Vault")?,
            )),
            Err(missing) if settings.tokens.auth == AuthMode::Tokens => {
                anyhow::bail!("LETTERBOX_AUTH=tokens needs Vault: {missing}")
            }
            Err(_) => {
                tracing::warn!(
                    "No Vault credentials: job bodies go to the broker unencrypted (set VAULT_TOKEN or AppRole to seal them)"
                );
                None
            }
        };
        let sealer: Option<Arc<dyn Sealer>> = match &store {
            Some(store) => {
                let sealer = TransitSealer::new(
                    Arc::clone(store),
                    &settings.vault.transit_mount,
                    &settings.vault.payload_key,
                );
                match sealer.check().await {
                    Ok(()) => Some(Arc::new(sealer)),
                    Err(error) if settings.tokens.auth == AuthMode::Tokens => {
                        return Err(error).with_context(|| {
                            format!(
                                "cannot seal payloads with the transit key {}/{} (letterbox-admin setup creates it)",
                                settings.vault.transit_mount, settings.vault.payload_key
                            )
                        });
                    }
                    // A development Vault without the transit key: say so, and go on unsealed.
                    Err(error) => {
                        tracing::warn!(%error, "No usable payload key: job bodies go to the broker unencrypted");
                        None
                    }
                }
            }
            None => None,
        };
        let submitter = SubmitLink::start(
            endpoint,
            "letterbox-producer",
            sealer,
            topology,
            BROKER_TIMEOUT,
            &tracker,
        )
        .await
        .context("could not connect to RabbitMQ at AMQP_URL and set up its queues")?;
        let webhooks = match &store {
            Some(store) => Some(Arc::new(Webhooks::new(
                Arc::clone(store),
                &WebhookSettings {
                    key_path: settings.webhook_key_path.clone(),
                    allow_private: settings.webhook_allow_private,
                    max_attempts: settings.webhook_max_attempts,
                    timeout: Duration::from_millis(settings.webhook_timeout_ms),
                },
                shutdown.clone(),
            )?)),
            None => None,
        };
        if let Some(webhooks) = &webhooks
            && !webhooks.ready().await
        {
            tracing::warn!(
                path = %webhooks.key_path(),
                "No webhook signing key: requests with callback_url are answered 503 until it exists (letterbox-admin setup creates it)"
            );
        }
        let auth = match store {
            Some(store) => {
                let login_store = Arc::clone(&store);
                let login_shutdown = shutdown.clone();
                tracker.spawn(async move { login_store.maintain_login(login_shutdown).await });
                letterbox_vault::auth::start(
                    store,
                    &settings.tokens,
                    &Role::ALL,
                    &tracker,
                    shutdown.clone(),
                )
                .await
                .context("cannot read the client tokens from Vault")?
            }
            None => {
                tracing::warn!(
                    "Client authentication is off (LETTERBOX_AUTH=none): anyone who reaches this port may use it"
                );
                None
            }
        };
        let limits = request::limits_from(&settings);
        let state = Arc::new(AppState {
            submitter,
            auth,
            metrics: Metrics::new(),
            job_timeout: Duration::from_millis(settings.job_timeout_ms),
            max_waiting: settings.max_waiting,
            limits: limits.clone(),
            webhooks,
            tracker: tracker.clone(),
            sse_keepalive: Duration::from_millis(settings.sse_keepalive_ms),
            web: if settings.web_page {
                Some(Arc::new(WebPage::new(WebSettings {
                    session_ttl: Duration::from_secs(settings.web_session_ttl_secs),
                    per_session: settings.web_rate,
                    total: settings.web_total_rate,
                    secure: settings.tls_cert.is_some(),
                })?))
            } else {
                None
            },
        });
        let submit = middleware::from_fn_with_state(Arc::clone(&state), require_submit);
        let monitor = middleware::from_fn_with_state(Arc::clone(&state), require_monitor);
        let mut router = Router::new();
        if state.web.is_some() {
            router = router
                .route("/", get(index))
                .route("/app.js", get(|| async { WebPage::script() }))
                .route("/app.css", get(|| async { WebPage::style() }));
        }
        let router = router
            .route(
                "/v1/cover-letters",
                post(create_cover_letter).route_layer(submit),
            )
            .route("/metrics", get(metrics).route_layer(monitor.clone()))
            .route("/v1/stats", get(stats).route_layer(monitor))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/openapi.json", get(crate::openapi::openapi_json))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(middleware::map_response_with_state(
                Arc::clone(&state),
                count_response,
            ))
            .layer(DefaultBodyLimit::max(limits.max_body_bytes))
            .with_state(Arc::clone(&state));
        let listener = TcpListener::bind(settings.http_addr)
            .await
            .with_context(|| format!("could not listen on {}", settings.http_addr))?;
        let tls = tls_config(&settings)?;
        Ok(Self {
            listener,
            tls,
            router,
            state,
            tracker,
            shutdown,
            grace: Duration::from_millis(settings.shutdown_grace_ms),
            header_timeout: Duration::from_millis(settings.header_timeout_ms),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until the shutdown token is cancelled, then stops accepting, lets in-flight
    /// requests finish (up to the grace period) and closes the broker connections.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr()?, tls = self.tls.is_some(), "Listening");
        let grace = self.grace;
        let header_timeout = self.header_timeout;
        let (listener, tls, router) = (self.listener, self.tls, self.router);
        // axum-server drains on its handle rather than on a future.
        let handle = axum_server::Handle::new();
        let (stopper, stop) = (handle.clone(), self.shutdown.clone());
        self.tracker.spawn(async move {
            stop.cancelled().await;
            stopper.graceful_shutdown(Some(grace));
        });
        let drained = async move {
            let listener = listener.into_std()?;
            // A client that never finishes its request headers is cut off, so idle connections
            // cannot pile up (slowloris); a slow body is bounded by the request's deadline.
            let tune = |builder: &mut hyper_util::server::conn::auto::Builder<_>| {
                builder
                    .http1()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(header_timeout);
            };
            match tls {
                // Without TCP_NODELAY the kernel holds a small write (an event of a stream)
                // until the client acknowledges the one before, which it may delay by 40 ms.
                None => {
                    let mut server = axum_server::from_tcp(listener)?
                        .acceptor(NoDelayAcceptor)
                        .handle(handle);
                    tune(server.http_builder());
                    server.serve(router.into_make_service()).await?;
                }
                Some(config) => {
                    let mut server = axum_server::from_tcp_rustls(listener, config)?
                        .map(|tls| tls.acceptor(NoDelayAcceptor))
                        .handle(handle);
                    tune(server.http_builder());
                    server.serve(router.into_make_service()).await?;
                }
            }
            anyhow::Ok(())
        };
        let shutdown = self.shutdown.clone();
        tokio::select! {
            result = drained => result?,
            () = async { shutdown.cancelled().await; tokio::time::sleep(self.grace).await } => {
                tracing::warn!("Shutdown grace period over; dropping in-flight requests");
            }
        }
        // Replies keep arriving until every request has its answer; only then stop the router.
        self.state.submitter.stop().await;
        self.tracker.close();
        self.tracker.wait().await;
        self.state.submitter.close_connections().await;
        Ok(())
    }
}

/// The HTTPS configuration, when a certificate and key are given: rustls with the process's ring
/// provider, TLS 1.3 preferred, TLS 1.2 refused when `tls_min_version` is 1.3.
fn tls_config(
    settings: &ProducerSettings,
) -> anyhow::Result<Option<axum_server::tls_rustls::RustlsConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (Some(cert), Some(key)) = (&settings.tls_cert, &settings.tls_key) else {
        return Ok(None);
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read the certificate chain {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read the private key {}", key.display()))?;
    let versions: &[&rustls::SupportedProtocolVersion] = if settings.tls_min_version == "1.3" {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let mut config = rustls::ServerConfig::builder_with_protocol_versions(versions)
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the TLS certificate and key do not form a usable pair")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(axum_server::tls_rustls::RustlsConfig::from_config(
        Arc::new(config),
    )))
}

/// Writes a cover letter.
///
/// Checks and extracts the documents in memory, queues the job and answers with the letter when a
/// worker has written it. Refusals are `{"error": {"code", "message"}}`.
#[utoipa::path(
    post,
    path = "/v1/cover-letters",
    tag = "letters",
    request_body(content(
        (CoverLetterJson = "application/json"),
        (CoverLetterForm = "multipart/form-data")
    )),
    responses(
        (status = 200, description = "The letter; with `Accept: text/event-stream`, server-sent events: `job` ({\"job_id\"}) at once, `token` ({\"text\"}) for each piece as the provider writes it (`reset` if another worker starts the letter again: drop the text so far), then `done` (the letter, as JSON) or `error` ({\"error\": {\"code\", \"message\"}}); keep-alive comments fill the silences",
            content((CoverLetter = "application/json"), (String = "text/event-stream"))),
        (status = 202, description = "With `callback_url`: the job is queued, and the letter (or why there is none) will be POSTed to the callback as a `CallbackBody`, signed", body = Accepted),
        (status = 400, description = "Incomplete or malformed: `missing_field`, `empty_field`, `invalid_json`, `invalid_options`, `unknown_field`, `duplicate_field`, `malformed_multipart`, `invalid_callback_url`, `callback_not_allowed`, `conflicting_modes`", body = ErrorBody),
        (status = 401, description = "No token, or an unknown, revoked, malformed or expired one: `unauthorized`", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 403, description = "The token's role may not do this: `forbidden`", body = ErrorBody),
        (status = 408, description = "The body was not received and checked in time: `request_timeout`", body = ErrorBody),
        (status = 413, description = "Over a size limit: `body_too_large`, `document_too_large`, `text_too_long`", body = ErrorBody),
        (status = 415, description = "Neither JSON nor multipart, or a file that is not PDF, DOCX, Markdown or text: `unsupported_content_type`, `unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "No usable text: `no_text`, `text_too_short`, `garbled_text`, `encrypted_document`, `unreadable_document`, `extraction_timeout`", body = ErrorBody),
        (status = 429, description = "The token's rate limit is used up: `rate_limited`", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
        (status = 500, description = "A fault inside Letterbox: `internal_error`, `invalid_job`, `delivery_limit`", body = ErrorBody),
        (status = 502, description = "The LLM provider failed or refused: `llm_failed`", body = ErrorBody),
        (status = 503, description = "Try again later: `queue_full`, `broker_unavailable`, `reply_lost`, `overloaded`, `secret_unavailable`, `llm_rate_limited`, `auth_unavailable`, `webhook_unavailable`", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
        (status = 504, description = "No letter before the deadline: `timeout`, `expired`, `llm_timeout`", body = ErrorBody)
    )
)]
pub(crate) async fn create_cover_letter(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Response {
    let started = Instant::now();
    let _in_flight = state.metrics.in_flight.track();
    let token_id = request
        .extensions()
        .get::<Caller>()
        .map(|caller| caller.token_id.clone())
        .unwrap_or_default();
    match handle(&state, request, started).await {
        Ok(Answer::Letter(body)) => {
            tracing::info!(%token_id, job_id = %body.job_id, total_ms = body.timings_ms.total, "Letter delivered");
            (StatusCode::OK, Json(body)).into_response()
        }
        Ok(Answer::Accepted(body)) => {
            tracing::info!(%token_id, job_id = %body.job_id, "Job accepted for a callback");
            (StatusCode::ACCEPTED, Json(body)).into_response()
        }
        Ok(Answer::Stream(waiting)) => {
            tracing::info!(%token_id, job_id = %waiting.job_id, "Streaming a letter");
            stream_letter(&state, waiting)
        }
        Err(error) => {
            tracing::info!(
                %token_id,
                code = error.code(),
                status = error.status().as_u16(),
                "Request refused"
            );
            error.into_response()
        }
    }
}

/// What a request gets when nothing went wrong.
enum Answer {
    Letter(CoverLetter),
    Accepted(Accepted),
    /// `Accept: text/event-stream`: the letter as it is written.
    Stream(Waiting),
}

/// A job on its way, for a request with a callback.
struct Waiting {
    job_id: Uuid,
    pending: PendingReply,
    deadline: tokio::time::Instant,
    timeout_ms: u64,
    started: Instant,
}

async fn handle(
    state: &Arc<AppState>,
    request: Request,
    started: Instant,
) -> Result<Answer, ApiError> {
    // Shed load before doing any work for it.
    if !state.submitter.is_ready() {
        return Err(ApiError::Unavailable {
            code: "broker_unavailable",
            message: "the job queue is unreachable; retry shortly".into(),
            retry_after_secs: 5,
        });
    }
    if state.submitter.waiting() >= state.max_waiting {
        return Err(ApiError::Unavailable {
            code: "overloaded",
            message: "too many requests are waiting for letters; retry shortly".into(),
            retry_after_secs: 2,
        });
    }

    let stream = wants_stream(request.headers());
    let from_page = request
        .extensions()
        .get::<Caller>()
        .is_some_and(|caller| caller.token_id.starts_with(crate::web::SESSION_PREFIX));
    // The deadline covers the whole request: reading and checking the documents count too.
    let timeout_ms = u64::try_from(state.job_timeout.as_millis()).unwrap_or(u64::MAX);
    let deadline = tokio::time::Instant::from_std(started) + state.job_timeout;
    let checked = tokio::time::timeout_at(deadline, request::read(request, &state.limits))
        .await
        .map_err(|_| ApiError::RequestTimeout {
            deadline_ms: timeout_ms,
        })??;
    state.metrics.extraction.record(started.elapsed());
    let callback = match &checked.callback_url {
        None => None,
        Some(_) if stream => {
            return Err(ApiError::bad_request(
                "conflicting_modes",
                "a request with callback_url is answered 202; it cannot also ask for a stream (Accept: text/event-stream)",
            ));
        }
        Some(_) if from_page => {
            return Err(ApiError::bad_request(
                "callback_not_allowed",
                "the page's session cannot ask for a callback; a client with a token can",
            ));
        }
        Some(text) => Some(check_callback(state, text).await?),
    };
    // A client may ask for a shorter deadline than the ingress's own, never a longer one.
    let (deadline, timeout_ms) = match checked.options.timeout_ms {
        Some(requested) if requested < timeout_ms => (
            tokio::time::Instant::from_std(started) + Duration::from_millis(requested),
            requested,
        ),
        _ => (deadline, timeout_ms),
    };
    if tokio::time::Instant::now() >= deadline {
        return Err(ApiError::DeadlineExceeded {
            deadline_ms: timeout_ms,
        });
    }

    let created_at_us = letterbox::time::now_us();
    let remaining_ms = u64::try_from(
        deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .as_millis(),
    )
    .unwrap_or(u64::MAX);
    let job = Job {
        id: Uuid::new_v4(),
        created_at_us,
        deadline_ms: (created_at_us / 1000).saturating_add(remaining_ms),
        resume: checked.resume,
        job_description: checked.job_description,
        options: checked.options,
        stream,
    };
    let job_id = job.id;
    let pending = state
        .submitter
        .submit(&job)
        .await
        .map_err(|error| broker_error(&error))?;
    // The documents are on the broker now; this process needs no copy of them.
    drop(job);
    let waiting = Waiting {
        job_id,
        pending,
        deadline,
        timeout_ms,
        started,
    };
    match (callback, &state.webhooks) {
        (Some(url), Some(webhooks)) => {
            let webhooks = Arc::clone(webhooks);
            let tracker = state.tracker.clone();
            let state = Arc::clone(state);
            tracker.spawn(async move {
                let body = match letter(&state, waiting).await {
                    Ok(letter) => serde_json::to_vec(&CallbackBody::Letter {
                        status: "done",
                        letter,
                    }),
                    Err(error) => serde_json::to_vec(&CallbackBody::Failed {
                        job_id,
                        status: "failed",
                        error: ErrorDetail {
                            code: error.code(),
                            message: error.to_string(),
                        },
                    }),
                };
                if let Ok(body) = body {
                    webhooks.deliver(&url, job_id, &body).await;
                }
            });
            Ok(Answer::Accepted(Accepted {
                job_id,
                status: "accepted",
            }))
        }
        _ if stream => Ok(Answer::Stream(waiting)),
        _ => letter(state, waiting).await.map(Answer::Letter),
    }
}

/// Whether the client asked for a stream: `text/event-stream` among its `Accept` media types.
fn wants_stream(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|part| {
            let mut params = part.split(';');
            let media = params.next().unwrap_or_default().trim();
            // `q=0` says "not this one".
            let refused = params.any(|param| {
                param
                    .trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            media.eq_ignore_ascii_case("text/event-stream") && !refused
        })
}

/// Answers with server-sent events: `job` at once (the job id), `token` for each piece of the
/// letter as the provider writes it, then `done` (the letter, as a JSON answer would carry it)
/// or `error` (`{"error": {"code", "message"}}`, as a refusal). Keep-alive comments fill the
/// silences, the wait for the first token included.
fn stream_letter(state: &Arc<AppState>, mut waiting: Waiting) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    let mut chunks = waiting.pending.take_chunks();
    let state = Arc::clone(state);
    let keep_alive = state.sse_keepalive;
    state.tracker.clone().spawn(async move {
        // Counted in flight until its last event, not only until its 200.
        let _in_flight = state.metrics.in_flight.track();
        let job_id = waiting.job_id;
        // Whatever ends the task before its last event is a client gone.
        let mut ended = EndedStream {
            state: &state,
            outcome: "abandoned",
        };
        if tx
            .send(json_event("job", &serde_json::json!({ "job_id": job_id })))
            .await
            .is_err()
        {
            return;
        }
        let mut first_token: Option<Duration> = None;
        let mut run: Option<u32> = None;
        let give_up = waiting.deadline + REPLY_GRACE;
        let reply = loop {
            tokio::select! {
                biased;
                Some(piece) = next_chunk(&mut chunks) => {
                    if first_token.is_none() {
                        let elapsed = waiting.started.elapsed();
                        state.metrics.first_token.record(elapsed);
                        first_token = Some(elapsed);
                    }
                    // A client gone: dropping the pending reply forgets the job.
                    if forward(&tx, &mut run, piece).await.is_err() {
                        return;
                    }
                }
                reply = waiting.pending.reply() => break reply.map_err(|_lost| ApiError::ReplyLost),
                // The client went away: dropping the pending reply forgets the job at once.
                () = tx.closed() => return,
                () = tokio::time::sleep_until(give_up) => {
                    break Err(ApiError::DeadlineExceeded { deadline_ms: waiting.timeout_ms });
                }
            }
        };
        // Pieces that arrived before the final reply go out before it.
        if let Some(chunks) = chunks.as_mut() {
            while let Ok(piece) = chunks.try_recv() {
                if forward(&tx, &mut run, piece).await.is_err() {
                    return;
                }
            }
        }
        let event = match reply.and_then(|reply| to_letter(&state, job_id, reply, waiting.started)) {
            Ok(mut letter) => {
                ended.outcome = "done";
                letter.timings_ms.first_token =
                    first_token.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                tracing::info!(job_id = %job_id, total_ms = letter.timings_ms.total, "Letter streamed");
                json_event("done", &letter)
            }
            Err(error) => {
                ended.outcome = error.code();
                tracing::info!(job_id = %job_id, code = error.code(), "Stream ended with an error");
                json_event(
                    "error",
                    &ErrorBody {
                        error: ErrorDetail {
                            code: error.code(),
                            message: error.to_string(),
                        },
                    },
                )
            }
        };
        let _ = tx.send(event).await;
    });
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|event| (Ok::<_, std::convert::Infallible>(event), rx))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(keep_alive))
        .into_response()
}

/// Counts how a streamed answer ended when its task ends, however it ends.
struct EndedStream<'a> {
    state: &'a AppState,
    outcome: &'static str,
}

impl Drop for EndedStream<'_> {
    fn drop(&mut self) {
        self.state.metrics.streams.inc(self.outcome);
    }
}

/// Sends a piece of the letter as a `token` event; when it starts another run of the job (the
/// worker writing it stopped, and another began again), a `reset` event first, so the client
/// drops the text it has.
async fn forward(
    tx: &tokio::sync::mpsc::Sender<Event>,
    run: &mut Option<u32>,
    piece: letterbox::Piece,
) -> Result<(), tokio::sync::mpsc::error::SendError<Event>> {
    for (name, data) in piece_events(run, piece) {
        tx.send(json_event(name, &data)).await?;
    }
    Ok(())
}

/// The events one piece becomes, given the run the pieces before it came from.
fn piece_events(
    run: &mut Option<u32>,
    piece: letterbox::Piece,
) -> Vec<(&'static str, serde_json::Value)> {
    let mut events = Vec::with_capacity(2);
    if run.is_some_and(|current| current != piece.run) {
        events.push((
            "reset",
            serde_json::json!({ "reason": "the letter is being written again from the start" }),
        ));
    }
    *run = Some(piece.run);
    events.push(("token", serde_json::json!({ "text": piece.text })));
    events
}

async fn next_chunk(
    chunks: &mut Option<tokio::sync::mpsc::UnboundedReceiver<letterbox::Piece>>,
) -> Option<letterbox::Piece> {
    match chunks {
        Some(chunks) => chunks.recv().await,
        None => std::future::pending().await,
    }
}

fn json_event(name: &str, data: &impl serde::Serialize) -> Event {
    Event::default()
        .event(name)
        .json_data(data)
        .unwrap_or_else(|_| Event::default().event(name))
}

/// Checks a request's callback URL, and that its letter could be signed.
async fn check_callback(state: &AppState, text: &str) -> Result<url::Url, ApiError> {
    let Some(webhooks) = &state.webhooks else {
        return Err(ApiError::Unavailable {
            code: "webhook_unavailable",
            message: "this ingress has no Vault, so it cannot sign callbacks".into(),
            retry_after_secs: 60,
        });
    };
    let url =
        crate::webhook::check_url(text, webhooks.allow_private()).map_err(|error| match error {
            CallbackError::Invalid(message) => {
                ApiError::bad_request("invalid_callback_url", message)
            }
            CallbackError::NotAllowed => ApiError::bad_request(
                "callback_not_allowed",
                "callback_url points at a loopback, private or internal address",
            ),
        })?;
    if !webhooks.ready().await {
        return Err(ApiError::Unavailable {
            code: "webhook_unavailable",
            message: format!(
                "the webhook signing key ({}) cannot be read; letterbox-admin setup creates it",
                webhooks.key_path()
            ),
            retry_after_secs: 30,
        });
    }
    Ok(url)
}

/// Waits for the worker's reply to a published job and makes it the answer.
async fn letter(state: &AppState, waiting: Waiting) -> Result<CoverLetter, ApiError> {
    let Waiting {
        job_id,
        pending,
        deadline,
        timeout_ms,
        started,
    } = waiting;
    let reply = match tokio::time::timeout_at(deadline + REPLY_GRACE, pending.wait()).await {
        Err(_elapsed) => {
            return Err(ApiError::DeadlineExceeded {
                deadline_ms: timeout_ms,
            });
        }
        Ok(Err(_lost)) => return Err(ApiError::ReplyLost),
        Ok(Ok(reply)) => reply,
    };
    to_letter(state, job_id, reply, started)
}

/// A worker's final reply as the answer, counted in the latency figures when it is a letter.
fn to_letter(
    state: &AppState,
    job_id: Uuid,
    reply: letterbox::Reply,
    started: Instant,
) -> Result<CoverLetter, ApiError> {
    match reply.outcome {
        Outcome::Failed(failure) => Err(ApiError::Job {
            code: failure.code,
            message: failure.message,
            retry_after_secs: failure
                .retry_after_ms
                .map(|ms| u32::try_from(ms.div_ceil(1000)).unwrap_or(u32::MAX)),
        }),
        // The router hands pieces to the stream, never as the final reply.
        Outcome::Chunk(_) => Err(ApiError::ReplyLost),
        Outcome::Letter(letter) => {
            let total = started.elapsed();
            let metrics = &state.metrics;
            metrics.end_to_end.record(total);
            metrics
                .queue_wait
                .record(Duration::from_millis(letter.queued_ms));
            metrics.llm.record_us(letter.llm_us);
            let total_us = u64::try_from(total.as_micros()).unwrap_or(u64::MAX);
            metrics
                .overhead
                .record_us(total_us.saturating_sub(letter.llm_us));
            Ok(CoverLetter {
                job_id,
                cover_letter: letter.text,
                model: letter.model,
                timings_ms: Timings {
                    queued: letter.queued_ms,
                    llm: letter.llm_ms,
                    total: u64::try_from(total.as_millis()).unwrap_or(u64::MAX),
                    first_token: None,
                },
            })
        }
    }
}

fn broker_error(error: &BrokerError) -> ApiError {
    match error {
        BrokerError::Rejected => ApiError::Unavailable {
            code: "queue_full",
            message: "the job queue is full; retry shortly".into(),
            retry_after_secs: 5,
        },
        BrokerError::Seal(error) => {
            tracing::warn!(%error, "Could not seal a job");
            ApiError::Unavailable {
                code: "secret_unavailable",
                message: "the payload key service is unavailable; retry shortly".into(),
                retry_after_secs: 5,
            }
        }
        other => {
            tracing::warn!(error = %other, "Could not publish a job");
            ApiError::Unavailable {
                code: "broker_unavailable",
                message: "the job queue did not accept the job; retry shortly".into(),
                retry_after_secs: 5,
            }
        }
    }
}

/// Status codes as static label values, so a metric label can never carry request data.
fn status_label(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200 => "200",
        202 => "202",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        408 => "408",
        413 => "413",
        415 => "415",
        422 => "422",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        _ => "other",
    }
}

/// Answers while the process runs.
#[utoipa::path(get, path = "/healthz",
    tag = "operations", security(()), responses((status = 200, description = "Running", body = Status)))]
pub(crate) async fn healthz() -> impl IntoResponse {
    Json(Status { status: "ok" })
}

/// Answers 200 while the broker connection and the reply queue are up.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    security(()),
    responses(
        (status = 200, description = "Ready for requests", body = Status),
        (status = 503, description = "The broker connection is down: `not_ready`", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait")))
    )
)]
pub(crate) async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.submitter.is_ready() {
        Json(Status { status: "ready" }).into_response()
    } else {
        ApiError::Unavailable {
            code: "not_ready",
            message: "the broker connection is down".into(),
            retry_after_secs: 5,
        }
        .into_response()
    }
}

/// The ingress's figures in Prometheus's text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain; version=0.0.4"),
        (status = 401, description = "No valid token: `unauthorized`", body = ErrorBody),
        (status = 403, description = "Not a `monitor` or `admin` token: `forbidden`", body = ErrorBody)
    )
)]
pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let mut body = state
        .metrics
        .render(state.submitter.is_ready(), state.submitter.waiting());
    if let Some(webhooks) = &state.webhooks {
        webhooks.deliveries.render(&mut body);
    }
    ([(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)], body)
}

/// The same figures as `/metrics`, as JSON.
#[utoipa::path(
    get,
    path = "/v1/stats",
    tag = "operations",
    responses(
        (status = 200, description = "Since the process started", body = Stats),
        (status = 401, description = "No valid token: `unauthorized`", body = ErrorBody),
        (status = 403, description = "Not a `monitor` or `admin` token: `forbidden`", body = ErrorBody)
    )
)]
pub(crate) async fn stats(State(state): State<Arc<AppState>>) -> Response {
    Json(
        state
            .metrics
            .stats(state.submitter.is_ready(), state.submitter.waiting()),
    )
    .into_response()
}

async fn require_submit(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    authorize(&state, Role::Submit, request, next).await
}

async fn require_monitor(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    authorize(&state, Role::Monitor, request, next).await
}

/// The one gate before every endpoint but the health checks.
async fn authorize(state: &AppState, needed: Role, request: Request, next: Next) -> Response {
    let Some(auth) = &state.auth else {
        return next.run(request).await;
    };
    let now_s = letterbox::time::now_ms() / 1000;
    let values = request.headers().get_all(header::AUTHORIZATION);
    // A request from the page carries its session cookie and no token: it may write letters.
    let session = match (&state.web, needed, values.iter().next()) {
        (Some(web), Role::Submit, None) => web.check(request.headers(), now_s),
        _ => None,
    };
    let checked = match session {
        Some(checked) => checked,
        None => letterbox_vault::auth::sole_authorization(values.iter().map(HeaderValue::as_bytes))
            .and_then(|value| auth.check(value, needed, now_s)),
    };
    match checked {
        Ok(caller) => {
            // Handlers log which token a request came with (its public id, never the token).
            let mut request = request;
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(error) => {
            tracing::info!(
                code = error.code(),
                status = error.status(),
                "Request refused at the door"
            );
            ApiError::Auth(error).into_response()
        }
    }
}

/// The page for end users, with a fresh session cookie.
async fn index(State(state): State<Arc<AppState>>) -> Response {
    match &state.web {
        Some(web) => web.index(letterbox::time::now_ms() / 1000),
        None => ApiError::NotFound.into_response(),
    }
}

/// Counts every response the API gives, whatever route or refusal produced it.
async fn count_response(State(state): State<Arc<AppState>>, response: Response) -> Response {
    state.metrics.responses.inc(status_label(response.status()));
    response
}

async fn not_found() -> Response {
    ApiError::NotFound.into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::MethodNotAllowed.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_of_a_new_run_are_preceded_by_a_reset() {
        let piece = |run, text: &str| letterbox::Piece {
            run,
            text: text.to_owned(),
        };
        let mut run = None;
        let mut names = Vec::new();
        for p in [
            piece(7, "Dear "),
            piece(7, "team"),
            piece(9, "Dear "),
            piece(9, "all"),
        ] {
            names.extend(
                piece_events(&mut run, p)
                    .into_iter()
                    .map(|(name, data)| format!("{name}:{}", data["text"].as_str().unwrap_or("-"))),
            );
        }
        assert_eq!(
            names,
            [
                "token:Dear ",
                "token:team",
                "reset:-",
                "token:Dear ",
                "token:all"
            ]
        );
    }

    #[test]
    fn a_stream_is_asked_for_among_any_accept_values() {
        let accept = |values: &[&str]| {
            let mut headers = axum::http::HeaderMap::new();
            for value in values {
                headers.append(header::ACCEPT, HeaderValue::from_str(value).unwrap());
            }
            wants_stream(&headers)
        };
        assert!(accept(&["text/event-stream"]));
        assert!(accept(&["application/json, TEXT/Event-Stream;q=0.9"]));
        assert!(accept(&["application/json", "text/event-stream"]));
        assert!(!accept(&["application/json"]));
        assert!(!accept(&["*/*"]));
        assert!(!accept(&["text/event-stream;q=0", "application/json"]));
        assert!(!accept(&["text/event-stream; q=0.0"]));
        assert!(accept(&["text/event-stream;q=0.1"]));
        assert!(!accept(&[]));
    }
}
