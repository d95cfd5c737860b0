//! Command line: `serve`, `check`, `keys generate`, `hooks`, `import auth0`, `demo`.

use crate::app::App;
use crate::config::{Config, ConfigError};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::server::{EXIT_CONFIG, EXIT_UNAVAILABLE};

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
    /// Manage and try hooks (the Auth0 way: many hooks, one enabled).
    Hooks {
        /// The hooks folder. Defaults to `hooks.dir` of --config, else `hooks`.
        #[arg(long, global = true)]
        dir: Option<PathBuf>,
        /// Take the hooks folder (and defaults) from this config file.
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: HooksCommand,
    },
    /// Bring a tenant over from another product.
    Import {
        #[command(subcommand)]
        command: ImportCommand,
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
enum HooksCommand {
    /// List the hooks and which one is enabled.
    List,
    /// Add a hook from FILE; like Auth0, a new hook starts disabled.
    Create {
        name: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// Enable NAME (after checking it compiles); every other hook is disabled.
    Enable { name: String },
    /// Disable NAME; no hook runs until one is enabled.
    Disable { name: String },
    /// Hook secrets.
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// The bound Actions that run after the enabled Hook, in order (Auth0's flow).
    Flow {
        #[command(subcommand)]
        command: FlowCommand,
    },
    /// Run a hook once (FILE), or the enabled Hook and the flow of the hooks folder
    /// (no FILE), exactly as the sidecar would, and print what each step does.
    Run {
        file: Option<PathBuf>,
        #[arg(long)]
        event: PathBuf,
        #[arg(long)]
        timeout_ms: Option<u64>,
    },
}

#[derive(Subcommand)]
enum FlowCommand {
    /// Replace the bound Actions with NAME..., in this order (after checking each is an
    /// Action that compiles); like Auth0's PATCH of the trigger's bindings.
    Set {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Unbind every Action; the enabled Hook, if any, runs alone.
    Clear,
}

#[derive(Subcommand)]
enum ImportCommand {
    /// An Auth0 Deploy CLI export (a directory or a tenant.yaml): its credentials-exchange
    /// Hooks and Actions become a hooks folder, its clients the registry.
    Auth0 {
        /// The export: a directory export's folder, or a tenant.yaml.
        path: PathBuf,
        /// Where to write tokenhook.toml and hooks/.
        #[arg(long)]
        out: PathBuf,
        /// AUTH0_KEYWORD_REPLACE_MAPPINGS as a JSON file: ##KEY## and @@KEY@@ values.
        #[arg(long)]
        keywords: Option<PathBuf>,
        /// The client id of a client the export names only (repeatable).
        #[arg(long = "client-id", value_name = "NAME=ID", value_parser = name_equals_id)]
        client_id: Vec<(String, String)>,
        /// The tenant's name (TENANT in TENANT.auth0.com), which hooks see as
        /// client.tenant and event.tenant.id; exports do not hold it.
        #[arg(long)]
        tenant: Option<String>,
        /// Replace tokenhook.toml and hooks/ in a folder that is not empty.
        #[arg(long)]
        force: bool,
    },
}

/// `NAME=ID`, split at the last `=`: client ids hold none, names may.
fn name_equals_id(s: &str) -> Result<(String, String), String> {
    match s.rsplit_once('=') {
        Some((name, id)) if !name.is_empty() && !id.is_empty() => {
            Ok((name.to_owned(), id.to_owned()))
        }
        _ => Err(format!("expected NAME=ID, got {s:?}")),
    }
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Set secret KEY of hook NAME, reading the value from stdin.
    Set { name: String, key: String },
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
    // Hook workers are this binary too; they take no other arguments.
    if std::env::args().nth(1).as_deref() == Some(crate::hooks::WORKER_ARG) {
        return ExitCode::from(crate::hooks::worker::main());
    }
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Serve { config } => serve(&config),
        Command::Check { config } => check(&config),
        Command::Keys {
            command: KeysCommand::Generate { alg, out, force },
        } => generate(&alg, &out, force),
        Command::Demo {
            listen,
            admin_listen,
        } => crate::demo::run(listen, admin_listen),
        Command::Import {
            command:
                ImportCommand::Auth0 {
                    path,
                    out,
                    keywords,
                    client_id,
                    tenant,
                    force,
                },
        } => crate::import::run_auth0(
            &path,
            &out,
            keywords.as_deref(),
            crate::import::Options {
                client_ids: client_id,
                tenant,
                force,
            },
        ),
        Command::Hooks {
            dir,
            config,
            command,
        } => hooks_command(dir, config, command),
    };
    crate::telemetry::flush();
    code
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
                app.hooks()
                    .map(|h| h.name().to_owned())
                    .unwrap_or_else(|| "(none enabled)".into())
            );
            // `check` does not call the IdP, so without upstream.issuer the issuer is not
            // known here: say where it will come from, and what happens if it does not.
            if app.config.upstream.issuer.is_none() {
                eprintln!(
                    "warning: upstream.issuer is not set: the IdP's issuer will be read from its discovery document ({}) at startup; if that has none, the IdP token's iss is not checked",
                    app.config.upstream.discovery_path
                );
            }
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
    if let Err(errors) =
        crate::server::check_listeners(config.server.listen, config.server.admin_listen)
    {
        print_errors(&errors);
        return ExitCode::from(EXIT_UNAVAILABLE);
    }
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

/// Starts `names` as a flow in one worker process with the configured limits, as the
/// sidecar would load them (without their secrets): each must compile, and unless
/// `as_hook` each must be an Action. Exit 1 when one does not.
fn compiles(
    dir: &std::path::Path,
    m: &crate::hooks::manifest::Manifest,
    names: &[String],
    as_hook: bool,
    cfg: &crate::config::HooksConfig,
) -> Result<(), ExitCode> {
    let mut steps = Vec::new();
    for name in names {
        let path = dir.join(m.file_for(name));
        let source = std::fs::read_to_string(&path).map_err(|e| {
            eprintln!("cannot read hook {name:?}: {e}");
            ExitCode::from(2)
        })?;
        steps.push(crate::hooks::manifest::HookSpec {
            name: name.clone(),
            path,
            source,
            timeout: cfg.timeout,
            secrets: Default::default(),
            fetch: None,
        });
    }
    let mut one = cfg.clone();
    one.workers = 1;
    let command = crate::hooks::pool::WorkerCommand::current_exe().map_err(|e| {
        eprintln!("cannot locate the tokenhook binary: {e}");
        ExitCode::from(2)
    })?;
    let spec = crate::hooks::manifest::FlowSpec {
        steps,
        has_hook: as_hook,
    };
    crate::hooks::HookPool::start(spec, &one, command)
        .map(drop)
        .map_err(|e| {
            eprintln!("{e}");
            ExitCode::FAILURE
        })
}

/// Logging for commands that run servers without a config file.
/// `tokenhook hooks …`: exit 0, 2 on a usage error (bad name, missing file), 64 for a
/// config problem, 1 when the hook itself is at fault (does not compile).
fn hooks_command(dir: Option<PathBuf>, config: Option<PathBuf>, command: HooksCommand) -> ExitCode {
    use crate::hooks::manifest::{self, Manifest, SecretRef};
    let (dir, hooks_cfg, clients) = match (&dir, &config) {
        (_, Some(c)) => match Config::load(c, std::env::vars()) {
            Ok(cfg) => (
                dir.clone().unwrap_or(cfg.hooks.dir.clone()),
                Some(cfg.hooks),
                cfg.clients,
            ),
            Err(e) => {
                print_errors(&e.0);
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        (Some(d), None) => (d.clone(), None, Default::default()),
        (None, None) => (PathBuf::from("hooks"), None, Default::default()),
    };
    let mut hooks_cfg =
        hooks_cfg.unwrap_or_else(|| crate::config::HooksConfig::defaults(dir.clone()));
    hooks_cfg.dir = dir.clone();
    let usage = |msg: String| {
        eprintln!("{msg}");
        ExitCode::from(2)
    };
    if let HooksCommand::Run {
        file,
        event,
        timeout_ms,
    } = command
    {
        return match file {
            Some(file) => crate::runner::run_cli(&file, &event, timeout_ms, &hooks_cfg, &clients),
            None => crate::runner::run_dir_cli(&event, timeout_ms, &hooks_cfg, &clients),
        };
    }
    if !dir.is_dir() {
        return usage(format!("--dir: no such folder: {}", dir.display()));
    }
    let mut m = match Manifest::read(&dir) {
        Ok(m) => m,
        Err((k, msg)) => {
            eprintln!("{k}: {msg}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let known = m.hooks(&dir);
    let must_exist = |name: &str| -> Result<(), ExitCode> {
        if known.iter().any(|h| h == name) {
            Ok(())
        } else {
            Err(usage(format!(
                "no hook named {name:?} in {}",
                dir.display()
            )))
        }
    };
    let result: Result<String, ExitCode> = (|| match command {
        HooksCommand::List => {
            let mut out = String::new();
            // What a token request runs, in order: the enabled Hook, then the flow.
            let order: Vec<(&str, &str)> = m
                .enabled
                .iter()
                .map(|n| (n.as_str(), "Hook"))
                .chain(m.flow.iter().map(|n| (n.as_str(), "Action")))
                .collect();
            if order.is_empty() {
                out.push_str("runs: nothing (no Hook enabled, no Action bound)\n");
            } else {
                out.push_str("runs, in order:\n");
                for (i, (name, what)) in order.iter().enumerate() {
                    out.push_str(&format!("  {}. {name} ({what})\n", i + 1));
                }
            }
            out.push_str("all hooks (the enabled Hook is starred):\n");
            for name in &known {
                let entry = m.hook.get(name).cloned().unwrap_or_default();
                let on = m.enabled.as_deref() == Some(name.as_str());
                let bound = m
                    .flow
                    .iter()
                    .position(|n| n == name)
                    .map(|i| format!("\tbound={}", i + 1))
                    .unwrap_or_default();
                let secrets: Vec<&String> = entry.secrets.keys().collect();
                out.push_str(&format!(
                    "{} {name}\tfile={}\ttimeout_ms={}\tsecrets=[{}]{bound}\n",
                    if on { "*" } else { " " },
                    m.file_for(name),
                    entry
                        .timeout_ms
                        .unwrap_or(hooks_cfg.timeout.as_millis() as u64),
                    secrets
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                ));
            }
            if known.is_empty() {
                out.push_str("no hooks\n");
            }
            Ok(out)
        }
        HooksCommand::Create { name, file } => {
            if !manifest::valid_name(&name) {
                return Err(usage(format!(
                    "{name:?} is not a valid hook name (letters, digits, spaces, '-' and '_'; starting and ending with a letter or digit)"
                )));
            }
            if known.contains(&name) {
                return Err(usage(format!("a hook named {name:?} exists already")));
            }
            let source = std::fs::read_to_string(&file)
                .map_err(|e| usage(format!("--file {}: {e}", file.display())))?;
            let target = dir.join(format!("{name}.js"));
            std::fs::write(&target, source)
                .map_err(|e| usage(format!("cannot write {}: {e}", target.display())))?;
            Ok(format!(
                "created hook {name:?} (disabled; enable it with `tokenhook hooks enable {name}`)\n"
            ))
        }
        HooksCommand::Enable { name } => {
            must_exist(&name)?;
            if m.flow.contains(&name) {
                return Err(usage(format!(
                    "hook {name:?} is a bound Action; unbind it (`tokenhook hooks flow set …`) before enabling it as the Hook"
                )));
            }
            // Refuse to enable what would not run, as the sidecar would refuse to load it.
            compiles(&dir, &m, std::slice::from_ref(&name), true, &hooks_cfg)?;
            m.enabled = Some(name.clone());
            m.write(&dir)
                .map_err(|e| usage(format!("cannot write the manifest: {e}")))?;
            Ok(format!(
                "enabled hook {name:?}; every other hook is disabled\n"
            ))
        }
        HooksCommand::Disable { name } => {
            must_exist(&name)?;
            if m.enabled.as_deref() == Some(name.as_str()) {
                m.enabled = None;
                m.write(&dir)
                    .map_err(|e| usage(format!("cannot write the manifest: {e}")))?;
                Ok(format!("disabled hook {name:?}; no hook is enabled\n"))
            } else {
                Ok(format!("hook {name:?} was not enabled\n"))
            }
        }
        HooksCommand::Secrets {
            command: SecretsCommand::Set { name, key },
        } => {
            must_exist(&name)?;
            let entry = m.hook.entry(name.clone()).or_default();
            if !entry.secrets.contains_key(&key) && entry.secrets.len() >= manifest::MAX_SECRETS {
                return Err(usage(format!(
                    "hook {name:?} has {} secrets already, the most allowed",
                    manifest::MAX_SECRETS
                )));
            }
            if key.is_empty()
                || key.len() > 128
                || !key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(usage(format!(
                    "{key:?} is not a valid secret name (letters, digits, '_' and '-', at most 128)"
                )));
            }
            let mut value = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut value)
                .map_err(|e| usage(format!("cannot read the value from stdin: {e}")))?;
            let value = value.trim_end_matches(['\n', '\r']);
            if value.len() > 4096 {
                return Err(usage("secret values are at most 4096 bytes".into()));
            }
            let rel = format!("secrets/{name}/{key}");
            let path = dir.join(&rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| usage(format!("cannot create {}: {e}", parent.display())))?;
            }
            let _ = std::fs::remove_file(&path);
            crate::keys::write_private_key(&path, value, true)
                .map_err(|e| usage(format!("cannot write {}: {e}", path.display())))?;
            entry.secrets.insert(
                key.clone(),
                SecretRef {
                    env: None,
                    file: Some(rel.clone()),
                },
            );
            m.write(&dir)
                .map_err(|e| usage(format!("cannot write the manifest: {e}")))?;
            // The value is never printed back.
            Ok(format!(
                "set secret {key} of hook {name:?} (stored in {rel}, mode 0600)\n"
            ))
        }
        HooksCommand::Flow {
            command: FlowCommand::Set { names },
        } => {
            for name in &names {
                must_exist(name)?;
            }
            let mut next = Manifest {
                flow: names.clone(),
                ..Default::default()
            };
            next.enabled = m.enabled.clone();
            if let Some((_, msg)) = next.flow_problems().into_iter().next() {
                return Err(usage(msg));
            }
            // Each must be an Action that compiles, checked as the sidecar loads them.
            compiles(&dir, &m, &names, false, &hooks_cfg)?;
            m.flow = names.clone();
            m.write(&dir)
                .map_err(|e| usage(format!("cannot write the manifest: {e}")))?;
            Ok(format!(
                "bound {} Action{} in this order: {}\n",
                names.len(),
                if names.len() == 1 { "" } else { "s" },
                names.join(" > ")
            ))
        }
        HooksCommand::Flow {
            command: FlowCommand::Clear,
        } => {
            let n = m.flow.len();
            m.flow.clear();
            m.write(&dir)
                .map_err(|e| usage(format!("cannot write the manifest: {e}")))?;
            Ok(format!(
                "unbound {n} Action{}\n",
                if n == 1 { "" } else { "s" }
            ))
        }
        HooksCommand::Run { .. } => unreachable!("handled above"),
    })();
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}
