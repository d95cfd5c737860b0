#!/usr/bin/env bash
# Offline checks of everything under deploy/ (no cluster, no Docker, no network except PyPI):
#   1. every Kubernetes manifest against the API schemas of a recent Kubernetes
#      (kubernetes-validate --strict); the PodMonitor CRD against deploy/schemas/;
#   2. the kustomize base: resources and generator files exist and parse, and the
#      manifests agree with each other (names, labels, ports, mount paths);
#   3. the Grafana dashboard: valid JSON, and its PromQL uses only metrics tokenhook exports;
#   4. `tokenhook check` on the Kubernetes config, with throwaway keys.
#
# Usage: bash deploy/validate.sh        (from anywhere; runs as root or a user with pip)
#   TOKENHOOK=path/to/tokenhook   binary for step 4 (default target/debug/tokenhook)
#   K8S_VERSION=1.37.0            Kubernetes version of the schemas
# Exits non-zero if anything failed, after printing every failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
K8S_DIR=deploy/kubernetes
K8S_VERSION=${K8S_VERSION:-1.37.0}
TOKENHOOK=${TOKENHOOK:-target/debug/tokenhook}

failures=0
ok() { printf 'ok    %s\n' "$*"; }
fail() { printf 'FAIL  %s\n' "$*" >&2; failures=$((failures + 1)); }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# ---- tools ------------------------------------------------------------------------------
# Pinned: the bundled schemas (and so the verdicts) change with the package version.
# It also brings PyYAML and jsonschema, used below.
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    kubernetes-validate==1.37.0
ok "kubernetes-validate $(python3 -m pip show kubernetes-validate | sed -n 's/^Version: //p')"

# ---- 1. manifests -----------------------------------------------------------------------
# kubernetes-validate knows only built-in kinds. For any other kind (a CRD such as
# PodMonitor, or a typo in `kind`) it prints "Couldn't find schema" as a WARN and exits 0,
# i.e. it would pass silently. So: a manifest whose kind is in CRD_SCHEMAS is checked
# against our own schema with jsonschema; for every other one the warning is a failure.
declare -A CRD_SCHEMAS=([PodMonitor]=deploy/schemas/podmonitor-v1.schema.json)

for f in "$K8S_DIR"/*.yaml; do
    [[ $(basename "$f") == kustomization.yaml ]] && continue
    kinds=$(python3 -c 'import sys, yaml
print(" ".join(sorted({d.get("kind", "?") for d in yaml.safe_load_all(open(sys.argv[1])) if d})))' "$f" 2>&1) \
        || { fail "$f: not valid YAML: $kinds"; continue; }
    if [[ -n ${CRD_SCHEMAS[$kinds]+x} ]]; then
        schema=${CRD_SCHEMAS[$kinds]}
        if out=$(python3 - "$f" "$schema" 2>&1 <<'PY'
import json, sys, yaml, jsonschema
manifest, schema_file = sys.argv[1], sys.argv[2]
schema = json.load(open(schema_file))
jsonschema.Draft202012Validator.check_schema(schema)
errors = []
for doc in yaml.safe_load_all(open(manifest)):
    if doc:
        v = jsonschema.Draft202012Validator(schema)
        errors += [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in v.iter_errors(doc)]
if errors:
    print("\n".join(errors))
    sys.exit(1)
PY
        ); then
            ok "$f ($kinds, CRD) matches $schema"
        else
            fail "$f ($kinds) against $schema:"$'\n'"$out"
        fi
        continue
    fi
    if out=$(kubernetes-validate --strict -k "$K8S_VERSION" "$f" 2>&1) \
        && ! grep -q "Couldn't find schema" <<<"$out" && grep -q 'passed' <<<"$out"; then
        ok "$f ($kinds) valid against Kubernetes $K8S_VERSION (strict)"
    else
        fail "$f ($kinds): kubernetes-validate --strict -k $K8S_VERSION:"$'\n'"$out"
    fi
done

# ---- 2 + 3. kustomization, ConfigMap sources, cross-references, dashboard ----------------
if out=$(python3 - 2>&1 <<'PY'
import json, os, re, sys, tomllib, filecmp
import yaml

K = "deploy/kubernetes"
problems, notes = [], []

def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]

# -- kustomization.yaml
kust = load(f"{K}/kustomization.yaml")[0]
if kust.get("kind") != "Kustomization":
    problems.append("kustomization.yaml: kind is not Kustomization")
docs = {}
for r in kust.get("resources", []):
    p = os.path.join(K, r)
    if not os.path.isfile(p):
        problems.append(f"kustomization.yaml: resource {r} does not exist")
        continue
    for d in load(p):
        docs[(d["kind"], d["metadata"]["name"])] = d
if "secret.yaml" in kust.get("resources", []):
    problems.append("kustomization.yaml: secret.yaml holds placeholders and must not be a resource")
notes.append(f"kustomization.yaml: parses; {len(docs)} objects in {len(kust.get('resources', []))} listed resources")

generated = {}
for g in kust.get("configMapGenerator", []):
    keys = {}
    for entry in g.get("files", []):
        key, _, path = entry.rpartition("=") if "=" in entry else (None, None, entry)
        key = key or os.path.basename(path)
        full = os.path.normpath(os.path.join(K, path))
        if not full.startswith(K + os.sep):
            problems.append(f"{g['name']}: {path} is outside {K} (kustomize refuses it)")
        if not os.path.isfile(full):
            problems.append(f"{g['name']}: file {path} does not exist")
            continue
        text = open(full, encoding="utf-8").read()
        if full.endswith(".toml"):
            try:
                keys[key] = tomllib.loads(text)
            except tomllib.TOMLDecodeError as e:
                problems.append(f"{g['name']}: {path}: invalid TOML: {e}")
        elif full.endswith(".js"):
            if not text.strip():
                problems.append(f"{g['name']}: {path} is empty")
            keys[key] = text
        else:
            keys[key] = text
    generated[g["name"]] = keys
    notes.append(f"ConfigMap {g['name']}: {', '.join(sorted(keys))} parse")

cfg = generated.get("tokenhook-config", {}).get("tokenhook.toml")
hooks = generated.get("tokenhook-hooks", {})
if cfg is None:
    problems.append("no ConfigMap tokenhook-config with key tokenhook.toml")
    cfg = {}
enabled = hooks.get("hooks.toml", {}).get("enabled")
hook_file = hooks.get("hooks.toml", {}).get("hook", {}).get(enabled or "", {}).get("file", f"{enabled}.js")
if not enabled or hook_file not in hooks:
    problems.append(f"tokenhook-hooks: enabled hook {enabled!r} has no file {hook_file} in the ConfigMap")
# The hook JS files are copies of the repo's hooks/; a drifted copy is a forgotten update.
for name in hooks:
    if name.endswith(".js") and os.path.isfile(f"hooks/{name}") and not filecmp.cmp(f"hooks/{name}", f"{K}/hooks/{name}", shallow=False):
        problems.append(f"{K}/hooks/{name} differs from hooks/{name}: copy it again")

# -- cross-references between the manifests
dep = docs.get(("Deployment", "tokenhook"))
if dep is None:
    problems.append("no Deployment tokenhook")
else:
    pod = dep["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    def selects(sel, what):
        ml = (sel or {}).get("matchLabels", {})
        if not ml or any(pod_labels.get(k) != v for k, v in ml.items()):
            problems.append(f"{what}: selector {ml} does not match the pod labels {pod_labels}")
    selects(dep["spec"]["selector"], "Deployment")
    ctr = {c["name"]: c for c in pod["spec"]["containers"]}
    th = ctr.get("tokenhook")
    ports = {p["name"]: p["containerPort"] for p in th.get("ports", [])} if th else {}
    if ports != {"http": 8080, "admin": 9090}:
        problems.append(f"tokenhook container ports {ports}, want http 8080 and admin 9090")
    for c in pod["spec"]["containers"]:
        for p in c.get("ports", []):
            if p["containerPort"] == 3000:
                problems.append(f"container {c['name']} declares the IdP port 3000")
    vols = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = {m["mountPath"]: vols.get(m["name"], {}) for m in th.get("volumeMounts", [])}
    def cm(path):
        return (mounts.get(path, {}).get("configMap") or {}).get("name")
    if cm("/etc/tokenhook") != "tokenhook-config" or "tokenhook-config" not in generated:
        problems.append("/etc/tokenhook is not the generated ConfigMap tokenhook-config")
    hooks_dir = cfg.get("hooks", {}).get("dir")
    if cm(hooks_dir) != "tokenhook-hooks" or "tokenhook-hooks" not in generated:
        problems.append(f"hooks.dir {hooks_dir} is not a mount of the generated ConfigMap tokenhook-hooks")
    args = th.get("args", [])
    if args[-1:] != ["/etc/tokenhook/tokenhook.toml"]:
        problems.append(f"tokenhook args {args} do not name /etc/tokenhook/tokenhook.toml")
    # Signing key paths in the config must be files of the mounted Secret.
    sig = cfg.get("signing", {})
    key_paths = [sig.get("active")] + sig.get("next", []) + sig.get("retired", []) + sig.get("keys", [])
    secret_docs = {d["metadata"]["name"]: d for d in load(f"{K}/secret.yaml") if d["kind"] == "Secret"}
    for p in filter(None, key_paths):
        d, name = os.path.split(p)
        src = (mounts.get(d, {}).get("secret") or {})
        sname = src.get("secretName")
        if not sname:
            problems.append(f"signing key {p}: {d} is not a Secret mount")
        elif name not in (secret_docs.get(sname, {}).get("stringData") or secret_docs.get(sname, {}).get("data") or {}):
            problems.append(f"signing key {p}: the example Secret {sname} has no key {name}")
    sc = th.get("securityContext", {})
    want = {"runAsNonRoot": True, "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False}
    for k, v in want.items():
        if sc.get(k) != v:
            problems.append(f"tokenhook securityContext.{k} is {sc.get(k)!r}, want {v!r}")
    if sc.get("capabilities", {}).get("drop") != ["ALL"]:
        problems.append("tokenhook securityContext.capabilities.drop is not [ALL]")
    # The SIGTERM sequence must fit the grace period.
    srv = cfg.get("server", {})
    drain = srv.get("drain_delay_seconds", 2) + srv.get("grace_period_seconds", 10)
    if drain >= pod["spec"].get("terminationGracePeriodSeconds", 30):
        problems.append(f"drain_delay + grace_period ({drain}s) do not fit terminationGracePeriodSeconds")
    for (kind, name), d in docs.items():
        if kind == "Service":
            selects({"matchLabels": d["spec"]["selector"]}, f"Service {name}")
            for p in d["spec"]["ports"]:
                if p.get("targetPort") not in ports and p.get("targetPort") not in ports.values():
                    problems.append(f"Service {name}: targetPort {p.get('targetPort')} is not a tokenhook port")
        elif kind == "PodMonitor":
            selects(d["spec"]["selector"], f"PodMonitor {name}")
            for e in d["spec"]["podMetricsEndpoints"]:
                if e.get("port") != "admin" or e.get("path") != "/metrics":
                    problems.append(f"PodMonitor {name}: scrapes {e.get('port')}{e.get('path')}, want admin /metrics")
        elif kind == "NetworkPolicy":
            selects(d["spec"]["podSelector"], f"NetworkPolicy {name}")
            allowed = {p.get("port") for r in d["spec"].get("ingress", []) for p in r.get("ports", [])}
            if 3000 in allowed or not allowed <= {8080, 9090, "http", "admin"}:
                problems.append(f"NetworkPolicy {name}: admits ports {allowed}, want only 8080 and 9090")
    notes.append("cross-checked Deployment, Service, PodMonitor, NetworkPolicy, ConfigMaps and Secret")

# -- Grafana dashboard
ALLOWED = {
    "tokenhook_requests_total", "tokenhook_stage_duration_seconds_bucket",
    "tokenhook_hook_executions_total", "tokenhook_hook_queue_depth", "tokenhook_hook_workers_busy",
    "tokenhook_hook_workers_up", "tokenhook_hook_workers_replaced_total", "tokenhook_hook_reloads_total",
    "tokenhook_upstream_jwks_refreshes_total", "tokenhook_upstream_jwks_age_seconds",
    "tokenhook_signing_key_info", "tokenhook_signing_key_age_seconds", "tokenhook_signing_key_reloads_total",
    "tokenhook_ready", "tokenhook_build_info", "process_resident_memory_bytes", "process_cpu_seconds_total",
}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}
# Each allowed tokenhook_ metric must still be registered by the code (histograms by base name).
src = open("src/metrics.rs").read() if os.path.isfile("src/metrics.rs") else None
if src is not None:
    for m in sorted(ALLOWED):
        base = re.sub(r"_bucket$", "", m)
        if m.startswith("tokenhook_") and f'"{base}"' not in src:
            problems.append(f"dashboard metric {m}: not registered in src/metrics.rs")

def metric_names(expr):
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)                     # string literals
    e = re.sub(r"\{[^}]*\}", "", e)                                    # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)                                   # range selectors
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?", e):
        word, call = m.group(1), m.group(2)
        if not call and word not in KEYWORDS and not re.fullmatch(r"\d.*", word):
            names.add(word)
    return names

dash_path = "deploy/grafana/tokenhook-dashboard.json"
dash = json.load(open(dash_path))
exprs = []
def walk(o):
    if isinstance(o, dict):
        if isinstance(o.get("expr"), str):
            exprs.append(o["expr"])
        for v in o.values():
            walk(v)
    elif isinstance(o, list):
        for v in o:
            walk(v)
walk(dash.get("panels", []))
used = set()
for ex in exprs:
    names = metric_names(ex)
    if not names:
        problems.append(f"dashboard: no metric found in {ex!r}")
    for n in names - ALLOWED:
        problems.append(f"dashboard: unknown metric {n!r} in {ex!r}")
    used |= names
    if ex.count("(") != ex.count(")") or ex.count("{") != ex.count("}"):
        problems.append(f"dashboard: unbalanced brackets in {ex!r}")
for ds in re.findall(r'"uid":\s*"([^"]*)"', json.dumps(dash.get("panels", []))):
    if ds != "${DS_PROMETHEUS}":
        problems.append(f"dashboard: a panel uses datasource uid {ds!r}, not ${{DS_PROMETHEUS}}")
if not any(v.get("name") == "DS_PROMETHEUS" and v.get("type") == "datasource" for v in dash["templating"]["list"]):
    problems.append("dashboard: no datasource variable DS_PROMETHEUS")
ids = [p["id"] for p in dash["panels"]]
if len(ids) != len(set(ids)):
    problems.append("dashboard: duplicate panel ids")
notes.append(f"{dash_path}: valid JSON, {len(dash['panels'])} panels, {len(exprs)} queries over {len(used)} known metrics")
if ALLOWED - used:
    notes.append(f"(metrics not on the dashboard: {', '.join(sorted(ALLOWED - used))})")

print("\n".join(notes))
if problems:
    print("PROBLEMS:\n  " + "\n  ".join(problems))
    sys.exit(1)
PY
); then
    while IFS= read -r line; do ok "$line"; done <<<"$out"
else
    fail "structure checks:"$'\n'"$out"
fi

# ---- 4. tokenhook check -----------------------------------------------------------------
# The Kubernetes config names /var/run/... and /etc/... paths that exist only in the pod:
# point them at throwaway keys and the hooks copy here. Relative override paths would be
# taken from the config file's folder, hence absolute ones. Any TOKENHOOK_* variable
# from the caller's environment is dropped so it cannot mask a config error.
if [[ ! -x $TOKENHOOK ]]; then
    fail "tokenhook check: no binary at $TOKENHOOK (build it, or set TOKENHOOK=path)"
else
    clean_env=(env)
    while IFS= read -r v; do clean_env+=(-u "$v"); done < <(compgen -e | grep '^TOKENHOOK_' || true)
    keys_ok=1
    for k in active next retired; do
        "$TOKENHOOK" keys generate --alg RS256 --out "$tmp/$k.pem" >/dev/null || keys_ok=0
    done
    if [[ $keys_ok == 0 ]]; then
        fail "tokenhook keys generate failed"
    else
        if out=$("${clean_env[@]}" \
            TOKENHOOK_SIGNING_ACTIVE="$tmp/active.pem" \
            TOKENHOOK_SIGNING_NEXT="$tmp/next.pem" \
            TOKENHOOK_SIGNING_RETIRED="$tmp/retired.pem" \
            TOKENHOOK_HOOKS_DIR="$ROOT/$K8S_DIR/hooks" \
            "$TOKENHOOK" check --config "$K8S_DIR/tokenhook.toml" 2>&1); then
            ok "tokenhook check $K8S_DIR/tokenhook.toml: $out"
        else
            fail "tokenhook check $K8S_DIR/tokenhook.toml:"$'\n'"$out"
        fi
        # The image's default config (deploy/tokenhook.toml + hooks/ at /etc/tokenhook).
        if out=$("${clean_env[@]}" \
            TOKENHOOK_SIGNING_KEYS="$tmp/active.pem" \
            TOKENHOOK_HOOKS_DIR="$ROOT/hooks" \
            "$TOKENHOOK" check --config deploy/tokenhook.toml 2>&1); then
            ok "tokenhook check deploy/tokenhook.toml (image default): $out"
        else
            fail "tokenhook check deploy/tokenhook.toml:"$'\n'"$out"
        fi
    fi
fi

if ((failures > 0)); then
    echo "deploy/validate.sh: $failures check(s) FAILED" >&2
    exit 1
fi
echo "deploy/validate.sh: all checks passed"
