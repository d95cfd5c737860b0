//! `tokenhook import auth0` on an export fixture in both Deploy CLI formats
//! (`tests/fixtures/auth0-export/`): the folder it writes, its summary, its refusals,
//! each imported hook run alone, and the whole tenant checked and served in front of
//! oidc-provider.
//!
//! The fixture: Hook "client metadata claims" (enabled; a literal secret, a secret left
//! as an unreplaced keyword, `##CLAIM_NAMESPACE##` in its code), Hook "legacy-audit"
//! (disabled, pre-2020 `active`/`code` keys in the directory format, requires the npm
//! module `request`), a post-user-registration Hook, the Actions "Set tier",
//! "Region gate" (masked secret, `@@ALLOWED_REGIONS@@`), "Trim scopes" (a secret from a
//! keyword) bound to credentials-exchange in that order, a post-login Action, and four
//! clients: one with its client_id, two without (one a regular_web app in a grant), and
//! a SPA to skip.

mod common;

use common::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn fixture(p: &str) -> PathBuf {
    repo().join("tests/fixtures/auth0-export").join(p)
}

/// The `--client-id` options the fixture needs: two clients come without their id.
const CLIENT_IDS: [&str; 4] = [
    "--client-id",
    "Reporting Job=svc-post",
    "--client-id",
    "Legacy Importer=svc-legacy",
];

/// Every secret value in the fixture (literal, or given as a keyword's value), and the
/// values the tests give the two secrets the export has none for.
const SECRET_VALUES: [&str; 3] = [
    "hook-salt-3f9a1c77e0",
    "audit-token-5b2e91d4c8",
    "staging-label-77",
];
const PARTNER_VAR: &str = "TOKENHOOK_SECRET_CLIENT_METADATA_CLAIMS_PARTNER_TOKEN";
const PARTNER_VALUE: &str = "partner-token-e2e-41f0";
const GATE_VAR: &str = "TOKENHOOK_SECRET_REGION_GATE_GATE_KEY";
const GATE_VALUE: &str = "gate-key-e2e-93ab";
const NS: &str = "https://claims.example.com/";

fn import(export: &Path, out: &Path, extra: &[&str]) -> (i32, String, String) {
    let keywords = fixture("keywords.json");
    let mut args = vec![
        "import",
        "auth0",
        export.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    // The fixture's keywords, unless the test gives its own.
    if !extra.contains(&"--keywords") {
        args.extend(["--keywords", keywords.to_str().unwrap()]);
    }
    args.extend_from_slice(extra);
    run_cli(&args, &[])
}

/// Relative path → (content, mode) of every file under `dir`.
fn tree(dir: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt;
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (Vec<u8>, u32)>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                let mode = e.metadata().unwrap().permissions().mode() & 0o777;
                out.insert(rel, (std::fs::read(&p).unwrap(), mode));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn hmac_hex(key: &str, data: &str) -> String {
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key.as_bytes());
    aws_lc_rs::hmac::sign(&k, data.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn both_formats_give_the_same_folder_with_the_flow_secrets_and_clients() {
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (d.path().join("from-dir"), d.path().join("from-yaml"));
    let (code, _, err) = import(&fixture("directory"), &a, &CLIENT_IDS);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = import(&fixture("yaml/tenant.yaml"), &b, &CLIENT_IDS);
    assert_eq!(code, 0, "{err}");
    // Breaks if the readers differ in anything they carry over (order, names, the
    // pre-2020 keys, keyword replacement, YAML scalars), or a file's mode differs.
    let (ta, tb) = (tree(&a), tree(&b));
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
    for (path, content) in &ta {
        assert_eq!(Some(content), tb.get(path), "{path} differs");
    }
    // The Deploy CLI's config file as --keywords gives the same folder.
    let config_json = d.path().join("config.json");
    let mappings: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("keywords.json")).unwrap()).unwrap();
    std::fs::write(
        &config_json,
        json!({"AUTH0_DOMAIN": "acme.eu.auth0.com", "AUTH0_KEYWORD_REPLACE_MAPPINGS": mappings})
            .to_string(),
    )
    .unwrap();
    let e = d.path().join("from-config-json");
    let mut args = CLIENT_IDS.to_vec();
    args.extend(["--keywords", config_json.to_str().unwrap()]);
    let (code, _, err) = import(&fixture("directory"), &e, &args);
    assert_eq!(code, 0, "{err}");
    assert_eq!(tree(&e), ta);
    // The folder of the export given as the folder holding tenant.yaml is the same too.
    let c = d.path().join("from-yaml-folder");
    let (code, _, err) = import(&fixture("yaml"), &c, &CLIENT_IDS);
    assert_eq!(code, 0, "{err}");
    assert_eq!(tree(&c), ta);

    // Breaks if a Hook of another trigger or the post-login Action is imported, or a
    // Hook or Action is missing or misnamed.
    assert_eq!(
        ta.keys().map(String::as_str).collect::<Vec<_>>(),
        vec![
            "hooks/client-metadata-claims.js",
            "hooks/hooks.toml",
            "hooks/legacy-audit.js",
            "hooks/region-gate.js",
            "hooks/secrets/client-metadata-claims/TIER_SALT",
            "hooks/secrets/legacy-audit/AUDIT_TOKEN",
            "hooks/secrets/trim-scopes/LABEL",
            "hooks/set-tier.js",
            "hooks/trim-scopes.js",
            "tokenhook.toml",
        ]
    );
    // Breaks if the flow loses Auth0's order, the disabled Hook is enabled, or a
    // secret without a value in the export is given a file (or one with a value is not).
    let manifest: toml::Table =
        toml::from_str(&String::from_utf8(ta["hooks/hooks.toml"].0.clone()).unwrap()).unwrap();
    assert_eq!(manifest["enabled"].as_str(), Some("client-metadata-claims"));
    assert_eq!(
        manifest["flow"],
        toml::Value::try_from(["set-tier", "region-gate", "trim-scopes"]).unwrap()
    );
    let secrets = |hook: &str| manifest["hook"][hook]["secrets"].clone();
    assert_eq!(
        secrets("client-metadata-claims"),
        toml::Value::try_from(json!({
            "PARTNER_TOKEN": {"env": PARTNER_VAR},
            "TIER_SALT": {"file": "secrets/client-metadata-claims/TIER_SALT"},
        }))
        .unwrap()
    );
    assert_eq!(
        secrets("region-gate"),
        toml::Value::try_from(json!({"GATE_KEY": {"env": GATE_VAR}})).unwrap()
    );
    assert_eq!(
        secrets("trim-scopes"),
        toml::Value::try_from(json!({"LABEL": {"file": "secrets/trim-scopes/LABEL"}})).unwrap()
    );
    // Breaks if a secret file is readable by others or holds anything but the value
    // (the keyword's value, for LABEL).
    for (path, value) in [
        (
            "hooks/secrets/client-metadata-claims/TIER_SALT",
            "hook-salt-3f9a1c77e0",
        ),
        (
            "hooks/secrets/legacy-audit/AUDIT_TOKEN",
            "audit-token-5b2e91d4c8",
        ),
        ("hooks/secrets/trim-scopes/LABEL", "staging-label-77"),
    ] {
        assert_eq!(ta[path], (value.as_bytes().to_vec(), 0o600), "{path}");
    }
    // Breaks if keywords are left in code, or `@@…@@` is not replaced by JSON.
    let code = |p: &str| String::from_utf8(ta[p].0.clone()).unwrap();
    assert!(code("hooks/region-gate.js").contains(r#"const ALLOWED_REGIONS = ["eu","us"];"#));
    for p in ta.keys().filter(|p| p.ends_with(".js")) {
        assert!(!code(p).contains("##") && !code(p).contains("@@"), "{p}");
    }
    // The code is Auth0's, keywords aside.
    assert_eq!(
        code("hooks/set-tier.js"),
        std::fs::read_to_string(fixture("directory/actions/Set tier/code.js"))
            .unwrap()
            .replace("##CLAIM_NAMESPACE##", NS)
    );
    // Breaks if a client is missing, the SPA is imported, an id is wrong, or
    // client_metadata does not become metadata.
    let cfg: toml::Table =
        toml::from_str(&String::from_utf8(ta["tokenhook.toml"].0.clone()).unwrap()).unwrap();
    assert_eq!(
        cfg["clients"],
        toml::Value::try_from(json!({
            "svc-basic": {"name": "Billing Service", "metadata": {"region": "eu", "tier": "silver"}},
            "svc-legacy": {"name": "Legacy Importer", "metadata": {"region": "eu", "tier": "bronze", "blocked": "true"}},
            "svc-post": {"name": "Reporting Job", "metadata": {"region": "us", "tier": "gold"}},
        }))
        .unwrap()
    );
    assert_eq!(cfg["hooks"]["dir"].as_str(), Some("hooks"));
}

#[test]
fn the_summary_lists_imported_skipped_and_to_do_and_never_a_secret_value() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    let (code, summary, err) = import(&fixture("directory"), &out, &CLIENT_IDS);
    assert_eq!(code, 0, "{err}");
    // Breaks if any of these findings goes missing from the summary.
    for line in [
        "hooks/client-metadata-claims.js  Hook \"client metadata claims\" (enabled)",
        "hooks/legacy-audit.js            Hook \"legacy-audit\" (disabled)",
        "hooks/set-tier.js                Action \"Set tier\" (flow, 1st)",
        "hooks/region-gate.js             Action \"Region gate\" (flow, 2nd)",
        "hooks/trim-scopes.js             Action \"Trim scopes\" (flow, 3rd)",
        "enabled hook \"client-metadata-claims\"; flow: set-tier, region-gate, trim-scopes",
        "[clients.\"svc-basic\"]   \"Billing Service\" (client id from the export)",
        "[clients.\"svc-post\"]    \"Reporting Job\" (client id from --client-id)",
        "Hook \"welcome email\"    trigger post-user-registration",
        "Action \"Add roles\"      trigger post-login",
        "client \"Dashboard SPA\"  spa, no client grant",
        &format!(
            "{PARTNER_VAR}  Hook \"client metadata claims\" secret PARTNER_TOKEN: keyword ##PARTNER_TOKEN## not replaced"
        ),
        &format!(
            "{GATE_VAR}                  Action \"Region gate\" secret GATE_KEY: masked in the export"
        ),
        "##PARTNER_TOKEN##  hooks/client metadata claims.json:8",
        "hooks/legacy-audit.js:5: requires \"request\" (npm dependency request@2.88.2): const request = require('request');",
        "hooks/trim-scopes.js: declares npm dependency lodash@4.17.21 but never requires it",
        "(upstream.url, signing.keys)",
        "svc-basic (\"Billing Service\") → https://api.example.com (\"Example API\"): scopes read:data write:data",
        "svc-legacy (\"Legacy Importer\") → https://api.example.com (\"Example API\"): scopes read:data",
        "https://api.example.com (\"Example API\"): scopes read:data write:data",
    ] {
        assert!(summary.contains(line), "missing {line:?} in:\n{summary}");
    }
    // The YAML export says where its keyword stands in tenant.yaml.
    let (code, yaml_summary, err) = import(
        &fixture("yaml/tenant.yaml"),
        &d.path().join("y"),
        &CLIENT_IDS,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        yaml_summary.contains("##PARTNER_TOKEN##  tenant.yaml:14"),
        "{yaml_summary}"
    );
    // Breaks if a secret value (literal, or a keyword's value) reaches the output.
    for v in SECRET_VALUES {
        for (what, text) in [
            ("summary", &summary),
            ("stderr", &err),
            ("yaml summary", &yaml_summary),
        ] {
            assert!(!text.contains(v), "{what} shows a secret value");
        }
    }
}

#[test]
fn an_export_field_tokenhook_cannot_fill_is_named() {
    // Breaks if reading event.organization or client.tenant goes unreported.
    let d = tempfile::tempdir().unwrap();
    let export = d.path().join("export");
    std::fs::create_dir_all(export.join("hooks")).unwrap();
    std::fs::create_dir_all(export.join("clients")).unwrap();
    std::fs::write(
        export.join("clients/Svc.json"),
        r#"{"name": "Svc", "app_type": "non_interactive", "client_id": "svc-1"}"#,
    )
    .unwrap();
    std::fs::write(
        export.join("hooks/h.json"),
        r#"{"name": "h", "triggerId": "credentials-exchange", "enabled": true, "script": "./h.js"}"#,
    )
    .unwrap();
    std::fs::write(
        export.join("hooks/h.js"),
        "module.exports = function (cl, scope, audience, ctx, cb) {\n  cb(null, { 'https://x/t': cl.tenant, 'https://x/s': ctx.webtask.storage });\n};\n",
    )
    .unwrap();
    let (code, summary, err) = run_cli(
        &[
            "import",
            "auth0",
            export.to_str().unwrap(),
            "--out",
            d.path().join("out").to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        summary.contains("hooks/h.js:2: reads cl.tenant, which is undefined: the export does not name the tenant; import again with --tenant NAME"),
        "{summary}"
    );
    assert!(
        summary.contains("hooks/h.js:2: reads ctx.webtask.storage, which tokenhook cannot fill"),
        "{summary}"
    );
    // Breaks if --tenant does not reach the registry or the note stays.
    let out = d.path().join("out2");
    let (code, summary, err) = run_cli(
        &[
            "import",
            "auth0",
            export.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--tenant",
            "acme",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(!summary.contains("cl.tenant"), "{summary}");
    let cfg = std::fs::read_to_string(out.join("tokenhook.toml")).unwrap();
    assert!(
        cfg.contains("[clients.\"svc-1\"]\nname = \"Svc\"\ntenant = \"acme\"\n"),
        "{cfg}"
    );
}

#[test]
fn clients_without_an_id_stop_the_import_and_each_is_named() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    // Breaks if the import guesses an id, writes anything, or names only one client.
    let (code, stdout, err) = import(&fixture("directory"), &out, &[]);
    assert_eq!(code, 64, "{stdout}{err}");
    assert!(!out.exists());
    for line in [
        "clients/Legacy Importer.json: client \"Legacy Importer\" has no client_id in the export (exported without AUTH0_EXPORT_IDENTIFIERS): give it with --client-id \"Legacy Importer=ID\"",
        "clients/Reporting Job.json: client \"Reporting Job\" has no client_id",
        "2 problems found; nothing was written",
    ] {
        assert!(err.contains(line), "missing {line:?} in:\n{err}");
    }
    // YAML: named by its place in tenant.yaml.
    let (code, _, err) = import(
        &fixture("yaml/tenant.yaml"),
        &out,
        &["--client-id", "Reporting Job=svc-post"],
    );
    assert_eq!(code, 64);
    assert!(
        err.contains("tenant.yaml: clients[2] (\"Legacy Importer\"): client \"Legacy Importer\" has no client_id"),
        "{err}"
    );
    // Breaks if a --client-id naming no imported client (a typo, or the SPA) passes.
    let mut args = CLIENT_IDS.to_vec();
    args.extend(["--client-id", "Dashboard SPA=spa"]);
    let (code, _, err) = import(&fixture("directory"), &out, &args);
    assert_eq!(code, 64);
    assert!(
        err.contains("--client-id: no client named \"Dashboard SPA\" among those imported"),
        "{err}"
    );
    let (code, _, err) = import(&fixture("directory"), &out, &["--client-id", "no-equals"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn a_folder_that_is_not_empty_is_kept_without_force_and_replaced_with_it() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    std::fs::create_dir_all(out.join("hooks")).unwrap();
    std::fs::write(out.join("hooks/stale.js"), "old").unwrap();
    std::fs::create_dir(out.join("keys")).unwrap();
    std::fs::write(out.join("keys/current.pem"), "mine").unwrap();
    // Breaks if a non-empty folder is written into without --force.
    let (code, _, err) = import(&fixture("directory"), &out, &CLIENT_IDS);
    assert_eq!(code, 64);
    assert!(err.contains("is not empty; give --force"), "{err}");
    assert!(!out.join("tokenhook.toml").exists());
    // Breaks if --force leaves an old hook behind (it would be one of the folder's
    // hooks) or touches anything but tokenhook.toml and hooks/.
    let mut args = CLIENT_IDS.to_vec();
    args.push("--force");
    let (code, _, err) = import(&fixture("directory"), &out, &args);
    assert_eq!(code, 0, "{err}");
    assert!(!out.join("hooks/stale.js").exists());
    assert!(out.join("hooks/set-tier.js").is_file());
    assert_eq!(
        std::fs::read_to_string(out.join("keys/current.pem")).unwrap(),
        "mine"
    );
}

/// A copy of the directory fixture with `edit` applied, imported.
fn import_edited(edit: impl Fn(&Path)) -> (i32, String) {
    let d = tempfile::tempdir().unwrap();
    let export = d.path().join("export");
    copy_dir(&fixture("directory"), &export);
    edit(&export);
    let (code, _, err) = import(&export, &d.path().join("out"), &CLIENT_IDS);
    assert!(!d.path().join("out").exists(), "written despite: {err}");
    (code, err)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn a_bad_export_is_refused_naming_the_file_and_key() {
    // Each edit breaks the export one way; the import must exit 64 naming where.
    type Edit = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "hooks/legacy-audit.json: not valid JSON",
            Box::new(|e: &Path| std::fs::write(e.join("hooks/legacy-audit.json"), "{").unwrap()),
        ),
        (
            "actions/Set tier.json: code file \"./actions/Set tier/code.js\" not found in the export",
            Box::new(|e: &Path| std::fs::remove_file(e.join("actions/Set tier/code.js")).unwrap()),
        ),
        (
            "clients/Reporting Job.json: client_metadata.tier: must be a string",
            Box::new(|e: &Path| {
                let p = e.join("clients/Reporting Job.json");
                let t = std::fs::read_to_string(&p).unwrap();
                std::fs::write(p, t.replace("\"tier\": \"gold\"", "\"tier\": {\"a\": 1}")).unwrap();
            }),
        ),
        (
            "triggers/triggers.json: credentials-exchange: Action \"Set tier\" is bound but not in the export's actions",
            Box::new(|e: &Path| std::fs::remove_file(e.join("actions/Set tier.json")).unwrap()),
        ),
        (
            "more than one credentials-exchange Hook is enabled",
            Box::new(|e: &Path| {
                let p = e.join("hooks/legacy-audit.json");
                let t = std::fs::read_to_string(&p).unwrap();
                std::fs::write(p, t.replace("\"active\": false", "\"active\": true")).unwrap();
            }),
        ),
        (
            "hooks/legacy-audit.json: secrets.AUDIT_TOKEN: not a string",
            Box::new(|e: &Path| {
                let p = e.join("hooks/legacy-audit.json");
                let t = std::fs::read_to_string(&p).unwrap();
                std::fs::write(p, t.replace("\"audit-token-5b2e91d4c8\"", "[1]")).unwrap();
            }),
        ),
    ];
    for (expected, edit) in cases {
        let (code, err) = import_edited(edit);
        assert_eq!(code, 64, "{expected}: {err}");
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    // The YAML format names tenant.yaml and where in it.
    let d = tempfile::tempdir().unwrap();
    let export = d.path().join("export");
    copy_dir(&fixture("yaml"), &export);
    let p = export.join("tenant.yaml");
    let t = std::fs::read_to_string(&p).unwrap();
    std::fs::write(
        &p,
        t.replace("  - name: legacy-audit\n", "  - nome: legacy-audit\n"),
    )
    .unwrap();
    let (code, _, err) = import(&p, &d.path().join("out"), &CLIENT_IDS);
    assert_eq!(code, 64);
    assert!(
        err.contains("tenant.yaml: hooks[1]: missing field `name`"),
        "{err}"
    );
    std::fs::write(&p, "hooks: [\n").unwrap();
    let (code, _, err) = import(&p, &d.path().join("out"), &CLIENT_IDS);
    assert_eq!(code, 64);
    assert!(err.contains("tenant.yaml: not valid YAML"), "{err}");
    let (code, _, err) = import(&d.path().join("nothing"), &d.path().join("out"), &[]);
    assert_eq!(code, 64);
    assert!(err.contains("no such file or folder"), "{err}");
}

/// `tokenhook hooks --dir OUT/hooks run OUT/hooks/NAME.js` with `event`, as Auth0
/// would have run that one hook.
fn run_hook(out: &Path, name: &str, event: Value) -> Value {
    let ev = out.join(format!("{name}-event.json"));
    std::fs::write(&ev, event.to_string()).unwrap();
    let hooks = out.join("hooks");
    let file = hooks.join(format!("{name}.js"));
    let (code, stdout, err) = run_cli(
        &[
            "hooks",
            "--dir",
            hooks.to_str().unwrap(),
            "run",
            file.to_str().unwrap(),
            "--event",
            ev.to_str().unwrap(),
        ],
        &[(PARTNER_VAR, PARTNER_VALUE), (GATE_VAR, GATE_VALUE)],
    );
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn each_imported_hook_runs_through_hooks_run_as_it_ran_in_auth0() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    let (code, _, err) = import(&fixture("yaml/tenant.yaml"), &out, &CLIENT_IDS);
    assert_eq!(code, 0, "{err}");
    let client = |id: &str, name: &str, meta: Value| {
        json!({"client": {"id": id, "name": name, "metadata": meta},
               "scope": ["read:data", "write:data"], "audience": "https://api.example.com"})
    };
    let basic = || {
        client(
            "svc-basic",
            "Billing Service",
            json!({"region": "eu", "tier": "silver"}),
        )
    };
    let c = |k: &str| format!("{NS}{k}");
    // Breaks if the keyword is not replaced (claims under "##CLAIM_NAMESPACE##"), the
    // file secret or the env secret does not reach the hook, or scope is lost.
    let r = run_hook(&out, "client-metadata-claims", basic());
    assert_eq!(r["outcome"], "token", "{r}");
    assert_eq!(
        r["claims"],
        json!({c("region"): "eu", c("source"): "hook", c("trail"): "hook",
               c("signature"): hmac_hex("hook-salt-3f9a1c77e0", "svc-basic"), c("partner"): "linked"})
    );
    assert_eq!(r["scope"], json!(["read:data", "write:data"]));
    // Breaks if the Action's form or its claims change on the way.
    let r = run_hook(&out, "set-tier", basic());
    assert_eq!(
        r["claims"],
        json!({c("tier"): "silver", c("source"): "set-tier", c("trail"): ">set-tier"})
    );
    // Breaks if the masked secret does not come from its variable or `@@…@@` is not
    // the JSON list (then "us" would be denied).
    let post = client(
        "svc-post",
        "Reporting Job",
        json!({"region": "us", "tier": "gold"}),
    );
    let r = run_hook(&out, "region-gate", post);
    assert_eq!(
        r["claims"],
        json!({c("gate"): hmac_hex(GATE_VALUE, "us"), c("trail"): ">region-gate"})
    );
    let legacy = client(
        "svc-legacy",
        "Legacy Importer",
        json!({"region": "eu", "tier": "bronze", "blocked": "true"}),
    );
    let r = run_hook(&out, "region-gate", legacy);
    assert_eq!(
        (
            r["status"].clone(),
            r["error"].clone(),
            r["error_description"].clone()
        ),
        (
            json!(400),
            json!("invalid_request"),
            json!("client Legacy Importer is blocked")
        )
    );
    // Alone, Trim scopes sees no tier: it trims write:data (D6) and the keyword's value
    // is its secret.
    let r = run_hook(&out, "trim-scopes", basic());
    assert_eq!(
        r["claims"],
        json!({c("priority"): "normal", c("label_length"): "staging-label-77".len(), c("trail"): ">trim-scopes"})
    );
    assert_eq!(r["scope"], json!(["read:data"]));
    // The disabled Hook fails as the summary says: it needs the npm module `request`.
    let r = run_hook(&out, "legacy-audit", basic());
    assert_eq!(r["status"], 500, "{r}");
    assert!(
        r["error_description"]
            .as_str()
            .unwrap()
            .contains("Cannot find module 'request'"),
        "{r}"
    );
}

/// Fills what the summary leaves to do: the IdP's URL and a signing key in place of
/// the placeholders, as a user would edit them.
fn fill_placeholders(out: &Path, idp: &str) -> PathBuf {
    std::fs::create_dir(out.join("keys")).unwrap();
    let key = out.join("keys/current.pem");
    let (code, _, err) = run_cli(
        &[
            "keys",
            "generate",
            "--alg",
            "RS256",
            "--out",
            key.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let cfg = out.join("tokenhook.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let filled = text
        .replace(
            "url = \"REPLACE-ME: the IdP's base URL, e.g. http://127.0.0.1:3000\"",
            &format!("url = \"{idp}\""),
        )
        .replace(
            "keys = [\"REPLACE-ME: a private key file, e.g. keys/current.pem\"]",
            "keys = [\"keys/current.pem\"]",
        );
    assert_ne!(filled, text);
    std::fs::write(&cfg, filled).unwrap();
    cfg
}

/// The whole tenant served: the Hook, then the three Actions in Auth0's order, claims
/// and target scopes accumulating, a denial ending the request.
///
/// The assertions marked FLOW need the flow runtime (the Actions of `flow = [...]`
/// run after the enabled Hook); without it only the Hook runs.
#[test]
fn the_imported_tenant_is_checked_and_served_in_front_of_the_idp() {
    let idp = Idp::start();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("tenant");
    let (code, _, err) = import(&fixture("directory"), &out, &CLIENT_IDS);
    assert_eq!(code, 0, "{err}");
    let cfg_arg = out.join("tokenhook.toml");
    let cfg_arg = cfg_arg.to_str().unwrap();
    // Until they are filled, check names the placeholders, by key.
    let (code, _, err) = run_cli(&["check", "--config", cfg_arg], &[]);
    assert_eq!(code, 64);
    assert!(
        err.contains("upstream.url: placeholder left by tokenhook import"),
        "{err}"
    );
    assert!(
        err.contains("signing.keys[0]: placeholder left by tokenhook import"),
        "{err}"
    );
    let cfg = fill_placeholders(&out, &idp.url());
    // Then the secrets Auth0 did not export, as the summary lists them.
    let (code, _, err) = run_cli(&["check", "--config", cfg_arg], &[]);
    assert_eq!(code, 64);
    assert!(
        err.contains("hook.client-metadata-claims.secrets.PARTNER_TOKEN: environment variable TOKENHOOK_SECRET_CLIENT_METADATA_CLAIMS_PARTNER_TOKEN is not set"),
        "{err}"
    );
    let env = [(PARTNER_VAR, PARTNER_VALUE), (GATE_VAR, GATE_VALUE)];
    let (code, stdout, err) = run_cli(&["check", "--config", cfg_arg], &env);
    assert_eq!(code, 0, "{err}");
    assert!(
        stdout.starts_with("ok:") && stdout.contains("hook client-metadata-claims"),
        "{stdout}"
    );

    let sidecar = Sidecar::serve_config(work, &cfg, &env);
    let token = |c: TestClient, basic: bool| {
        let (status, body, _) = token_request(&sidecar.url("/oauth/token"), c.id, c.secret, basic);
        (status, body)
    };
    let c = |k: &str| format!("{NS}{k}");

    // Billing Service (silver, eu): through the Hook and the three Actions.
    let (status, body) = token(BASIC, true);
    assert_eq!(status, 200, "{body}");
    let (_, claims) = sidecar.verify(body["access_token"].as_str().unwrap());
    // The Hook's claims, with its secrets from the file and the variable.
    assert_eq!(claims[&c("region")], "eu");
    assert_eq!(
        claims[&c("signature")],
        hmac_hex("hook-salt-3f9a1c77e0", "svc-basic")
    );
    assert_eq!(claims[&c("partner")], "linked");
    assert_eq!(claims["client_id"], "svc-basic");
    // FLOW: each Action ran, in Auth0's order, seeing what ran before it
    // (event.accessToken.customClaims), a later claim of the same name winning.
    assert_eq!(
        claims[&c("trail")],
        "hook>set-tier>region-gate>trim-scopes",
        "{claims:?}"
    );
    assert_eq!(claims[&c("source")], "set-tier");
    assert_eq!(claims[&c("tier")], "silver");
    assert_eq!(claims[&c("gate")], hmac_hex(GATE_VALUE, "eu"));
    assert_eq!(claims[&c("priority")], "normal");
    assert_eq!(claims[&c("label_length")], "staging-label-77".len());
    // FLOW: Trim scopes removed write:data from the Hook's scopes (not gold).
    assert_eq!(claims["scope"], "read:data");
    assert_eq!(body["scope"], "read:data");

    // Reporting Job (gold, us; client_secret_post): Trim scopes saw Set tier's claim.
    let (status, body) = token(POST, false);
    assert_eq!(status, 200, "{body}");
    let (_, claims) = sidecar.verify(body["access_token"].as_str().unwrap());
    assert_eq!(claims[&c("region")], "us");
    assert_eq!(
        claims[&c("signature")],
        hmac_hex("hook-salt-3f9a1c77e0", "svc-post")
    );
    // FLOW:
    assert_eq!(claims[&c("tier")], "gold", "{claims:?}");
    assert_eq!(claims[&c("priority")], "high");
    assert_eq!(claims[&c("gate")], hmac_hex(GATE_VALUE, "us"));
    assert_eq!(claims[&c("trail")], "hook>set-tier>region-gate>trim-scopes");
    assert_eq!(claims["scope"], "read:data");

    // FLOW: Legacy Importer is denied by Region gate, and Trim scopes does not run.
    let (status, body) = token(LEGACY, true);
    assert_eq!(
        (status, body.clone()),
        (
            400,
            json!({"error": "invalid_request", "error_description": "client Legacy Importer is blocked"})
        ),
        "{body}"
    );

    // No secret value reaches the log, at info level.
    let logs = sidecar.logs();
    for v in SECRET_VALUES.iter().chain(&[PARTNER_VALUE, GATE_VALUE]) {
        assert!(!logs.contains(v), "a secret value is in the sidecar's log");
    }
}
