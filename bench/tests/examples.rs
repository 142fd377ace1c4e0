//! The files in `examples/` stay consistent: the PDF is what `letterbox-examples` makes of the
//! Markdown, and the two documents share the skills the demo's letter should cite.

use std::path::PathBuf;

use letterbox_bench::pdf::resume_to_pdf;
use letterbox_bench::stub::letter::shared_keywords;

fn example(name: &str) -> anyhow::Result<Vec<u8>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    Ok(std::fs::read(path)?)
}

#[test]
fn resume_pdf_is_regenerated_byte_for_byte_from_resume_md() -> anyhow::Result<()> {
    let markdown = String::from_utf8(example("resume.md")?)?;
    let checked_in = example("resume.pdf")?;
    assert!(
        resume_to_pdf(&markdown)? == checked_in,
        "examples/resume.pdf is stale: run `cargo run -p letterbox-bench --bin letterbox-examples`"
    );
    Ok(())
}

#[test]
fn resume_pdf_carries_its_text_in_win_ansi() -> anyhow::Result<()> {
    let pdf = String::from_utf8_lossy(&example("resume.pdf")?).into_owned();
    assert!(pdf.starts_with("%PDF-1.4\n"));
    assert!(pdf.contains("(Avery Quinlan)"));
    // "ü" is byte 0xFC in WinAnsiEncoding, written as an octal escape.
    assert!(pdf.contains("Z\\374rich"));
    assert!(pdf.contains("/Encoding /WinAnsiEncoding"));
    Ok(())
}

#[test]
fn example_documents_share_the_skills_a_letter_should_cite() -> anyhow::Result<()> {
    let job = String::from_utf8(example("job_description.txt")?)?;
    let resume = String::from_utf8(example("resume.md")?)?;
    assert_eq!(
        shared_keywords(&job, &resume),
        ["RabbitMQ", "PostgreSQL", "OpenTelemetry", "gRPC", "Rust"]
    );
    Ok(())
}
