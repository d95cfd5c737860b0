use super::*;

fn base() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("hooks")).unwrap();
    std::fs::write(d.path().join("key.pem"), "x").unwrap();
    d
}

const GOOD: &str = r#"
[server]
listen = "127.0.0.1:8080"
admin_listen = "127.0.0.1:9090"
public_url = "https://auth.example.com"
[upstream]
url = "http://127.0.0.1:3000"
[signing]
keys = ["key.pem"]
"#;

fn load(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
    let d = base();
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    Config::from_toml(text, d.path(), vars)
}

fn keys_of(e: ConfigErrors) -> Vec<String> {
    e.0.into_iter().map(|e| e.key).collect()
}

#[test]
fn good_config_with_defaults() {
    let c = load(GOOD, &[]).unwrap();
    assert_eq!(c.upstream.token_path, "/oauth/token");
    assert_eq!(
        c.upstream.jwks_url.as_str(),
        "http://127.0.0.1:3000/.well-known/jwks.json"
    );
    assert_eq!(
        c.signing.issuer,
        IssuerMode::Fixed("https://auth.example.com".into())
    );
    assert_eq!(c.upstream.algorithms, vec![Algorithm::RS256]);
    // Unset: the IdP's issuer comes from its discovery document.
    assert_eq!(c.upstream.issuer, None);
    assert_eq!(c.hooks.timeout, Duration::from_secs(5));
    assert!(c.signing.keys[0].path.is_absolute());
    assert_eq!(c.signing.keys[0].state, KeyState::Active);
}

#[test]
fn env_overrides_each_kind() {
    let c = load(
        GOOD,
        &[
            ("TOKENHOOK_UPSTREAM_URL", "http://127.0.0.1:4000"),
            ("TOKENHOOK_UPSTREAM_ALGORITHMS", "RS256, ES256"),
            ("TOKENHOOK_HOOKS_TIMEOUT_MS", "250"),
            ("TOKENHOOK_HOOKS_ALLOW_UNNAMESPACED_CLAIMS", "true"),
            ("TOKENHOOK_SIGNING_ISSUER", "upstream"),
            ("TOKENHOOK_UPSTREAM_ISSUER", "https://idp.example"),
            ("UNRELATED", "x"),
        ],
    )
    .unwrap();
    assert_eq!(c.upstream.url.as_str(), "http://127.0.0.1:4000/");
    assert_eq!(
        c.upstream.algorithms,
        vec![Algorithm::RS256, Algorithm::ES256]
    );
    assert_eq!(c.hooks.timeout, Duration::from_millis(250));
    assert!(c.hooks.allow_unnamespaced_claims);
    assert_eq!(c.signing.issuer, IssuerMode::Upstream);
    assert_eq!(c.upstream.issuer.as_deref(), Some("https://idp.example"));
}

#[test]
fn every_problem_is_listed_with_its_key() {
    let text = r#"
[server]
listen = "nope"
bogus = 1
[upstream]
url = "http://127.0.0.1:3000"
jwks_url = "not a url"
algorithms = ["RS256", "HS256", "none"]
timeout_ms = "slow"
[signing]
keys = ["missing.pem"]
algorithm = "RS512"
[hooks]
dir = "nowhere"
[typo]
x = 1
"#;
    let e = load(
        text,
        &[
            ("TOKENHOOK_UPSTREAM_URLL", "x"),
            ("TOKENHOOK_HOOKS_TIMEOUT_MS", "soon"),
        ],
    )
    .unwrap_err();
    let shown = e.to_string();
    let keys = keys_of(e);
    for k in [
        "server.listen",
        "server.bogus",
        "upstream.jwks_url",
        "upstream.algorithms[1]",
        "upstream.algorithms[2]",
        "upstream.timeout_ms",
        "signing.keys[0]",
        "signing.algorithm",
        "hooks.dir",
        "typo",
        "TOKENHOOK_UPSTREAM_URLL",
        "TOKENHOOK_HOOKS_TIMEOUT_MS",
    ] {
        assert!(keys.iter().any(|x| x == k), "missing {k} in:\n{shown}");
    }
    assert!(
        shown.contains("upstream.jwks_url: not an absolute URL"),
        "{shown}"
    );
}

#[test]
fn upstream_must_be_plain_http_and_required() {
    let e = load("[signing]\nkeys=[\"key.pem\"]\n", &[]).unwrap_err();
    assert_eq!(keys_of(e), vec!["upstream.url"]);
    let e = load(
        &GOOD.replace("http://127.0.0.1:3000", "https://127.0.0.1:3000"),
        &[],
    )
    .unwrap_err();
    assert_eq!(keys_of(e), vec!["upstream.url"]);
}

#[test]
fn bad_toml_names_the_file_problem() {
    let e = load("[server\n", &[]).unwrap_err();
    assert_eq!(keys_of(e), vec!["config"]);
}

#[test]
fn schema_lists_only_real_keys_and_every_scalar_key() {
    // Every schema entry must be accepted by the raw structs...
    let mut doc = toml::Table::new();
    for (section, key, kind) in env::SCHEMA {
        let v = match kind {
            env::Kind::Str => toml::Value::String("x".into()),
            env::Kind::Int => toml::Value::Integer(1),
            env::Kind::Bool => toml::Value::Boolean(true),
            env::Kind::List => toml::Value::Array(vec![]),
        };
        doc.entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .unwrap()
            .insert(key.to_string(), v);
    }
    let parsed: Result<RawConfig, _> = toml::Value::Table(doc).try_into();
    assert!(parsed.is_ok(), "{parsed:?}");
    // ...and every key the raw structs serialize must be overridable.
    let raw = RawConfig::default();
    let v = toml::Value::try_from(&raw).unwrap();
    for (section, table) in v.as_table().unwrap() {
        if section == "clients" {
            continue;
        }
        for key in table.as_table().unwrap().keys() {
            assert!(
                env::SCHEMA.iter().any(|(s, k, _)| s == section && k == key),
                "{section}.{key} has no environment override"
            );
        }
    }
}

#[test]
fn key_states_and_their_errors() {
    let d = base();
    for f in ["a.pem", "n.pem", "r.pem"] {
        std::fs::write(d.path().join(f), "x").unwrap();
    }
    let text = GOOD.replace(
        "keys = [\"key.pem\"]",
        "active = \"a.pem\"\nnext = [\"n.pem\"]\nretired = [\"r.pem\"]",
    );
    let c = Config::from_toml(&text, d.path(), Vec::<(String, String)>::new()).unwrap();
    let states: Vec<(KeyState, &str)> = c
        .signing
        .keys
        .iter()
        .map(|k| (k.state, k.key.as_str()))
        .collect();
    assert_eq!(
        states,
        vec![
            (KeyState::Active, "signing.active"),
            (KeyState::Next, "signing.next[0]"),
            (KeyState::Retired, "signing.retired[0]")
        ]
    );
    // The old form: the first signs, the rest stay published as retired.
    let text = GOOD.replace("keys = [\"key.pem\"]", "keys = [\"a.pem\", \"r.pem\"]");
    let c = Config::from_toml(&text, d.path(), Vec::<(String, String)>::new()).unwrap();
    assert_eq!(c.signing.keys[1].state, KeyState::Retired);
    let both = GOOD.replace(
        "keys = [\"key.pem\"]",
        "keys = [\"a.pem\"]\nactive = \"a.pem\"",
    );
    let e = Config::from_toml(&both, d.path(), Vec::<(String, String)>::new()).unwrap_err();
    assert_eq!(keys_of(e), vec!["signing.keys"]);
    let missing = GOOD.replace(
        "keys = [\"key.pem\"]",
        "active = \"a.pem\"\nnext = [\"gone.pem\"]",
    );
    let e = Config::from_toml(&missing, d.path(), Vec::<(String, String)>::new()).unwrap_err();
    assert_eq!(e.to_string(), "signing.next[0]: no such file: gone.pem");
}

#[test]
fn placeholders_left_by_an_import_are_reported_by_key() {
    // Breaks if a placeholder passes validation, is reported under another key, comes
    // with its key's ordinary error too, or survives an environment override.
    let text = r#"
[upstream]
url = "REPLACE-ME: the IdP's base URL"
[signing]
keys = ["REPLACE-ME: a private key file"]
[clients."svc"]
name = "REPLACE-ME"
"#;
    let errors = load(text, &[]).unwrap_err().0;
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        vec![
            "clients.svc.name: placeholder left by tokenhook import: fill it in",
            "signing.keys[0]: placeholder left by tokenhook import: a private key file",
            "upstream.url: placeholder left by tokenhook import: the IdP's base URL",
        ],
        "{shown:?}"
    );
    let filled = text
        .replace("REPLACE-ME: a private key file", "key.pem")
        .replace("name = \"REPLACE-ME\"", "name = \"ok\"");
    let c = load(
        &filled,
        &[("TOKENHOOK_UPSTREAM_URL", "http://127.0.0.1:3000")],
    )
    .unwrap();
    assert_eq!(c.upstream.url.as_str(), "http://127.0.0.1:3000/");
}

/// Breaks if `hooks.fetch_ca_file` is not read (relative to the config file, or from
/// its environment variable), or if a missing file, a file without certificates or a
/// certificate that cannot be a trust anchor is accepted or reported under another key.
#[test]
fn fetch_ca_file_is_read_at_startup_and_its_problems_are_keyed() {
    let ca = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls/ca.pem"))
        .unwrap();
    let d = base();
    std::fs::write(d.path().join("ca.pem"), &ca).unwrap();
    std::fs::write(
        d.path().join("key-only.pem"),
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls/server.key"))
            .unwrap(),
    )
    .unwrap();
    std::fs::write(
        d.path().join("junk.pem"),
        "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let with = |file: &str| format!("{GOOD}[hooks]\nfetch_ca_file = \"{file}\"\n");
    let from = |text: &str, vars: Vec<(String, String)>| Config::from_toml(text, d.path(), vars);

    let c = from(&with("ca.pem"), vec![]).unwrap();
    assert_eq!(c.hooks.fetch_roots.len(), 1);
    assert!(from(GOOD, vec![]).unwrap().hooks.fetch_roots.is_empty());
    let vars = vec![(
        "TOKENHOOK_HOOKS_FETCH_CA_FILE".to_string(),
        "ca.pem".to_string(),
    )];
    assert_eq!(from(GOOD, vars).unwrap().hooks.fetch_roots.len(), 1);

    for (file, says) in [
        ("missing.pem", "missing.pem: "),
        ("key-only.pem", "key-only.pem: holds no PEM certificate"),
        (
            "junk.pem",
            "junk.pem: certificate 0: not a usable CA certificate",
        ),
    ] {
        let e = from(&with(file), vec![]).unwrap_err();
        assert_eq!(e.0.len(), 1, "{file}: {:?}", e.0);
        assert_eq!(e.0[0].key, "hooks.fetch_ca_file", "{file}");
        assert!(
            e.0[0].message.starts_with(says),
            "{file}: {}",
            e.0[0].message
        );
    }
}
