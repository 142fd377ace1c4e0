//! `letterbox-examples`: regenerates `examples/resume.pdf` from `examples/resume.md`.
//!
//! The PDF is a fixture for the upload path and the demo; keeping its Markdown source next to it
//! means a reviewer can read what the PDF says and change it without a PDF editor. Output is
//! deterministic, so an unchanged source gives a byte-identical file.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use letterbox_bench::pdf::resume_to_pdf;

/// Renders the example resume from Markdown to PDF.
#[derive(Parser)]
#[command(name = "letterbox-examples", version, after_help = letterbox::telemetry::LOG_HELP)]
struct Args {
    /// Markdown source.
    #[arg(long, default_value_os_t = examples_dir().join("resume.md"))]
    input: PathBuf,
    /// PDF to write.
    #[arg(long, default_value_os_t = examples_dir().join("resume.pdf"))]
    output: PathBuf,
}

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("examples")
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let markdown = std::fs::read_to_string(&args.input)
        .with_context(|| format!("could not read {}", args.input.display()))?;
    let pdf = resume_to_pdf(&markdown)?;
    std::fs::write(&args.output, &pdf)
        .with_context(|| format!("could not write {}", args.output.display()))?;
    println!("wrote {} ({} bytes)", args.output.display(), pdf.len());
    Ok(())
}
