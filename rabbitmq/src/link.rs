//! The ingress's link to the broker, which heals itself.
//!
//! A `SubmitLink` holds the current session (two connections, the publishing channel and the
//! reply router) and a task that watches it. When the broker goes away the session is dropped at
//! once, so requests are refused with a clear 503 instead of waiting on a dead socket, every
//! request waiting for a reply learns its reply is lost, and new sessions are tried with
//! exponential backoff until one opens.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use letterbox::Job;
use letterbox::backoff::Backoff;
use letterbox::sealing::Sealer;
use letterbox::shutdown::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{BrokerError, Connections, Endpoint, JobSubmitter, PendingReply, Topology};

/// Waits between reconnection attempts: from a quarter second up to five seconds.
const RECONNECT: Backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
/// How often the session's health is looked at.
const WATCH_EVERY: Duration = Duration::from_millis(100);

struct Session {
    connections: Connections,
    submitter: JobSubmitter,
    /// Stops this session's reply router.
    stop: CancellationToken,
}

impl Session {
    fn is_up(&self) -> bool {
        self.submitter.is_ready()
            && self.connections.publish.status().connected()
            && self.connections.consume.status().connected()
    }

    /// Closes the publishing channel, stops the reply router and closes both connections, each
    /// step bounded: a dead broker must not hold up a reconnection or a shutdown.
    async fn close(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.submitter.close()).await;
        self.stop.cancel();
        let _ = tokio::time::timeout(timeout, self.connections.close()).await;
    }
}

pub struct SubmitLink {
    current: RwLock<Option<Arc<Session>>>,
    endpoint: Endpoint,
    process: String,
    sealer: Option<Arc<dyn Sealer>>,
    topology: Topology,
    timeout: Duration,
    tracker: TaskTracker,
    /// Stops the watcher and every session's router.
    shutdown: CancellationToken,
}

impl SubmitLink {
    /// Opens the first session (an error here is the caller's to report: a wrong URL, a
    /// certificate, a topology mismatch) and starts the watcher on `tracker`.
    pub async fn start(
        endpoint: Endpoint,
        process: &str,
        sealer: Option<Arc<dyn Sealer>>,
        topology: Topology,
        timeout: Duration,
        tracker: &TaskTracker,
    ) -> Result<Arc<Self>, BrokerError> {
        let link = Arc::new(Self {
            current: RwLock::new(None),
            endpoint,
            process: process.to_owned(),
            sealer,
            topology,
            timeout,
            tracker: tracker.clone(),
            shutdown: CancellationToken::new(),
        });
        let session = link.open_session().await?;
        *link.write() = Some(Arc::new(session));
        let watcher = Arc::clone(&link);
        tracker.spawn(async move { watcher.watch().await });
        Ok(link)
    }

    async fn open_session(&self) -> Result<Session, BrokerError> {
        let connections = Connections::open(&self.endpoint, &self.process, self.timeout).await?;
        let stop = self.shutdown.child_token();
        let submitter = JobSubmitter::start(
            &connections,
            self.sealer.clone(),
            self.topology.clone(),
            self.timeout,
            &self.tracker,
            stop.clone(),
        )
        .await;
        match submitter {
            Ok(submitter) => Ok(Session {
                connections,
                submitter,
                stop,
            }),
            Err(error) => {
                let _ = tokio::time::timeout(self.timeout, connections.close()).await;
                Err(error)
            }
        }
    }

    async fn watch(self: Arc<Self>) {
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep(WATCH_EVERY) => {}
            }
            let lost = match self.session() {
                Some(session) if !session.is_up() => Some(session),
                _ => None,
            };
            let Some(lost) = lost else { continue };
            tracing::warn!("Lost the connection to the broker; refusing new jobs and reconnecting");
            *self.write() = None;
            lost.close(Duration::from_secs(1)).await;
            drop(lost);
            let mut attempt = 0;
            loop {
                tokio::select! {
                    () = self.shutdown.cancelled() => return,
                    () = tokio::time::sleep(RECONNECT.delay(attempt)) => {}
                }
                match self.open_session().await {
                    Ok(session) => {
                        tracing::info!(attempts = attempt + 1, "Reconnected to the broker");
                        *self.write() = Some(Arc::new(session));
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(%error, attempt = attempt + 1, "Could not reconnect to the broker yet");
                        attempt = attempt.saturating_add(1);
                    }
                }
            }
        }
    }

    fn session(&self) -> Option<Arc<Session>> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Option<Arc<Session>>> {
        self.current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Publishes `job` on the current session; `Disconnected` at once while there is none.
    pub async fn submit(&self, job: &Job) -> Result<PendingReply, BrokerError> {
        let session = self.session().ok_or(BrokerError::Disconnected)?;
        session.submitter.submit(job).await
    }

    /// Ready while a session is up.
    pub fn is_ready(&self) -> bool {
        self.session().is_some_and(|session| session.is_up())
    }

    /// Requests waiting for a reply on the current session.
    pub fn waiting(&self) -> usize {
        self.session()
            .map_or(0, |session| session.submitter.waiting())
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Stops reconnecting, closes the publishing channel and stops the reply router; wait for the
    /// tracker's tasks, then call `close_connections`.
    pub async fn stop(&self) {
        self.shutdown.cancel();
        if let Some(session) = self.session() {
            let _ = tokio::time::timeout(self.timeout, session.submitter.close()).await;
            session.stop.cancel();
        }
    }

    pub async fn close_connections(&self) {
        let session = self.write().take();
        if let Some(session) = session {
            let _ = tokio::time::timeout(self.timeout, session.connections.close()).await;
        }
    }
}
