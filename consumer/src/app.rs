//! The worker application: build it from settings, run it until the shutdown token fires.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::extract::Request;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use letterbox::sealing::Sealer;
use letterbox::shutdown::CancellationToken;
use letterbox::telemetry::PROMETHEUS_CONTENT_TYPE;
use letterbox_rabbitmq::{Connections, Endpoint, JobStream, Replier, Topology};
use letterbox_vault::auth::Authenticator;
use letterbox_vault::payload::TransitSealer;
use letterbox_vault::tokens::Role;
use letterbox_vault::{KvPath, SecretStore, VaultSettings};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::llm::LlmClient;
use crate::metrics::Metrics;
use crate::prompt::Templates;
use crate::settings::ConsumerSettings;
use crate::worker::{Worker, settle};

const BROKER_TIMEOUT: Duration = Duration::from_secs(5);

pub struct ConsumerApp {
    worker: Arc<Worker>,
    stream: JobStream,
    metrics_listener: TcpListener,
    metrics: Arc<Metrics>,
    /// Owns the metrics server and every job task.
    tracker: TaskTracker,
    /// Guards /metrics: monitor and admin tokens only.
    auth: Option<Arc<Authenticator>>,
    shutdown: CancellationToken,
    connections: Connections,
    /// Permits = prefetch: a job is only taken when a permit is free.
    concurrency: u16,
    grace: Duration,
}

impl ConsumerApp {
    pub async fn build(
        settings: ConsumerSettings,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        if settings.concurrency == 0 {
            bail!("LETTERBOX_CONCURRENCY must be at least 1");
        }
        letterbox_vault::auth::check_open_listener(settings.tokens.auth, settings.metrics_addr)
            .map_err(anyhow::Error::msg)?;
        let vault = VaultSettings::from_args(
            &settings.vault,
            Duration::from_secs(settings.secret_cache_ttl_secs),
        )
        .map_err(anyhow::Error::msg)?;
        let secrets = Arc::new(
            SecretStore::connect(vault)
                .await
                .context("could not connect to Vault")?,
        );
        let tracker = TaskTracker::new();
        // Only operators' tokens: a worker has no business with client (submit) tokens.
        let auth = letterbox_vault::auth::start(
            Arc::clone(&secrets),
            &settings.tokens,
            &[Role::Monitor, Role::Admin],
            &tracker,
            shutdown.clone(),
        )
        .await
        .context("cannot read the monitoring tokens from Vault")?;
        let key_path = KvPath::parse(&settings.llm_key_path, &settings.llm_key_field)?;
        // A wrong path or policy is a configuration error: say so now, once, and stop.
        let metrics = Arc::new(Metrics::new());
        match secrets.read(&key_path).await {
            Ok(key) => {
                metrics.note_key(&key);
                tracing::info!(path = %key_path, version = key.version, "LLM key found in Vault");
            }
            Err(error) if error.is_transient() => {
                tracing::warn!(%error, "Vault is not answering yet; jobs will retry reading the key");
            }
            Err(error) => return Err(error).context("cannot read the LLM key"),
        }

        let templates = Templates::new(&settings.prompt_version).await?;
        tracing::info!(version = %templates.current().await?.version, "Prompt template ready");
        let llm = LlmClient::new(&settings.llm_base_url, &settings.llm_model)
            .context("could not build the LLM HTTP client")?;

        let endpoint = Endpoint::from_settings(&settings.broker)?;
        let connections = Connections::open(&endpoint, "letterbox-consumer", BROKER_TIMEOUT)
            .await
            .context("could not connect to RabbitMQ at AMQP_URL")?;
        let topology = Topology::from_settings(&settings.broker);
        let sealer = TransitSealer::new(
            Arc::clone(&secrets),
            &settings.vault.transit_mount,
            &settings.vault.payload_key,
        );
        // Only sealed jobs need the transit key; an ingress without Vault sends them in the
        // clear, so a worker can start without it and say so.
        if let Err(error) = sealer.check().await {
            tracing::warn!(
                %error,
                mount = %settings.vault.transit_mount,
                key = %settings.vault.payload_key,
                "The payload key is not usable: sealed jobs will wait until it is (letterbox-admin setup creates it)"
            );
        }
        let sealer: Arc<dyn Sealer> = Arc::new(sealer);
        let replier =
            Replier::open(&connections.publish, Arc::clone(&sealer), BROKER_TIMEOUT).await?;
        let stream = JobStream::open(
            &connections.consume,
            sealer,
            &topology,
            settings.concurrency,
            "",
        )
        .await
        .context("could not subscribe to the jobs queue")?;

        let worker = Arc::new(Worker {
            replier,
            secrets,
            key_path,
            llm,
            templates,
            metrics: Arc::clone(&metrics),
            llm_timeout: Duration::from_millis(settings.llm_timeout_ms),
            require_sealed: settings.tokens.auth == letterbox_vault::auth::AuthMode::Tokens,
        });
        let metrics_listener = TcpListener::bind(settings.metrics_addr)
            .await
            .with_context(|| format!("could not listen on {}", settings.metrics_addr))?;
        Ok(Self {
            worker,
            stream,
            metrics_listener,
            metrics,
            tracker,
            auth,
            shutdown,
            connections,
            concurrency: settings.concurrency,
            grace: Duration::from_millis(settings.shutdown_grace_ms),
        })
    }

    pub fn metrics_addr(&self) -> std::io::Result<SocketAddr> {
        self.metrics_listener.local_addr()
    }

    /// Takes jobs until the shutdown token fires; then stops taking, gives in-flight jobs the
    /// grace period to finish, and closes the connections (the broker requeues anything unacked).
    pub async fn run_until_stopped(mut self) -> anyhow::Result<()> {
        let metrics_router = Router::new()
            .route(
                "/healthz",
                get(|| async { Json(json!({ "status": "ok" })) }),
            )
            .route(
                "/metrics",
                get(render_metrics).route_layer(middleware::from_fn_with_state(
                    self.auth.clone(),
                    require_monitor,
                )),
            )
            .fallback(|| async {
                (
                    axum::http::StatusCode::NOT_FOUND,
                    Json(json!({"error": {"code": "not_found", "message": "this port serves /healthz and /metrics"}})),
                )
            })
            .with_state((Arc::clone(&self.metrics), self.concurrency));
        let metrics_shutdown = self.shutdown.clone();
        let listener = self.metrics_listener;
        self.tracker.spawn(async move {
            let served = axum::serve(listener, metrics_router)
                .with_graceful_shutdown(async move { metrics_shutdown.cancelled().await })
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "Metrics server failed");
            }
        });

        let secrets = Arc::clone(&self.worker.secrets);
        let login_shutdown = self.shutdown.clone();
        self.tracker
            .spawn(async move { secrets.maintain_login(login_shutdown).await });

        tracing::info!(concurrency = self.concurrency, "Taking jobs");
        let permits = Arc::new(Semaphore::new(usize::from(self.concurrency)));
        let mut result = Ok(());
        loop {
            let permit = tokio::select! {
                () = self.shutdown.cancelled() => break,
                permit = Arc::clone(&permits).acquire_owned() => permit?,
            };
            let delivery = tokio::select! {
                () = self.shutdown.cancelled() => break,
                delivery = self.stream.next() => delivery,
            };
            match delivery {
                Some(Ok(delivery)) => {
                    let worker = Arc::clone(&self.worker);
                    self.tracker.spawn(async move {
                        let disposition = worker.process(&delivery).await;
                        settle(&delivery, disposition).await;
                        drop(permit);
                    });
                }
                Some(Err(error)) => {
                    result = Err(anyhow::anyhow!("the job subscription failed: {error}"));
                    break;
                }
                None => {
                    result = Err(anyhow::anyhow!("the broker ended the job subscription"));
                    break;
                }
            }
        }

        let _ = self.stream.cancel().await;
        self.shutdown.cancel();
        self.tracker.close();
        if tokio::time::timeout(self.grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("Shutdown grace period over; unfinished jobs go back to the queue");
        }
        self.stream.close().await;
        self.worker.replier.close().await;
        self.connections.close().await;
        result
    }
}

async fn require_monitor(
    State(auth): State<Option<Arc<Authenticator>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(auth) = auth else {
        return next.run(request).await;
    };
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    match auth.check(
        authorization,
        Role::Monitor,
        letterbox::time::now_ms() / 1000,
    ) {
        Ok(_) => next.run(request).await,
        Err(error) => {
            let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::UNAUTHORIZED);
            let body = json!({"error": {"code": error.code(), "message": error.to_string()}});
            let mut response = (status, Json(body)).into_response();
            if status == StatusCode::UNAUTHORIZED {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            if let Some(seconds) = error.retry_after_secs() {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            response
        }
    }
}

async fn render_metrics(
    State((metrics, capacity)): State<(Arc<Metrics>, u16)>,
) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)],
        metrics.render(capacity),
    )
}
