use std::process::ExitCode;

use clap::Parser;
use letterbox_consumer::{ConsumerApp, ConsumerSettings};

#[tokio::main]
async fn main() -> ExitCode {
    let settings = ConsumerSettings::parse();
    letterbox::telemetry::init_tracing();
    letterbox::telemetry::withhold_panic_messages();
    letterbox::install_crypto_provider();
    let shutdown = letterbox::shutdown::on_signal();
    letterbox::exit_on_error(
        async {
            let app = ConsumerApp::build(settings, shutdown).await?;
            tracing::info!(metrics = %app.metrics_addr()?, "Worker started");
            app.run_until_stopped().await
        }
        .await,
    )
}
