//! Private instances of the real services, for tests that must break them (restart a broker,
//! stop a Vault) or configure them differently (TLS only) without disturbing the shared ones that
//! the other tests use. Each lives in its own temporary directory and is stopped on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::free_port;

/// Certificate files for a TLS listener.
pub struct Certificates {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A working directory the broker (which runs as its own user) may write into.
pub fn scratch_dir(what: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!(
        "letterbox-{what}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

/// A RabbitMQ node of its own: plain AMQP, or AMQPS only when given certificates.
pub struct PrivateBroker {
    pub node: String,
    pub port: u16,
}

impl PrivateBroker {
    pub fn start(dir: &Path, tls: Option<&Certificates>) -> Self {
        let port = free_port();
        let node = format!(
            "letterbox-test-{}@localhost",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let listeners = match tls {
            None => format!("listeners.tcp.default = 127.0.0.1:{port}\nloopback_users = none\n"),
            Some(certificates) => format!(
                "listeners.tcp = none\n\
                 listeners.ssl.default = 127.0.0.1:{port}\n\
                 ssl_options.cacertfile = {}\n\
                 ssl_options.certfile = {}\n\
                 ssl_options.keyfile = {}\n\
                 ssl_options.verify = verify_none\n\
                 ssl_options.fail_if_no_peer_cert = false\n",
                certificates.ca.display(),
                certificates.cert.display(),
                certificates.key.display(),
            ),
        };
        let config = dir.join("rabbitmq.conf");
        std::fs::write(&config, listeners).unwrap();
        let plugins = dir.join("enabled_plugins");
        std::fs::write(&plugins, "[].\n").unwrap();
        let status = Command::new("rabbitmq-server")
            .arg("-detached")
            .env("RABBITMQ_NODENAME", &node)
            .env("RABBITMQ_DIST_PORT", free_port().to_string())
            .env("RABBITMQ_CONFIG_FILE", &config)
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", &plugins)
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_PID_FILE", dir.join("rabbitmq.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("rabbitmq-server is not installed: run the tests with script/test");
        assert!(status.success(), "rabbitmq-server -detached failed");
        Self { node, port }
    }

    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    pub async fn ready(&self) {
        wait_for_port(self.port, "the private RabbitMQ node").await;
        // The port opens while the node still boots, and a client connecting then gets no AMQP
        // handshake: wait until the node says it is up.
        let output = self.ctl(&["await_startup", "--timeout", "60"]);
        assert!(
            output.status.success(),
            "the private RabbitMQ node did not finish starting: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// `rabbitmqctl -n NODE <args>`.
    pub fn ctl(&self, args: &[&str]) -> std::process::Output {
        Command::new("rabbitmqctl")
            .args(["-n", &self.node])
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["-n", &self.node, "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// An in-memory OpenBao dev server of its own; with certificates, a TLS listener beside the
/// development one, and `port` is the TLS one.
pub struct PrivateVault {
    child: Child,
    pub port: u16,
    pub root_token: String,
    tls: bool,
}

impl PrivateVault {
    pub fn start(dir: &Path, tls: Option<&Certificates>) -> Self {
        let token = format!("test-root-{}", uuid::Uuid::new_v4().simple());
        Self::start_at(dir, tls, free_port(), &token)
    }

    /// On a chosen development port, with a chosen root token (for a client configured before
    /// the server exists).
    pub fn start_at(
        dir: &Path,
        tls: Option<&Certificates>,
        dev_port: u16,
        root_token: &str,
    ) -> Self {
        let root_token = root_token.to_owned();
        let mut command = Command::new(bao());
        command
            .arg("server")
            .arg("-dev")
            .arg(format!("-dev-root-token-id={root_token}"))
            .arg(format!("-dev-listen-address=127.0.0.1:{dev_port}"));
        let port = match tls {
            None => dev_port,
            Some(certificates) => {
                let port = free_port();
                let config = dir.join("bao.hcl");
                std::fs::write(
                    &config,
                    format!(
                        "listener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  cluster_address = \"127.0.0.1:{}\"\n  tls_cert_file = \"{}\"\n  tls_key_file = \"{}\"\n}}\n",
                        free_port(),
                        certificates.cert.display(),
                        certificates.key.display(),
                    ),
                )
                .unwrap();
                command.arg(format!("-config={}", config.display()));
                port
            }
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start bao");
        Self {
            child,
            port,
            root_token,
            tls: tls.is_some(),
        }
    }

    pub fn addr(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    pub async fn ready(&self) {
        wait_for_port(self.port, "the private OpenBao server").await;
    }

    /// Writes the LLM key to the default path as the root token, trusting the CA in the PEM file `ca`
    /// when the server speaks TLS.
    pub async fn put_llm_key(&self, key: &str, ca: Option<&str>) {
        let mut settings = vaultrs::client::VaultClientSettingsBuilder::default();
        settings.address(self.addr()).token(self.root_token.clone());
        if let Some(ca) = ca {
            settings.ca_certs(vec![ca.to_owned()]);
        }
        let client = vaultrs::client::VaultClient::new(settings.build().unwrap()).unwrap();
        vaultrs::kv2::set(
            &client,
            "secret",
            "letterbox/llm",
            &std::collections::HashMap::from([("api_key", key)]),
        )
        .await
        .unwrap();
    }

    /// Freezes the server (SIGSTOP): connections hang as they would to a partitioned host.
    pub fn freeze(&self) {
        signal("-STOP", self.child.id());
    }

    pub fn thaw(&self) {
        signal("-CONT", self.child.id());
    }
}

impl Drop for PrivateVault {
    fn drop(&mut self) {
        self.thaw();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(which: &str, pid: u32) {
    let _ = Command::new("kill")
        .arg(which)
        .arg(pid.to_string())
        .status();
}

/// The `bao` binary `script/bootstrap` installs (or one on the PATH).
fn bao() -> PathBuf {
    let installed = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/bao"));
    if installed.exists() {
        installed
    } else {
        PathBuf::from("bao")
    }
}

pub async fn wait_for_port(port: u16, what: &str) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    for _ in 0..600 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not start listening on {addr}");
}
