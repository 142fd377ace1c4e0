use std::process::ExitCode;

use clap::Parser;
use letterbox_producer::{Application, ProducerSettings};

#[tokio::main]
async fn main() -> ExitCode {
    let settings = ProducerSettings::parse();
    letterbox::telemetry::init_tracing();
    letterbox::telemetry::withhold_panic_messages();
    letterbox::install_crypto_provider();
    let shutdown = letterbox::shutdown::on_signal();
    letterbox::exit_on_error(
        async {
            Application::build(settings, shutdown)
                .await?
                .run_until_stopped()
                .await
        }
        .await,
    )
}
