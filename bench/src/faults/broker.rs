//! A RabbitMQ node of the suite's own, so it can be restarted under load without touching the
//! broker other work shares. It is started as `tests/integration/transport.rs` starts its TLS
//! node: `rabbitmq-server -detached` with every path in a directory the `rabbitmq` user (the node
//! runs as that user) may write, a plain loopback listener, and its own node name and ports.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties};
use tokio::process::Command;

use super::{free_port, wait_for_port};

/// A node boots in about ten seconds on two cores; this is for a slow machine.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// The longest a `rabbitmqctl` command or an AMQP operation of the suite may take.
const CTL_TIMEOUT: Duration = Duration::from_secs(60);

pub struct PrivateBroker {
    node: String,
    port: u16,
    dir: PathBuf,
}

impl PrivateBroker {
    /// Starts the node with its files in `dir` (created world-writable) and waits until it
    /// accepts AMQP connections.
    pub async fn start(dir: &Path) -> anyhow::Result<Self> {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("could not create {}", dir.display()))?;
        // The node runs as the rabbitmq user: it must be able to write here.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))?;
        let port = free_port()?;
        let node = format!("letterbox-faults-{}@localhost", std::process::id());
        let config = dir.join("rabbitmq.conf");
        std::fs::write(
            &config,
            format!("listeners.tcp.default = 127.0.0.1:{port}\nloopback_users = none\n"),
        )?;
        let plugins = dir.join("enabled_plugins");
        std::fs::write(&plugins, "[].\n")?;
        let status = Command::new("rabbitmq-server")
            .arg("-detached")
            .env("RABBITMQ_NODENAME", &node)
            .env("RABBITMQ_DIST_PORT", free_port()?.to_string())
            .env("RABBITMQ_CONFIG_FILE", &config)
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", &plugins)
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_PID_FILE", dir.join("rabbitmq.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .context("rabbitmq-server is not installed: run script/faults, which installs it")?;
        anyhow::ensure!(status.success(), "rabbitmq-server -detached failed");
        let broker = Self {
            node,
            port,
            dir: dir.to_owned(),
        };
        wait_for_port(port, START_TIMEOUT)
            .await
            .with_context(|| format!("the RabbitMQ node did not start: see {}", broker.logs()))?;
        broker.ctl(&["await_startup"]).await?;
        Ok(broker)
    }

    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    fn logs(&self) -> String {
        self.dir.join("log").display().to_string()
    }

    /// Stops the RabbitMQ application (every connection drops; the node and its data stay).
    pub async fn stop_app(&self) -> anyhow::Result<()> {
        self.ctl(&["stop_app"]).await
    }

    /// Starts the application again and waits until it accepts connections.
    pub async fn start_app(&self) -> anyhow::Result<()> {
        self.ctl(&["start_app"]).await?;
        wait_for_port(self.port, START_TIMEOUT).await
    }

    async fn ctl(&self, args: &[&str]) -> anyhow::Result<()> {
        let run = Command::new("rabbitmqctl")
            .arg("-n")
            .arg(&self.node)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(CTL_TIMEOUT, run)
            .await
            .with_context(|| format!("rabbitmqctl {} timed out", args.join(" ")))?
            .context("could not run rabbitmqctl")?;
        anyhow::ensure!(
            output.status.success(),
            "rabbitmqctl -n {} {} failed: {}",
            self.node,
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Ok(())
    }

    /// A new AMQP connection to the node.
    pub async fn connect(&self) -> anyhow::Result<Connection> {
        tokio::time::timeout(
            CTL_TIMEOUT,
            Connection::connect(&self.amqp_url(), ConnectionProperties::default()),
        )
        .await
        .context("connecting to the suite's RabbitMQ node timed out")?
        .context("could not connect to the suite's RabbitMQ node")
    }

    /// Messages ready in `queue` (not those delivered and unacknowledged).
    pub async fn ready_messages(&self, queue: &str) -> anyhow::Result<u32> {
        let connection = self.connect().await?;
        let depth = async {
            let channel = connection.create_channel().await?;
            let declared = channel
                .queue_declare(
                    queue.into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            // Channel first: closing the connection under an open channel logs an error.
            let _ = channel.close(200, "done".into()).await;
            Ok::<_, lapin::Error>(declared.message_count())
        }
        .await;
        let _ = connection.close(200, "done".into()).await;
        depth.with_context(|| format!("could not read the depth of {queue}"))
    }
}

/// Publishes `payload` straight onto `queue` through the default exchange, with confirms, as
/// anyone holding broker credentials could.
pub async fn publish_raw(
    connection: &Connection,
    queue: &str,
    payload: &[u8],
    properties: BasicProperties,
) -> anyhow::Result<()> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let confirm = channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            payload,
            properties,
        )
        .await?;
    let confirmation = tokio::time::timeout(CTL_TIMEOUT, confirm)
        .await
        .context("the broker did not confirm a raw publish")??;
    let _ = channel.close(200, "done".into()).await;
    anyhow::ensure!(
        matches!(confirmation, Confirmation::Ack(None)),
        "the broker refused a raw publish to {queue}: {confirmation:?}"
    );
    Ok(())
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        // Synchronous on purpose: this also runs while a failed suite unwinds.
        let stopped = std::process::Command::new("rabbitmqctl")
            .args(["-n", &self.node, "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !stopped.is_ok_and(|status| status.success()) {
            tracing::warn!(node = %self.node, "Could not stop the suite's RabbitMQ node");
        }
    }
}
