//! `keel`: entry point.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        Some("validate") => keel_linux::cli::validate::run(&args[1..]),
        _ => {
            eprintln!("usage: keel validate [--node NAME] [-o text|json] FILE...");
            2
        }
    };
    std::process::exit(code);
}
