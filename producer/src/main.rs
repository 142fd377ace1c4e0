use clap::Parser;
use letterbox_producer::{Application, ProducerSettings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = ProducerSettings::parse();
    letterbox::telemetry::init_tracing();
    letterbox::telemetry::withhold_panic_messages();
    letterbox::install_crypto_provider();
    let shutdown = letterbox::shutdown::on_signal();
    let app = Application::build(settings, shutdown).await?;
    app.run_until_stopped().await
}
