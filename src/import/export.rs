//! The Deploy CLI's objects as both export formats hold them (a directory's JSON files
//! and `tenant.yaml`'s lists are the same objects), parsed into the import's model.

use super::{Action, Client, Code, Grant, Hook, Problem, Reader, ResourceServer};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::PathBuf;

#[derive(Deserialize)]
struct RawHook {
    name: String,
    #[serde(rename = "triggerId", default)]
    trigger_id: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
    /// Exports before 2020 wrote `active` for `enabled`…
    #[serde(default)]
    active: Option<bool>,
    #[serde(default)]
    script: Option<String>,
    /// … and `code` for `script`.
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    secrets: Option<Map<String, Value>>,
    #[serde(default)]
    dependencies: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
struct RawAction {
    name: String,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    dependencies: Option<Vec<RawDependency>>,
    #[serde(default)]
    secrets: Option<Vec<RawSecret>>,
    #[serde(default)]
    supported_triggers: Option<Vec<RawTrigger>>,
    #[serde(default)]
    deployed: Option<bool>,
}

#[derive(Deserialize)]
struct RawDependency {
    name: String,
    #[serde(default)]
    version: Option<Value>,
}

#[derive(Deserialize)]
struct RawSecret {
    name: String,
    #[serde(default)]
    value: Option<Value>,
}

#[derive(Deserialize)]
struct RawTrigger {
    id: String,
}

#[derive(Deserialize)]
struct RawBinding {
    #[serde(default)]
    action_name: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
}

#[derive(Deserialize)]
struct RawClient {
    name: String,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    app_type: Option<String>,
    #[serde(default)]
    client_metadata: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
struct RawGrant {
    client_id: String,
    audience: String,
    #[serde(default)]
    scope: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct RawResourceServer {
    #[serde(default)]
    name: Option<String>,
    identifier: String,
    /// `{value, description}` each; a hand-written export may list plain names.
    #[serde(default)]
    scopes: Option<Vec<Value>>,
}

/// Deserializes `v`, naming the key at fault (`at: secrets[0].name: …`).
fn typed<T: serde::de::DeserializeOwned>(v: Value, at: &str) -> Result<T, Problem> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.inner().to_string();
        if path == "." {
            Problem::new(at, msg)
        } else {
            Problem::new(at, format!("{path}: {msg}"))
        }
    })
}

/// A scalar as text: secret values and versions are strings in Auth0, but a YAML
/// export may spell `1.2` or `true` without quotes.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(_) | Value::Bool(_) => Some(v.to_string()),
        _ => None,
    }
}

fn secret_value(v: Option<&Value>, at: &str, key: &str) -> Result<Option<String>, Problem> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => scalar_text(v)
            .map(Some)
            .ok_or_else(|| Problem::new(at, format!("secrets.{key}: not a string"))),
    }
}

/// Where a code file may be, given how the object names it (`spec`).
pub type Candidates<'a> = &'a dyn Fn(&str) -> Vec<PathBuf>;

pub fn hook(
    v: Value,
    at: String,
    reader: &mut Reader,
    candidates: Candidates,
) -> Result<Hook, Problem> {
    let raw: RawHook = typed(v, &at)?;
    let spec = raw
        .script
        .or(raw.code)
        .ok_or_else(|| Problem::new(&at, "script: missing (the hook's code file)"))?;
    let code = code(reader, &at, &spec, candidates)?;
    let mut secrets = Vec::new();
    for (k, v) in raw.secrets.unwrap_or_default() {
        let value = secret_value(Some(&v), &at, &k)?;
        secrets.push((k, value));
    }
    let mut dependencies = Vec::new();
    for (m, v) in raw.dependencies.unwrap_or_default() {
        dependencies.push((m, scalar_text(&v).unwrap_or_default()));
    }
    Ok(Hook {
        name: raw.name,
        trigger: raw.trigger_id.unwrap_or_default(),
        enabled: raw.enabled.or(raw.active).unwrap_or(false),
        code,
        secrets,
        dependencies,
        at,
    })
}

/// Code given inline (some hand-written YAML exports do) is taken as is; anything that
/// looks like a file name is read from the export.
fn code(
    reader: &mut Reader,
    at: &str,
    spec: &str,
    candidates: Candidates,
) -> Result<Code, Problem> {
    let inline = spec.contains('\n') || !spec.trim_end().ends_with(".js");
    if inline {
        return Ok(Code {
            raw: spec.to_owned(),
            text: spec.to_owned(),
            shown: at.to_owned(),
        });
    }
    reader.code(at, spec, &candidates(spec.trim()))
}

pub fn action(
    v: Value,
    at: String,
    reader: &mut Reader,
    candidates: Candidates,
) -> Result<Action, Problem> {
    let raw: RawAction = typed(v, &at)?;
    let spec = raw
        .code
        .ok_or_else(|| Problem::new(&at, "code: missing (the Action's code file)"))?;
    let code = code(reader, &at, &spec, candidates)?;
    let mut secrets = Vec::new();
    for s in raw.secrets.unwrap_or_default() {
        let value = secret_value(s.value.as_ref(), &at, &s.name)?;
        secrets.push((s.name, value));
    }
    Ok(Action {
        name: raw.name,
        code,
        secrets,
        dependencies: raw
            .dependencies
            .unwrap_or_default()
            .into_iter()
            .map(|d| {
                let version = d.version.as_ref().and_then(scalar_text).unwrap_or_default();
                (d.name, version)
            })
            .collect(),
        triggers: raw
            .supported_triggers
            .unwrap_or_default()
            .into_iter()
            .map(|t| t.id)
            .collect(),
        deployed: raw.deployed,
    })
}

/// `{trigger: [{action_name, display_name}]}`, in the order each trigger runs them.
pub fn bindings(v: Value, at: &str) -> Result<Vec<(String, Vec<String>)>, Problem> {
    let raw: Map<String, Value> = match v {
        Value::Null => return Ok(Vec::new()),
        v => typed(v, at)?,
    };
    let mut out = Vec::new();
    for (trigger, list) in raw {
        let at = format!("{at}: {trigger}");
        let list: Option<Vec<RawBinding>> = typed(list, &at)?;
        let mut names = Vec::new();
        for (i, b) in list.unwrap_or_default().into_iter().enumerate() {
            // The Deploy CLI binds by `action_name`, `display_name` being the same.
            match b.action_name.or(b.display_name) {
                Some(n) => names.push(n),
                None => {
                    return Err(Problem::new(
                        at,
                        format!("[{i}]: missing field `action_name`"),
                    ));
                }
            }
        }
        out.push((trigger, names));
    }
    Ok(out)
}

pub fn client(v: Value, at: String) -> Result<Client, Problem> {
    let raw: RawClient = typed(v, &at)?;
    Ok(Client {
        name: raw.name,
        client_id: raw.client_id.filter(|s| !s.is_empty()),
        app_type: raw.app_type,
        metadata: raw
            .client_metadata
            .unwrap_or_default()
            .into_iter()
            .collect(),
        at,
    })
}

pub fn grant(v: Value, at: String) -> Result<Grant, Problem> {
    let raw: RawGrant = typed(v, &at)?;
    Ok(Grant {
        client: raw.client_id,
        audience: raw.audience,
        scope: raw.scope.unwrap_or_default(),
    })
}

pub fn resource_server(v: Value, at: String) -> Result<ResourceServer, Problem> {
    let raw: RawResourceServer = typed(v, &at)?;
    Ok(ResourceServer {
        name: raw.name,
        identifier: raw.identifier,
        scopes: raw
            .scopes
            .unwrap_or_default()
            .iter()
            .filter_map(|s| {
                s.as_str()
                    .or_else(|| s["value"].as_str())
                    .map(str::to_owned)
            })
            .collect(),
    })
}
