//! The worker application: build it from settings, run it until the shutdown token fires.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
use letterbox::backoff::Backoff;
use letterbox::sealing::Sealer;
use letterbox::shutdown::CancellationToken;
use letterbox::telemetry::PROMETHEUS_CONTENT_TYPE;
use letterbox_rabbitmq::{Connections, Endpoint, JobStream, QueueDepth, Replier, Topology};
use letterbox_vault::auth::Authenticator;
use letterbox_vault::payload::TransitSealer;
use letterbox_vault::tokens::Role;
use letterbox_vault::{KvPath, SecretStore, VaultSettings};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

use crate::limiter::Limiter;
use crate::llm::LlmClient;
use crate::metrics::{KeyRole, Metrics};
use crate::prompt::Templates;
use crate::settings::{ConsumerSettings, LlmTarget};
use crate::worker::{Route, Worker, settle};

const BROKER_TIMEOUT: Duration = Duration::from_secs(5);
/// The name the broker's UI shows for this process's connections.
const PROCESS: &str = "letterbox-consumer";
/// Waits between reconnection attempts: from a quarter second up to five seconds.
const RECONNECT: Backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
/// How often the jobs queue's depth is read for `/metrics` (one passive declare each time).
const QUEUE_DEPTH_EVERY: Duration = Duration::from_secs(5);

pub struct ConsumerApp {
    worker: Arc<Worker>,
    /// The broker, reached again after an outage.
    endpoint: Endpoint,
    topology: Topology,
    sealer: Arc<dyn Sealer>,
    /// The connections opened at start-up (proof the broker is reachable), used by the first
    /// session.
    first: Option<Connections>,
    health: Arc<Health>,
    /// Taken when the metrics server starts.
    metrics_listener: Option<TcpListener>,
    metrics: Arc<Metrics>,
    /// Owns the metrics server and every job task.
    tracker: TaskTracker,
    /// Guards /metrics: monitor and admin tokens only.
    auth: Option<Arc<Authenticator>>,
    shutdown: CancellationToken,
    /// The prefetch, and the most jobs run at once.
    concurrency: u16,
    /// A job is only taken when the limiter has a permit free: at most `concurrency`, fewer
    /// while the LLM provider answers 429.
    limiter: Limiter,
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
        let mut vault = VaultSettings::from_args(
            &settings.vault,
            Duration::from_secs(settings.secret_cache_ttl_secs),
        )
        .map_err(anyhow::Error::msg)?;
        vault.max_staleness = settings.secret_max_staleness;
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
        let primary = settings.primary_llm().map_err(anyhow::Error::msg)?;
        let fallback = settings.fallback_llm().map_err(anyhow::Error::msg)?;
        let metrics = Arc::new(Metrics::new());
        let route = |target: &LlmTarget, role: KeyRole| -> anyhow::Result<Route> {
            Ok(Route {
                llm: LlmClient::new(
                    target.provider,
                    &target.base_url,
                    &target.model,
                    settings.llm_stream,
                )
                .context("could not build the LLM HTTP client")?,
                key_path: KvPath::parse(&target.key_path, &settings.llm_key_field)?,
                role,
            })
        };
        let primary = route(&primary, KeyRole::Primary)?;
        let fallback = fallback
            .map(|target| route(&target, KeyRole::Fallback))
            .transpose()?;
        // A wrong path or policy is a configuration error: say so now, once, and stop.
        for route in std::iter::once(&primary).chain(&fallback) {
            match secrets.read(&route.key_path).await {
                Ok(key) => {
                    metrics.note_key(route.role, &key);
                    tracing::info!(
                        path = %route.key_path,
                        version = key.version,
                        provider = route.llm.provider().as_str(),
                        model = route.llm.model(),
                        role = ?route.role,
                        "LLM key found in Vault"
                    );
                }
                Err(error) if error.is_transient() => {
                    tracing::warn!(%error, "Vault is not answering yet; jobs will retry reading the key");
                }
                Err(error) => {
                    let which = match route.role {
                        KeyRole::Primary => "cannot read the LLM key",
                        KeyRole::Fallback => "cannot read the fallback LLM key",
                    };
                    return Err(error).context(which);
                }
            }
        }

        let templates = Templates::new(&settings.prompt_version).await?;
        tracing::info!(version = %templates.current().await?.version, "Prompt template ready");

        let endpoint = Endpoint::from_settings(&settings.broker)?;
        let connections = Connections::open(&endpoint, PROCESS, BROKER_TIMEOUT)
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
        if let Err(error) = sealer.check_unwrap().await {
            tracing::warn!(
                %error,
                mount = %settings.vault.transit_mount,
                key = %settings.vault.payload_key,
                "The payload key is not usable: sealed jobs will wait until it is (letterbox-admin setup creates it)"
            );
        }
        let sealer: Arc<dyn Sealer> = Arc::new(sealer);
        // Declared now, so a queue declared elsewhere with other arguments is a start-up error.
        let channel = connections.publish.create_channel().await?;
        topology
            .declare(&channel)
            .await
            .context("could not declare the jobs queue")?;
        let _ = channel.close(200, "declared".into()).await;

        let limiter = Limiter::new(
            usize::from(settings.concurrency),
            settings.adaptive_concurrency,
        );
        let worker = Arc::new(Worker {
            secrets,
            primary,
            fallback,
            templates,
            metrics: Arc::clone(&metrics),
            llm_timeout: Duration::from_millis(settings.llm_timeout_ms),
            require_sealed: settings.tokens.auth == letterbox_vault::auth::AuthMode::Tokens,
            max_attempts: settings.llm_max_attempts,
            max_deliveries: settings.broker.max_deliveries,
            work_budget_ms: settings.broker_ack_timeout_ms.saturating_sub(60_000),
            answered: crate::worker::AnsweredJobs::default(),
            limiter: limiter.clone(),
        });
        let metrics_listener = TcpListener::bind(settings.metrics_addr)
            .await
            .with_context(|| format!("could not listen on {}", settings.metrics_addr))?;
        Ok(Self {
            worker,
            endpoint,
            topology,
            sealer,
            first: Some(connections),
            health: Arc::new(Health::default()),
            metrics_listener: Some(metrics_listener),
            metrics,
            tracker,
            auth,
            shutdown,
            concurrency: settings.concurrency,
            limiter,
            grace: Duration::from_millis(settings.shutdown_grace_ms),
        })
    }

    pub fn metrics_addr(&self) -> std::io::Result<SocketAddr> {
        match &self.metrics_listener {
            Some(listener) => listener.local_addr(),
            None => Err(std::io::Error::other("the metrics server has started")),
        }
    }

    /// Takes jobs until the shutdown token fires; then stops taking, gives in-flight jobs the
    /// grace period to finish, and closes the connections (the broker requeues anything unacked).
    /// A lost broker connection is reopened with backoff; jobs in flight on it are redelivered
    /// by the broker, to this worker or another.
    pub async fn run_until_stopped(mut self) -> anyhow::Result<()> {
        let metrics_router = Router::new()
            .route(
                "/healthz",
                get(|| async { Json(json!({ "status": "ok" })) }),
            )
            .route("/readyz", get(readyz))
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
                    Json(json!({"error": {"code": "not_found", "message": "this port serves /healthz, /readyz and /metrics"}})),
                )
            })
            .with_state((
                Arc::clone(&self.metrics),
                self.limiter.clone(),
                Arc::clone(&self.health),
            ));
        let metrics_shutdown = self.shutdown.clone();
        let listener = self
            .metrics_listener
            .take()
            .context("the worker was already started")?;
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

        // A worker that cannot read the LLM key takes no job: another worker may be able to.
        if !self.wait_for_key().await {
            return self.finish(None, None, Ok(())).await;
        }

        let mut connections = self.first.take();
        let mut attempt = 0_u32;
        loop {
            let session = match connections.take() {
                Some(open) => self.open_session(open).await,
                None => match Connections::open(&self.endpoint, PROCESS, BROKER_TIMEOUT).await {
                    Ok(open) => self.open_session(open).await,
                    Err(error) => Err(error.into()),
                },
            };
            let (open, replier, mut stream) = match session {
                Ok(session) => session,
                Err(error) => {
                    tracing::warn!(error = %format!("{error:#}"), attempt = attempt + 1, "Could not reach the broker yet; retrying");
                    let delay = RECONNECT.delay(attempt);
                    attempt = attempt.saturating_add(1);
                    tokio::select! {
                        () = self.shutdown.cancelled() => return self.finish(None, None, Ok(())).await,
                        () = tokio::time::sleep(delay) => continue,
                    }
                }
            };
            if attempt > 0 {
                tracing::info!(attempts = attempt, "Reconnected to the broker");
            }
            self.health.broker.store(true, Ordering::Release);
            tracing::info!(
                concurrency = self.concurrency,
                limit = self.limiter.limit(),
                "Taking jobs"
            );
            // Ends with this session: the next one reads the depth on its own channel.
            let session = self.shutdown.child_token();
            let _end_probe = session.clone().drop_guard();
            self.tracker.spawn(watch_depth(
                stream.depth_probe(),
                Arc::clone(&self.metrics),
                session,
            ));
            let replier = Arc::new(replier);
            let max_deliveries = self.topology.delivery_limit;
            let ended = loop {
                let permit = tokio::select! {
                    () = self.shutdown.cancelled() => break None,
                    permit = self.limiter.acquire() => permit?,
                };
                let delivery = tokio::select! {
                    () = self.shutdown.cancelled() => break None,
                    delivery = stream.next() => delivery,
                };
                match delivery {
                    Some(Ok(delivery)) => {
                        let worker = Arc::clone(&self.worker);
                        let replier = Arc::clone(&replier);
                        self.tracker.spawn(async move {
                            let disposition = worker.process(&delivery, &replier).await;
                            settle(&delivery, disposition, &replier, max_deliveries).await;
                            drop(permit);
                        });
                    }
                    Some(Err(error)) => break Some(error.to_string()),
                    None => break Some("the broker ended the subscription".to_owned()),
                }
            };
            let Some(reason) = ended else {
                return self
                    .finish(Some((open, replier)), Some(stream), Ok(()))
                    .await;
            };
            self.health.broker.store(false, Ordering::Release);
            tracing::warn!(%reason, "Lost the broker connection; jobs in flight go back to the queue, reconnecting");
            // Bounded: a dead broker must not hold the reconnection up.
            let _ = tokio::time::timeout(BROKER_TIMEOUT, stream.close()).await;
            let _ = tokio::time::timeout(BROKER_TIMEOUT, replier.close()).await;
            let _ = tokio::time::timeout(BROKER_TIMEOUT, open.close()).await;
            tokio::select! {
                () = self.shutdown.cancelled() => return self.finish(None, None, Ok(())).await,
                () = tokio::time::sleep(RECONNECT.delay(0)) => {}
            }
            attempt = 1;
        }
    }

    /// Replier and subscription on `connections`.
    async fn open_session(
        &self,
        connections: Connections,
    ) -> anyhow::Result<(Connections, Replier, JobStream)> {
        let opened = async {
            let replier = Replier::open(
                &connections.publish,
                Arc::clone(&self.sealer),
                BROKER_TIMEOUT,
                &self.topology,
            )
            .await?;
            let stream = JobStream::open(
                &connections.consume,
                Arc::clone(&self.sealer),
                &self.topology,
                self.concurrency,
                "",
            )
            .await?;
            anyhow::Ok((replier, stream))
        }
        .await;
        match opened {
            Ok((replier, stream)) => Ok((connections, replier, stream)),
            Err(error) => {
                let _ = tokio::time::timeout(BROKER_TIMEOUT, connections.close()).await;
                Err(error.context("could not subscribe to the jobs queue"))
            }
        }
    }

    /// Waits until the LLM key can be read (at once, normally); false when shut down first.
    async fn wait_for_key(&self) -> bool {
        let mut reported = false;
        loop {
            match self
                .worker
                .secrets
                .read(&self.worker.primary.key_path)
                .await
            {
                Ok(key) => {
                    self.metrics.note_key(KeyRole::Primary, &key);
                    self.health.key.store(true, Ordering::Release);
                    if reported {
                        tracing::info!("The LLM key is readable now; taking jobs");
                    }
                    return true;
                }
                Err(error) => {
                    if !reported {
                        tracing::warn!(%error, "Cannot read the LLM key yet: not ready, taking no jobs, retrying every 2 s");
                        reported = true;
                    }
                }
            }
            tokio::select! {
                () = self.shutdown.cancelled() => return false,
                () = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    }

    /// Stops taking jobs, gives those in flight the grace period, closes everything.
    async fn finish(
        self,
        session: Option<(Connections, Arc<Replier>)>,
        stream: Option<JobStream>,
        result: anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        self.health.broker.store(false, Ordering::Release);
        if let Some(stream) = &stream {
            let _ = tokio::time::timeout(BROKER_TIMEOUT, stream.cancel()).await;
        }
        self.shutdown.cancel();
        self.tracker.close();
        if tokio::time::timeout(self.grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("Shutdown grace period over; unfinished jobs go back to the queue");
        }
        if let Some(stream) = &stream {
            let _ = tokio::time::timeout(BROKER_TIMEOUT, stream.close()).await;
        }
        if let Some((connections, replier)) = session {
            let _ = tokio::time::timeout(BROKER_TIMEOUT, replier.close()).await;
            let _ = tokio::time::timeout(BROKER_TIMEOUT, connections.close()).await;
        } else if let Some(connections) = &self.first {
            let _ = tokio::time::timeout(BROKER_TIMEOUT, connections.close()).await;
        }
        result
    }
}

/// What `/readyz` reports: ready while subscribed to the broker with the LLM key in hand.
#[derive(Default)]
pub struct Health {
    broker: AtomicBool,
    key: AtomicBool,
}

async fn readyz(State((_, _, health)): State<(Arc<Metrics>, Limiter, Arc<Health>)>) -> Response {
    let (broker, key) = (
        health.broker.load(Ordering::Acquire),
        health.key.load(Ordering::Acquire),
    );
    if broker && key {
        return Json(json!({ "status": "ready" })).into_response();
    }
    let message = match (broker, key) {
        (_, false) => "the LLM key cannot be read from Vault yet",
        _ => "the broker connection is down; reconnecting",
    };
    let mut response = (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"error": {"code": "not_ready", "message": message}})),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

async fn require_monitor(
    State(auth): State<Option<Arc<Authenticator>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(auth) = auth else {
        return next.run(request).await;
    };
    let values = request.headers().get_all(header::AUTHORIZATION);
    let authorization =
        letterbox_vault::auth::sole_authorization(values.iter().map(HeaderValue::as_bytes));
    let checked = authorization
        .and_then(|value| auth.check(value, Role::Monitor, letterbox::time::now_ms() / 1000));
    match checked {
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
    State((metrics, limiter, _)): State<(Arc<Metrics>, Limiter, Arc<Health>)>,
) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)],
        metrics.render(limiter.max(), limiter.limit()),
    )
}

/// Reads the jobs queue's depth into the metrics every few seconds until `stop`: cheap enough to
/// leave on, and no cost per job.
async fn watch_depth(probe: QueueDepth, metrics: Arc<Metrics>, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(QUEUE_DEPTH_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        match tokio::time::timeout(BROKER_TIMEOUT, probe.ready()).await {
            Ok(Ok(ready)) => metrics.queue_depth.set(i64::from(ready)),
            // The session is ending; the next one reads it again.
            Ok(Err(error)) => tracing::debug!(%error, "Could not read the queue depth"),
            Err(_) => tracing::debug!("Reading the queue depth timed out"),
        }
    }
}
