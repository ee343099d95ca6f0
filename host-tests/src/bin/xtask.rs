//! `cargo xtask`: the one entry point for automation (minimal version; see README).
use std::process::{Command, ExitCode};

fn run(name: &str, cmd: &mut Command) -> bool {
    eprintln!("==> {name}");
    matches!(cmd.status(), Ok(s) if s.success())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("test") => {
            let _ = Command::new("rustup")
                .args(["target", "add", "thumbv7m-none-eabi"])
                .status();
            let steps: Vec<(&str, Command)> = vec![
                ("fmt", {
                    let mut c = Command::new("cargo");
                    c.args(["fmt", "--all", "--", "--check"]);
                    c
                }),
                ("clippy", {
                    let mut c = Command::new("cargo");
                    c.args([
                        "clippy",
                        "--workspace",
                        "--all-targets",
                        "--",
                        "-D",
                        "warnings",
                    ]);
                    c
                }),
                ("thumb build of keel-core", {
                    let mut c = Command::new("cargo");
                    c.args([
                        "build",
                        "-p",
                        "keel-core",
                        "--target",
                        "thumbv7m-none-eabi",
                        "--release",
                    ]);
                    c
                }),
                ("tests", {
                    let mut c = Command::new("cargo");
                    c.args(["test", "--workspace"]);
                    c
                }),
            ];
            let (mut passed, mut failed) = (0, 0);
            for (name, mut cmd) in steps {
                if run(name, &mut cmd) {
                    passed += 1;
                } else {
                    failed += 1;
                    eprintln!("xtask: step {name} failed");
                }
            }
            eprintln!("xtask: {passed} steps passed, {failed} failed");
            if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        _ => {
            eprintln!("usage: cargo xtask test");
            ExitCode::from(2)
        }
    }
}
