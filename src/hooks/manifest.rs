//! The hooks folder, managed the Auth0 way: any number of `NAME.js` hooks, one enabled
//! at a time, recorded in `hooks.toml` with per-hook time limits and secrets.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const MANIFEST: &str = "hooks.toml";
/// `[hook.NAME.fetch]`, defined with the rest of the egress rules.
pub use crate::egress::FetchPolicy;
/// Auth0 allows at most 20 secrets per hook.
pub const MAX_SECRETS: usize = 20;
/// Auth0 allows at most 20 Actions bound to one trigger.
pub const MAX_FLOW: usize = 20;

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The one enabled hook, by name. Defaults to none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<String>,
    /// The Actions bound to the credentials-exchange trigger, in execution order; they
    /// run after the enabled Hook (D19). At most [`MAX_FLOW`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flow: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hook: BTreeMap<String, HookEntry>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HookEntry {
    /// Source file relative to the folder. Defaults to `NAME.js`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Time limit for this hook. Defaults to `hooks.timeout_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Secret name → where its value comes from. Values are never stored here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, SecretRef>,
    /// What `fetch` may reach from this hook; none means no network at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch: Option<FetchPolicy>,
}

/// Where a secret's value is read from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

impl SecretRef {
    /// The secret's value: the variable's, or the file's without a trailing newline
    /// (files in the hooks folder are taken relative to it).
    pub fn resolve(
        &self,
        dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, String> {
        match (&self.env, &self.file) {
            (Some(var), None) => {
                env(var).ok_or_else(|| format!("environment variable {var} is not set"))
            }
            (None, Some(f)) => std::fs::read_to_string(dir.join(f))
                .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
                .map_err(|e| format!("cannot read secret file {f}: {e}")),
            _ => Err("give exactly one of `env` or `file`".to_owned()),
        }
    }
}

/// The enabled hook, ready for the engine.
#[derive(Clone)]
pub struct HookSpec {
    pub name: String,
    pub path: PathBuf,
    pub source: String,
    pub timeout: Duration,
    /// Resolved secret values: never logged (no Debug impl prints them).
    pub secrets: BTreeMap<String, String>,
    /// `[hook.NAME.fetch]`; None: the hook has no network.
    pub fetch: Option<FetchPolicy>,
}

impl std::fmt::Debug for HookSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookSpec")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("timeout", &self.timeout)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A problem with the hooks folder, keyed like config errors (`hooks.dir/hooks.toml: …`).
pub type Problem = (String, String);

impl Manifest {
    pub fn read(dir: &Path) -> Result<Manifest, Problem> {
        let path = dir.join(MANIFEST);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Manifest::default()),
            Err(e) => return Err((format!("hooks.dir/{MANIFEST}"), format!("cannot read: {e}"))),
        };
        let de = toml::Deserializer::parse(&text)
            .map_err(|e| (format!("hooks.dir/{MANIFEST}"), e.message().to_owned()))?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let msg = e.inner().message().to_owned();
            (format!("hooks.dir/{MANIFEST}: {key}"), msg)
        })
    }

    pub fn file_for(&self, name: &str) -> String {
        self.hook
            .get(name)
            .and_then(|h| h.file.clone())
            .unwrap_or_else(|| format!("{name}.js"))
    }
}

/// What runs for a token request: the enabled Hook, then the bound Actions in order
/// (D19). Never empty.
#[derive(Debug, Clone)]
pub struct FlowSpec {
    pub steps: Vec<HookSpec>,
    /// Whether the first step is the enabled Hook (else every step is a bound Action).
    pub has_hook: bool,
}

impl FlowSpec {
    /// A flow of one hook, as `hooks run FILE` and older callers have it.
    pub fn single(spec: HookSpec) -> FlowSpec {
        FlowSpec {
            steps: vec![spec],
            has_hook: true,
        }
    }

    /// The flow's name in logs: its steps joined with `>`.
    pub fn label(&self) -> String {
        self.steps
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(" > ")
    }
}

/// Loads the enabled Hook and the bound Actions (None when neither is set), every
/// problem of every step at once.
pub fn load_flow(
    dir: &Path,
    default_timeout: Duration,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<FlowSpec>, Vec<Problem>> {
    let manifest = Manifest::read(dir).map_err(|p| vec![p])?;
    let mut problems = manifest.flow_problems();
    let mut steps = Vec::new();
    let names = manifest.enabled.iter().chain(&manifest.flow);
    for name in names {
        match load_named(&manifest, dir, name.clone(), default_timeout, env) {
            Ok(s) => steps.push(s),
            Err(p) => problems.extend(p),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok((!steps.is_empty()).then(|| FlowSpec {
        steps,
        has_hook: manifest.enabled.is_some(),
    }))
}

/// The hook the manifest names `name`, with its time limit and secrets resolved.
pub fn load_named(
    manifest: &Manifest,
    dir: &Path,
    name: String,
    default_timeout: Duration,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<HookSpec, Vec<Problem>> {
    let mut problems = Vec::new();
    let entry = manifest.hook.get(&name).cloned().unwrap_or_default();
    let file = manifest.file_for(&name);
    let path = dir.join(&file);
    let source = match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) => {
            let at = if manifest.enabled.as_deref() == Some(name.as_str()) {
                "enabled"
            } else {
                "flow"
            };
            problems.push((
                format!("hooks.dir/{MANIFEST}: {at}"),
                format!("hook {name:?}: cannot read {file}: {e}"),
            ));
            String::new()
        }
    };
    if entry.secrets.len() > MAX_SECRETS {
        problems.push((
            format!("hooks.dir/{MANIFEST}: hook.{name}.secrets"),
            format!(
                "{} secrets; at most {MAX_SECRETS} are allowed",
                entry.secrets.len()
            ),
        ));
    }
    let mut secrets = BTreeMap::new();
    for (key, r) in &entry.secrets {
        let at = format!("hooks.dir/{MANIFEST}: hook.{name}.secrets.{key}");
        match r.resolve(dir, env) {
            Ok(v) => {
                secrets.insert(key.clone(), v);
            }
            Err(m) => problems.push((at, m)),
        }
    }
    if entry.timeout_ms == Some(0) {
        problems.push((
            format!("hooks.dir/{MANIFEST}: hook.{name}.timeout_ms"),
            "must be greater than 0".into(),
        ));
    }
    let timeout = entry
        .timeout_ms
        .map(Duration::from_millis)
        .unwrap_or(default_timeout);
    if let Err(p) = crate::egress::HookEgress::new(&name, entry.fetch.as_ref(), timeout) {
        problems.extend(p);
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(HookSpec {
        name,
        path,
        source,
        timeout: entry
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(default_timeout),
        secrets,
        fetch: entry.fetch.clone(),
    })
}

/// A digest of everything the enabled hook is built from (manifest, source, secret
/// values), so the reloader notices any change, including a Kubernetes ConfigMap or
/// Secret update that swaps a symlink under the folder.
pub fn fingerprint(dir: &Path, env: &dyn Fn(&str) -> Option<String>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let text = std::fs::read(dir.join(MANIFEST)).unwrap_or_default();
    text.hash(&mut h);
    let Ok(m) = Manifest::read(dir) else {
        return h.finish();
    };
    for name in m.enabled.iter().chain(&m.flow) {
        name.hash(&mut h);
        std::fs::read(dir.join(m.file_for(name)))
            .unwrap_or_default()
            .hash(&mut h);
        if let Some(entry) = m.hook.get(name) {
            for (k, r) in &entry.secrets {
                k.hash(&mut h);
                if let Some(var) = &r.env {
                    env(var).hash(&mut h);
                }
                if let Some(f) = &r.file {
                    std::fs::read(dir.join(f)).unwrap_or_default().hash(&mut h);
                }
            }
        }
    }
    h.finish()
}

/// Hook names as Auth0 allows them.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b' ' || *c == b'_')
}

impl Manifest {
    /// What is wrong with the flow list itself (its steps' own problems are
    /// `load_named`'s): too long, a name twice, the enabled Hook bound again, a bad name.
    pub fn flow_problems(&self) -> Vec<Problem> {
        let at = format!("hooks.dir/{MANIFEST}: flow");
        let mut problems = Vec::new();
        if self.flow.len() > MAX_FLOW {
            problems.push((
                at.clone(),
                format!(
                    "{} Actions bound; at most {MAX_FLOW} are allowed",
                    self.flow.len()
                ),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for name in &self.flow {
            if !valid_name(name) {
                problems.push((at.clone(), format!("{name:?} is not a valid hook name")));
            } else if !seen.insert(name) {
                problems.push((at.clone(), format!("{name:?} is bound twice")));
            } else if self.enabled.as_deref() == Some(name.as_str()) {
                problems.push((
                    at.clone(),
                    format!("{name:?} is the enabled Hook; it cannot also be a bound Action"),
                ));
            }
        }
        problems
    }

    /// Every hook in the folder: `*.js` files plus entries naming other files.
    pub fn hooks(&self, dir: &Path) -> Vec<String> {
        let mut names: std::collections::BTreeSet<String> = self.hook.keys().cloned().collect();
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "js")
                    && let Some(stem) = p.file_stem().and_then(|s| s.to_str())
                {
                    names.insert(stem.to_owned());
                }
            }
        }
        names.into_iter().collect()
    }

    /// Writes the manifest atomically (temp file + rename), so the reloader never reads
    /// half a file.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let text = toml::to_string(self).map_err(std::io::Error::other)?;
        let header = "# Managed by `tokenhook hooks`; edits by hand are fine too.\n";
        let tmp = dir.join(format!(".{MANIFEST}.{}.tmp", std::process::id()));
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, format!("{header}{text}").as_bytes())?;
        f.sync_all()?;
        std::fs::rename(tmp, dir.join(MANIFEST))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "SET").then(|| "from-env".to_owned())
    }

    /// The enabled hook, as the flow loads it (its first step).
    fn load_enabled(
        dir: &Path,
        default_timeout: Duration,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<HookSpec>, Vec<Problem>> {
        load_flow(dir, default_timeout, env).map(|f| f.and_then(|f| f.steps.into_iter().next()))
    }

    #[test]
    fn enabled_hook_with_timeout_and_secrets() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.js"), "module.exports = function () {};").unwrap();
        std::fs::write(d.path().join("s.txt"), "from-file\n").unwrap();
        std::fs::write(
            d.path().join(MANIFEST),
            "enabled = \"a\"\n[hook.a]\ntimeout_ms = 250\n[hook.a.secrets]\nE = { env = \"SET\" }\nF = { file = \"s.txt\" }\n",
        )
        .unwrap();
        let spec = load_enabled(d.path(), Duration::from_secs(5), &env)
            .unwrap()
            .unwrap();
        assert_eq!(spec.timeout, Duration::from_millis(250));
        assert_eq!(spec.secrets["E"], "from-env");
        assert_eq!(spec.secrets["F"], "from-file");
        // Debug output names secrets, never their values.
        let shown = format!("{spec:?}");
        assert!(
            shown.contains("\"E\"") && !shown.contains("from-env") && !shown.contains("from-file")
        );
    }

    #[test]
    fn problems_name_their_key() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.js"), "x").unwrap();
        let mut secrets = String::new();
        for i in 0..21 {
            secrets.push_str(&format!("K{i} = {{ env = \"SET\" }}\n"));
        }
        std::fs::write(
            d.path().join(MANIFEST),
            format!("enabled = \"a\"\n[hook.a]\ntimeout_ms = 0\n[hook.a.secrets]\nMISSING = {{ env = \"UNSET\" }}\nBOTH = {{ env = \"SET\", file = \"x\" }}\n{secrets}"),
        )
        .unwrap();
        let problems = load_enabled(d.path(), Duration::from_secs(5), &env).unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|(k, _)| k.as_str()).collect();
        assert!(
            keys.contains(&"hooks.dir/hooks.toml: hook.a.secrets"),
            "{problems:?}"
        );
        assert!(
            keys.contains(&"hooks.dir/hooks.toml: hook.a.secrets.MISSING"),
            "{problems:?}"
        );
        assert!(
            keys.contains(&"hooks.dir/hooks.toml: hook.a.secrets.BOTH"),
            "{problems:?}"
        );
        assert!(
            keys.contains(&"hooks.dir/hooks.toml: hook.a.timeout_ms"),
            "{problems:?}"
        );
        std::fs::write(d.path().join(MANIFEST), "enabled = \"nope\"\n").unwrap();
        let problems = load_enabled(d.path(), Duration::from_secs(5), &env).unwrap_err();
        assert!(problems[0].1.contains("nope"), "{problems:?}");
        std::fs::write(d.path().join(MANIFEST), "enabeld = \"a\"\n").unwrap();
        assert!(load_enabled(d.path(), Duration::from_secs(5), &env).is_err());
    }

    #[test]
    fn no_manifest_means_no_hook_and_names_are_checked() {
        let d = tempfile::tempdir().unwrap();
        assert!(
            load_enabled(d.path(), Duration::from_secs(5), &env)
                .unwrap()
                .is_none()
        );
        for ok in ["seed", "my-hook 2", "a_b"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "-x", "x-", "a/b", "../etc", "a.js"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
