//! From the tenant to what the import writes: which Hooks and Actions become which
//! hooks (names, flow, secrets), which clients enter the registry under which id, and
//! the findings the summary lists. Nothing is written here.

use super::{
    Client, Code, KeywordLeft, MASKED, Problem, TRIGGER, Tenant, builtin_modules, file_safe,
    find_keywords, secret_env_var,
};
use crate::hooks::manifest::{HookEntry, MAX_FLOW, Manifest, SecretRef};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// What the command line adds to the export.
#[derive(Debug, Default)]
pub struct Options {
    /// `--client-id NAME=ID`, for clients exported without their id.
    pub client_ids: Vec<(String, String)>,
    /// `--tenant`: the tenant's name, which the export does not hold.
    pub tenant: Option<String>,
    pub force: bool,
}

/// A file of the hooks folder, relative to it.
#[derive(Debug, PartialEq, Eq)]
pub struct HookFile {
    pub path: String,
    pub content: String,
    /// Written owner-only (mode 0600).
    pub secret: bool,
}

/// One client of the registry (`[clients."ID"]`).
#[derive(Debug)]
pub struct RegistryClient {
    pub id: String,
    pub name: String,
    pub tenant: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

/// Everything the import writes, and what the summary says.
#[derive(Debug)]
pub struct Plan {
    pub manifest: Manifest,
    pub files: Vec<HookFile>,
    pub clients: Vec<RegistryClient>,
    pub report: Report,
}

/// The summary's content, in the order it prints it.
#[derive(Debug, Default)]
pub struct Report {
    /// (file in the output, what it came from).
    pub imported: Vec<(String, String)>,
    /// `hook.KEY` of each secret written to a file.
    pub secret_files: Vec<String>,
    /// (client id, name, where the id came from).
    pub clients: Vec<(String, String, String)>,
    /// (what, why).
    pub skipped: Vec<(String, String)>,
    /// (variable, whose secret and why it has no value).
    pub env: Vec<(String, String)>,
    pub keywords: Vec<KeywordLeft>,
    /// Modules the code requires that tokenhook does not provide.
    pub modules: Vec<String>,
    /// What tokenhook will do differently from Auth0, as far as the import can tell.
    pub behaviour: Vec<String>,
    pub grants: Vec<String>,
    pub apis: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Hook,
    Action,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Hook => "Hook",
            Kind::Action => "Action",
        }
    }
}

/// What a Hook or Action does in the folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Enabled,
    Disabled,
    /// The n-th bound Action (from 1).
    Flow(usize),
    /// Supports the trigger, but Auth0 did not run it.
    Unbound,
}

impl Role {
    fn describe(self) -> String {
        match self {
            Role::Enabled => "enabled".into(),
            Role::Disabled => "disabled".into(),
            Role::Flow(n) => format!("flow, {}", ordinal(n)),
            Role::Unbound => format!("not bound to {TRIGGER} in Auth0: not in the flow"),
        }
    }
}

/// A Hook or Action being imported.
struct Unit<'t> {
    kind: Kind,
    auth0: &'t str,
    role: Role,
    code: &'t Code,
    secrets: &'t [(String, Option<String>)],
    dependencies: &'t [(String, String)],
    deployed: Option<bool>,
}

pub fn plan(t: &Tenant, opts: &Options) -> Result<Plan, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut report = Report::default();

    // Hooks: the enabled credentials-exchange one, then the others (disabled), by name.
    let mut hooks: Vec<_> = t.hooks.iter().filter(|h| h.trigger == TRIGGER).collect();
    hooks.sort_by_key(|h| (!h.enabled, h.name.clone()));
    let enabled: Vec<_> = hooks.iter().filter(|h| h.enabled).collect();
    if enabled.len() > 1 {
        let which: Vec<String> = enabled.iter().map(|h| h.at.clone()).collect();
        problems.push(Problem::new(
            enabled[1].at.clone(),
            format!(
                "more than one credentials-exchange Hook is enabled ({}); Auth0 allows one",
                which.join(", ")
            ),
        ));
    }
    for h in t.hooks.iter().filter(|h| h.trigger != TRIGGER) {
        let trigger = if h.trigger.is_empty() {
            "no triggerId".to_owned()
        } else {
            format!("trigger {}", h.trigger)
        };
        report.skipped.push((format!("Hook {:?}", h.name), trigger));
    }

    // Actions: those bound to the trigger, in its order, then those that support it
    // but are not bound (they do not run in Auth0 either), by name.
    let flow_names: Vec<&String> = t
        .bindings
        .iter()
        .filter(|(trigger, _)| trigger == TRIGGER)
        .flat_map(|(_, names)| names)
        .collect();
    if flow_names.len() > MAX_FLOW {
        problems.push(Problem::new(
            &t.bindings_at,
            format!(
                "{} Actions are bound to {TRIGGER}; Auth0 and tokenhook allow {MAX_FLOW}",
                flow_names.len()
            ),
        ));
    }
    let mut flow = Vec::new();
    for name in &flow_names {
        match t.actions.iter().find(|a| &&a.name == name) {
            Some(a) => flow.push(a),
            None => problems.push(Problem::new(
                &t.bindings_at,
                format!("{TRIGGER}: Action {name:?} is bound but not in the export's actions"),
            )),
        }
    }
    let mut unbound: Vec<_> = t
        .actions
        .iter()
        .filter(|a| !flow_names.contains(&&a.name) && a.triggers.iter().any(|x| x == TRIGGER))
        .collect();
    unbound.sort_by_key(|a| a.name.clone());
    let mut skipped_actions: Vec<_> = t
        .actions
        .iter()
        .filter(|a| !flow_names.contains(&&a.name) && !a.triggers.iter().any(|x| x == TRIGGER))
        .collect();
    skipped_actions.sort_by_key(|a| a.name.clone());
    for a in skipped_actions {
        let mut triggers: BTreeSet<&str> = a.triggers.iter().map(String::as_str).collect();
        for (trigger, names) in &t.bindings {
            if names.contains(&a.name) {
                triggers.insert(trigger);
            }
        }
        let why = if triggers.is_empty() {
            "no trigger".to_owned()
        } else {
            format!(
                "trigger {}",
                triggers.into_iter().collect::<Vec<_>>().join(", ")
            )
        };
        report.skipped.push((format!("Action {:?}", a.name), why));
    }

    let mut units: Vec<Unit> = Vec::new();
    for h in &hooks {
        units.push(Unit {
            kind: Kind::Hook,
            auth0: &h.name,
            role: if h.enabled {
                Role::Enabled
            } else {
                Role::Disabled
            },
            code: &h.code,
            secrets: &h.secrets,
            dependencies: &h.dependencies,
            deployed: None,
        });
    }
    for (i, a) in flow.iter().enumerate() {
        units.push(Unit {
            kind: Kind::Action,
            auth0: &a.name,
            role: Role::Flow(i + 1),
            code: &a.code,
            secrets: &a.secrets,
            dependencies: &a.dependencies,
            deployed: a.deployed,
        });
    }
    for a in &unbound {
        units.push(Unit {
            kind: Kind::Action,
            auth0: &a.name,
            role: Role::Unbound,
            code: &a.code,
            secrets: &a.secrets,
            dependencies: &a.dependencies,
            deployed: a.deployed,
        });
    }

    // Names, in that order: a clash (`Set tier` and `set-tier`) gets -2, -3, ….
    let mut taken = HashSet::new();
    let names: Vec<String> = units
        .iter()
        .map(|u| {
            let base = file_safe(u.auth0);
            let mut name = base.clone();
            let mut n = 1;
            while !taken.insert(name.clone()) {
                n += 1;
                name = format!("{base}-{n}");
            }
            name
        })
        .collect();

    let mut manifest = Manifest::default();
    let mut files = Vec::new();
    let builtins = builtin_modules();
    let mut env_taken = HashSet::new();
    for (u, name) in units.iter().zip(&names) {
        let file = format!("{name}.js");
        let label = format!("{} {:?}", u.kind.as_str(), u.auth0);
        report.imported.push((
            format!("hooks/{file}"),
            format!("{label} ({})", u.role.describe()),
        ));
        match u.role {
            Role::Enabled => manifest.enabled = Some(name.clone()),
            Role::Flow(_) => manifest.flow.push(name.clone()),
            Role::Disabled | Role::Unbound => {}
        }
        files.push(HookFile {
            path: file.clone(),
            content: u.code.text.clone(),
            secret: false,
        });
        let mut entry = HookEntry::default();
        let mut file_keys = HashSet::new();
        for (key, value) in u.secrets {
            let left: Vec<String> = value
                .as_deref()
                .map(find_keywords)
                .unwrap_or_default()
                .into_iter()
                .map(|(_, k)| k)
                .collect();
            let why = match value.as_deref() {
                None | Some(MASKED) => Some("masked in the export".to_owned()),
                Some(_) if !left.is_empty() => Some(format!(
                    "keyword {} not replaced (not in --keywords)",
                    left.join(", ")
                )),
                Some(_) => None,
            };
            let r = match (why, value) {
                (Some(why), _) => {
                    let base = secret_env_var(name, key);
                    let mut var = base.clone();
                    let mut n = 1;
                    while !env_taken.insert(var.clone()) {
                        n += 1;
                        var = format!("{base}_{n}");
                    }
                    report
                        .env
                        .push((var.clone(), format!("{label} secret {key}: {why}")));
                    SecretRef {
                        env: Some(var),
                        file: None,
                    }
                }
                (None, Some(v)) => {
                    let base = secret_file_name(key);
                    let mut fname = base.clone();
                    let mut n = 1;
                    while !file_keys.insert(fname.clone()) {
                        n += 1;
                        fname = format!("{base}-{n}");
                    }
                    let rel = format!("secrets/{name}/{fname}");
                    files.push(HookFile {
                        path: rel.clone(),
                        content: v.clone(),
                        secret: true,
                    });
                    report.secret_files.push(format!("{name}.{key}"));
                    if v.ends_with(['\n', '\r']) {
                        report.behaviour.push(format!(
                            "hooks/{file}: secret {key} ends with a line break, which tokenhook drops when it reads a secret file"
                        ));
                    }
                    SecretRef {
                        env: None,
                        file: Some(rel),
                    }
                }
                (None, None) => unreachable!("a secret without a value has a reason"),
            };
            entry.secrets.insert(key.clone(), r);
        }
        if !entry.secrets.is_empty() {
            manifest.hook.insert(name.clone(), entry);
        }
        analyse(u, &file, &builtins, opts.tenant.is_some(), &mut report);
    }
    if manifest.enabled.is_none() && !hooks.is_empty() {
        report
            .behaviour
            .push("no credentials-exchange Hook was enabled in Auth0: none is enabled here".into());
    }

    // Keywords left, and where they went if into a hook file.
    let mut seen = HashSet::new();
    for k in &t.keywords_left {
        if !seen.insert((k.keyword.clone(), k.at.clone())) {
            continue;
        }
        let mut k = k.clone();
        for (u, name) in units.iter().zip(&names) {
            if let Some(line) = k.at.strip_prefix(&format!("{}:", u.code.shown)) {
                k.at = format!("{} (now hooks/{name}.js:{line})", k.at);
            }
        }
        report.keywords.push(k);
    }

    let clients = registry(t, opts, &mut report, &mut problems);
    checklist(t, &clients, &mut report);
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Plan {
        manifest,
        files,
        clients,
        report,
    })
}

fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (1, x) if x != 11 => "st",
        (2, x) if x != 12 => "nd",
        (3, x) if x != 13 => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// A secret's file name: its key, with characters a file name should not hold as `-`.
fn secret_file_name(key: &str) -> String {
    let s: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if s.trim_matches('.').is_empty() {
        "secret".into()
    } else {
        s
    }
}

/// The parameter names of the hook's function (`module.exports = function (client, …)`
/// or `exports.onExecuteCredentialsExchange = async (event, api) =>`), if found.
fn params(code: &str, after: &str) -> Vec<String> {
    let Some(start) = code.find(after) else {
        return Vec::new();
    };
    let rest = &code[start + after.len()..];
    let Some(open) = rest.find('(') else {
        return Vec::new();
    };
    let Some(close) = rest[open..].find(')') else {
        return Vec::new();
    };
    rest[open + 1..open + close]
        .split(',')
        .map(|p| p.split('=').next().unwrap_or("").trim().to_owned())
        .collect()
}

/// Lines where `pattern` (e.g. `event.organization`) is used, `?.` read as `.`, with no
/// identifier character right before it.
fn uses(code: &str, pattern: &str) -> Vec<usize> {
    let mut lines = Vec::new();
    for (i, line) in code.lines().enumerate() {
        let line = line.replace("?.", ".");
        let mut from = 0;
        while let Some(p) = line[from..].find(pattern) {
            let at = from + p;
            let before = line[..at].chars().next_back();
            if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$' || c == '.') {
                lines.push(i + 1);
                break;
            }
            from = at + pattern.len();
        }
    }
    lines
}

/// Every `require('NAME')`: (line number, module).
fn requires(code: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in code.lines().enumerate() {
        let mut from = 0;
        while let Some(p) = line[from..].find("require") {
            let at = from + p;
            from = at + "require".len();
            let before = line[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$' || c == '.') {
                continue;
            }
            if let Some(arg) = line[from..]
                .trim_start()
                .strip_prefix('(')
                .map(str::trim_start)
                && let Some(q) = arg.chars().next().filter(|c| "'\"`".contains(*c))
                && let Some(end) = arg[1..].find(q)
            {
                out.push((i + 1, arg[1..1 + end].to_owned()));
            }
        }
    }
    out
}

/// The npm package a module id belongs to (`lodash/fp` → `lodash`, `@a/b/c` → `@a/b`).
fn package_of(id: &str) -> &str {
    let mut parts = id.splitn(3, '/');
    let first = parts.next().unwrap_or(id);
    if first.starts_with('@') {
        match parts.next() {
            Some(second) => &id[..first.len() + 1 + second.len()],
            None => id,
        }
    } else {
        first
    }
}

/// Node's own modules tokenhook does not provide, to say so rather than call them npm.
const NODE_MODULES: &[&str] = &[
    "assert",
    "child_process",
    "dns",
    "events",
    "fs",
    "http",
    "https",
    "net",
    "os",
    "path",
    "stream",
    "string_decoder",
    "timers",
    "tls",
    "zlib",
];

/// What the code needs that tokenhook lacks: modules, and `event`/`context` fields
/// Auth0 filled and the sidecar leaves absent (D14).
fn analyse(u: &Unit, file: &str, builtins: &[String], tenant_known: bool, report: &mut Report) {
    let code = &u.code.text;
    let shown = format!("hooks/{file}");
    // The line as the export has it (keywords unreplaced), when the replacement kept
    // the lines where they were.
    let raw: Vec<&str> = u.code.raw.lines().collect();
    let quote = |line: usize| match raw.get(line - 1) {
        Some(l) if raw.len() == code.lines().count() => format!(": {}", l.trim()),
        _ => String::new(),
    };
    let mut required = HashSet::new();
    for (line, id) in requires(code) {
        let bare = id.strip_prefix("node:").unwrap_or(&id);
        if builtins.iter().any(|b| b == bare) {
            continue;
        }
        let package = package_of(bare);
        required.insert(package.to_owned());
        let what = match u.dependencies.iter().find(|(m, _)| m == package) {
            Some((m, v)) if v.is_empty() => format!("npm dependency {m}"),
            Some((m, v)) => format!("npm dependency {m}@{v}"),
            None if NODE_MODULES.contains(&package) => {
                format!("Node module {package}, which tokenhook does not provide")
            }
            None => format!("{package}, not declared as a dependency"),
        };
        report.modules.push(format!(
            "{shown}:{line}: requires {id:?} ({what}){}",
            quote(line)
        ));
    }
    for (m, v) in u.dependencies {
        if !required.contains(m.as_str()) && !builtins.iter().any(|b| b == m) {
            report.modules.push(format!(
                "{shown}: declares npm dependency {m}{} but never requires it (nothing to do)",
                if v.is_empty() {
                    String::new()
                } else {
                    format!("@{v}")
                }
            ));
        }
    }
    let (absent, tenant): (Vec<String>, Vec<String>) = match u.kind {
        Kind::Action => {
            let p = params(code, "onExecuteCredentialsExchange");
            let event = p
                .first()
                .filter(|s| !s.is_empty())
                .cloned()
                .unwrap_or("event".into());
            (
                [
                    "request.geoip",
                    "organization",
                    "custom_domain",
                    "transaction.correlation_id",
                ]
                .iter()
                .map(|f| format!("{event}.{f}"))
                .collect(),
                vec![format!("{event}.tenant")],
            )
        }
        Kind::Hook => {
            let p = params(code, "module.exports");
            let name = |i: usize, d: &str| {
                p.get(i)
                    .filter(|s| !s.is_empty())
                    .cloned()
                    .unwrap_or(d.into())
            };
            let (client, context) = (name(0, "client"), name(3, "context"));
            (
                ["storage", "meta", "headers", "query", "params"]
                    .iter()
                    .map(|f| format!("{context}.webtask.{f}"))
                    .collect(),
                vec![format!("{client}.tenant")],
            )
        }
    };
    for field in &absent {
        for line in uses(code, field) {
            report.behaviour.push(format!(
                "{shown}:{line}: reads {field}, which tokenhook cannot fill: it is undefined (docs/decisions.md D14)"
            ));
        }
    }
    for field in tenant.iter().filter(|_| !tenant_known) {
        for line in uses(code, field) {
            report.behaviour.push(format!(
                "{shown}:{line}: reads {field}, which is undefined: the export does not name the tenant; import again with --tenant NAME (or set tenant under each [clients.\"ID\"])"
            ));
        }
    }
    for (global, what) in [
        (
            "fetch(",
            "calls fetch(): a hook reaches the network only as far as [hook.NAME.fetch] in hooks.toml allows",
        ),
        (
            "process.",
            "uses process, which tokenhook hooks do not have",
        ),
    ] {
        if let Some(line) = uses(code, global).first() {
            report.behaviour.push(format!("{shown}:{line}: {what}"));
        }
    }
    if u.kind == Kind::Action && !code.contains("onExecuteCredentialsExchange") {
        report.behaviour.push(format!(
            "{shown}: exports no onExecuteCredentialsExchange, so it will not load as a credentials-exchange Action"
        ));
    }
    if u.deployed == Some(false) {
        report.behaviour.push(format!(
            "{shown}: Action {:?} was not deployed in Auth0; its exported (draft) code was imported",
            u.auth0
        ));
    }
}

/// The clients registry: `non_interactive` clients and any client a grant names.
fn registry(
    t: &Tenant,
    opts: &Options,
    report: &mut Report,
    problems: &mut Vec<Problem>,
) -> Vec<RegistryClient> {
    let granted = |c: &Client| {
        t.grants
            .iter()
            .any(|g| g.client == c.name || c.client_id.as_deref() == Some(&g.client))
    };
    let mut chosen: Vec<&Client> = Vec::new();
    let mut skipped = Vec::new();
    for c in &t.clients {
        if c.app_type.as_deref() == Some("non_interactive") || granted(c) {
            chosen.push(c);
        } else {
            let kind = c.app_type.as_deref().unwrap_or("no app_type");
            skipped.push((
                format!("client {:?}", c.name),
                format!("{kind}, no client grant"),
            ));
        }
    }
    skipped.sort();
    report.skipped.extend(skipped);
    for (name, _) in &opts.client_ids {
        if !chosen.iter().any(|c| &c.name == name) {
            problems.push(Problem::new(
                "--client-id",
                format!(
                    "no client named {name:?} among those imported (non_interactive, or named in a client grant)"
                ),
            ));
        }
    }
    let mut out: Vec<RegistryClient> = Vec::new();
    let mut missing = Vec::new();
    let mut names = HashSet::new();
    for c in chosen {
        if !names.insert(c.name.as_str()) {
            problems.push(Problem::new(
                &c.at,
                format!(
                    "two clients are named {:?}; grants and --client-id name clients, so rename one in Auth0 and export again",
                    c.name
                ),
            ));
        }
        let given = opts.client_ids.iter().find(|(n, _)| n == &c.name);
        let (id, how) = match (given, &c.client_id) {
            (Some((_, id)), Some(theirs)) if id != theirs => {
                (id.clone(), format!("--client-id; the export says {theirs}"))
            }
            (Some((_, id)), _) => (id.clone(), "from --client-id".to_owned()),
            (None, Some(id)) => (id.clone(), "from the export".to_owned()),
            (None, None) => {
                missing.push(c);
                continue;
            }
        };
        let mut metadata = BTreeMap::new();
        for (k, v) in &c.metadata {
            match v {
                Value::String(s) => {
                    metadata.insert(k.clone(), s.clone());
                }
                Value::Number(_) | Value::Bool(_) => {
                    // Auth0 keeps strings only; a hand-edited export may hold others.
                    metadata.insert(k.clone(), v.to_string());
                    report.behaviour.push(format!(
                        "client {id}: metadata {k} is not a string in the export; written as the string {:?}, as Auth0 would hold it",
                        v.to_string()
                    ));
                }
                _ => problems.push(Problem::new(
                    &c.at,
                    format!("client_metadata.{k}: must be a string (Auth0 keeps strings only)"),
                )),
            }
        }
        if out.iter().any(|o| o.id == id) {
            problems.push(Problem::new(
                &c.at,
                format!("client id {id} is given to two clients"),
            ));
        }
        report.clients.push((id.clone(), c.name.clone(), how));
        out.push(RegistryClient {
            id,
            name: c.name.clone(),
            tenant: opts.tenant.clone(),
            metadata,
        });
    }
    if !missing.is_empty() {
        for c in missing {
            problems.push(Problem::new(
                &c.at,
                format!(
                    "client {:?} has no client_id in the export (exported without AUTH0_EXPORT_IDENTIFIERS): give it with --client-id {:?}",
                    c.name,
                    format!("{}=ID", c.name)
                ),
            ));
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    report.clients.sort();
    out
}

/// What the new IdP must hold: each client, what each may be granted, each API.
fn checklist(t: &Tenant, clients: &[RegistryClient], report: &mut Report) {
    let api_name = |aud: &str| {
        t.resource_servers
            .iter()
            .find(|r| r.identifier == aud)
            .and_then(|r| r.name.clone())
            .map(|n| format!(" ({n:?})"))
            .unwrap_or_default()
    };
    let mut grants: Vec<String> = t
        .grants
        .iter()
        .map(|g| {
            let who = match t
                .clients
                .iter()
                .find(|c| c.name == g.client || c.client_id.as_deref() == Some(&g.client))
                .and_then(|c| clients.iter().find(|r| r.name == c.name))
            {
                Some(r) => format!("{} ({:?})", r.id, r.name),
                None => format!("{:?} (not among the export's clients)", g.client),
            };
            let scopes = if g.scope.is_empty() {
                "no scopes".to_owned()
            } else {
                format!("scopes {}", g.scope.join(" "))
            };
            format!("{who} → {}{}: {scopes}", g.audience, api_name(&g.audience))
        })
        .collect();
    grants.sort();
    report.grants = grants;
    let mut apis: Vec<String> = t
        .resource_servers
        .iter()
        .map(|r| {
            let scopes = if r.scopes.is_empty() {
                "no scopes".to_owned()
            } else {
                format!("scopes {}", r.scopes.join(" "))
            };
            format!("{}{}: {scopes}", r.identifier, api_name(&r.identifier))
        })
        .collect();
    apis.sort();
    report.apis = apis;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requires_and_uses_are_found_by_line() {
        let code = "const a = require('lodash/fp');\nconst b = require(\"node:crypto\"), c = myrequire('x');\n// event?.organization?.id\nfoo.event.organization;";
        // Breaks if a second require on a line, the `node:` form, or `?.` is missed, or
        // if `myrequire` / `foo.event` count.
        let r = requires(code);
        assert_eq!(r, vec![(1, "lodash/fp".into()), (2, "node:crypto".into())]);
        assert_eq!(uses(code, "event.organization"), vec![3]);
        assert_eq!(package_of("lodash/fp"), "lodash");
        assert_eq!(package_of("@acme/lib/x"), "@acme/lib");
        assert_eq!(
            params(
                "module.exports = function (c, s, a, ctx, cb) {",
                "module.exports"
            ),
            vec!["c", "s", "a", "ctx", "cb"]
        );
        assert_eq!(ordinal(1), "1st");
        assert_eq!(ordinal(12), "12th");
        assert_eq!(ordinal(23), "23rd");
    }
}
