//! The command line as a platform engineer uses it: `check`, `keys generate`, `demo`.

mod common;

use common::*;
use std::time::{Duration, Instant};

#[test]
fn check_lists_every_bad_key_and_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        r#"
[server]
listen = "localhost"
[upstream]
url = "http://127.0.0.1:3000"
jwks_url = "relative/jwks.json"
algorithms = ["HS256"]
[signing]
keys = ["nope.pem"]
algorithm = "XX1"
[hooks]
dir = "missing"
timeout_ms = 0
colour = "blue"
"#,
    )
    .unwrap();
    let (code, _, stderr) = run_cli(
        &["check", "--config", cfg.to_str().unwrap()],
        &[("TOKENHOOK_SERVER_THREADS", "many")],
    );
    assert_eq!(code, 64, "{stderr}");
    for line in [
        "server.listen: not an address of the form IP:PORT",
        "upstream.jwks_url: not an absolute URL",
        "upstream.algorithms[0]: unsupported algorithm \"HS256\"",
        "signing.keys[0]: no such file: nope.pem",
        "signing.algorithm: unsupported algorithm \"XX1\"",
        "hooks.dir: no such folder: missing",
        "hooks.timeout_ms: must be greater than 0",
        "hooks.colour: unknown key",
        "TOKENHOOK_SERVER_THREADS: expected a whole number",
    ] {
        assert!(stderr.contains(line), "missing {line:?} in:\n{stderr}");
    }
}

#[test]
fn check_reports_a_hook_that_does_not_compile_and_accepts_the_shipped_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("hooks")).unwrap();
    std::fs::write(
        dir.path().join("hooks/broken.js"),
        "module.exports = function (client, { ;",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("hooks/hooks.toml"),
        "enabled = \"broken\"\n",
    )
    .unwrap();
    let (code, out, err) = run_cli(
        &[
            "keys",
            "generate",
            "--alg",
            "ES256",
            "--out",
            dir.path().join("k.pem").to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("kid"), "{out}");
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[upstream]\nurl = \"http://127.0.0.1:3000\"\n[signing]\nkeys = [\"k.pem\"]\nalgorithm = \"ES256\"\n").unwrap();
    let (code, _, err) = run_cli(&["check", "--config", cfg.to_str().unwrap()], &[]);
    assert_eq!(code, 64);
    assert!(err.contains("hook failed to compile"), "{err}");
    std::fs::write(dir.path().join("hooks/hooks.toml"), "").unwrap();
    let (code, out, err) = run_cli(&["check", "--config", cfg.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("ok:"), "{out}");
    // Without upstream.issuer, check cannot know the IdP's issuer: it says so.
    assert!(err.contains("warning: upstream.issuer is not set"), "{err}");
    let with_issuer = "[upstream]\nurl = \"http://127.0.0.1:3000\"\nissuer = \"https://idp\"\n[signing]\nkeys = [\"k.pem\"]\nalgorithm = \"ES256\"\n";
    std::fs::write(&cfg, with_issuer).unwrap();
    let (code, _, err) = run_cli(&["check", "--config", cfg.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("upstream.issuer"), "{err}");
}

// Pingora binds on its own threads and, when a port is taken, only panics there and
// leaves the process up without it; `serve` must instead say which key and exit.
#[test]
fn serve_names_a_listen_address_in_use_and_exits_69() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("hooks")).unwrap();
    let pem = tokenhook::keys::generate_pem(jsonwebtoken::Algorithm::ES256).unwrap();
    tokenhook::keys::write_private_key(&dir.path().join("k.pem"), &pem, false).unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap();
    let admin = free_port();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"{taken_addr}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n\
             [upstream]\nurl = \"http://127.0.0.1:3000\"\n\
             [signing]\nkeys = [\"k.pem\"]\nalgorithm = \"ES256\"\n"
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(BIN)
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let status = status.unwrap_or_else(|| panic!("serve kept running; stderr:\n{stderr}"));
    assert_eq!(status.code(), Some(69), "{stderr}");
    assert!(
        stderr.contains(&format!("server.listen: cannot listen on {taken_addr}")),
        "{stderr}"
    );
    assert!(!stderr.contains("server.admin_listen"), "{stderr}");
    drop(taken);
}

#[test]
fn keys_generate_writes_owner_only_pkcs8_for_each_algorithm() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    for alg in ["RS256", "PS256", "ES256", "EdDSA"] {
        let p = dir.path().join(format!("{alg}.pem"));
        let generate = || {
            run_cli(
                &[
                    "keys",
                    "generate",
                    "--alg",
                    alg,
                    "--out",
                    p.to_str().unwrap(),
                ],
                &[],
            )
        };
        let (code, _, err) = generate();
        assert_eq!(code, 0, "{alg}: {err}");
        let pem = std::fs::read_to_string(&p).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Refuses to overwrite a key.
        let (code, _, _) = generate();
        assert_ne!(code, 0);
    }
    let (code, _, err) = run_cli(
        &["keys", "generate", "--alg", "HS256", "--out", "x.pem"],
        &[],
    );
    assert_eq!(code, 2, "{err}");
}

#[test]
fn every_config_the_repo_ships_passes_check() {
    let mut configs = Vec::new();
    let mut dirs = vec![repo().join("deploy")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.file_name().is_some_and(|x| x == "tokenhook.toml") {
                configs.push(p);
            }
        }
    }
    assert!(!configs.is_empty());
    for path in configs {
        let cfg = path.display().to_string();
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.pem");
        run_cli(&["keys", "generate", "--out", key.to_str().unwrap()], &[]);
        // Key paths point into the pod; put real files in their place.
        let text = std::fs::read_to_string(&path).unwrap();
        let key = key.to_str().unwrap();
        let hooks = repo().join("hooks");
        let mut env = vec![("TOKENHOOK_HOOKS_DIR", hooks.to_str().unwrap())];
        if text.contains("active =") {
            env.extend([
                ("TOKENHOOK_SIGNING_ACTIVE", key),
                ("TOKENHOOK_SIGNING_NEXT", key),
                ("TOKENHOOK_SIGNING_RETIRED", key),
            ]);
        } else {
            env.push(("TOKENHOOK_SIGNING_KEYS", key));
        }
        let (code, out, err) = run_cli(&["check", "--config", path.to_str().unwrap()], &env);
        assert_eq!(code, 0, "{cfg}: {err}");
        assert!(out.contains("hook seed"), "{out}");
    }
}

#[test]
fn demo_serves_a_verifiable_enriched_token() {
    let port = free_port();
    let admin = free_port();
    let mut child = std::process::Command::new(BIN)
        .args([
            "demo",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = raw_request(
            admin,
            "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .map(|r| r.status == 200);
        if ready.unwrap_or(false) {
            break;
        }
        assert!(Instant::now() < deadline, "demo not ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let base = format!("http://127.0.0.1:{port}");
    let (status, body, _) = token_request(
        &format!("{base}/oauth/token"),
        "demo-client",
        "demo-secret",
        true,
    );
    assert_eq!(status, 200, "{body}");
    let jwks: jsonwebtoken::jwk::JwkSet = agent()
        .get(&format!("{base}/.well-known/jwks.json"))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    let (_, claims) = verify_with(&jwks, body["access_token"].as_str().unwrap(), &base);
    assert_eq!(claims["https://foo.com/claim"], "bar");
    assert_eq!(claims["scope"], "read:data write:data extra");
    // The printed curl command is the one that works.
    let _ = child.kill();
    let mut out = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let _ = child.wait();
    assert!(
        out.contains(&format!(
            "curl -s -u demo-client:demo-secret -d grant_type=client_credentials {base}/oauth/token"
        )),
        "{out}"
    );
}
