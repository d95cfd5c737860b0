//! Writes a plan: `DIR/hooks/` (code, `hooks.toml`, secret files owner-only) and
//! `DIR/tokenhook.toml` with the clients registry and the placeholders to fill.

use super::plan::{Plan, RegistryClient};
use super::{PLACEHOLDER, Problem};
use std::path::Path;

pub const CONFIG: &str = "tokenhook.toml";
pub const HOOKS: &str = "hooks";

/// An existing, non-empty `out` is refused without `force`: an import replaces its
/// `tokenhook.toml` and `hooks/`, and a folder holding other things was likely named
/// by mistake.
pub fn check_out(out: &Path, force: bool) -> Result<(), Problem> {
    let at = format!("--out {}", out.display());
    if !out.exists() {
        return Ok(());
    }
    if !out.is_dir() {
        return Err(Problem::new(at, "exists and is not a folder"));
    }
    let empty = std::fs::read_dir(out)
        .map_err(|e| Problem::new(&at, format!("cannot read: {e}")))?
        .next()
        .is_none();
    if !empty && !force {
        return Err(Problem::new(
            at,
            "is not empty; give --force to replace its tokenhook.toml and hooks/ (nothing else in it is touched)",
        ));
    }
    Ok(())
}

/// A TOML basic string (also a quoted key).
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn key(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        s.to_owned()
    } else {
        quoted(s)
    }
}

/// `tokenhook.toml`: what the import knows (hooks folder, clients) and placeholders
/// for what it cannot (the IdP, the signing key), which `tokenhook check` reports
/// until they are filled.
pub fn config_text(clients: &[RegistryClient]) -> String {
    let mut t = format!(
        r#"# Written by `tokenhook import auth0` from an Auth0 tenant export.
# Fill each {PLACEHOLDER} value: `tokenhook check --config tokenhook.toml` lists those left.

# [server]
# public_url = "https://auth.example.com"  # how clients reach the sidecar: the tokens' issuer

[upstream]
# The new IdP, beside the sidecar (plain http).
url = "{PLACEHOLDER}: the IdP's base URL, e.g. http://127.0.0.1:3000"

[signing]
# Make one with: tokenhook keys generate --alg RS256 --out keys/current.pem
keys = ["{PLACEHOLDER}: a private key file, e.g. keys/current.pem"]

[hooks]
dir = "{HOOKS}"
"#
    );
    if !clients.is_empty() {
        t.push_str(
            "\n# Auth0's machine-to-machine clients, as hooks see them (client, event.client).\n",
        );
    }
    for c in clients {
        t.push_str(&format!(
            "\n[clients.{}]\nname = {}\n",
            quoted(&c.id),
            quoted(&c.name)
        ));
        if let Some(tenant) = &c.tenant {
            t.push_str(&format!("tenant = {}\n", quoted(tenant)));
        }
        if !c.metadata.is_empty() {
            let pairs: Vec<String> = c
                .metadata
                .iter()
                .map(|(k, v)| format!("{} = {}", key(k), quoted(v)))
                .collect();
            t.push_str(&format!("metadata = {{ {} }}\n", pairs.join(", ")));
        }
    }
    t
}

pub fn write(out: &Path, plan: &Plan, force: bool) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let config = config_text(&plan.clients);
    // The config must read back as the registry it stands for; a bug here would
    // otherwise surface as a confusing `check` error in a file the user never wrote.
    let raw: crate::config::raw::RawConfig = toml::from_str(&config).map_err(|e| {
        std::io::Error::other(format!("the generated {CONFIG} does not parse: {e}"))
    })?;
    let same = raw.clients.len() == plan.clients.len()
        && plan.clients.iter().all(|c| {
            raw.clients.get(&c.id).is_some_and(|r| {
                r.name.as_deref() == Some(c.name.as_str())
                    && r.tenant == c.tenant
                    && r.metadata == c.metadata
            })
        });
    if !same {
        return Err(std::io::Error::other(format!(
            "the generated {CONFIG} does not read back as the clients it lists"
        )));
    }
    std::fs::create_dir_all(out)?;
    let hooks = out.join(HOOKS);
    if force {
        if hooks.is_dir() {
            std::fs::remove_dir_all(&hooks)?;
        } else if hooks.exists() {
            std::fs::remove_file(&hooks)?;
        }
        if out.join(CONFIG).is_file() {
            std::fs::remove_file(out.join(CONFIG))?;
        }
    }
    std::fs::create_dir(&hooks)?;
    for f in &plan.files {
        let path = hooks.join(&f.path);
        if let Some(parent) = path.parent()
            && !parent.is_dir()
        {
            std::fs::create_dir_all(parent)?;
            if f.secret {
                // secrets/ and secrets/NAME/: owner-only, like the files in them.
                for dir in [parent, parent.parent().unwrap_or(parent)] {
                    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
                }
            }
        }
        if f.secret {
            crate::keys::write_private_key(&path, &f.content, false)?;
        } else {
            std::fs::write(&path, &f.content)?;
        }
    }
    plan.manifest.write(&hooks)?;
    std::fs::write(out.join(CONFIG), config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn config_quotes_what_toml_needs_and_reads_back() {
        // Breaks if a quote, backslash, newline or dotted key in a client id, name or
        // metadata escapes the string it is in.
        let clients = vec![RegistryClient {
            id: "id.with\"quote".into(),
            name: "Line\nbreak \\ back".into(),
            tenant: Some("acme".into()),
            metadata: BTreeMap::from([
                ("plain_key".into(), "v".into()),
                ("dotted.key".into(), "tab\there".into()),
            ]),
        }];
        let text = config_text(&clients);
        let raw: crate::config::raw::RawConfig = toml::from_str(&text).unwrap();
        let c = &raw.clients["id.with\"quote"];
        assert_eq!(c.name.as_deref(), Some("Line\nbreak \\ back"));
        assert_eq!(c.metadata, clients[0].metadata);
        assert_eq!(c.tenant.as_deref(), Some("acme"));
        assert!(raw.upstream.url.unwrap().starts_with(PLACEHOLDER));
        assert!(raw.signing.keys[0].starts_with(PLACEHOLDER));
    }
}
