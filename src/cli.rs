//! Command line: `serve`, `check`, `keys generate`, `demo`.

use crate::app::App;
use crate::config::{Config, ConfigError, LogFormat};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// sysexits' EX_CONFIG-adjacent EX_USAGE: the conventional code for bad configuration.
pub const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "tokenhook",
    version,
    about = "Auth0-style token hooks in front of any OAuth 2.0 identity provider"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sidecar.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate the config, keys and enabled hook; list every problem.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Key management.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Run a demo IdP and the sidecar in front of it, on loopback.
    Demo {
        /// Where the sidecar listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Where the admin endpoints listen.
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin_listen: std::net::SocketAddr,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Write a new private key (PKCS#8 PEM, mode 0600).
    Generate {
        #[arg(long, default_value = "RS256")]
        alg: String,
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(&config),
        Command::Check { config } => check(&config),
        Command::Keys {
            command: KeysCommand::Generate { alg, out, force },
        } => generate(&alg, &out, force),
        Command::Demo {
            listen,
            admin_listen,
        } => crate::demo::run(listen, admin_listen),
    }
}

fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn print_errors(errors: &[ConfigError]) {
    for e in errors {
        eprintln!("{e}");
    }
    eprintln!(
        "{} problem{} found",
        errors.len(),
        if errors.len() == 1 { "" } else { "s" }
    );
}

/// Loads config, keys and hook, collecting every problem.
pub fn load(path: &std::path::Path) -> Result<App, Vec<ConfigError>> {
    let config = Config::load(path, std::env::vars()).map_err(|e| e.0)?;
    App::build(config, &env_lookup)
}

fn check(path: &std::path::Path) -> ExitCode {
    match load(path) {
        Ok(app) => {
            let keys = app.keys();
            println!(
                "ok: {} signing key{} (active kid {}), hook {}",
                keys.all().len(),
                if keys.all().len() == 1 { "" } else { "s" },
                keys.active().kid,
                app.hooks().map(|h| h.name()).unwrap_or("(none enabled)")
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            print_errors(&errors);
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn serve(path: &std::path::Path) -> ExitCode {
    let config = match Config::load(path, std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            print_errors(&e.0);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    crate::telemetry::init(config.log.format, &config.log.level);
    match App::build(config, &env_lookup) {
        Ok(app) => {
            crate::server::run(Arc::new(app), Vec::new());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            print_errors(&errors);
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn generate(alg: &str, out: &std::path::Path, force: bool) -> ExitCode {
    let alg = match alg.parse::<jsonwebtoken::Algorithm>() {
        Ok(a) if crate::config::SIGNING_ALGORITHMS.contains(&a) => a,
        _ => {
            eprintln!("--alg: must be one of RS256, PS256, ES256, EdDSA; got {alg:?}");
            return ExitCode::from(2);
        }
    };
    let pem = match crate::keys::generate_pem(alg) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = crate::keys::write_private_key(out, &pem, force) {
        eprintln!("--out {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    match crate::keys::SigningKey::from_pem(pem.as_bytes(), out, alg) {
        Ok(k) => println!("wrote {} ({:?}, kid {})", out.display(), k.alg, k.kid),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// Logging for commands that run servers without a config file.
pub fn init_default_logging() {
    crate::telemetry::init(LogFormat::Text, "warn,tokenhook=info");
}
