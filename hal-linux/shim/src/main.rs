//! `keel-shim`: one per container, started by `keel agent` (see the library docs).

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    ExitCode::from(keel_shim::main(&args))
}
