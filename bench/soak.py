#!/usr/bin/env python3
"""Soak driver for tokenhook (issue 11 item 8); run it through bench/soak.sh.

Starts the test IdP (tests/idp/server.mjs, oidc-provider) and tokenhook in front of it
with a hooks folder and Kubernetes-style rotating key files, all on 127.0.0.1, then for
the whole run:

- good clients (svc-basic, client_secret_basic) ask for tokens at a steady rate on
  keep-alive connections and verify every token (RS256 signature against the sidecar's
  JWKS, refetched on an unknown kid as a resource server would, `iss`, `exp`), and one
  client reads discovery through the sidecar (an upstream call of its own);
- in cycles: a hot reload of the enabled hook (a new version), a runaway window (a hook
  whose svc-post path backtracks forever is enabled by rewriting hooks.toml, svc-post
  probes run into the hook time limit, then the previous hook is enabled again), a key
  rotation (next -> active -> retired, a fresh next, swapped in one `..data` rename as
  the kubelet does), and an IdP fault (alternately: killed and restarted on the same
  port with a new signing key, or frozen with SIGSTOP past upstream.timeout_ms);
- every few seconds, the sidecar's RSS and open fds and the number of hook workers.

An error is expected when the request overlapped a runaway or IdP-fault window (plus a
grace for the switch to take effect); any other error is unexpected. The run fails
(exit 1) on any unexpected error, if RSS or fds grew beyond the bounds below, if a
runaway window never had a worker replaced, or if the workers are not back to
hooks.workers at the end.

Python 3.11 standard library only.
"""
import argparse, base64, hashlib, http.client, json, os, select, shutil, signal, subprocess
import sys
import tempfile, threading, time
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKERS = 2
HOOK_TIMEOUT_MS = 500
UPSTREAM_TIMEOUT_MS = 1000
# Growth bounds, from the median of samples 15-30 % into the run to the median of the
# last 20 %: RSS by more than max(RSS_SLACK_KIB, RSS_SLACK_RATIO), fds by more than
# FD_SLACK. A leak per request (~20 per second) or per event (dozens per run) shows
# well beyond these; allocator and pool noise stays within them.
RSS_SLACK_KIB = 16 * 1024
RSS_SLACK_RATIO = 0.25
FD_SLACK = 10
# After a window ends: the hooks folder poll (250 ms), a compile, in-flight requests
# (hook time limit, upstream timeout), the JWKS refresh for the restarted IdP's new key.
GRACE = 3.0

BASIC_AUTH = "Basic " + base64.b64encode(b"svc-basic:svc-basic-secret-123").decode()
TOKEN_BODY = "grant_type=client_credentials"
POST_BODY = "grant_type=client_credentials&client_id=svc-post&client_secret=svc-post-secret-456"
FORM = "application/x-www-form-urlencoded"


def seed_hook(version):
    return f"""// Auth0's seed example, with a version claim so each hot reload is visible.
module.exports = function (client, scope, audience, context, cb) {{
  var access_token = {{}};
  access_token['https://foo.com/claim'] = 'bar';
  access_token['https://soak.example/version'] = {version};
  access_token.scope = scope;
  access_token.scope.push('extra');
  cb(null, access_token);
}};
"""


# Catastrophic backtracking for svc-post only (no loop counter stops it; only the hook
# time limit and the worker kill do); other clients get a normal answer meanwhile.
RUNAWAY = """module.exports = function (client, scope, audience, context, cb) {
  if (client.id === 'svc-post') { /(a+)+$/.test('a'.repeat(40) + 'b'); }
  cb(null, {scope: scope, 'https://soak.example/runaway': true});
};
"""


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = open(f"/proc/{d}/stat").read()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return out


def rss_kib(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


class Idp:
    """tests/idp/server.mjs; its stdin stays open, it exits when that closes."""

    def __init__(self):
        self.proc = None
        self.port = 0
        self.start()

    def start(self):
        for _ in range(20):
            p = subprocess.Popen(["node", os.path.join(ROOT, "tests/idp/server.mjs"),
                                  "--port", str(self.port)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL)
            ready, _, _ = select.select([p.stdout], [], [], 30)
            line = p.stdout.readline().decode() if ready else ""
            if line.startswith("LISTENING "):
                self.proc, self.port = p, int(line.split()[1])
                return
            # The port may be briefly unavailable after a kill; try again.
            p.kill()
            p.wait()
            time.sleep(0.25)
        raise SystemExit(f"the test IdP did not start on port {self.port}")

    def kill(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def signal(self, sig):
        if self.proc:
            self.proc.send_signal(sig)


class Jwks:
    """The sidecar's JWKS as a resource server caches it: refetched on an unknown kid."""

    def __init__(self, port, issuer):
        self.port, self.issuer = port, issuer
        self.keys, self.lock, self.fetches = {}, threading.Lock(), 0

    def fetch(self):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        c.request("GET", "/.well-known/jwks.json")
        doc = json.loads(c.getresponse().read())
        c.close()
        self.keys = {k["kid"]: (int.from_bytes(b64d(k["n"]), "big"),
                                int.from_bytes(b64d(k["e"]), "big"))
                     for k in doc["keys"] if k.get("kty") == "RSA"}
        self.fetches += 1

    def check(self, token):
        """None if the token verifies, else why not."""
        try:
            h64, p64, s64 = token.split(".")
            header, payload = json.loads(b64d(h64)), json.loads(b64d(p64))
        except ValueError:
            return "verify malformed"
        if header.get("alg") != "RS256":
            return "verify alg"
        kid = header.get("kid")
        with self.lock:
            if kid not in self.keys:
                self.fetch()
            key = self.keys.get(kid)
        if key is None:
            return "verify unknown_kid"
        n, e = key
        k = (n.bit_length() + 7) // 8
        em = pow(int.from_bytes(b64d(s64), "big"), e, n).to_bytes(k, "big")
        # EMSA-PKCS1-v1_5 with SHA-256 (RFC 8017 §9.2).
        t = bytes.fromhex("3031300d060960864801650304020105000420") + \
            hashlib.sha256(f"{h64}.{p64}".encode()).digest()
        if em != b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t:
            return "verify signature"
        if payload.get("iss") != self.issuer:
            return "verify iss"
        if not payload.get("exp", 0) > time.time():
            return "verify exp"
        return None


class Results:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = Counter()   # per client kind
        self.errors = []            # (t0, t1, client, kind)
        self.windows = []           # [kind, start, end or None]
        self.probes = Counter()     # runaway probe outcomes

    def record(self, client, t0, t1, kind):
        with self.lock:
            self.requests[client] += 1
            if kind:
                self.errors.append((t0, t1, client, kind))

    def open_window(self, kind):
        with self.lock:
            w = [kind, time.monotonic(), None]
            self.windows.append(w)
            return w

    def close_window(self, w):
        with self.lock:
            w[2] = time.monotonic()

    def expected(self, t0, t1):
        for kind, start, end in self.windows:
            end = (end if end is not None else time.monotonic()) + GRACE
            if t0 <= end and t1 >= start:
                return kind
        return None


def kind_of(status, body):
    try:
        j = json.loads(body)
        return f"{status} {j.get('error')}: {str(j.get('error_description', ''))[:48]}"
    except ValueError:
        return f"{status} (not JSON)"


def request(conn_box, port, method, path, body=None, headers=None):
    """One request on the box's keep-alive connection (reopened after an error)."""
    if conn_box[0] is None:
        conn_box[0] = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c = conn_box[0]
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        if (r.getheader("connection") or "").lower() == "close":
            c.close()
            conn_box[0] = None
        return r.status, data
    except Exception:
        c.close()
        conn_box[0] = None
        raise


def good_client(stop, port, rate, jwks, res):
    box, period, due = [None], 1.0 / rate, time.monotonic()
    headers = {"Authorization": BASIC_AUTH, "Content-Type": FORM}
    while not stop.is_set():
        due += period
        wait = due - time.monotonic()
        if wait > 0:
            stop.wait(wait)
        elif wait < -1:
            due = time.monotonic()  # fell behind (a frozen IdP): no burst to catch up
        t0, kind = time.monotonic(), None
        try:
            status, data = request(box, port, "POST", "/oauth/token", TOKEN_BODY, headers)
            if status == 200:
                kind = jwks.check(json.loads(data)["access_token"])
            else:
                kind = kind_of(status, data)
        except Exception as e:
            kind = f"conn {type(e).__name__}"
        res.record("token", t0, time.monotonic(), kind)


def discovery_client(stop, port, issuer, res):
    box = [None]
    while not stop.wait(0.5):
        t0, kind = time.monotonic(), None
        try:
            status, data = request(box, port, "GET", "/.well-known/openid-configuration")
            if status != 200:
                kind = kind_of(status, data)
            elif json.loads(data).get("issuer") != issuer:
                kind = "discovery issuer"
        except Exception as e:
            kind = f"conn {type(e).__name__}"
        res.record("discovery", t0, time.monotonic(), kind)


def runaway_probe(stop, port, res):
    """svc-post requests back to back while the runaway hook is (about to be) enabled."""
    box = [None]
    headers = {"Content-Type": FORM}
    while not stop.is_set():
        try:
            status, data = request(box, port, "POST", "/oauth/token", POST_BODY, headers)
            outcome = "ok" if status == 200 else kind_of(status, data)
        except Exception as e:
            outcome = f"conn {type(e).__name__}"
        with res.lock:
            res.probes[outcome] += 1


def metric(admin, name):
    try:
        c = http.client.HTTPConnection("127.0.0.1", admin, timeout=5)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        c.close()
    except Exception:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def sampler(stop, pid, admin, every, started, samples):
    while True:
        samples.append({
            "t": time.monotonic() - started,
            "rss_kib": rss_kib(pid),
            "fds": fd_count(pid),
            "workers": len(children(pid)),
            "replaced": metric(admin, "tokenhook_hook_workers_replaced_total"),
        })
        if stop.wait(every):
            return


class Keys:
    """keys/..genN/{active,next,retired}.pem behind a `..data` symlink, as a mounted
    Secret: a rotation writes a new folder and renames the symlink over the old one."""

    def __init__(self, binary, root):
        self.binary, self.dir, self.gen = binary, os.path.join(root, "keys"), 0
        os.makedirs(self.dir)
        self.retired, self.active, self.next = self.new(), self.new(), self.new()
        self.publish()
        for f in ("active.pem", "next.pem", "retired.pem"):
            os.symlink(f"..data/{f}", os.path.join(self.dir, f))

    def new(self):
        path = os.path.join(self.dir, f"k{time.monotonic_ns()}.pem")
        subprocess.run([self.binary, "keys", "generate", "--alg", "RS256", "--out", path],
                       check=True, stdout=subprocess.DEVNULL, timeout=30)
        pem = open(path).read()
        os.remove(path)
        return pem

    def publish(self):
        self.gen += 1
        gen = f"..gen{self.gen}"
        os.makedirs(os.path.join(self.dir, gen))
        for name, pem in (("active.pem", self.active), ("next.pem", self.next),
                          ("retired.pem", self.retired)):
            with open(os.path.join(self.dir, gen, name), "w") as f:
                f.write(pem)
        tmp = os.path.join(self.dir, "..data_tmp")
        if os.path.lexists(tmp):
            os.remove(tmp)
        os.symlink(gen, tmp)
        os.rename(tmp, os.path.join(self.dir, "..data"))

    def rotate(self):
        fresh = self.new()
        self.retired, self.active, self.next = self.active, self.next, fresh
        self.publish()


def start_sidecar(binary, work, idp_port):
    port, admin = free_port(), free_port()
    hooks = os.path.join(work, "hooks")
    os.makedirs(hooks)
    write_atomic(os.path.join(hooks, "seed.js"), seed_hook(0))
    write_atomic(os.path.join(hooks, "hooks.toml"), 'enabled = "seed"\n')
    cfg = os.path.join(work, "tokenhook.toml")
    with open(cfg, "w") as f:
        f.write(f"""[server]
listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:{admin}"
public_url = "http://127.0.0.1:{port}"
threads = 2
grace_period_seconds = 0
drain_delay_seconds = 0

[upstream]
url = "http://127.0.0.1:{idp_port}"
timeout_ms = {UPSTREAM_TIMEOUT_MS}
connect_timeout_ms = 500
jwks_refresh_seconds = 5
jwks_min_refresh_seconds = 1

[signing]
active = "keys/active.pem"
next = ["keys/next.pem"]
retired = ["keys/retired.pem"]
algorithm = "RS256"
reload_interval_ms = 250

[hooks]
dir = "hooks"
workers = {WORKERS}
timeout_ms = {HOOK_TIMEOUT_MS}
reload_interval_ms = 250

[clients."svc-basic"]
name = "Billing sync"
tenant = "acme"
""")
    log = open(os.path.join(work, "sidecar.log"), "w")
    proc = subprocess.Popen([binary, "serve", "--config", cfg], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=log,
                            env={**os.environ, "RUST_LOG": "warn"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"sidecar exited with {proc.returncode}; see {log.name}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", admin, timeout=1)
            c.request("GET", "/readyz")
            if c.getresponse().status == 200:
                return proc, port, admin, hooks
        except OSError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("sidecar not ready within 60 s")


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", required=True)
    ap.add_argument("--profile", default="debug")
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--quick", action="store_true", help="about one minute")
    ap.add_argument("--rate", type=float, default=20, help="good token requests per second")
    ap.add_argument("--out", help="append the report (markdown) to this file")
    a = ap.parse_args()
    total = 60.0 if a.quick else a.minutes * 60
    cycle = 20.0 if total <= 120 else 60.0
    every = 2.0 if total <= 300 else 5.0

    work = tempfile.mkdtemp(prefix="tokenhook-soak-")
    idp = Idp()
    sidecar = None
    try:
        keys = Keys(a.binary, work)
        sidecar, port, admin, hooks = start_sidecar(a.binary, work, idp.port)
        issuer = f"http://127.0.0.1:{port}"
        jwks = Jwks(port, issuer)
        res, stop, samples = Results(), threading.Event(), []
        started = time.monotonic()
        threads = [threading.Thread(target=sampler, args=(stop, sidecar.pid, admin, every,
                                                          started, samples), daemon=True),
                   threading.Thread(target=discovery_client, args=(stop, port, issuer, res),
                                    daemon=True)]
        clients = 4
        threads += [threading.Thread(target=good_client,
                                     args=(stop, port, a.rate / clients, jwks, res), daemon=True)
                    for _ in range(clients)]
        for t in threads:
            t.start()

        events = Counter()
        version = 0
        deadline = started + total

        def at(offset, cycle_start):
            """Sleeps until cycle_start + offset (or the end); False if the run is over."""
            wait = min(cycle_start + offset, deadline) - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            return time.monotonic() < deadline

        n = 0
        while time.monotonic() + cycle <= deadline + 0.5:
            c0 = time.monotonic()
            if not at(0.10 * cycle, c0):
                break
            version += 1
            write_atomic(os.path.join(hooks, "seed.js"), seed_hook(version))
            events["hook reload"] += 1

            if not at(0.20 * cycle, c0):
                break
            w = res.open_window("runaway")
            write_atomic(os.path.join(hooks, "runaway.js"), RUNAWAY)
            write_atomic(os.path.join(hooks, "hooks.toml"), 'enabled = "runaway"\n')
            probe_stop = threading.Event()
            probe = threading.Thread(target=runaway_probe, args=(probe_stop, port, res),
                                     daemon=True)
            probe.start()
            at(0.40 * cycle, c0)
            write_atomic(os.path.join(hooks, "hooks.toml"), 'enabled = "seed"\n')
            probe_stop.set()
            probe.join(10)
            res.close_window(w)
            events["runaway window"] += 1

            if not at(0.55 * cycle, c0):
                break
            keys.rotate()
            events["key rotation"] += 1

            if not at(0.70 * cycle, c0):
                break
            if n % 2 == 0:
                w = res.open_window("idp restart")
                idp.kill()
                time.sleep(0.1 * cycle)
                idp.start()
                res.close_window(w)
                events["idp killed and restarted"] += 1
            else:
                w = res.open_window("idp frozen")
                idp.signal(signal.SIGSTOP)
                time.sleep(max(2 * UPSTREAM_TIMEOUT_MS / 1000, 0.05 * cycle))
                idp.signal(signal.SIGCONT)
                res.close_window(w)
                events["idp frozen"] += 1
            n += 1
            at(cycle, c0)
        # Calm until the end, then let the last requests finish and the pool settle.
        at(total, started)
        stop.set()
        for t in threads:
            t.join(10)
        time.sleep(3)
        final = {"t": time.monotonic() - started, "rss_kib": rss_kib(sidecar.pid),
                 "fds": fd_count(sidecar.pid), "workers": len(children(sidecar.pid)),
                 "replaced": metric(admin, "tokenhook_hook_workers_replaced_total")}
        samples.append(final)
        duration = time.monotonic() - started
    finally:
        if sidecar:
            sidecar.kill()
            sidecar.wait()
        idp.kill()

    # ---- Report ----
    expected, unexpected = Counter(), Counter()
    for t0, t1, client, kind in res.errors:
        w = res.expected(t0, t1)
        (expected if w else unexpected)[(client, w or "-", kind)] += 1
    live = [s for s in samples[:-1]]
    base = [s for s in live if 0.15 * total <= s["t"] <= 0.30 * total] or live[:1]
    tail = [s for s in live if s["t"] >= 0.80 * total] or live[-1:]
    rss0, rss1 = median([s["rss_kib"] for s in base]), median([s["rss_kib"] for s in tail])
    fd0, fd1 = median([s["fds"] for s in base]), median([s["fds"] for s in tail])
    rss_bound = rss0 + max(RSS_SLACK_KIB, int(rss0 * RSS_SLACK_RATIO))
    replaced = final["replaced"] or 0
    checks = [
        ("no unexpected error", sum(unexpected.values()) == 0),
        (f"RSS tail median {rss1} KiB <= {rss_bound} KiB (baseline {rss0} + "
         f"max({RSS_SLACK_KIB}, {int(RSS_SLACK_RATIO * 100)} %))", rss1 <= rss_bound),
        (f"fds tail median {fd1} <= {fd0 + FD_SLACK} (baseline {fd0} + {FD_SLACK})",
         fd1 <= fd0 + FD_SLACK),
        (f"workers at the end {final['workers']} == hooks.workers {WORKERS}",
         final["workers"] == WORKERS),
        (f"workers replaced {int(replaced)} > 0 after {events['runaway window']} runaway windows",
         events["runaway window"] == 0 or replaced > 0),
    ]
    ok = all(c for _, c in checks)

    out = []
    p = out.append
    p(f"## Soak run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
      f"{duration / 60:.1f} min, {a.profile} build, {'PASS' if ok else 'FAIL'}")
    p("")
    p(f"Command: `bench/soak.sh {'--quick' if a.quick else f'--minutes {a.minutes:g}'}"
      f"{' --release' if a.profile == 'release' else ''}`; machine: {os.cpu_count()} cores "
      f"(shared), loopback; cycle {cycle:.0f} s, sample every {every:.0f} s; "
      f"good token rate {a.rate:g}/s over {clients} keep-alive clients, discovery 2/s.")
    p("")
    p("| figure | value |")
    p("|---|---|")
    p(f"| token requests (good clients) | {res.requests['token']} |")
    p(f"| discovery requests | {res.requests['discovery']} |")
    p(f"| runaway probes (svc-post) | {sum(res.probes.values())}: "
      + ", ".join(f"{k} ×{v}" for k, v in res.probes.most_common()) + " |")
    p(f"| events | " + ", ".join(f"{k} ×{v}" for k, v in sorted(events.items())) + " |")
    p(f"| client JWKS fetches (unknown kid) | {jwks.fetches} |")
    p(f"| expected errors | {sum(expected.values())} |")
    p(f"| unexpected errors | {sum(unexpected.values())} |")
    p(f"| workers replaced (`tokenhook_hook_workers_replaced_total`) | {int(replaced)} |")
    p(f"| RSS baseline → tail (median), max | {rss0} → {rss1} KiB, "
      f"{max(s['rss_kib'] for s in samples)} KiB |")
    p(f"| fds baseline → tail (median), max | {fd0} → {fd1}, {max(s['fds'] for s in samples)} |")
    p("")
    for title, errs in (("Expected errors", expected), ("Unexpected errors", unexpected)):
        if errs:
            p(f"{title} (client, window, kind):")
            p("")
            for (client, w, kind), v in errs.most_common():
                p(f"- {client}, {w}, `{kind}` ×{v}")
            p("")
    p("Checks:")
    p("")
    for name, c in checks:
        p(f"- {'ok' if c else 'FAILED'}: {name}")
    p("")
    shown = samples if len(samples) <= 120 else samples[::len(samples) // 60 + 1] + samples[-1:]
    p("| t (s) | rss_kib | fds | workers | replaced |")
    p("|---:|---:|---:|---:|---:|")
    for s in shown:
        rep = "" if s["replaced"] is None else int(s["replaced"])
        p(f"| {s['t']:.0f} | {s['rss_kib']} | {s['fds']} | {s['workers']} | {rep} |")
    p("")
    p("(The last row is taken 3 s after traffic stopped.)")
    if ok:
        shutil.rmtree(work, ignore_errors=True)
    else:
        p(f"Sidecar log and files kept in {work}.")
    report = "\n".join(out)
    print(report)
    if a.out:
        with open(a.out, "a") as f:
            f.write(report + "\n\n")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
