//! `tokenhook import auth0`: an Auth0 Deploy CLI export (directory or `tenant.yaml`)
//! read into one in-memory [`Tenant`], turned into a hooks folder and a `tokenhook.toml`
//! (`plan`, `write`), with a summary of what was imported, skipped and is left to do.

mod directory;
mod export;
mod plan;
mod summary;
mod write;
mod yaml;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub use plan::Options;

/// The trigger tokenhook re-implements; Hooks and Actions of any other are skipped.
pub const TRIGGER: &str = "credentials-exchange";
/// What Auth0's Deploy CLI exports in place of a secret's value.
pub const MASKED: &str = "_VALUE_NOT_SHOWN_";
/// Starts every value `tokenhook.toml` leaves for the user to fill.
pub use crate::config::PLACEHOLDER;

/// One problem with the export or the command line, named by the file and key it is in
/// (`hooks/enrich.json: secrets.API_KEY`), like config problems.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub at: String,
    pub message: String,
}

impl Problem {
    pub fn new(at: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            at: at.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

/// A tenant export, whichever format it came in. Only what the import uses is kept.
#[derive(Debug, Default)]
pub struct Tenant {
    pub hooks: Vec<Hook>,
    pub actions: Vec<Action>,
    /// Trigger id → the Actions bound to it (`action_name`), in execution order.
    pub bindings: Vec<(String, Vec<String>)>,
    /// Where the bindings are in the export.
    pub bindings_at: String,
    pub clients: Vec<Client>,
    pub grants: Vec<Grant>,
    pub resource_servers: Vec<ResourceServer>,
    /// Keywords still in the export's text after the replacement, where they stand.
    pub keywords_left: Vec<KeywordLeft>,
}

/// Source code as read from the export (keywords replaced), and where it was.
#[derive(Debug, Clone)]
pub struct Code {
    pub text: String,
    /// As the export holds it, keywords unreplaced: what the summary quotes, so a
    /// keyword's value (maybe a secret) is never printed.
    pub raw: String,
    /// Its path in the export, as the summary shows it.
    pub shown: String,
}

#[derive(Debug)]
pub struct Hook {
    pub name: String,
    pub trigger: String,
    pub enabled: bool,
    pub code: Code,
    /// In the export's order; `None` is a secret exported without a value.
    pub secrets: Vec<(String, Option<String>)>,
    /// npm module → version.
    pub dependencies: Vec<(String, String)>,
    /// Where the object is in the export, for problems and the summary.
    pub at: String,
}

#[derive(Debug)]
pub struct Action {
    pub name: String,
    pub code: Code,
    pub secrets: Vec<(String, Option<String>)>,
    pub dependencies: Vec<(String, String)>,
    /// `supported_triggers[].id`.
    pub triggers: Vec<String>,
    pub deployed: Option<bool>,
}

#[derive(Debug)]
pub struct Client {
    pub name: String,
    /// Present in exports made with `AUTH0_EXPORT_IDENTIFIERS`.
    pub client_id: Option<String>,
    pub app_type: Option<String>,
    pub metadata: Vec<(String, Value)>,
    pub at: String,
}

#[derive(Debug)]
pub struct Grant {
    /// The client's name, as the Deploy CLI writes it (or its id, in some exports).
    pub client: String,
    pub audience: String,
    pub scope: Vec<String>,
}

#[derive(Debug)]
pub struct ResourceServer {
    pub name: Option<String>,
    pub identifier: String,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeywordLeft {
    /// As written: `##NAME##` or `@@NAME@@`.
    pub keyword: String,
    /// `file:line` in the export.
    pub at: String,
}

/// `AUTH0_KEYWORD_REPLACE_MAPPINGS`: keyword → replacement, in the file's order.
#[derive(Debug, Default)]
pub struct Keywords(Vec<(String, Value)>);

impl Keywords {
    pub fn load(path: &Path) -> Result<Keywords, Problem> {
        let at = format!("--keywords {}", path.display());
        let text = std::fs::read_to_string(path)
            .map_err(|e| Problem::new(&at, format!("cannot read: {e}")))?;
        match serde_json::from_str::<Value>(&text) {
            // The Deploy CLI's own config file holds the mappings under this key.
            Ok(Value::Object(mut m)) => match m.remove("AUTH0_KEYWORD_REPLACE_MAPPINGS") {
                Some(Value::Object(inner)) => Ok(Keywords(inner.into_iter().collect())),
                Some(_) => Err(Problem::new(
                    at,
                    "AUTH0_KEYWORD_REPLACE_MAPPINGS: must be a JSON object of keyword → value",
                )),
                None => Ok(Keywords(m.into_iter().collect())),
            },
            Ok(_) => Err(Problem::new(
                at,
                "must be a JSON object of keyword → value (AUTH0_KEYWORD_REPLACE_MAPPINGS)",
            )),
            Err(e) => Err(Problem::new(at, format!("not valid JSON: {e}"))),
        }
    }

    /// Replaces keywords in `text` as the Deploy CLI does at deploy time, on the raw
    /// text of every file it reads: first `@@KEY@@` (with its double quotes, if any)
    /// by the value as JSON, then `##KEY##` by the value as text (strings, numbers and
    /// booleans only).
    pub fn apply(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (key, value) in &self.0 {
            let json = js_json(value);
            let marker = format!("@@{key}@@");
            out = out.replace(&format!("\"{marker}\""), &json);
            out = out.replace(&marker, &json);
        }
        for (key, value) in &self.0 {
            let plain = match value {
                Value::String(s) => s.clone(),
                Value::Number(_) | Value::Bool(_) => js_json(value),
                _ => continue,
            };
            out = out.replace(&format!("##{key}##"), &plain);
        }
        out
    }
}

/// `JSON.stringify(value)`: as serde_json writes it, but an integral float is written
/// without a fraction, as JavaScript has no other number type.
fn js_json(value: &Value) -> String {
    match value {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(0.0);
            if f.fract() == 0.0 && f.abs() < 1e21 {
                format!("{f:.0}")
            } else {
                n.to_string()
            }
        }
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(js_json).collect();
            format!("[{}]", parts.join(","))
        }
        Value::Object(m) => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}:{}", Value::String(k.clone()), js_json(v)))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        other => other.to_string(),
    }
}

/// Every `##NAME##` and `@@NAME@@` in `text`, with its 1-based line.
pub fn find_keywords(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        for delim in ["##", "@@"] {
            let mut rest = line;
            while let Some(start) = rest.find(delim) {
                let after = &rest[start + 2..];
                let name_len = after
                    .bytes()
                    .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
                    .count();
                if name_len > 0 && after[name_len..].starts_with(delim) {
                    found.push((i + 1, format!("{delim}{}{delim}", &after[..name_len])));
                    rest = &after[name_len + 2..];
                } else {
                    rest = &rest[start + 2..];
                }
            }
        }
    }
    found
}

/// The tokenhook name of an Auth0 Hook or Action (see the README, "Migrating from
/// Auth0"): lower-cased, every character other than an ASCII letter, digit, `-` or `_`
/// becomes `-`, runs of `-` become one, `-` and `_` are trimmed from both ends, at most
/// 128 characters; a name left empty becomes `hook`. Clashes are settled by the caller
/// (`-2`, `-3`, …). The Deploy CLI deploys Hook names lower-cased with `-` for spaces,
/// so a Hook keeps the name Auth0 showed.
pub fn file_safe(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            c.to_ascii_lowercase()
        } else {
            '-'
        };
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
    }
    let trim = |s: &str| s.trim_matches(|c| c == '-' || c == '_').to_owned();
    let mut out = trim(&out);
    if out.len() > 128 {
        out = trim(&out[..128]);
    }
    if out.is_empty() { "hook".into() } else { out }
}

/// The variable a secret without a value in the export is read from:
/// `TOKENHOOK_SECRET_<HOOK>_<KEY>`, both upper-cased with every character other than a
/// letter or digit turned into `_`. `SECRET` is no config section, so the name never
/// reads as a `TOKENHOOK_<SECTION>_<KEY>` config override (a hook named `log-x` would).
pub fn secret_env_var(hook: &str, key: &str) -> String {
    let up = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!("TOKENHOOK_SECRET_{}_{}", up(hook), up(key))
}

/// The modules hook code may `require` in tokenhook: the Node built-ins and the npm
/// modules given as built-ins (`hooks::engine`'s lists, which a test there checks
/// against what `require` really gives).
pub fn builtin_modules() -> Vec<String> {
    use crate::hooks::engine::{BUILTIN_MODULES, BUILTIN_PACKAGES};
    BUILTIN_MODULES
        .iter()
        .chain(BUILTIN_PACKAGES)
        .map(|m| (*m).to_owned())
        .collect()
}

/// How the export was given.
pub enum Format {
    Directory(PathBuf),
    Yaml(PathBuf),
}

impl Format {
    /// A file is a `tenant.yaml`; a folder is a directory export, unless it holds none
    /// of the directory format's folders but a `tenant.yaml` (the YAML format keeps its
    /// code files in `hooks/` and `actions/` beside it).
    pub fn detect(path: &Path) -> Result<Format, Problem> {
        let at = path.display().to_string();
        if path.is_file() {
            return Ok(Format::Yaml(path.to_owned()));
        }
        if !path.is_dir() {
            return Err(Problem::new(at, "no such file or folder"));
        }
        let has_json = |dir: &str| {
            std::fs::read_dir(path.join(dir)).is_ok_and(|rd| {
                rd.flatten()
                    .any(|e| e.path().extension().is_some_and(|x| x == "json"))
            })
        };
        let directory = directory::FOLDERS.iter().any(|d| has_json(d));
        for name in ["tenant.yaml", "tenant.yml"] {
            if !directory && path.join(name).is_file() {
                return Ok(Format::Yaml(path.join(name)));
            }
        }
        if directory {
            Ok(Format::Directory(path.to_owned()))
        } else {
            Err(Problem::new(
                at,
                "not an Auth0 Deploy CLI export: no hooks/, actions/, triggers/, clients/, grants/ or resource-servers/ JSON files and no tenant.yaml",
            ))
        }
    }

    pub fn read(&self, keywords: &Keywords) -> Result<Tenant, Vec<Problem>> {
        match self {
            Format::Directory(dir) => directory::read(dir, keywords),
            Format::Yaml(file) => yaml::read(file, keywords),
        }
    }
}

/// Reads export files under one root: replaces keywords in each as it is read, and
/// records the keywords left and where.
pub(crate) struct Reader<'a> {
    pub root: PathBuf,
    keywords: &'a Keywords,
    pub keywords_left: Vec<KeywordLeft>,
}

impl<'a> Reader<'a> {
    pub fn new(root: &Path, keywords: &'a Keywords) -> Self {
        Reader {
            root: root.to_owned(),
            keywords,
            keywords_left: Vec::new(),
        }
    }

    /// `rel` (relative to the root) with keywords replaced.
    pub fn text(&mut self, rel: &Path) -> Result<String, Problem> {
        self.both(rel).map(|(text, _)| text)
    }

    /// `rel` with keywords replaced, and as it is.
    fn both(&mut self, rel: &Path) -> Result<(String, String), Problem> {
        let shown = rel.display().to_string();
        let raw = std::fs::read_to_string(self.root.join(rel))
            .map_err(|e| Problem::new(&shown, format!("cannot read: {e}")))?;
        let text = self.keywords.apply(&raw);
        for (line, keyword) in find_keywords(&text) {
            self.keywords_left.push(KeywordLeft {
                keyword,
                at: format!("{shown}:{line}"),
            });
        }
        Ok((text, raw))
    }

    /// A code file named by `spec` in the object at `at`: the first of `candidates`
    /// (relative to the root) that exists inside the export. Exports name it in
    /// several ways (relative to their kind's folder, to the root, or by the absolute
    /// path of the machine that exported), hence the list.
    pub fn code(&mut self, at: &str, spec: &str, candidates: &[PathBuf]) -> Result<Code, Problem> {
        let root = self
            .root
            .canonicalize()
            .unwrap_or_else(|_| self.root.clone());
        for c in candidates {
            let full = self.root.join(c);
            let Ok(real) = full.canonicalize() else {
                continue;
            };
            if !real.starts_with(&root) || !real.is_file() {
                continue;
            }
            let rel = real.strip_prefix(&root).unwrap_or(c).to_owned();
            let (text, raw) = self.both(&rel)?;
            return Ok(Code {
                text,
                raw,
                shown: rel.display().to_string(),
            });
        }
        let tried: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
        Err(Problem::new(
            at,
            format!(
                "code file {spec:?} not found in the export (looked for {})",
                tried.join(", ")
            ),
        ))
    }
}

/// The Deploy CLI's file name for an object (`sanitize`): characters no file name may
/// hold become `-`.
pub(crate) fn export_file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_control() || "/\\?<>:*|\"".contains(c) {
                '-'
            } else {
                c
            }
        })
        .collect()
}

/// `tokenhook import auth0`: exit 0, or 64 (`EXIT_CONFIG`) when the export, an option
/// or the output folder is not usable (every problem listed), 1 when writing fails.
pub fn run_auth0(path: &Path, out: &Path, keywords: Option<&Path>, opts: Options) -> ExitCode {
    use crate::server::EXIT_CONFIG;
    let fail = |problems: &[Problem]| {
        for p in problems {
            eprintln!("{p}");
        }
        eprintln!(
            "{} problem{} found; nothing was written",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        );
        ExitCode::from(EXIT_CONFIG)
    };
    if let Err(p) = write::check_out(out, opts.force) {
        return fail(&[p]);
    }
    let keywords = match keywords.map(Keywords::load).transpose() {
        Ok(k) => k.unwrap_or_default(),
        Err(p) => return fail(&[p]),
    };
    let format = match Format::detect(path) {
        Ok(f) => f,
        Err(p) => return fail(&[p]),
    };
    let tenant = match format.read(&keywords) {
        Ok(t) => t,
        Err(problems) => return fail(&problems),
    };
    let plan = match plan::plan(&tenant, &opts) {
        Ok(p) => p,
        Err(problems) => return fail(&problems),
    };
    if let Err(e) = write::write(out, &plan, opts.force) {
        eprintln!("--out {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    print!("{}", summary::render(path, out, &plan));
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keywords_are_replaced_as_the_deploy_cli_does() {
        let k = Keywords(vec![
            ("NS".into(), json!("https://claims.example.com/")),
            ("LIST".into(), json!(["eu", "us"])),
            ("N".into(), json!(2.0)),
            ("OBJ".into(), json!({"a": 1})),
        ]);
        // Breaks if `@@` loses its quotes rule, `##` takes arrays, or numbers keep ".0".
        assert_eq!(
            k.apply("{'a': \"@@LIST@@\", 'b': ##NS##x, 'c': @@N@@, 'd': '##N##', 'e': '##OBJ##'}"),
            "{'a': [\"eu\",\"us\"], 'b': https://claims.example.com/x, 'c': 2, 'd': '2', 'e': '##OBJ##'}"
        );
        assert_eq!(k.apply("const r = @@LIST@@;"), "const r = [\"eu\",\"us\"];");
    }

    #[test]
    fn keywords_left_are_found_with_their_line() {
        // Breaks if a keyword on a later line, or the second on a line, is missed, or
        // a lone `##` is taken for one.
        let text = "a ## b\nx ##ONE## y @@TWO@@\n## Heading ##\n##THREE##";
        assert_eq!(
            find_keywords(text),
            vec![
                (2, "##ONE##".to_owned()),
                (2, "@@TWO@@".to_owned()),
                (4, "##THREE##".to_owned())
            ]
        );
    }

    #[test]
    fn names_are_made_file_safe_and_valid() {
        // Breaks if a character outside the rule survives or a result is not a valid
        // tokenhook hook name.
        for (auth0, ours) in [
            ("client metadata claims", "client-metadata-claims"),
            ("Set tier (v2)", "set-tier-v2"),
            ("_x__y_", "x__y"),
            ("Région/ñ", "r-gion"),
            ("???", "hook"),
            ("ok-name_1", "ok-name_1"),
        ] {
            assert_eq!(file_safe(auth0), ours, "{auth0}");
            assert!(crate::hooks::manifest::valid_name(ours), "{ours}");
        }
        assert_eq!(file_safe(&"a".repeat(300)).len(), 128);
        assert_eq!(
            secret_env_var("region-gate", "api key"),
            "TOKENHOOK_SECRET_REGION_GATE_API_KEY"
        );
    }

    #[test]
    fn builtin_modules_include_node_and_npm_built_ins() {
        // Breaks if the import stopped trusting a module hooks can load (it would
        // report axios as missing) or trusted an object name rather than a module.
        let names = builtin_modules();
        for m in ["buffer", "crypto", "querystring", "url", "util", "axios"] {
            assert!(names.contains(&m.to_owned()), "{names:?}");
        }
        assert!(
            !names.iter().any(|n| n == "Buffer" || n == "URL"),
            "{names:?}"
        );
    }

    #[test]
    fn every_builtin_module_the_import_trusts_loads_and_no_other() {
        use crate::hooks::engine::{Engine, Limits};
        // Breaks if the list holds a name `require` refuses (the import would pass a
        // failing hook in silence). `request` failing shows a refused require does
        // fail compilation here, so the loop can fail at all.
        let hook = |head: &str| {
            format!("{head}\nmodule.exports = function (c, s, a, x, cb) {{ cb(null, {{}}); }};")
        };
        for m in builtin_modules() {
            // Node's own modules by both names; npm modules by their bare name.
            let src = if crate::hooks::engine::BUILTIN_PACKAGES.contains(&m.as_str()) {
                hook(&format!("require('{m}');"))
            } else {
                hook(&format!("require('{m}'); require('node:{m}');"))
            };
            if let Err(e) = Engine::compile(&src, "{}", Limits::default()) {
                panic!("{m}: {e}");
            }
        }
        assert!(Engine::compile(&hook("require('request');"), "{}", Limits::default()).is_err());
    }
}
