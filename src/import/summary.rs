//! The summary `tokenhook import` ends with: imported, skipped, to do. It names
//! secrets and variables, never a secret's value.

use super::TRIGGER;
use super::plan::Plan;
use super::write::{CONFIG, HOOKS};
use std::fmt::Write;
use std::path::Path;

/// Two columns, the first as wide as its widest entry.
fn table(out: &mut String, indent: &str, rows: &[(String, String)]) {
    let width = rows
        .iter()
        .map(|(a, _)| a.chars().count())
        .max()
        .unwrap_or(0);
    for (a, b) in rows {
        let pad = width - a.chars().count();
        let _ = writeln!(out, "{indent}{a}{}  {b}", " ".repeat(pad));
    }
}

fn list(out: &mut String, indent: &str, items: &[String]) {
    for i in items {
        let _ = writeln!(out, "{indent}{i}");
    }
}

pub fn render(path: &Path, dir: &Path, plan: &Plan) -> String {
    let r = &plan.report;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Imported the Auth0 export {} into {}.\n",
        path.display(),
        dir.display()
    );

    s.push_str("Imported\n");
    let mut rows = r.imported.clone();
    let m = &plan.manifest;
    let enabled = m
        .enabled
        .as_deref()
        .map_or("none".to_owned(), |e| format!("{e:?}"));
    let flow = if m.flow.is_empty() {
        "no Actions".to_owned()
    } else {
        m.flow.join(", ")
    };
    rows.push((
        format!("{HOOKS}/hooks.toml"),
        format!("enabled hook {enabled}; flow: {flow}"),
    ));
    if !r.secret_files.is_empty() {
        rows.push((
            format!("{HOOKS}/secrets/"),
            format!(
                "{} secret value{} from the export, owner-only: {}",
                r.secret_files.len(),
                if r.secret_files.len() == 1 { "" } else { "s" },
                r.secret_files.join(", ")
            ),
        ));
    }
    rows.push((
        CONFIG.to_owned(),
        format!(
            "{} client{} (name, metadata); placeholders for upstream.url and signing.keys",
            r.clients.len(),
            if r.clients.len() == 1 { "" } else { "s" }
        ),
    ));
    table(&mut s, "  ", &rows);
    let clients: Vec<(String, String)> = r
        .clients
        .iter()
        .map(|(id, name, how)| {
            (
                format!("[clients.{id:?}]"),
                format!("{name:?} (client id {how})"),
            )
        })
        .collect();
    table(&mut s, "      ", &clients);

    if !r.skipped.is_empty() {
        let _ = writeln!(
            s,
            "\nSkipped (tokenhook runs {TRIGGER} only; clients: machine-to-machine only)"
        );
        table(&mut s, "  ", &r.skipped);
    }

    s.push_str("\nTo do\n");
    let mut n = 0;
    let mut step = |s: &mut String, text: &str| {
        n += 1;
        let _ = writeln!(s, "  {n}. {text}");
    };
    if !r.env.is_empty() {
        step(
            &mut s,
            "Set these variables where tokenhook check and serve run (the export holds no value for them):",
        );
        table(&mut s, "       ", &r.env);
    }
    if !r.keywords.is_empty() {
        step(
            &mut s,
            "Keywords left unreplaced (add them to --keywords and import again, or edit the files):",
        );
        let rows: Vec<(String, String)> = r
            .keywords
            .iter()
            .map(|k| (k.keyword.clone(), k.at.clone()))
            .collect();
        table(&mut s, "       ", &rows);
    }
    if !r.modules.is_empty() {
        step(
            &mut s,
            "Modules tokenhook does not provide (the hook fails naming the module until its code does without it):",
        );
        list(&mut s, "       ", &r.modules);
    }
    if !r.behaviour.is_empty() {
        step(&mut s, "Will behave differently from Auth0:");
        list(&mut s, "       ", &r.behaviour);
    }
    let config = dir.join(CONFIG);
    step(
        &mut s,
        &format!(
            "Fill the placeholders in {} (upstream.url, signing.keys), then:",
            config.display()
        ),
    );
    let _ = writeln!(s, "       tokenhook check --config {}", config.display());
    let _ = writeln!(s, "       tokenhook serve --config {}", config.display());
    step(
        &mut s,
        "On the new IdP, which enforces these (tokenhook does not): register each client above under its client id (Auth0 never exports client secrets), and",
    );
    if r.grants.is_empty() {
        let _ = writeln!(s, "       grant: nothing (the export has no client grants)");
    } else {
        let _ = writeln!(s, "       grant:");
        list(&mut s, "         ", &r.grants);
    }
    if !r.apis.is_empty() {
        let _ = writeln!(s, "       define the APIs:");
        list(&mut s, "         ", &r.apis);
    }
    step(
        &mut s,
        "Point the resource servers at the sidecar: its tokens' issuer is server.public_url, their keys are at its /.well-known/jwks.json.",
    );
    s
}
