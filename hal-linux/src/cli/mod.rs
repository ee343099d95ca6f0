//! The `keel` command line: one parser, one start-up, one module per subcommand.
//!
//! This module deals with turning `argv` into a subcommand and running it. The whole
//! grammar is one clap derive ([`Cli`]), so every command gets the same habits: `--help`
//! on stdout with exit 0, `--version`, kubectl's flag spellings (`-owide`, `-o=json`,
//! `--output json`), an error for a bad value that lists the supported ones (exit 2), and
//! shell completions generated from the same definition (`keel completion bash`).
//! [`run_with`] is the only start-up: it parses, writes help and usage errors, and
//! dispatches.
//!
//! Two commands keep their own argument handling, deliberately: `keel agent` takes the
//! whole ExecStart line of a kubelet unit, kubelet flags keel does not know included (one
//! warning each), which a strict parser would refuse, so its words go to
//! [`crate::agent::config::parse`] untouched; and the hidden `pause`, which the runtime
//! starts itself. (The per-container shim is a binary of its own, `keel-shim`.)
//!
//! `validate` and `generate` work offline; `pods`, `manifests`, `ps`, `logs` and
//! `inspect` ask a running agent over its control socket ([`crate::control`]), with the
//! connection, tables and times of [`client`].
pub mod client;
pub mod exec;
pub mod generate;
pub mod image;
pub mod image_pull;
pub mod inspect;
pub mod jsonpath;
pub mod logs;
pub mod manifests;
pub mod pods;
pub mod ps;
pub mod validate;

use clap::{CommandFactory, Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;

/// `keel`: the whole command line.
#[derive(Debug, Parser)]
#[command(
    name = "keel",
    version,
    about = "keel: runs Kubernetes static pods from a directory of manifests, with no control plane",
    after_help = "The agent commands (pods, manifests, ps, logs, inspect) take --socket PATH \
                  (default /run/keel/keel.sock, or $KEEL_SOCKET).\n\
                  `keel COMMAND --help` describes each command.",
    disable_help_subcommand = false,
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run static pods from a manifest directory (takes the kubelet's flags; keel agent --help)
    Agent(Raw),
    /// The local image store: pull, import, ls, rm (keel image --help)
    Image(Raw),
    /// Check manifest files or directories with the agent's own rules
    Validate(validate::Args),
    /// Print a pod manifest (like kubectl run --dry-run=client -o yaml)
    Generate(generate::Args),
    /// The agent's pods (like kubectl get pods)
    Pods(pods::Args),
    /// Every manifest file and what became of it
    Manifests(manifests::Args),
    /// One line per container
    Ps(ps::Args),
    /// A container's output
    Logs(logs::Args),
    /// One pod as JSON, with the agent's view
    Inspect(inspect::Args),
    /// Run a command in a running container (like kubectl exec)
    Exec(exec::Args),
    /// Shell completions: keel completion bash|zsh|fish
    Completion(CompletionArgs),
    /// The pod infra process (started by the agent).
    #[command(hide = true)]
    Pause(Raw),
}

/// The words of a command that parses its own arguments.
#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
pub struct Raw {
    /// Arguments, passed on as they are.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0.., value_name = "ARGS")]
    pub args: Vec<String>,
}

/// A shell for completions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    /// bash (source <(keel completion bash))
    Bash,
    /// zsh (keel completion zsh > "${fpath[1]}/_keel")
    Zsh,
    /// fish (keel completion fish > ~/.config/fish/completions/keel.fish)
    Fish,
}

/// `keel completion SHELL`.
#[derive(Debug, clap::Args)]
pub struct CompletionArgs {
    /// The shell to write completions for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// `--socket PATH`, for the commands that talk to an agent.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct SocketArg {
    /// The agent's control socket (default $KEEL_SOCKET, else /run/keel/keel.sock)
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

impl SocketArg {
    /// The socket path: `--socket`, else `$KEEL_SOCKET`, else the default.
    pub fn path(&self) -> PathBuf {
        self.socket
            .clone()
            .or_else(|| std::env::var_os("KEEL_SOCKET").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(crate::control::DEFAULT_SOCKET))
    }
}

/// Writes a clap outcome that is not a parsed command line: help and `--version` go to
/// `out` with exit 0; a usage error goes to `err` with exit 2.
fn clap_outcome(e: &clap::Error, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let text = e.render().to_string();
    if e.use_stderr() {
        let _ = write!(err, "{text}");
        2
    } else {
        let _ = write!(out, "{text}");
        0
    }
}

/// Parses `argv` (without the program name) and runs the command, writing to `out` and
/// `err`. Returns the exit code: 0 success, 1 failure, 2 usage error.
pub fn run_with(argv: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    // The pause process lives as long as its pod: it skips building the whole command
    // line's parser, whose allocations it would keep.
    if argv.first().map(String::as_str) == Some("pause") {
        return crate::runtime::pause::main(&argv[1..]) as i32;
    }
    let cli = match Cli::try_parse_from(
        std::iter::once("keel".to_string()).chain(argv.iter().cloned()),
    ) {
        Ok(c) => c,
        Err(e) => return clap_outcome(&e, out, err),
    };
    match cli.command {
        Command::Agent(raw) => agent(&raw.args, out, err),
        Command::Image(raw) => match raw.args.first().map(String::as_str) {
            // `keel image --help` (the image commands read their own flags after the verb).
            Some("-h" | "--help" | "help") => {
                let _ = writeln!(out, "{}", image::USAGE);
                0
            }
            _ => image::run(&raw.args),
        },
        Command::Validate(a) => validate::run_args(&a, out, err),
        Command::Generate(a) => generate::run_args(&a, out, err),
        Command::Pods(a) => pods::run_args(&a, out, err),
        Command::Manifests(a) => manifests::run_args(&a, out, err),
        Command::Ps(a) => ps::run_args(&a, out, err),
        Command::Logs(a) => logs::run_args(&a, out, err),
        Command::Inspect(a) => inspect::run_args(&a, out, err),
        Command::Exec(a) => exec::run_args(&a, out, err),
        Command::Completion(a) => {
            let shell = match a.shell {
                Shell::Bash => clap_complete::Shell::Bash,
                Shell::Zsh => clap_complete::Shell::Zsh,
                Shell::Fish => clap_complete::Shell::Fish,
            };
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "keel", &mut buf);
            match out.write_all(&buf) {
                Ok(()) => 0,
                Err(e) => {
                    let _ = writeln!(err, "keel completion: {e}");
                    1
                }
            }
        }
        Command::Pause(raw) => crate::runtime::pause::main(&raw.args) as i32,
    }
}

/// Runs one subcommand with its own arguments (`keel SUB ARGS...`): what each module's
/// `run_with` calls, so tests reach a subcommand through the one start-up.
pub fn run_sub(sub: &str, args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let mut argv = Vec::with_capacity(args.len() + 1);
    argv.push(sub.to_string());
    argv.extend(args.iter().cloned());
    run_with(&argv, out, err)
}

/// Runs `keel` on the process's standard output and error.
pub fn main(argv: &[String]) -> i32 {
    run_with(argv, &mut std::io::stdout().lock(), &mut std::io::stderr())
}

/// `keel agent`: the kubelet-style flags go to the agent's own parser (see the module
/// doc); `-h`/`--help` prints its usage on stdout.
fn agent(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        let _ = writeln!(out, "{}", crate::agent::config::USAGE);
        return 0;
    }
    match crate::agent::config::parse(args) {
        Ok(cfg) => match crate::agent::run(cfg) {
            Ok(()) => 0,
            Err(e) => {
                let _ = writeln!(err, "keel agent: {e}");
                1
            }
        },
        Err(e) => {
            let _ = writeln!(err, "keel agent: {e}");
            2
        }
    }
}
