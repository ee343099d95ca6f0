//! `keel`: a static-pod agent. See `keel --help`; the command line is
//! [`keel_linux::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    ExitCode::from(keel_linux::cli::main(&args).clamp(0, 255) as u8)
}
