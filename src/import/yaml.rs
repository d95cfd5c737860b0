//! The Deploy CLI's YAML format: one `tenant.yaml` with `hooks`, `actions`, `triggers`,
//! `clients`, `clientGrants` and `resourceServers`, code in files beside it.

use super::{Keywords, Problem, Reader, Tenant, export, export_file_name};
use saphyr::{LoadableYamlNode, Scalar, Yaml};
use serde_json::{Map, Number, Value};
use std::path::{Path, PathBuf};

/// YAML 1.2 core schema, as js-yaml 4 (the Deploy CLI's parser) reads it: `yes`, `no`,
/// `on` and `off` stay strings, as YAML 1.1 parsers would not keep them.
fn to_json(y: &Yaml, at: &str) -> Result<Value, Problem> {
    Ok(match y {
        Yaml::Value(s) => match s {
            Scalar::Null => Value::Null,
            Scalar::Boolean(b) => Value::Bool(*b),
            Scalar::Integer(i) => Value::Number((*i).into()),
            Scalar::FloatingPoint(f) => Number::from_f64(f.into_inner())
                .map(Value::Number)
                .ok_or_else(|| Problem::new(at, format!("{f} is not a number JSON can hold")))?,
            Scalar::String(s) => Value::String(s.to_string()),
        },
        Yaml::Representation(s, _, _) => Value::String(s.to_string()),
        Yaml::Sequence(items) => Value::Array(
            items
                .iter()
                .map(|i| to_json(i, at))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let key = match to_json(k, at)? {
                    Value::String(s) => s,
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    Value::Null => "null".to_owned(),
                    _ => return Err(Problem::new(at, "a mapping key is not a scalar")),
                };
                out.insert(key, to_json(v, at)?);
            }
            Value::Object(out)
        }
        Yaml::Tagged(_, inner) => to_json(inner, at)?,
        Yaml::Alias(_) | Yaml::BadValue => {
            return Err(Problem::new(at, "a value that is not valid YAML"));
        }
    })
}

pub fn read(file: &Path, keywords: &Keywords) -> Result<Tenant, Vec<Problem>> {
    // Code paths are relative to the YAML file's folder.
    let root = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = PathBuf::from(file.file_name().unwrap_or_default());
    let shown = name.display().to_string();
    let mut reader = Reader::new(root, keywords);
    let text = reader.text(&name).map_err(|p| vec![p])?;
    let docs = Yaml::load_from_str(&text).map_err(|e| {
        vec![Problem::new(
            &shown,
            format!("not valid YAML (after keyword replacement): {e}"),
        )]
    })?;
    let doc = match docs.first() {
        Some(d) => to_json(d, &shown).map_err(|p| vec![p])?,
        None => Value::Null,
    };
    let Value::Object(mut doc) = doc else {
        return Err(vec![Problem::new(
            shown,
            "not a tenant export: expected a mapping with hooks, actions, triggers, clients, …",
        )]);
    };
    let mut tenant = Tenant::default();
    let mut problems = Vec::new();
    let mut list = |key: &str| -> Vec<(Value, String)> {
        match doc.remove(key) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    let label = v["name"]
                        .as_str()
                        .map(|n| format!(" ({n:?})"))
                        .unwrap_or_default();
                    (v, format!("{shown}: {key}[{i}]{label}"))
                })
                .collect(),
            Some(_) => {
                problems.push(Problem::new(format!("{shown}: {key}"), "not a list"));
                Vec::new()
            }
        }
    };
    let hooks = list("hooks");
    let actions = list("actions");
    let clients = list("clients");
    let grants = list("clientGrants");
    let servers = list("resourceServers");
    for (v, at) in hooks {
        let name = v["name"].as_str().unwrap_or_default().to_owned();
        let candidates = |spec: &str| {
            vec![
                PathBuf::from(spec),
                Path::new("hooks").join(format!("{}.js", export_file_name(&name))),
            ]
        };
        match export::hook(v, at, &mut reader, &candidates) {
            Ok(h) => tenant.hooks.push(h),
            Err(p) => problems.push(p),
        }
    }
    for (v, at) in actions {
        let name = v["name"].as_str().unwrap_or_default().to_owned();
        let candidates = |spec: &str| {
            vec![
                PathBuf::from(spec),
                Path::new("actions")
                    .join(export_file_name(&name))
                    .join("code.js"),
            ]
        };
        match export::action(v, at, &mut reader, &candidates) {
            Ok(a) => tenant.actions.push(a),
            Err(p) => problems.push(p),
        }
    }
    for (v, at) in clients {
        match export::client(v, at) {
            Ok(c) => tenant.clients.push(c),
            Err(p) => problems.push(p),
        }
    }
    for (v, at) in grants {
        match export::grant(v, at) {
            Ok(g) => tenant.grants.push(g),
            Err(p) => problems.push(p),
        }
    }
    for (v, at) in servers {
        match export::resource_server(v, at) {
            Ok(r) => tenant.resource_servers.push(r),
            Err(p) => problems.push(p),
        }
    }
    if let Some(t) = doc.remove("triggers") {
        let at = format!("{shown}: triggers");
        match export::bindings(t, &at) {
            Ok(b) => {
                tenant.bindings = b;
                tenant.bindings_at = at;
            }
            Err(p) => problems.push(p),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    tenant.keywords_left = reader.keywords_left;
    Ok(tenant)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_1_2_scalars_as_js_yaml_reads_them() {
        // Breaks with a YAML 1.1 reading (`on`, `no` → booleans) or if tags, nested
        // lists or number keys are lost.
        let docs =
            Yaml::load_from_str("a: on\nb: no\nc: !!str 12\nd: [1, {e: null}]\n3: x\n").unwrap();
        let v = to_json(&docs[0], "t").unwrap();
        assert_eq!(
            v,
            serde_json::json!({"a": "on", "b": "no", "c": "12", "d": [1, {"e": null}], "3": "x"})
        );
    }
}
