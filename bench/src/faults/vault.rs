//! An OpenBao dev server of the suite's own, prepared as an operator prepares a Vault for
//! Letterbox: `letterbox-admin setup` for the policies and AppRoles, the LLM key written with
//! `bao kv put`, a `submit` token made with the admin AppRole.
//!
//! A dev server keeps everything in memory, so "Vault is down" is simulated with SIGSTOP: the
//! port stays open and nothing answers, as with a hung server, and SIGCONT brings it back whole.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use letterbox::env;
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;
use tokio::process::{Child, Command};

use super::fleet::AppRole;
use super::{free_port, send_signal};

const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct DevVault {
    bao: PathBuf,
    child: Child,
    pid: u32,
    addr: String,
    root_token: String,
    paused: bool,
}

/// What the suite's processes and clients are given.
pub struct Provisioned {
    pub producer: AppRole,
    pub consumer: AppRole,
    pub submit_token: String,
}

impl DevVault {
    pub async fn start(bao: &Path, log: &Path) -> anyhow::Result<Self> {
        // A dev server also binds its cluster port, the next one: both must be free.
        let port = loop {
            let port = free_port()?;
            if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
                break port;
            }
        };
        let addr = format!("http://127.0.0.1:{port}");
        let root_token = format!("faults-root-{}", uuid::Uuid::new_v4().simple());
        let file = std::fs::File::create(log)
            .with_context(|| format!("could not create {}", log.display()))?;
        let child = Command::new(bao)
            .arg("server")
            .arg("-dev")
            .arg(format!("-dev-root-token-id={root_token}"))
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            // Leave the caller's ~/.vault-token alone.
            .arg("-dev-no-store-token")
            .env_clear()
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "could not start {}: run script/faults, which installs OpenBao",
                    bao.display()
                )
            })?;
        let pid = child.id().context("the OpenBao server exited at once")?;
        let vault = Self {
            bao: bao.to_owned(),
            child,
            pid,
            addr,
            root_token,
            paused: false,
        };
        vault.wait_until_unsealed().await?;
        Ok(vault)
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    async fn wait_until_unsealed(&self) -> anyhow::Result<()> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(1))
            .build()?;
        let health = format!("{}/v1/sys/health", self.addr);
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        while tokio::time::Instant::now() < deadline {
            let answered = http.get(&health).send().await;
            if answered.is_ok_and(|response| response.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("the OpenBao dev server at {} did not come up", self.addr)
    }

    /// Freezes the server (SIGSTOP): connections are accepted, nothing is answered.
    pub async fn pause(&mut self) -> anyhow::Result<()> {
        send_signal(self.pid, "STOP").await?;
        self.paused = true;
        Ok(())
    }

    /// Thaws a frozen server (SIGCONT); nothing is lost.
    pub async fn resume(&mut self) -> anyhow::Result<()> {
        if self.paused {
            send_signal(self.pid, "CONT").await?;
            self.paused = false;
        }
        Ok(())
    }

    /// Prepares the server and returns the credentials of the producer, the consumer and a
    /// client, with `llm_key` stored where the workers read it.
    pub async fn provision(&self, bin_dir: &Path, llm_key: &str) -> anyhow::Result<Provisioned> {
        // The default limit (60/min) is for a client, not for a load test.
        self.provision_with_rate(bin_dir, llm_key, "100000/min")
            .await
    }

    /// [`DevVault::provision`] with the `submit` token limited to `rate` (`N/min`, `N/s`).
    pub async fn provision_with_rate(
        &self,
        bin_dir: &Path,
        llm_key: &str,
        rate: &str,
    ) -> anyhow::Result<Provisioned> {
        let root = [
            (env::VAULT_ADDR, self.addr.clone()),
            (env::VAULT_TOKEN, self.root_token.clone()),
        ];
        let setup = run(
            &bin_dir.join("letterbox-admin"),
            &["setup", "--json"],
            &root,
            None,
        )
        .await
        .context("letterbox-admin setup failed")?;
        let setup: Value = serde_json::from_str(&setup).context("unexpected setup output")?;
        let role = |process: &str| -> anyhow::Result<AppRole> {
            let field = |name: &str| {
                setup["roles"][process][name]
                    .as_str()
                    .map(str::to_owned)
                    .with_context(|| format!("setup printed no {name} for {process}"))
            };
            Ok(AppRole {
                role_id: field("role_id")?,
                secret_id: field("secret_id")?,
            })
        };
        let (producer, consumer, admin) = (role("producer")?, role("consumer")?, role("admin")?);

        // The key goes in on stdin, never on a command line.
        run(
            &self.bao,
            &["kv", "put", "-mount=secret", "letterbox/llm", "api_key=-"],
            &root,
            Some(llm_key),
        )
        .await
        .context("could not write the LLM key")?;

        let admin_env = [
            (env::VAULT_ADDR, self.addr.clone()),
            (env::VAULT_ROLE_ID, admin.role_id),
            (env::VAULT_SECRET_ID, admin.secret_id),
        ];
        let created = run(
            &bin_dir.join("letterbox-admin"),
            &[
                "tokens", "create", "--role", "submit", "--name", "faults", "--ttl", "1h",
                "--rate", rate, "--json",
            ],
            &admin_env,
            None,
        )
        .await
        .context("letterbox-admin tokens create failed")?;
        let created: Value = serde_json::from_str(&created).context("unexpected token output")?;
        let submit_token = created["token"]
            .as_str()
            .context("tokens create printed no token")?
            .to_owned();
        Ok(Provisioned {
            producer,
            consumer,
            submit_token,
        })
    }
}

impl Drop for DevVault {
    fn drop(&mut self) {
        // SIGKILL (from kill_on_drop) ends a stopped process too; nothing to thaw first.
        let _ = self.child.start_kill();
    }
}

/// Runs a command with only `env`, feeding it `stdin`; its stdout, or an error with its stderr.
async fn run(
    program: &Path,
    args: &[&str],
    env: &[(&str, String)],
    stdin: Option<&str>,
) -> anyhow::Result<String> {
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("could not run {}", program.display()))?;
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(stdin.unwrap_or_default().as_bytes()).await?;
    }
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .with_context(|| format!("{} did not finish within 60 s", program.display()))??;
    anyhow::ensure!(
        output.status.success(),
        "{} {} failed: {}",
        program.display(),
        args.first().copied().unwrap_or_default(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
