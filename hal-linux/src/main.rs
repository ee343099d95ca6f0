//! `keel`: a static-pod agent. See `keel help`.

use std::process::ExitCode;

const USAGE: &str = "\
keel: runs Kubernetes static pods from a directory of manifests, with no control plane

usage: keel <command> [args]

commands:
  validate [--node NAME] [-o text|json] FILE...   check manifests (- reads standard input)
  help                                             this text
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        Some("validate") => keel_linux::cli::validate::run(&args[1..]),
        Some("help" | "-h" | "--help") => {
            print!("{USAGE}");
            0
        }
        Some(other) => {
            eprintln!("keel: unknown command {other:?}\n\n{USAGE}");
            2
        }
        None => {
            eprint!("{USAGE}");
            2
        }
    };
    ExitCode::from(code as u8)
}
