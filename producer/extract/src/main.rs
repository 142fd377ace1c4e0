//! `letterbox-extract`: reads one document on stdin and writes its text (or why there is none) as
//! JSON on stdout. The producer runs one per upload, so a parser that overflows its stack, loops
//! or eats memory takes down this short-lived process, never the server. The process limits
//! itself first: address space and CPU time, and it writes no file and opens no socket.
//!
//! Usage (by the producer): `letterbox-extract '<request JSON>' < document > result.json`

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

/// letterbox-extract: the producer's document extractor. Reads one document on stdin and writes
/// its text, or why there is none, as JSON on stdout. The producer runs it once per upload; it is
/// not meant to be run by hand.
#[derive(Parser)]
#[command(name = "letterbox-extract", version, about, long_about = None)]
struct Cli {
    /// What to extract, as JSON written by the producer (the document's claimed type and the
    /// limits).
    request: String,
}

fn main() -> ExitCode {
    // A parser's panic message can quote the document: print nothing; the producer sees the
    // exit status and answers "could not be parsed".
    std::panic::set_hook(Box::new(|_| {}));
    let Cli { request } = Cli::parse();
    match letterbox_extract::run_subprocess(&request, std::io::stdin().lock()) {
        Ok(output) => {
            let mut stdout = std::io::stdout().lock();
            if stdout
                .write_all(&output)
                .and_then(|()| stdout.flush())
                .is_err()
            {
                return ExitCode::from(3);
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("letterbox-extract: {message}");
            ExitCode::from(2)
        }
    }
}
