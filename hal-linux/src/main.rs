//! `keel`: a static-pod agent. See `keel help`.

use std::process::ExitCode;

const USAGE: &str = "\
keel: runs Kubernetes static pods from a directory of manifests, with no control plane

usage: keel <command> [args]

commands:
  agent [flags]                                    run static pods (see keel agent --help)
  image import|ls|rm                               the local image store
  validate [--node NAME] [-o text|json] FILE...   check manifests (- reads standard input)
  help                                             this text
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        Some("validate") => keel_linux::cli::validate::run(&args[1..]),
        Some("agent") => match keel_linux::agent::config::parse(&args[1..]) {
            Ok(cfg) => match keel_linux::agent::run(cfg, None) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("keel agent: {e}");
                    1
                }
            },
            Err(e) => {
                eprintln!("keel agent: {e}");
                2
            }
        },
        Some("image") => keel_linux::cli::image::run(&args[1..]),
        // Hidden: the per-container shim and the pod infra process (see runtime/).
        Some("shim") => keel_linux::runtime::shim::main(&args[1..]) as i32,
        Some("pause") => keel_linux::runtime::pause::main() as i32,
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
