//! The Deploy CLI's directory format: one JSON file per object under `hooks/`,
//! `actions/`, `clients/`, `grants/`, `resource-servers/`, and `triggers/triggers.json`.

use super::{Keywords, Problem, Reader, Tenant, export, export_file_name};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The folders whose JSON files make a directory export.
pub const FOLDERS: &[&str] = &[
    "hooks",
    "actions",
    "triggers",
    "clients",
    "grants",
    "resource-servers",
];

/// The `*.json` files directly in `root/folder`, sorted, as paths relative to `root`.
fn json_files(root: &Path, folder: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(folder))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "json"))
                .filter_map(|p| p.file_name().map(|n| Path::new(folder).join(n)))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn json(reader: &mut Reader, rel: &Path) -> Result<Value, Problem> {
    let text = reader.text(rel)?;
    serde_json::from_str(&text).map_err(|e| {
        Problem::new(
            rel.display().to_string(),
            format!("not valid JSON (after keyword replacement): {e}"),
        )
    })
}

pub fn read(root: &Path, keywords: &Keywords) -> Result<Tenant, Vec<Problem>> {
    let mut reader = Reader::new(root, keywords);
    let mut tenant = Tenant::default();
    let mut problems = Vec::new();
    let mut each =
        |folder: &str,
         reader: &mut Reader,
         f: &mut dyn FnMut(Value, String, &mut Reader) -> Result<(), Problem>| {
            for rel in json_files(root, folder) {
                let at = rel.display().to_string();
                if let Err(p) = json(reader, &rel).and_then(|v| f(v, at, reader)) {
                    problems.push(p);
                }
            }
        };
    each("hooks", &mut reader, &mut |v, at, r| {
        let name = v["name"].as_str().unwrap_or_default().to_owned();
        // The Deploy CLI reads a hook's script relative to `hooks/`.
        let candidates = |spec: &str| {
            vec![
                Path::new("hooks").join(spec),
                PathBuf::from(spec),
                Path::new("hooks").join(format!("{}.js", export_file_name(&name))),
            ]
        };
        tenant.hooks.push(export::hook(v, at, r, &candidates)?);
        Ok(())
    });
    each("actions", &mut reader, &mut |v, at, r| {
        let name = v["name"].as_str().unwrap_or_default().to_owned();
        // Relative to `actions/NAME/` for the Deploy CLI; exports write the path from
        // the export's root (or the exporting machine's absolute path), so the usual
        // place is tried last.
        let candidates = |spec: &str| {
            let own = Path::new("actions").join(&name);
            vec![
                own.join(spec),
                PathBuf::from(spec),
                Path::new("actions")
                    .join(export_file_name(&name))
                    .join("code.js"),
            ]
        };
        tenant.actions.push(export::action(v, at, r, &candidates)?);
        Ok(())
    });
    each("clients", &mut reader, &mut |v, at, _| {
        tenant.clients.push(export::client(v, at)?);
        Ok(())
    });
    each("grants", &mut reader, &mut |v, at, _| {
        tenant.grants.push(export::grant(v, at)?);
        Ok(())
    });
    each("resource-servers", &mut reader, &mut |v, at, _| {
        tenant
            .resource_servers
            .push(export::resource_server(v, at)?);
        Ok(())
    });
    let triggers = Path::new("triggers").join("triggers.json");
    if root.join(&triggers).is_file() {
        let at = triggers.display().to_string();
        match json(&mut reader, &triggers).and_then(|v| export::bindings(v, &at)) {
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
