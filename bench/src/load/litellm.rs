//! LiteLLM's proxy, the peer: the pinned version `bench/litellm/install` puts in
//! `bench/.litellm-venv`, on loopback, in front of the bench's stub, with a master key made up
//! for the run (never a real provider key). Its config lives in the run's directory.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::process::{Child, Command};

use crate::faults::free_port;

/// LiteLLM imports a lot of Python before it listens.
const START_TIMEOUT: Duration = Duration::from_secs(180);

pub struct LiteLlm {
    child: Child,
    pid: u32,
    port: u16,
    master_key: String,
}

impl LiteLlm {
    /// The proxy's executable in `venv`, or why it is not there.
    pub fn executable(venv: &Path) -> anyhow::Result<PathBuf> {
        let path = venv.join("bin/litellm");
        anyhow::ensure!(
            path.is_file(),
            "{} is missing: run bench/litellm/install",
            path.display()
        );
        Ok(path)
    }

    /// Starts `workers` proxy processes in front of `stub_base_url` (`http://…/v1`), serving
    /// `model`, and waits until they answer.
    pub async fn start(
        venv: &Path,
        dir: &Path,
        stub_base_url: &str,
        stub_key: &str,
        model: &str,
        workers: usize,
    ) -> anyhow::Result<Self> {
        let executable = Self::executable(venv)?;
        let port = free_port()?;
        let master_key = format!("sk-bench-{}", uuid::Uuid::new_v4().simple());
        let config = dir.join("litellm.yaml");
        std::fs::write(&config, config_yaml(model, stub_base_url, stub_key))
            .with_context(|| format!("could not write {}", config.display()))?;
        let log = dir.join("logs/litellm.log");
        let file = std::fs::File::create(&log)
            .with_context(|| format!("could not create {}", log.display()))?;
        let child = Command::new(&executable)
            .arg("--config")
            .arg(&config)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--num_workers", &workers.to_string()])
            .env_clear()
            .env("PATH", venv.join("bin"))
            .env("HOME", dir)
            .env("LITELLM_MASTER_KEY", &master_key)
            // Offline and quiet: the local price list, no telemetry, errors only in the log.
            .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            .env("LITELLM_TELEMETRY", "False")
            .env("LITELLM_LOG", "ERROR")
            .env("NO_DOCS", "True")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("could not start {}", executable.display()))?;
        let pid = child.id().context("the LiteLLM proxy exited at once")?;
        let proxy = Self {
            child,
            pid,
            port,
            master_key,
        };
        proxy.wait_until_ready(&log).await?;
        Ok(proxy)
    }

    /// The OpenAI base URL of the proxy.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    pub fn master_key(&self) -> &str {
        &self.master_key
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    async fn wait_until_ready(&self, log: &Path) -> anyhow::Result<()> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let url = format!("http://127.0.0.1:{}/health/liveliness", self.port);
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            let answered = http.get(&url).send().await;
            if answered.is_ok_and(|response| response.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        anyhow::bail!(
            "the LiteLLM proxy did not answer within {} s: see {}",
            START_TIMEOUT.as_secs(),
            log.display()
        )
    }

    /// Stops the proxy and its workers.
    pub async fn stop(mut self) {
        let _ = crate::faults::send_signal(self.pid, "TERM").await;
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// One model, the stub, with the stub's key; LiteLLM's own retries off, so each request is one
/// call, as it is for the other systems.
fn config_yaml(model: &str, stub_base_url: &str, stub_key: &str) -> String {
    format!(
        "model_list:\n\
         \x20 - model_name: {model}\n\
         \x20   litellm_params:\n\
         \x20     model: openai/{model}\n\
         \x20     api_base: {stub_base_url}\n\
         \x20     api_key: {stub_key}\n\
         litellm_settings:\n\
         \x20 num_retries: 0\n\
         \x20 request_timeout: 600\n\
         \x20 telemetry: false\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_names_only_the_stub() {
        assert_eq!(
            config_yaml("stub-1", "http://127.0.0.1:9/v1", "k"),
            "model_list:\n  - model_name: stub-1\n    litellm_params:\n      model: openai/stub-1\n      api_base: http://127.0.0.1:9/v1\n      api_key: k\nlitellm_settings:\n  num_retries: 0\n  request_timeout: 600\n  telemetry: false\n"
        );
    }
}
