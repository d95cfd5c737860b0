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

globalThis.module = { exports: {} };
globalThis.exports = globalThis.module.exports;
globalThis.require = function (name) {
  throw new Error("Cannot find module '" + String(name) + "': tokenhook hooks cannot load npm modules");
};

(function () {
  const MAX_LOG_LINES = 100;
  const MAX_LOG_CHARS = 1024;
  let logs = [];
  let secrets = {};
  // Timers run on the worker's own clock: the Rust side sleeps until the next one is due
  // (never past the hook's deadline) and then fires it.
  let timers = [];
  let timerSeq = 0;
  globalThis.setTimeout = function (fn, ms) {
    if (typeof fn !== "function") throw new TypeError("setTimeout needs a function");
    const extra = Array.prototype.slice.call(arguments, 2);
    const id = ++timerSeq;
    const delay = Math.max(0, Number(ms) || 0);
    timers.push({ id: id, due: Date.now() + delay, fn: fn, args: extra });
    return id;
  };
  globalThis.clearTimeout = function (id) {
    timers = timers.filter(function (t) { return t.id !== id; });
  };
  globalThis.setImmediate = function (fn) {
    return globalThis.setTimeout.apply(null, [fn, 0].concat(Array.prototype.slice.call(arguments, 1)));
  };
  function show(v) {
    if (typeof v === "string") return v;
    try {
      const s = JSON.stringify(v);
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

  // One invocation's state; read back by Rust with JSON.stringify after the job queue
  // has run, so every value crosses the boundary as JSON (D11).
  function newState() {
    return { done: false, error: null, result: null, thrown: false, rejected: null, late: 0 };
  }

  function settle(state, err, value) {
    if (state.done) {
      state.late += 1; // D7: the first call wins
      return;
    }
    state.done = true;
    if (err !== undefined && err !== null) {
      state.error = describe(err);
      return;
    }
    try {
      const json = JSON.stringify(value === undefined ? null : value);
      state.result = json === undefined ? "null" : json;
    } catch (e) {
      state.error = { name: "Error", message: "hook result is not serializable: " + describe(e).message };
    }
  }

  globalThis.__tokenhook = {
    hook: function () {
      const m = globalThis.module.exports;
      if (typeof m === "function") return { form: "legacy", fn: m };
      const exp = globalThis.exports;
      const action =
        (m && typeof m.onExecuteCredentialsExchange === "function" && m.onExecuteCredentialsExchange) ||
        (exp && typeof exp.onExecuteCredentialsExchange === "function" && exp.onExecuteCredentialsExchange);
      if (action) return { form: "action", fn: action };
      return null;
    },
    setSecrets: function (json) {
      secrets = JSON.parse(json);
    },
    legacy: function (fn, inputJson) {
      const input = JSON.parse(inputJson);
      const context = input.context || {};
      // A copy per call: one request's hook must not see another's mutations.
      context.webtask = {
        secrets: Object.assign({}, secrets),
        body: { client: input.client, scope: input.scope, audience: input.audience },
      };
      input.context = context;
      const state = newState();
      const cb = function (err, claims) {
        settle(state, err, claims);
      };
      try {
        const ret = fn(input.client, input.scope, input.audience, input.context, cb);
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
    // Milliseconds until the next timer, or -1 when none is pending.
    nextTimer: function () {
      if (timers.length === 0) return -1;
      let due = Infinity;
      for (const t of timers) if (t.due < due) due = t.due;
      return Math.max(0, due - Date.now());
    },
    // Fires every due timer, earliest first. A throwing timer callback is an uncaught
    // exception, as in Node: it fails the invocation.
    fireTimers: function (state) {
      const now = Date.now();
      const due = timers.filter(function (t) { return t.due <= now; }).sort(function (a, b) { return a.due - b.due || a.id - b.id; });
      timers = timers.filter(function (t) { return t.due > now; });
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
    // Drops what an invocation left behind so it cannot run during the next one.
    reset: function () {
      timers = [];
    },
    report: function () {
      const out = JSON.stringify({ logs: logs });
      logs = [];
      return out;
    },
  };
})();
