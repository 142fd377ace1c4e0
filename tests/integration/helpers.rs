//! Test harness: every test gets its own jobs queue, its own secret path in Vault, its own stub
//! LLM and its own ingress and workers, all on free ports, against the real RabbitMQ and the real
//! OpenBao/Vault server that `script/test` starts. Nothing is faked but the paid LLM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use letterbox::settings::VaultArgs;
use letterbox::shutdown::CancellationToken;
use letterbox_bench::stub::{self, Failure, Latency, RateLimit, StubConfig, StubHandle};
use letterbox_consumer::{ConsumerApp, ConsumerSettings, LlmProvider};
use letterbox_producer::{Application, ProducerSettings};
use letterbox_rabbitmq::Topology;
use letterbox_vault::auth::{AuthMode, TokenArgs};
use letterbox_vault::tokens::{self, Rate, Role};
use letterbox_vault::{SecretStore, TokensPath, VaultSettings};
use secrecy::SecretString;
use serde_json::Value;
use tokio::task::JoinHandle;
use uuid::Uuid;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};

pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// The Vault address and a token that may write `secret/`; `script/test` provides both.
pub fn vault() -> (String, String) {
    let addr = std::env::var("VAULT_ADDR").unwrap_or_else(|_| "http://127.0.0.1:8200".to_owned());
    let token = std::env::var("VAULT_TOKEN")
        .expect("VAULT_TOKEN is not set: run the tests with script/test, which starts OpenBao");
    (addr, token)
}

pub fn vault_client() -> VaultClient {
    letterbox::install_crypto_provider();
    let (addr, token) = vault();
    VaultClient::new(
        VaultClientSettingsBuilder::default()
            .address(addr)
            .token(token)
            .build()
            .unwrap(),
    )
    .unwrap()
}

/// Writes `{api_key: key}` at `secret/<path>`.
pub async fn put_key(path: &str, key: &str) {
    let data = std::collections::HashMap::from([("api_key", key)]);
    vaultrs::kv2::set(&vault_client(), "secret", path, &data)
        .await
        .expect("could not write to Vault: is script/test's OpenBao running?");
}

pub async fn delete_secret(path: &str) {
    let _ = vaultrs::kv2::delete_metadata(&vault_client(), "secret", path).await;
}

/// The third-party documents in `shared/corpus` beside the repository.
pub fn corpus(name: &str) -> Vec<u8> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus"));
    let path = dir.join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

pub fn example(name: &str) -> Vec<u8> {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples")).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A free loopback port (bound and released; the race is acceptable for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Options {
    pub consumers: usize,
    /// The key the stub accepts.
    pub stub_key: String,
    /// The key written to Vault (normally the same).
    pub vault_key: String,
    pub latency: Duration,
    pub failure: Option<Failure>,
    /// The stub's rate limit (none when `None`).
    pub rate_limit: Option<RateLimit>,
    pub job_timeout_ms: u64,
    pub concurrency: u16,
    pub max_upload_bytes: usize,
    pub queue_max_length: u32,
    pub secret_cache_ttl_secs: u64,
    /// The submit token's rate limit (the default, 60/min, when `None`).
    pub rate: Option<Rate>,
    /// Serve the API over HTTPS: certificate file, key file, minimum version, and the CA the
    /// test's client trusts.
    pub tls: Option<Tls>,
    /// The development setup: no client tokens, and an ingress without Vault credentials.
    pub open: bool,
    pub header_timeout_ms: u64,
    /// Another broker than the shared one (a private node a test may restart).
    pub amqp_url: Option<String>,
    /// The workers' `LETTERBOX_LLM_STREAM`.
    pub llm_stream: bool,
    /// The webhook signing key put into Vault (at `<key_path>-webhook`); none when `None`.
    pub webhook_key: Option<String>,
    /// The ingress's `LETTERBOX_WEBHOOK_ALLOW_PRIVATE`.
    pub webhook_allow_private: bool,
    /// The workers' `LLM_PROVIDER` (the stub speaks both APIs).
    pub provider: LlmProvider,
    /// The workers' `LLM_BASE_URL` instead of the stub's (one nobody listens on, say).
    pub llm_base_url: Option<String>,
    /// A second stub as the workers' fallback provider, with its own key in Vault.
    pub fallback: Option<Fallback>,
    /// The ingress's `LETTERBOX_SSE_KEEPALIVE_MS`.
    pub sse_keepalive_ms: u64,
    /// The ingress's `LETTERBOX_WEB_PAGE`.
    pub web_page: bool,
}

/// The fallback provider of a test: a stub of its own, reporting the model [`FALLBACK_MODEL`],
/// whose key is at `secret/<key path>-fallback`.
pub struct Fallback {
    pub provider: LlmProvider,
    pub failure: Option<Failure>,
}

/// The model the fallback stub reports, so a letter tells which provider wrote it.
pub const FALLBACK_MODEL: &str = "letterbox-stub-fallback";

pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub min_version: &'static str,
    pub ca_pem: String,
}

impl Default for Options {
    fn default() -> Self {
        let key = format!("stub-key-{}", Uuid::new_v4().simple());
        Self {
            consumers: 1,
            stub_key: key.clone(),
            vault_key: key,
            latency: Duration::ZERO,
            failure: None,
            rate_limit: None,
            job_timeout_ms: 15_000,
            concurrency: 8,
            max_upload_bytes: 10 * 1024 * 1024,
            queue_max_length: 10_000,
            secret_cache_ttl_secs: 300,
            rate: Some(Rate {
                requests: 1000,
                per_seconds: 1,
            }),
            tls: None,
            open: false,
            header_timeout_ms: 10_000,
            webhook_key: None,
            webhook_allow_private: false,
            sse_keepalive_ms: 5_000,
            web_page: false,
            amqp_url: None,
            llm_stream: true,
            provider: LlmProvider::OpenAi,
            llm_base_url: None,
            fallback: None,
        }
    }
}

impl Options {
    /// No in-process worker: the test starts its own, or none.
    pub fn without_workers() -> Self {
        Self {
            consumers: 0,
            ..Self::default()
        }
    }
}

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub stub: StubHandle,
    /// The fallback provider, when `Options::fallback` asked for one.
    pub fallback_stub: Option<StubHandle>,
    pub queue: String,
    pub key_path: String,
    pub consumer_metrics: Vec<SocketAddr>,
    /// Sent with every cover-letter request.
    pub submit_token: String,
    /// Sent with every `get_text`, which reads metrics.
    pub monitor_token: String,
    /// The LLM key the stub accepts and Vault holds.
    pub llm_key: String,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    letterbox::install_crypto_provider();
    letterbox::telemetry::init_tracing();
    let id = Uuid::new_v4().simple().to_string();
    let queue = format!("letterbox.test.{id}");
    let key_path = format!("letterbox-tests/{id}");
    put_key(&key_path, &options.vault_key).await;
    let submit_token = create_token(&key_path, Role::Submit, "3600s", options.rate).await;
    let monitor_token = create_token(&key_path, Role::Monitor, "3600s", None).await;

    let mut stub_config = StubConfig::new(options.stub_key.clone());
    stub_config.latency = Latency::Fixed(options.latency);
    stub_config.failure = options.failure;
    stub_config.rate_limit = options.rate_limit;
    let stub = stub::spawn(stub_config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let fallback_stub = match &options.fallback {
        Some(fallback) => {
            let key = format!("fallback-key-{}", Uuid::new_v4().simple());
            put_key(&fallback_key_path(&key_path), &key).await;
            let mut config = StubConfig::new(key);
            config.model = FALLBACK_MODEL.to_owned();
            config.failure = fallback.failure;
            Some(
                stub::spawn(config, "127.0.0.1:0".parse().unwrap())
                    .await
                    .unwrap(),
            )
        }
        None => None,
    };

    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();
    let mut consumer_metrics = Vec::new();
    for _ in 0..options.consumers {
        let base_url = options.llm_base_url.as_deref().unwrap_or(&stub.base_url);
        let mut settings = consumer_settings(&queue, &key_path, base_url, options.concurrency);
        settings.secret_cache_ttl_secs = options.secret_cache_ttl_secs;
        settings.llm_stream = options.llm_stream;
        settings.llm_provider = options.provider;
        if let (Some(fallback), Some(fallback_stub)) = (&options.fallback, &fallback_stub) {
            settings.llm_fallback_provider = Some(fallback.provider);
            settings.llm_fallback_base_url = Some(fallback_stub.base_url.clone());
            settings.llm_fallback_model = Some(FALLBACK_MODEL.to_owned());
            settings.llm_fallback_key_path =
                Some(format!("secret/{}", fallback_key_path(&key_path)));
        }
        if let Some(url) = &options.amqp_url {
            settings.broker.amqp_url = SecretString::from(url.clone());
        }
        if options.open {
            settings.tokens.auth = AuthMode::None;
        }
        let app = ConsumerApp::build(settings, shutdown.child_token())
            .await
            .unwrap();
        consumer_metrics.push(app.metrics_addr().unwrap());
        tasks.push(tokio::spawn(app.run_until_stopped()));
    }

    let mut settings = ProducerSettings::defaults();
    settings.http_addr = "127.0.0.1:0".parse().unwrap();
    settings.broker.amqp_url =
        SecretString::from(options.amqp_url.clone().unwrap_or_else(amqp_url));
    settings.broker.jobs_queue = queue.clone();
    settings.job_timeout_ms = options.job_timeout_ms;
    settings.max_upload_bytes = options.max_upload_bytes;
    settings.broker.queue_max_length = options.queue_max_length;
    settings.shutdown_grace_ms = 2_000;
    settings.header_timeout_ms = options.header_timeout_ms;
    settings.webhook_key_path = format!("secret/{key_path}-webhook");
    settings.webhook_allow_private = options.webhook_allow_private;
    settings.webhook_max_attempts = 4;
    settings.sse_keepalive_ms = options.sse_keepalive_ms;
    settings.web_page = options.web_page;
    if let Some(key) = &options.webhook_key {
        let data = std::collections::HashMap::from([("signing_key", key.as_str())]);
        vaultrs::kv2::set(
            &vault_client(),
            "secret",
            &format!("{key_path}-webhook"),
            &data,
        )
        .await
        .unwrap();
    }
    if options.open {
        settings.tokens.auth = AuthMode::None;
    } else {
        settings.vault = vault_args();
        settings.tokens = token_args(&key_path);
    }
    let mut http = reqwest::Client::builder();
    let scheme = if let Some(tls) = &options.tls {
        settings.tls_cert = Some(tls.cert.clone());
        settings.tls_key = Some(tls.key.clone());
        settings.tls_min_version = tls.min_version.to_owned();
        http = http
            .add_root_certificate(reqwest::Certificate::from_pem(tls.ca_pem.as_bytes()).unwrap());
        "https"
    } else {
        "http"
    };
    let app = Application::build(settings, shutdown.child_token())
        .await
        .unwrap();
    let base = format!("{scheme}://localhost:{}", app.local_addr().unwrap().port());
    tasks.push(tokio::spawn(app.run_until_stopped()));

    TestApp {
        base,
        http: http.build().unwrap(),
        stub,
        fallback_stub,
        queue,
        key_path,
        consumer_metrics,
        submit_token,
        monitor_token,
        llm_key: options.stub_key,
        shutdown,
        tasks,
    }
}

/// Where a test's fallback key lives, beside its LLM key.
pub fn fallback_key_path(key_path: &str) -> String {
    format!("{key_path}-fallback")
}

/// Vault options with the test server's root token.
pub fn vault_args() -> VaultArgs {
    let (vault_addr, vault_token) = vault();
    VaultArgs {
        vault_addr,
        vault_token: Some(SecretString::from(vault_token)),
        ..VaultArgs::default()
    }
}

/// Each test's tokens live beside its LLM key; records are reloaded every second.
pub fn token_args(key_path: &str) -> TokenArgs {
    TokenArgs {
        auth: AuthMode::Tokens,
        tokens_path: tokens_path(key_path),
        token_refresh_secs: 1,
        ..TokenArgs::default()
    }
}

pub fn tokens_path(key_path: &str) -> String {
    format!("secret/{key_path}-tokens")
}

/// A root-token client of the Vault adapter, for managing test tokens.
pub async fn admin_store() -> SecretStore {
    letterbox::install_crypto_provider();
    let settings =
        VaultSettings::from_args(&vault_args(), std::time::Duration::from_secs(1)).unwrap();
    SecretStore::connect(settings).await.unwrap()
}

/// Creates a token of `role` for the test whose key is at `key_path`; returns the token.
pub async fn create_token(key_path: &str, role: Role, ttl: &str, rate: Option<Rate>) -> String {
    let made = tokens::generate(
        role,
        "integration test",
        tokens::parse_ttl(ttl).unwrap(),
        rate,
        letterbox::time::now_ms() / 1000,
    )
    .unwrap();
    let path = TokensPath::parse(&tokens_path(key_path)).unwrap();
    admin_store()
        .await
        .put_token(&path, &made.record)
        .await
        .unwrap();
    tokens::reveal(&made).to_owned()
}

async fn delete_tokens(key_path: &str) {
    let path = TokensPath::parse(&tokens_path(key_path)).unwrap();
    let store = admin_store().await;
    if let Ok(records) = store.list_tokens(&path, &Role::ALL).await {
        for record in records {
            let _ = store.revoke_token(&path, &record.id).await;
        }
    }
}

pub fn consumer_settings(
    queue: &str,
    key_path: &str,
    llm_base_url: &str,
    concurrency: u16,
) -> ConsumerSettings {
    let mut settings = ConsumerSettings::defaults();
    settings.metrics_addr = "127.0.0.1:0".parse().unwrap();
    settings.broker.amqp_url = SecretString::from(amqp_url());
    settings.broker.jobs_queue = queue.to_owned();
    settings.vault = vault_args();
    settings.tokens = token_args(key_path);
    settings.llm_key_path = format!("secret/{key_path}");
    settings.llm_base_url = Some(llm_base_url.to_owned());
    settings.llm_model = Some("letterbox-stub-1".to_owned());
    settings.concurrency = concurrency;
    settings.shutdown_grace_ms = 2_000;
    settings
}

pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: Value,
}

impl TestApp {
    pub async fn post_json(&self, body: &Value) -> Answer {
        let response = self
            .http
            .post(format!("{}/v1/cover-letters", self.base))
            .bearer_auth(&self.submit_token)
            .json(body)
            .send()
            .await
            .unwrap();
        answer(response).await
    }

    pub async fn post_raw(&self, content_type: &str, body: Vec<u8>) -> Answer {
        let response = self
            .http
            .post(format!("{}/v1/cover-letters", self.base))
            .bearer_auth(&self.submit_token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        answer(response).await
    }

    pub async fn post_form(&self, form: reqwest::multipart::Form) -> Answer {
        let response = self
            .http
            .post(format!("{}/v1/cover-letters", self.base))
            .bearer_auth(&self.submit_token)
            .multipart(form)
            .send()
            .await
            .unwrap();
        answer(response).await
    }

    pub async fn get_text(&self, url: &str) -> (u16, String) {
        let response = self
            .http
            .get(url)
            .bearer_auth(&self.monitor_token)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// The `/metrics` text of worker `n`.
    pub async fn worker_metrics(&self, n: usize) -> (u16, String) {
        self.get_text(&format!("http://{}/metrics", self.consumer_metrics[n]))
            .await
    }

    /// Starts one more worker in this process with `settings` (see `consumer_settings`).
    pub async fn add_consumer(&mut self, settings: ConsumerSettings) -> anyhow::Result<SocketAddr> {
        let app = ConsumerApp::build(settings, self.shutdown.child_token()).await?;
        let addr = app.metrics_addr()?;
        self.tasks.push(tokio::spawn(app.run_until_stopped()));
        Ok(addr)
    }

    /// Asks every process to stop, as SIGTERM would, without waiting.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Stops the processes, then removes the queues and the secret.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        for task in self.tasks.drain(..) {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("the app did not stop within 10 s")
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for TestApp {
    /// Runs even when a test fails, so no test leaves queues or secrets behind.
    fn drop(&mut self) {
        self.shutdown.cancel();
        let queue = self.queue.clone();
        let key_path = self.key_path.clone();
        clean_up(async move {
            delete_topology(&queue).await;
            delete_tokens(&key_path).await;
            delete_secret(&key_path).await;
            delete_secret(&format!("{key_path}-webhook")).await;
            delete_secret(&fallback_key_path(&key_path)).await;
        });
    }
}

/// Runs `cleanup` to completion from a `Drop`, on a thread of its own: a drop cannot await, and
/// it may run while the test's runtime is panicking.
pub fn clean_up(cleanup: impl std::future::Future<Output = ()> + Send + 'static) {
    let _ = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(cleanup);
    })
    .join();
}

pub async fn delete_topology(queue: &str) {
    let url = SecretString::from(amqp_url());
    if let Ok(connection) = letterbox_rabbitmq::connect(
        &letterbox_rabbitmq::Endpoint::new(url.clone()),
        "letterbox-tests cleanup",
        Duration::from_secs(5),
    )
    .await
    {
        if let Ok(channel) = connection.create_channel().await {
            let _ = Topology::new(queue).delete(&channel).await;
            let _ = channel.close(200, "done".into()).await;
        }
        let _ = connection.close(200, "done".into()).await;
    }
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        panic!(
            "status {status}: body is not JSON: {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    Answer {
        status,
        retry_after,
        body,
    }
}

/// The value of an unlabelled or labelled sample in a Prometheus text exposition.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|value| value.trim().parse().ok())
}

/// The job description from the corpus, as text.
pub fn job_description() -> String {
    String::from_utf8(corpus("resume-matcher_jd_backend-eng.txt")).unwrap()
}

/// A child process, killed when dropped (also when a test fails).
pub struct Process(pub std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl TestApp {
    /// A real `letterbox-consumer` process for this app's queue, key and stub, its metrics on
    /// 127.0.0.1:`port`, with `env` on top; its output is discarded.
    pub fn consumer_process(&self, port: u16, env: &[(&str, &str)]) -> Process {
        let (vault_addr, vault_token) = vault();
        let mut command = std::process::Command::new(binary("letterbox-consumer"));
        command
            .env_clear()
            .env("AMQP_URL", amqp_url())
            .env("LETTERBOX_JOBS_QUEUE", &self.queue)
            .env("LETTERBOX_METRICS_ADDR", format!("127.0.0.1:{port}"))
            .env("VAULT_ADDR", &vault_addr)
            .env("VAULT_TOKEN", &vault_token)
            .env(
                "LETTERBOX_LLM_KEY_PATH",
                format!("secret/{}", self.key_path),
            )
            .env("LETTERBOX_TOKENS_PATH", tokens_path(&self.key_path))
            .env("LETTERBOX_AUTH", "tokens")
            .env("LLM_BASE_URL", &self.stub.base_url)
            .env("LLM_MODEL", "letterbox-stub-1")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        Process(command.spawn().unwrap())
    }

    /// Waits up to ten seconds for `GET url` to answer 200.
    pub async fn wait_until_ok(&self, url: &str) {
        for _ in 0..100 {
            if self
                .http
                .get(url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{url} did not answer 200 within 10 s");
    }
}

/// A workspace binary next to this test binary (`script/test` builds them first).
pub fn binary(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().unwrap();
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` (script/test does)",
        path.display()
    );
    path
}
