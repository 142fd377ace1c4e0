//! `letterbox-admin`: manages what Letterbox keeps in Vault. It talks to Vault with the same
//! options as the other binaries (`VAULT_ADDR` with `VAULT_TOKEN`, or AppRole) and never prints
//! a secret except a new token, once, to the person who created it.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use letterbox::settings::{BrokerSettings, DEFAULT_TOKENS_PATH, VaultArgs};
use letterbox_vault::tokens::{self, Rate, Role};
use letterbox_vault::{KvPath, SecretStore, TokensPath, VaultSettings};
use serde_json::json;

/// letterbox-admin: prepare a Vault for Letterbox, manage client tokens, audit and rotate keys.
#[derive(Parser)]
#[command(name = "letterbox-admin", version, about, long_about = None, after_help = letterbox::telemetry::LOG_HELP)]
struct Cli {
    #[command(flatten)]
    vault: VaultArgs,

    /// KV v2 path under which client token records live.
    #[arg(long, env = letterbox::env::TOKENS_PATH, default_value = DEFAULT_TOKENS_PATH, global = true)]
    tokens_path: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Prepares a Vault for Letterbox (idempotent): KV v2, transit and its payload key, AppRole,
    /// the three least-privilege policies and AppRoles; prints each role's ids.
    Setup {
        /// Path prefix under `secret/` (and name prefix of policies and roles).
        #[arg(long, default_value = "letterbox")]
        prefix: String,
        #[arg(long)]
        json: bool,
    },
    /// Client tokens: create, list, revoke.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Secrets Letterbox uses: audit their age, rotate the payload key.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The dead-letter queue: list parked jobs (ids, reasons, ages; never contents), replay one,
    /// purge. Talks to RabbitMQ (AMQP_URL), not to Vault.
    Dlq {
        #[command(flatten)]
        broker: BrokerSettings,
        #[command(subcommand)]
        action: DlqCommand,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Lists the parked jobs: id, reason, age.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Puts the parked job ID back on the jobs queue (a worker still checks its deadline).
    Replay { id: String },
    /// Deletes every parked job.
    Purge,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Lists every secret Letterbox uses with its age; exits 1 when one is older than the limit.
    Audit {
        /// The rotation limit.
        #[arg(long, default_value = "90d", value_parser = tokens::parse_ttl)]
        max_age: Duration,
        /// KV v2 path of the LLM key.
        #[arg(long, env = letterbox::env::LLM_KEY_PATH, default_value = "secret/letterbox/llm")]
        llm_key_path: String,
        #[arg(long)]
        json: bool,
    },
    /// Rotates the transit key that wraps payload data keys (messages sealed before still open).
    Rotate,
}

#[derive(Subcommand)]
enum TokensCommand {
    /// Creates a token and prints it once; Vault keeps only its hash.
    Create {
        /// submit (create letters), monitor (metrics) or admin (everything).
        #[arg(long)]
        role: Role,
        /// A name to recognise the token by (an app, a team).
        #[arg(long, default_value = "")]
        name: String,
        /// Lifetime: 90d, 12h, 30m, 45s.
        #[arg(long, default_value = "90d", value_parser = tokens::parse_token_ttl)]
        ttl: Duration,
        /// Rate limit (e.g. 60/min); without one, the ingress's LETTERBOX_DEFAULT_RATE applies.
        #[arg(long)]
        rate: Option<Rate>,
        /// Print {"id", "token", "role", "expires_at"} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Lists tokens: id, role, name, expiry, rate (never the token).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revokes a token by its id; every ingress refuses it within its refresh interval.
    Revoke { id: String },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    letterbox::telemetry::init_tracing_at("warn");
    letterbox::install_crypto_provider();
    letterbox::exit_on_error(run(cli).await)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Dlq { broker, action } = &cli.command {
        return dead_letters(broker, action).await;
    }
    let settings =
        VaultSettings::from_args(&cli.vault, Duration::from_secs(1)).map_err(anyhow::Error::msg)?;
    let store = SecretStore::connect(settings).await?;
    let path = TokensPath::parse(&cli.tokens_path)?;
    let now = letterbox::time::now_ms() / 1000;
    match cli.command {
        Command::Setup { prefix, json } => {
            let report = store.setup(&prefix, &cli.vault.transit_mount).await?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                for (process, role) in &report.roles {
                    println!(
                        "{process}: VAULT_ROLE_ID={} VAULT_SECRET_ID={}",
                        role.role_id, role.secret_id
                    );
                }
                eprintln!(
                    "Policies and AppRoles written for prefix {prefix:?}; the secret ids are shown only now."
                );
            }
        }
        Command::Keys(KeysCommand::Audit {
            max_age,
            llm_key_path,
            json,
        }) => {
            let llm_key = KvPath::parse(&llm_key_path, "api_key")?;
            let ages = store
                .audit(
                    &llm_key,
                    &cli.vault.transit_mount,
                    &cli.vault.payload_key,
                    now,
                )
                .await?;
            let too_old: Vec<_> = ages
                .iter()
                .filter(|age| {
                    age.age_seconds
                        .is_none_or(|seconds| seconds > max_age.as_secs())
                })
                .collect();
            if json {
                println!("{}", serde_json::to_string(&ages)?);
            } else {
                for age in &ages {
                    let days = age.age_seconds.map_or_else(
                        || "unknown".to_owned(),
                        |s| format!("{:.1} days", s as f64 / 86_400.0),
                    );
                    println!(
                        "{:<12}  v{:<4}  {:<14}  {}",
                        age.kind, age.version, days, age.path
                    );
                }
            }
            if !too_old.is_empty() {
                let names: Vec<&str> = too_old.iter().map(|age| age.path.as_str()).collect();
                anyhow::bail!(
                    "older than {} (rotate them): {}",
                    letterbox_vault::format_duration(max_age),
                    names.join(", ")
                );
            }
        }
        Command::Keys(KeysCommand::Rotate) => {
            store
                .rotate_payload_key(&cli.vault.transit_mount, &cli.vault.payload_key)
                .await?;
            eprintln!(
                "Rotated {}/keys/{}.",
                cli.vault.transit_mount, cli.vault.payload_key
            );
        }
        Command::Tokens(TokensCommand::Create {
            role,
            name,
            ttl,
            rate,
            json,
        }) => {
            let made = tokens::generate(role, &name, ttl, rate, now).map_err(anyhow::Error::msg)?;
            store.put_token(&path, &made.record).await?;
            let token = tokens::reveal(&made);
            if json {
                println!(
                    "{}",
                    json!({
                        "id": made.record.id,
                        "token": token,
                        "role": role,
                        "expires_at": rfc3339(made.record.expires_at),
                    })
                );
            } else {
                println!("{token}");
                eprintln!(
                    "Token {} ({role}) expires {}. It is shown only now: store it safely.",
                    made.record.id,
                    rfc3339(made.record.expires_at)
                );
            }
        }
        Command::Tokens(TokensCommand::List { json }) => {
            let mut records = store.list_tokens(&path, &Role::ALL).await?;
            records.sort_by_key(|record| record.created_at);
            if json {
                let rows: Vec<_> = records
                    .iter()
                    .map(|r| {
                        json!({
                            "id": r.id, "role": r.role, "name": r.name,
                            "created_at": rfc3339(r.created_at), "expires_at": rfc3339(r.expires_at),
                            "expired": r.is_expired_at(now), "rate": r.rate.map(|rate| rate.to_string()),
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                println!(
                    "{:<16}  {:<7}  {:<20}  {:<9}  name",
                    "id", "role", "expires", "rate"
                );
                for r in &records {
                    let expiry = if r.is_expired_at(now) {
                        "expired".to_owned()
                    } else {
                        rfc3339(r.expires_at)
                    };
                    let rate = r
                        .rate
                        .map_or_else(|| "default".to_owned(), |rate| rate.to_string());
                    println!(
                        "{:<16}  {:<7}  {:<20}  {:<9}  {}",
                        // Display ignores width; a &str pads.
                        r.id,
                        r.role.as_str(),
                        expiry,
                        rate,
                        r.name
                    );
                }
            }
        }
        Command::Tokens(TokensCommand::Revoke { id }) => {
            if !store.revoke_token(&path, &id).await? {
                anyhow::bail!("no token with id {id}");
            }
            eprintln!("Token {id} revoked.");
        }
        // Handled above, before Vault.
        Command::Dlq { .. } => {}
    }
    Ok(())
}

async fn dead_letters(broker: &BrokerSettings, action: &DlqCommand) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use letterbox_rabbitmq::{DeadLetters, Endpoint, Topology};
    const TIMEOUT: Duration = Duration::from_secs(10);
    let endpoint = Endpoint::from_settings(broker)?;
    let connection = letterbox_rabbitmq::connect(&endpoint, "letterbox-admin", TIMEOUT)
        .await
        .context("could not connect to RabbitMQ at AMQP_URL")?;
    let topology = Topology::from_settings(broker);
    let queue = topology.dead_letter_queue();
    let dead = DeadLetters::open(&connection, topology, TIMEOUT).await?;
    let result = async {
        match action {
            DlqCommand::List { json } => {
                let parked = dead
                    .list()
                    .await
                    .with_context(|| format!("could not read {queue}"))?;
                if *json {
                    println!("{}", serde_json::to_string(&parked)?);
                } else if parked.is_empty() {
                    eprintln!("{queue} is empty.");
                } else {
                    println!("{:<38} {:<16} AGE", "ID", "REASON");
                    for job in &parked {
                        let age = job.age_ms.map_or_else(
                            || "-".to_owned(),
                            |ms| {
                                humantime::format_duration(Duration::from_secs(ms / 1000))
                                    .to_string()
                            },
                        );
                        println!("{:<38} {:<16} {age}", job.id, job.reason);
                    }
                }
            }
            DlqCommand::Replay { id } => {
                if !dead.replay(id).await? {
                    anyhow::bail!("no parked job with id {id} in {queue}");
                }
                eprintln!("Job {id} is back on {}.", broker.jobs_queue);
            }
            DlqCommand::Purge => {
                let purged = dead.purge().await?;
                eprintln!("Purged {purged} jobs from {queue}.");
            }
        }
        anyhow::Ok(())
    }
    .await;
    dead.close().await;
    let _ = connection.close(200, "done".into()).await;
    result
}

fn rfc3339(unix_s: u64) -> String {
    let time = std::time::UNIX_EPOCH + Duration::from_secs(unix_s);
    letterbox_vault::format_time(time)
}
