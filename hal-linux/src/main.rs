//! The `keel` binary: a thin dispatcher. Hidden subcommands `shim` and `pause` are the
//! per-container shim and the pod infra process; everything else prints usage for now.

use std::process::ExitCode;

const USAGE: &str = "usage: keel <command>\n\n(the agent commands are not wired yet)\n";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("shim") => ExitCode::from(keel_linux::runtime::shim::main(&args[1..])),
        Some("pause") => ExitCode::from(keel_linux::runtime::pause::main()),
        None | Some("-h") | Some("--help") | Some("help") => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprint!("keel: unknown command {other:?}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
