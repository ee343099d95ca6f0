//! `keel`: a static-pod agent. See `keel help`.

use keel_linux::cli;
use std::process::ExitCode;

const USAGE: &str = "\
keel: runs Kubernetes static pods from a directory of manifests, with no control plane

usage: keel <command> [args]

commands:
  agent [flags]                                    run static pods (see keel agent --help)
  image pull|import|ls|rm                          the local image store (pull from registries)
  validate [--node NAME] [-o text|json] FILE...   check manifests (- reads standard input)
  generate pod NAME --image IMG [...] [-- CMD...]  print a pod manifest (like kubectl run -o yaml)
  pods [-o wide|json]                              the agent's pods (like kubectl get pods)
  manifests [-o json]                              every manifest file and what became of it
  ps [-a]                                          one line per container
  logs [-f] [-p] [-c NAME] POD                     a container's output
  inspect POD                                      one pod as JSON, with the agent's view
  help                                             this text

The agent commands take --socket PATH (default /run/keel/keel.sock, or $KEEL_SOCKET).
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        Some("validate") => cli::validate::run(&args[1..]),
        Some("generate") => cli::generate::run(&args[1..]),
        Some("pods") => cli::pods::run(&args[1..]),
        Some("manifests") => cli::manifests::run(&args[1..]),
        Some("ps") => cli::ps::run(&args[1..]),
        Some("logs") => cli::logs::run(&args[1..]),
        Some("inspect") => cli::inspect::run(&args[1..]),
        Some("agent") => match keel_linux::agent::config::parse(&args[1..]) {
            Ok(cfg) => match keel_linux::agent::run(cfg) {
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
        Some("image") => cli::image::run(&args[1..]),
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
