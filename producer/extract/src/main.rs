//! `letterbox-extract`: reads one document on stdin and writes its text (or why there is none) as
//! JSON on stdout. The producer runs one per upload, so a parser that overflows its stack, loops
//! or eats memory takes down this short-lived process, never the server. The process limits
//! itself first: address space and CPU time, and it writes no file and opens no socket.
//!
//! Usage (by the producer): `letterbox-extract '<request JSON>' < document > result.json`

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    // A parser's panic message can quote the document: print nothing; the producer sees the
    // exit status and answers "could not be parsed".
    std::panic::set_hook(Box::new(|_| {}));
    let Some(request) = std::env::args().nth(1) else {
        eprintln!("usage: letterbox-extract '<request JSON>' < document");
        return ExitCode::from(2);
    };
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
