// Evaluated once per worker context, before the hook's own source. Gives hooks the
// globals Auth0's webtask compiler injected, and the driver the Rust side calls.
"use strict";
class ExtensibilityUserError extends Error {
  constructor(message) {
    super(message);
    this.name = this.constructor.name;
  }
}
class InvalidRequestError extends ExtensibilityUserError {}
class InvalidScopeError extends ExtensibilityUserError {}
class ServerError extends ExtensibilityUserError {}
globalThis.ExtensibilityUserError = ExtensibilityUserError;
globalThis.InvalidRequestError = InvalidRequestError;
globalThis.InvalidScopeError = InvalidScopeError;
globalThis.ServerError = ServerError;

// `module` and `exports` are each hook's own: its source runs as a CommonJS module
// (`driver.load`). `require` and the Node and web built-ins come from builtins.js.

// The driver is the completion value of this script, never a global: a hook cannot
// reach it to forge results or change its secrets. The built-ins it relies on are
// captured now, so a hook that replaces them later only affects its own values.
(function () {
  const stringify = JSON.stringify;
  const now = Date.now;
  const assign = Object.assign;
  const keysOf = Object.keys;
  const create = Object.create;
  const defineProperty = Object.defineProperty;
  const isArray = Array.isArray;
  const apply = Reflect.apply;
  const arrayOf = Array.of;
  // A shallow copy as Array.of makes it, which neither looks up a species constructor
  // (the costliest part of slice in Boa) nor reaches anything a hook can replace.
  function copyList(list) {
    return apply(arrayOf, undefined, list);
  }
  function without(list, drop) {
    const out = [];
    for (let i = 0; i < list.length; i++) if (!drop(list[i])) out[out.length] = list[i];
    return out;
  }
  const MAX_LOG_LINES = 100;
  const MAX_LOG_CHARS = 1024;
  let logs = [];
  // The legacy hook's secrets (`setSecrets`; an Action's come with its event), null
  // for none. Each call gets a copy: one request's hook must not see another's
  // mutations.
  let secrets = null;
  // Timers run on the worker's own clock: the Rust side sleeps until the next one is due
  // (never past the hook's deadline) and then fires it.
  let timers = [];
  let timerSeq = 0;
  globalThis.setTimeout = function (fn, ms) {
    if (typeof fn !== "function") throw new TypeError("setTimeout needs a function");
    const extra = Array.prototype.slice.call(arguments, 2);
    const id = ++timerSeq;
    // As Node: a delay that is not a finite number up to 2^31-1 ms counts as 1 ms.
    let delay = Number(ms);
    if (!(delay >= 0 && delay <= 2147483647)) delay = 1;
    timers.push({ id: id, due: now() + delay, fn: fn, args: extra });
    return id;
  };
  globalThis.clearTimeout = function (id) {
    timers = without(timers, function (t) { return t.id === id; });
  };
  globalThis.setImmediate = function (fn) {
    return globalThis.setTimeout.apply(null, [fn, 0].concat(Array.prototype.slice.call(arguments, 1)));
  };
  // fetch: requests go to the sidecar, which performs them under the hook's egress
  // allow-list (`[hook.NAME.fetch]`); the worker has no network. `outbox` holds requests
  // not yet handed to Rust, `inflight` the promises waiting for an answer, by id.
  let outbox = [];
  // Tells Rust that the outbox has something, so it looks only then (see `setNotify`).
  let noteFetch = function () {};
  let inflight = create(null);
  let inflightCount = 0;
  let fetchSeq = 0;
  function domError(message, name) {
    const D = globalThis.DOMException;
    if (typeof D === "function") return new D(message, name);
    const e = new Error(message);
    e.name = name;
    return e;
  }
  function lower(name) {
    return String(name).toLowerCase();
  }
  class Headers {
    constructor(init) {
      defineProperty(this, "_list", { value: [], writable: true });
      if (init === undefined || init === null) return;
      if (init instanceof Headers) {
        for (const [k, v] of init._list) this.append(k, v);
      } else if (isArray(init)) {
        for (const pair of init) this.append(pair[0], pair[1]);
      } else if (typeof init === "object") {
        for (const k of keysOf(init)) this.append(k, init[k]);
      }
    }
    append(name, value) {
      const n = lower(name);
      if (!/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(n)) throw new TypeError("Invalid header name: " + show(name));
      const v = String(value).trim();
      if (/[\r\n\0]/.test(v)) throw new TypeError("Invalid header value for " + n);
      this._list.push([n, v]);
    }
    set(name, value) {
      this.delete(name);
      this.append(name, value);
    }
    get(name) {
      const n = lower(name);
      const found = without(this._list, function (p) { return p[0] !== n; });
      if (found.length === 0) return null;
      return found.map(function (p) { return p[1]; }).join(n === "set-cookie" ? ", " : ", ");
    }
    has(name) {
      return this.get(name) !== null;
    }
    delete(name) {
      const n = lower(name);
      this._list = without(this._list, function (p) { return p[0] === n; });
    }
    forEach(fn, thisArg) {
      for (const [k, v] of this.entries()) fn.call(thisArg, v, k, this);
    }
    *entries() {
      const names = [];
      for (const [k] of this._list) if (names.indexOf(k) < 0) names.push(k);
      names.sort();
      for (const k of names) yield [k, this.get(k)];
    }
    *keys() {
      for (const [k] of this.entries()) yield k;
    }
    *values() {
      for (const [, v] of this.entries()) yield v;
    }
    [Symbol.iterator]() {
      return this.entries();
    }
  }
  class Response {
    constructor(body, init) {
      const o = init || {};
      this.status = o.status === undefined ? 200 : o.status;
      this.statusText = o.statusText === undefined ? "" : String(o.statusText);
      this.headers = new Headers(o.headers);
      this.ok = this.status >= 200 && this.status < 300;
      this.url = o.url || "";
      this.redirected = !!o.redirected;
      this.type = "basic";
      defineProperty(this, "_body", { value: body === undefined || body === null ? "" : String(body), writable: true });
      this.bodyUsed = false;
    }
    _take() {
      if (this.bodyUsed) return Promise.reject(new TypeError("Body is unusable: Body has already been read"));
      this.bodyUsed = true;
      return Promise.resolve(this._body);
    }
    text() {
      return this._take();
    }
    json() {
      return this._take().then(function (t) { return JSON.parse(t); });
    }
    arrayBuffer() {
      return this._take().then(function (t) { return new TextEncoder().encode(t).buffer; });
    }
    clone() {
      if (this.bodyUsed) throw new TypeError("Response.clone: Body has already been consumed.");
      return new Response(this._body, this);
    }
    static json(data, init) {
      const r = new Response(stringify(data), init);
      if (!r.headers.has("content-type")) r.headers.set("content-type", "application/json");
      return r;
    }
  }
  class AbortSignal {
    constructor() {
      this.aborted = false;
      this.reason = undefined;
      this.onabort = null;
      defineProperty(this, "_listeners", { value: [] });
    }
    addEventListener(type, fn) {
      if (type === "abort" && typeof fn === "function") this._listeners.push(fn);
    }
    removeEventListener(type, fn) {
      const i = this._listeners.indexOf(fn);
      if (i >= 0) this._listeners.splice(i, 1);
    }
    throwIfAborted() {
      if (this.aborted) throw this.reason;
    }
    _abort(reason) {
      if (this.aborted) return;
      this.aborted = true;
      this.reason = reason;
      const ev = { type: "abort", target: this };
      if (typeof this.onabort === "function") this.onabort(ev);
      for (const fn of this._listeners.slice()) fn.call(this, ev);
    }
    static abort(reason) {
      const s = new AbortSignal();
      s._abort(reason === undefined ? domError("This operation was aborted", "AbortError") : reason);
      return s;
    }
    static timeout(ms) {
      const s = new AbortSignal();
      globalThis.setTimeout(function () {
        s._abort(domError("The operation was aborted due to timeout", "TimeoutError"));
      }, ms);
      return s;
    }
    static any(signals) {
      const s = new AbortSignal();
      for (const x of signals) {
        if (x.aborted) {
          s._abort(x.reason);
          break;
        }
        x.addEventListener("abort", function () { s._abort(x.reason); });
      }
      return s;
    }
  }
  class AbortController {
    constructor() {
      this.signal = new AbortSignal();
    }
    abort(reason) {
      this.signal._abort(reason === undefined ? domError("This operation was aborted", "AbortError") : reason);
    }
  }
  function bodyText(body, headers) {
    if (body === undefined || body === null) return undefined;
    if (typeof body === "string") {
      if (!headers.has("content-type")) headers.set("content-type", "text/plain;charset=UTF-8");
      return body;
    }
    if (typeof URLSearchParams === "function" && body instanceof URLSearchParams) {
      if (!headers.has("content-type")) headers.set("content-type", "application/x-www-form-urlencoded;charset=UTF-8");
      return body.toString();
    }
    if (body instanceof ArrayBuffer || ArrayBuffer.isView(body)) {
      return new TextDecoder().decode(body);
    }
    throw new TypeError("fetch: this body type is not supported (use a string, URLSearchParams or bytes)");
  }
  globalThis.fetch = function (input, init) {
    return new Promise(function (resolve, reject) {
      const o = init || {};
      const url = typeof input === "string" ? input : input && input.href !== undefined ? String(input.href) : input && input.url !== undefined ? String(input.url) : String(input);
      const headers = new Headers(o.headers);
      const method = o.method === undefined ? "GET" : String(o.method).toUpperCase();
      const body = bodyText(o.body, headers);
      if (body !== undefined && (method === "GET" || method === "HEAD")) {
        throw new TypeError("Request with GET/HEAD method cannot have body.");
      }
      const signal = o.signal;
      if (signal && signal.aborted) {
        reject(signal.reason);
        return;
      }
      const id = ++fetchSeq;
      inflight[id] = { resolve: resolve, reject: reject };
      inflightCount++;
      if (signal && typeof signal.addEventListener === "function") {
        signal.addEventListener("abort", function () {
          if (inflight[id]) {
            delete inflight[id];
            inflightCount--;
            reject(signal.reason);
          }
        });
      }
      outbox.push({ id: id, request: { url: url, method: method, headers: headers._list, body: body } });
      noteFetch();
    });
  };
  globalThis.Headers = Headers;
  globalThis.Response = Response;
  globalThis.AbortController = AbortController;
  globalThis.AbortSignal = AbortSignal;

  function show(v) {
    if (typeof v === "string") return v;
    try {
      const s = stringify(v);
      return s === undefined ? String(v) : s;
    } catch (e) {
      return String(v);
    }
  }
  function logger(level) {
    return function () {
      if (logs.length >= MAX_LOG_LINES) return;
      let line = Array.prototype.map.call(arguments, show).join(" ");
      if (line.length > MAX_LOG_CHARS) line = line.slice(0, MAX_LOG_CHARS) + "…";
      logs.push({ level: level, line: line });
    };
  }
  globalThis.console = {
    log: logger("info"),
    info: logger("info"),
    debug: logger("debug"),
    warn: logger("warn"),
    error: logger("error"),
  };

  function describe(e) {
    if (e !== null && typeof e === "object") {
      return {
        name: String(e.name === undefined ? "Error" : e.name),
        message: String(e.message === undefined ? show(e) : e.message),
      };
    }
    return { name: "Error", message: show(e) };
  }

  // Helpers of the Action API that hold nothing of a call: made once, not per call.
  const space = /\s/;
  function checkScope(s) {
    if (typeof s !== "string" || s.length === 0 || space.test(s)) {
      throw new TypeError("invalid scope: " + show(s) + " (a non-empty string without spaces)");
    }
    return s;
  }
  function byteLength(s) {
    let n = 0;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      n += c < 0x80 ? 1 : c < 0x800 ? 2 : (c >= 0xd800 && c < 0xdc00) ? (i++, 4) : 3;
    }
    return n;
  }

  // The Action API, made once (see `driver.action`): every function works on the
  // current step's variables below, plain variables rather than an object's
  // properties since Boa reads and writes those faster, and no object is made per step.
  // The flow of the current call (`driver.actions`): its Actions, the target scopes
  // the current step starts from (the request's, or the last change an earlier step
  // made that let the request go on; no step may change it in place), the finished
  // steps' states, and the `api.cache` store.
  let flowFns = [];
  let flowFrom = [];
  let flowStates = [];
  let curStore = create(null);
  // The current step's state (claims and cache writes made when first needed, as most
  // steps have none of one or the other) and its live target scopes, copied from
  // `flowFrom` when first changed, as most steps never do.
  let curState = create(null);
  let curTarget = null;
  function liveTarget() {
    if (curTarget === null) curTarget = copyList(flowFrom);
    return curTarget;
  }
  const targetScopes = {
    enumerable: true,
    get: function () { return copyList(curTarget === null ? flowFrom : curTarget); },
  };
  function changed() {
    curState.target_changed = true;
    curState.target_scopes = copyList(curTarget);
  }
  // The step's `api.cache` writes, made at the first: most steps write none.
  function cacheOps() {
    const state = curState;
    if (state.cache_ops === undefined) state.cache_ops = [];
    return state.cache_ops;
  }
  function actionSettled() {
    curState.done = true;
  }
  function actionFailed(e) {
    const state = curState;
    state.done = true;
    state.rejected = describe(e);
    state.error = describe(e);
  }
  const actionApi = {};
  actionApi.accessToken = {
    setCustomClaim: function (name, value) {
      const state = curState;
      name = String(name);
      let claims = state.claims;
      if (claims === undefined) claims = state.claims = create(null);
      delete claims[name];
      // Not mirrored into event.accessToken.customClaims, which shows what earlier
      // steps set (D19): a claim whose value holds that object stays serializable.
      if (value !== undefined && typeof value !== "function" && typeof value !== "symbol") {
        claims[name] = value;
      }
      return actionApi;
    },
  };
  actionApi.access = {
    deny: function (code, reason) {
      const state = curState;
      if (!state.deny) {
        state.deny = { code: String(code), reason: reason === undefined || reason === null ? "" : String(reason) };
      }
      return actionApi;
    },
  };
  actionApi.cache = {
    get: function (key) {
      const e = curStore[String(key)];
      if (!e || e.expires_at <= now()) return undefined;
      return { value: e.value, expires_at: e.expires_at };
    },
    set: function (key, value, options) {
      const store = curStore;
      key = String(key);
      if (typeof value !== "string") return { type: "error", code: "INVALID_VALUE" };
      if (byteLength(key) > 64) return { type: "error", code: "KEY_TOO_LARGE" };
      if (byteLength(value) > 4096) return { type: "error", code: "VALUE_TOO_LARGE" };
      const t = now();
      let exp = t + 15 * 60 * 1000;
      const o = options || {};
      const candidates = [];
      if (typeof o.ttl === "number" && o.ttl > 0) candidates.push(t + o.ttl);
      if (typeof o.expires_at === "number" && o.expires_at > t) candidates.push(o.expires_at);
      if (candidates.length) exp = Math.min.apply(null, candidates);
      exp = Math.floor(Math.min(exp, t + 24 * 60 * 60 * 1000));
      const keys = without(keysOf(store), function (k) { return store[k].expires_at <= t; });
      if (!(key in store) && keys.length >= 20) return { type: "error", code: "TOO_MANY_ENTRIES" };
      let total = byteLength(key) + byteLength(value);
      for (const k of keys) if (k !== key) total += byteLength(k) + byteLength(store[k].value);
      if (total > 8192) return { type: "error", code: "CACHE_FULL" };
      store[key] = { value: value, expires_at: exp };
      cacheOps().push({ op: "set", key: key, value: value, expires_at: exp });
      return { type: "success" };
    },
    delete: function (key) {
      key = String(key);
      delete curStore[key];
      cacheOps().push({ op: "delete", key: key });
      return { type: "success" };
    },
  };
  actionApi.transaction = {
    addTargetScope: function (s) {
      checkScope(s);
      const target = liveTarget();
      if (target.indexOf(s) < 0) target.push(s);
      changed();
      return actionApi;
    },
    removeTargetScope: function (s) {
      checkScope(s);
      curTarget = without(liveTarget(), function (x) { return x === s; });
      changed();
      return actionApi;
    },
    setTargetScopes: function (list) {
      if (!isArray(list)) throw new TypeError("setTargetScopes needs an array of scopes");
      const next = [];
      for (const s of list) {
        checkScope(s);
        if (next.indexOf(s) < 0) next.push(s);
      }
      curTarget = next;
      changed();
      return actionApi;
    },
    clearTargetScopes: function () {
      curTarget = [];
      changed();
      return actionApi;
    },
  };

  // --- What a later Action of a flow sees (D19, as `flow::View` in Rust) --------------
  // Drops the timers and `fetch` requests an invocation or step left behind, so none
  // runs or settles during the next (fresh objects only when needed).
  function dropLeftovers() {
    if (timers.length !== 0) timers = [];
    if (inflightCount !== 0 || outbox.length !== 0) {
      inflight = create(null);
      inflightCount = 0;
      outbox = [];
    }
  }
  // Whether the token will carry a claim an Action sets: the Rust claim rules decide.
  let claimCarried = function () { return false; };
  // A claim value as the token will carry it (JSON's conversions, D11), fresh.
  function asCarried(v) {
    if (typeof v === "number") return isFinite(v) ? v : null;
    if (v === null || typeof v !== "object") return v;
    return JSON.parse(stringify(v));
  }
  // `o[k] = v`, except that "__proto__" stays a plain key.
  function putKey(o, k, v) {
    if (k === "__proto__") {
      defineProperty(o, k, { value: v, writable: true, enumerable: true, configurable: true });
    } else {
      o[k] = v;
    }
  }
  // The claims the token will carry from the steps before the current one: the Hook's
  // (`base`, already as carried), then each earlier Action's in the order set, a later
  // set of a name last.
  function viewClaims(flow, before) {
    const out = {};
    for (const k of keysOf(flow.base)) putKey(out, k, asCarried(flow.base[k]));
    const states = flow.states;
    for (let s = 0; s < before; s++) {
      const claims = states[s].claims;
      if (claims === undefined) continue;
      for (const k of keysOf(claims)) {
        if (!claimCarried(k)) continue;
        delete out[k];
        putKey(out, k, asCarried(claims[k]));
      }
    }
    return out;
  }

  const driver = {
    // Runs a hook's module function (its source wrapped as Node wraps a CommonJS
    // module, see `Engine::compile_steps`) with its own `module` and `exports`, as
    // Auth0's webtask compiler and Node did; each step of a flow so keeps its top-level
    // names to itself though the steps share one context.
    load: function (wrapper) {
      const module = { exports: {} };
      apply(wrapper, module.exports, [module.exports, module]);
      return module;
    },
    hook: function (module) {
      const m = module.exports;
      if (typeof m === "function") return { form: "legacy", fn: m };
      if (m && typeof m.onExecuteCredentialsExchange === "function") {
        return { form: "action", fn: m.onExecuteCredentialsExchange };
      }
      return null;
    },
    // The globals of builtins.js as accessors that run `load` (which evaluates it) the
    // first time one is read, at once when `eager`. Assigning one first keeps the
    // hook's value: builtins.js defines only names still lazy.
    builtins: function (load, names, eager) {
      let loaded = false;
      function ensure() {
        if (loaded) return;
        loaded = true;
        load();
      }
      function own(name, value) {
        defineProperty(globalThis, name, { value: value, writable: true, configurable: true, enumerable: false });
      }
      for (const name of names) {
        defineProperty(globalThis, name, {
          configurable: true,
          enumerable: false,
          get: function () {
            ensure();
            const d = Object.getOwnPropertyDescriptor(globalThis, name);
            return d === undefined || d.get !== undefined ? undefined : d.value;
          },
          set: function (v) { own(name, v); },
        });
      }
      if (eager) ensure();
      return ensure;
    },
    setNotify: function (f) {
      noteFetch = f;
    },
    // `event.transaction.target_scopes`, which Rust defines on each event it makes.
    targetScopes: targetScopes.get,
    // `event.accessToken.customClaims` of a step after the first, made when first read
    // from the flow the event came from (engine/event.rs).
    viewClaims: viewClaims,
    // The getters of the event's parts, marked so that `util.inspect` shows their values
    // (builtins.js `formatProperty`) rather than "[Getter/Setter]".
    markParts: function (getters) {
      const mark = Symbol.for("tokenhook.eventPart");
      for (const g of getters) defineProperty(g, mark, { value: true });
    },
    setClaimRule: function (f) {
      claimCarried = f;
    },
    setSecrets: function (json) {
      const s = JSON.parse(json);
      secrets = s !== null && typeof s === "object" && keysOf(s).length > 0 ? s : null;
    },
    // The input comes as separate arguments (see `Engine::call_raw`): an input object
    // would only be taken apart here, and building it was a good part of a call.
    legacy: function (fn, client, scope, audience, body, ip, userAgent) {
      const b = body || {};
      const webtask = {
        secrets: secrets === null ? {} : assign({}, secrets),
        body: { client: client, scope: scope, audience: audience },
      };
      // Auth0 passes the request's details at the top of `context` (ip, userAgent).
      // Written as literals because adding properties one by one costs Boa more.
      const context =
        ip === undefined
          ? userAgent === undefined
            ? { body: b, webtask: webtask }
            : { body: b, userAgent: userAgent, webtask: webtask }
          : userAgent === undefined
            ? { body: b, ip: ip, webtask: webtask }
            : { body: b, ip: ip, userAgent: userAgent, webtask: webtask };
      // The invocation's state, read back as JSON after the job queue has run, so
      // every value crosses the boundary as JSON (D11). It starts with the fields a
      // usual run sets and gets others when they are set: Rust reads a missing one as
      // its default, undefined ones are left out of the JSON, and adding a property
      // is one of Boa's slower steps. No prototype, so that a setter a hook put on
      // Object.prototype (for `error`, say) cannot catch what the driver writes.
      const state = { __proto__: null, done: false, result: undefined };
      const cb = function (err, claims) {
        if (state.done) {
          state.late = (state.late || 0) + 1; // D7: the first call wins
          return;
        }
        state.done = true;
        if (err !== undefined && err !== null) {
          state.error = describe(err);
          return;
        }
        // Kept as is: it is serialized once, when the invocation is over.
        state.result = claims;
      };
      try {
        const ret = fn(client, scope, audience, context, cb);
        if (ret !== null && typeof ret === "object" && typeof ret.then === "function") {
          ret.then(undefined, function (e) {
            if (!state.done) state.rejected = describe(e);
          });
        }
      } catch (e) {
        if (!state.done) {
          state.done = true;
          state.thrown = true;
          state.error = describe(e);
        }
      }
      return state;
    },
    // Actions: exports.onExecuteCredentialsExchange = async (event, api) => { … }
    // The Actions of a flow run in one call, each after the one before it settled
    // (D19, D21): `actions` starts the flow, then Rust hands `step` each Action's event,
    // whose parts it makes from the request when first read (engine/event.rs), and the
    // live target scopes. The event comes from Rust since building it here cost more
    // than the rest of a step.
    actions: function (fns, cache, startedAt, baseClaims, initialTarget) {
      // api.cache: a snapshot of the shared store, which every step of the flow reads
      // and writes; the writes go back to the sidecar (each step's `cache_ops`).
      const started = Number(startedAt) || now();
      // No prototype: keys like "constructor" or "__proto__" are plain entries.
      const store = create(null);
      if (cache) {
        for (const k of keysOf(cache)) {
          if (cache[k] && cache[k].expires_at > started) store[k] = { value: String(cache[k].value), expires_at: cache[k].expires_at };
        }
      }
      flowFns = fns;
      curStore = store;
      flowFrom = initialTarget;
      flowStates = [];
      // What the events of this call read later, however long a hook keeps one
      // (`viewClaims`): the finished steps' states and the Hook's claims. `state`,
      // `lines` and `goesOn` are written when a step ends unusually (see `flowPoll`).
      return {
        states: flowStates, state: null, lines: null, goesOn: false,
        base: baseClaims !== null && typeof baseClaims === "object" ? baseClaims : {},
      };
    },
    step: function (i, event) {
      // No prototype: what the driver reads and writes of a state is its own, whatever
      // a hook put on Object.prototype (a `claims` there, or a setter for `deny`).
      const state = { __proto__: null, done: false };
      curState = state;
      curTarget = null;
      try {
        const ret = flowFns[i](event, actionApi);
        // An object (an async function's promise, nearly always) goes back to Rust,
        // which reads how a native promise settled once the job queue ran
        // (`Engine::settle`) and hands anything else to `follow`: a `then` or an
        // `instanceof` here cost more than the rest of the step's driver work.
        if (ret !== null && typeof ret === "object") return ret;
        state.done = true;
      } catch (e) {
        state.done = true;
        state.thrown = true;
        state.error = describe(e);
      }
      return undefined;
    },
    // A step's result that is an object but no native promise: followed as `await`
    // would if it is a thenable.
    follow: function (ret) {
      const state = curState;
      try {
        if (typeof ret.then === "function") {
          // Settles within this step (its jobs run before the next starts, and nothing
          // it waits on outlives it), so the shared handlers find its state.
          ret.then(actionSettled, actionFailed);
        } else {
          state.done = true;
        }
      } catch (e) {
        state.done = true;
        state.thrown = true;
        state.error = describe(e);
      }
    },
    // How the step's promise was rejected, as Rust read it (`Engine::settle`).
    stepRejected: function (reason) {
      actionFailed(reason);
    },
    // After the job queue ran: as `poll` while the current step goes on. Once it is
    // over, with whatever the step left behind dropped so it cannot run during the
    // next one: the step's state alone when the request goes on and nothing was
    // printed, which is nearly always and leaves Rust nothing more to read; else the
    // flow, holding the state, the console lines (null for none) and whether the
    // request goes on. `fulfilled`: Rust read that the step's promise was fulfilled
    // (no JS needs to run for it, so it comes with this call).
    flowPoll: function (flow, fulfilled) {
      const state = curState;
      if (fulfilled === true) state.done = true;
      if (!state.done) {
        const next = driver.nextTimer();
        if (next >= 0) return next;
        if (inflightCount > 0) return 2147483647;
      }
      flowStates.push(state);
      // As `action_result` (hooks/mod.rs) lets the request go on.
      const goesOn = state.done && !state.deny && !state.error;
      if (goesOn && state.target_changed) flowFrom = state.target_scopes;
      // Called only when something was left: a call costs Boa more than these reads.
      if (timers.length !== 0 || inflightCount !== 0 || outbox.length !== 0) dropLeftovers();
      if (goesOn && logs.length === 0) return state;
      flow.state = state;
      flow.goesOn = goesOn;
      flow.lines = null;
      if (logs.length !== 0) {
        flow.lines = logs;
        logs = [];
      }
      return flow;
    },
    flowFire: function (flow) {
      driver.fireTimers(curState);
    },
    // Requests made since the last look, as JSON for the sidecar; null for none.
    outbox: function () {
      if (outbox.length === 0) return null;
      const out = stringify(outbox);
      outbox = [];
      return out;
    },
    // An answer from the sidecar: settles that request's promise (an answer for a
    // request of an earlier call, or one aborted meanwhile, finds none and is dropped).
    fetchDone: function (json) {
      const m = JSON.parse(json);
      const f = inflight[m.id];
      if (!f) return;
      delete inflight[m.id];
      inflightCount--;
      const r = m.result || {};
      if (r.kind === "response") {
        f.resolve(new Response(r.body, { status: r.status, statusText: r.status_text, headers: r.headers, url: r.url, redirected: r.redirected }));
      } else {
        const e = new TypeError("fetch failed");
        e.cause = { code: r.reason, message: String(r.message) };
        e.message = "fetch failed: " + String(r.message);
        f.reject(e);
      }
    },
    // Milliseconds until the next timer, or -1 when none is pending.
    nextTimer: function () {
      if (timers.length === 0) return -1;
      let due = Infinity;
      for (const t of timers) if (t.due < due) due = t.due;
      return Math.max(0, due - now());
    },
    // Fires every due timer, earliest first. A throwing timer callback is an uncaught
    // exception, as in Node: it fails the invocation.
    fireTimers: function (state) {
      const t0 = now();
      const due = without(timers, function (t) { return t.due > t0; }).sort(function (a, b) { return a.due - b.due || a.id - b.id; });
      timers = without(timers, function (t) { return t.due <= t0; });
      for (const t of due) {
        try {
          t.fn.apply(null, t.args);
        } catch (e) {
          if (!state.done) {
            state.done = true;
            state.thrown = true;
            state.error = describe(e);
          }
        }
      }
    },
    // After the job queue ran: the milliseconds until the next timer while the
    // invocation goes on; once it is over, its console lines, with whatever it left
    // behind dropped so it cannot run during the next one. Rust then writes the state
    // and these lines as JSON itself, or hands them to `finish` for values it leaves
    // to JSON.stringify.
    poll: function (state) {
      const next = state.done ? -1 : driver.nextTimer();
      if (next >= 0) return next;
      // Nothing timed, but answers are awaited: wait for them (Rust bounds the wait).
      if (!state.done && inflightCount > 0) return 2147483647;
      // Fresh arrays only when needed: Rust takes null as no lines.
      dropLeftovers();
      if (logs.length === 0) return null;
      const lines = logs;
      logs = [];
      return lines;
    },
    finish: function (state, lines) {
      // Live again while serializing, so a toJSON that logs is still reported.
      if (lines !== undefined) logs = lines;
      let out;
      try {
        out = stringify({ state: state === undefined ? null : state, next: -1, logs: logs });
      } catch (e) {
        // A cyclic or BigInt value in the result or a claim (D11 cannot convert it).
        state.result = undefined;
        state.claims = {};
        if (!state.error) {
          state.error = { name: "Error", message: "hook result is not serializable: " + describe(e).message };
        }
        out = stringify({ state: state, next: -1, logs: logs });
      }
      logs = [];
      dropLeftovers();
      return out;
    },
    // Drops console lines and timers that ran outside any invocation (the hook's top
    // level, or jobs queued by its toJSON methods while the result was serialized).
    reset: function () {
      logs = [];
      dropLeftovers();
    },
  };
  return driver;
})();
