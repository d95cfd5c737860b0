// The Node and web built-ins hook code uses (decision D13): the globals Buffer, atob,
// btoa, TextEncoder, TextDecoder, URL, URLSearchParams, structuredClone, DOMException
// and crypto (its web part), and `require` of buffer, crypto, util, querystring and url,
// with or without `node:`. Evaluated at most once per worker context, when the hook is
// compiled or when it first reads one of these globals (the prelude's `builtins`), so
// a hook that never touches them pays nothing per call.
//
// The completion value is a function the engine calls once with the native functions
// (src/hooks/engine/native.rs): they stay in this closure, never a global. Bytes,
// digests, randomness and URL parsing are done there; this file holds Node's argument
// rules and error shapes, which the fixtures in tests/fixtures/node-apis pin.
(function (native) {
  "use strict";
  const defineProperty = Object.defineProperty;
  const getPrototypeOf = Object.getPrototypeOf;
  const setPrototypeOf = Object.setPrototypeOf;
  const hasOwn = Object.prototype.hasOwnProperty;
  const isArray = Array.isArray;
  const isView = ArrayBuffer.isView;
  const toStr = Object.prototype.toString;
  const TypedArray = getPrototypeOf(Uint8Array);
  const typedArrayTag = Object.getOwnPropertyDescriptor(TypedArray.prototype, Symbol.toStringTag).get;

  function hidden(obj, props) {
    for (const k of Object.keys(props)) {
      defineProperty(obj, k, { value: props[k], writable: true, configurable: true, enumerable: false });
    }
  }
  function nodeError(Ctor, code, message) {
    const e = new Ctor(message);
    defineProperty(e, "code", { value: code, writable: true, configurable: true, enumerable: true });
    return e;
  }
  // Node's description of a wrong argument, for ERR_INVALID_ARG_TYPE messages.
  function received(v) {
    if (v == null) return " Received " + v;
    if (typeof v === "function" && v.name) return " Received function " + v.name;
    if (typeof v === "object") {
      if (v.constructor && v.constructor.name) return " Received an instance of " + v.constructor.name;
      return " Received " + inspect(v, { depth: -1 });
    }
    let shown = inspect(v);
    if (shown.length > 28) shown = shown.slice(0, 25) + "...";
    return " Received type " + typeof v + " (" + shown + ")";
  }
  function argType(name, what, v) {
    return nodeError(TypeError, "ERR_INVALID_ARG_TYPE", 'The "' + name + '" argument must be ' + what + "." + received(v));
  }

  // --- DOMException -------------------------------------------------------------------
  const domCodes = {
    IndexSizeError: 1, HierarchyRequestError: 3, WrongDocumentError: 4, InvalidCharacterError: 5,
    NoModificationAllowedError: 7, NotFoundError: 8, NotSupportedError: 9, InvalidStateError: 11,
    SyntaxError: 12, InvalidModificationError: 13, NamespaceError: 14, InvalidAccessError: 15,
    TypeMismatchError: 17, SecurityError: 18, NetworkError: 19, AbortError: 20, URLMismatchError: 21,
    QuotaExceededError: 22, TimeoutError: 23, InvalidNodeTypeError: 24, DataCloneError: 25,
  };
  class DOMException extends Error {
    constructor(message, name) {
      super(message === undefined ? "" : String(message));
      const n = name === undefined ? "Error" : String(name);
      hidden(this, { name: n, code: hasOwn.call(domCodes, n) ? domCodes[n] : 0 });
    }
  }
  defineProperty(DOMException.prototype, Symbol.toStringTag, { value: "DOMException", configurable: true });

  // --- Buffer ---------------------------------------------------------------------------
  function encodingOf(enc) {
    if (enc === undefined || enc === null || enc === "") return "utf8";
    switch (String(enc).toLowerCase()) {
      case "utf8": case "utf-8": return "utf8";
      case "hex": return "hex";
      case "base64": return "base64";
      case "base64url": return "base64url";
      case "latin1": case "binary": return "latin1";
      case "ascii": return "ascii";
      case "ucs2": case "ucs-2": case "utf16le": case "utf-16le": return "utf16le";
      default: return undefined;
    }
  }
  function checkedEncoding(enc) {
    const e = encodingOf(enc);
    if (e === undefined) throw nodeError(TypeError, "ERR_UNKNOWN_ENCODING", "Unknown encoding: " + enc);
    return e;
  }
  // Node's FastBuffer: what every Buffer really is. `Buffer` itself is a plain function
  // sharing its prototype, as in Node, so `Buffer(…)` works without `new` and typed
  // array methods that build a new array through the species (subarray, map) get one.
  class FastBuffer extends Uint8Array {}
  function wrap(arrayBuffer) {
    return new FastBuffer(arrayBuffer);
  }
  function Buffer(arg, encodingOrOffset, length) {
    if (typeof arg === "number") return Buffer.alloc(arg);
    return Buffer.from(arg, encodingOrOffset, length);
  }
  Buffer.prototype = FastBuffer.prototype;
  hidden(FastBuffer.prototype, { constructor: Buffer });
  setPrototypeOf(Buffer, Uint8Array);
  // Any ArrayBuffer view as a Uint8Array over the same bytes, or undefined.
  function bytesOf(v) {
    if (v instanceof Uint8Array) return v;
    if (isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
    if (v instanceof ArrayBuffer) return new Uint8Array(v);
    return undefined;
  }
  function checkSize(size, name) {
    if (typeof size !== "number") throw argType(name || "size", "of type number", size);
    if (!(size >= 0 && size <= 0x100000000)) {
      throw nodeError(RangeError, "ERR_OUT_OF_RANGE",
        'The value of "' + (name || "size") + '" is out of range. It must be >= 0 && <= 4294967296. Received ' + inspect(size));
    }
  }
  hidden(Buffer, {
    from: function from(value, encodingOrOffset, length) {
      if (typeof value === "string") return wrap(native.decode(value, checkedEncoding(encodingOrOffset)));
      if (value instanceof ArrayBuffer) {
        const off = encodingOrOffset === undefined ? 0 : Math.trunc(+encodingOrOffset) || 0;
        const len = length === undefined ? value.byteLength - off : Math.trunc(+length) || 0;
        if (off < 0 || off > value.byteLength) {
          throw nodeError(RangeError, "ERR_BUFFER_OUT_OF_BOUNDS", '"offset" is outside of buffer bounds');
        }
        if (len < 0 || off + len > value.byteLength) {
          throw nodeError(RangeError, "ERR_BUFFER_OUT_OF_BOUNDS", '"length" is outside of buffer bounds');
        }
        return new FastBuffer(value, off, len);
      }
      if (value !== null && typeof value === "object") {
        if (isView(value) && !(value instanceof DataView)) {
          // Element by element, each truncated to a byte: Boa's typed array copy
          // constructor clamps instead.
          const out = new FastBuffer(value.length);
          for (let i = 0; i < value.length; i++) out[i] = value[i];
          return out;
        }
        if (value.type === "Buffer" && isArray(value.data)) return new FastBuffer(value.data);
        if (typeof value.length === "number" || isArray(value)) return new FastBuffer(value);
      }
      throw nodeError(TypeError, "ERR_INVALID_ARG_TYPE",
        "The first argument must be of type string or an instance of Buffer, ArrayBuffer, or Array or an Array-like Object." + received(value));
    },
    alloc: function alloc(size, fill, encoding) {
      checkSize(size);
      const b = new FastBuffer(size);
      if (fill !== undefined && fill !== 0 && size > 0) b.fill(fill, 0, size, encoding);
      return b;
    },
    allocUnsafe: function allocUnsafe(size) {
      checkSize(size);
      return new FastBuffer(size);
    },
    allocUnsafeSlow: function allocUnsafeSlow(size) {
      checkSize(size);
      return new FastBuffer(size);
    },
    isBuffer: function isBuffer(b) {
      return b instanceof Buffer;
    },
    isEncoding: function isEncoding(enc) {
      return typeof enc === "string" && enc.length !== 0 && encodingOf(enc) !== undefined;
    },
    byteLength: function byteLength(v, encoding) {
      if (typeof v !== "string") {
        const b = isView(v) || v instanceof ArrayBuffer ? v : undefined;
        if (b === undefined) {
          throw argType("string", "of type string or an instance of Buffer or ArrayBuffer", v);
        }
        return b.byteLength;
      }
      const e = encodingOf(encoding) || "utf8";
      return native.decode(v, e).byteLength;
    },
    concat: function concat(list, totalLength) {
      if (!isArray(list)) throw argType("list", "an instance of Array", list);
      if (list.length === 0) return new FastBuffer(0);
      let total = 0;
      for (let i = 0; i < list.length; i++) {
        if (!(list[i] instanceof Uint8Array)) {
          throw argType("list[" + i + "]", "an instance of Buffer or Uint8Array", list[i]);
        }
        total += list[i].length;
      }
      const size = totalLength === undefined ? total : totalLength;
      const out = new FastBuffer(size);
      let pos = 0;
      for (const b of list) {
        if (pos >= size) break;
        const part = pos + b.length > size ? b.subarray(0, size - pos) : b;
        Uint8Array.prototype.set.call(out, part, pos);
        pos += part.length;
      }
      return out;
    },
    compare: function compare(a, b) {
      if (!(a instanceof Uint8Array)) throw argType("buf1", "an instance of Buffer or Uint8Array", a);
      if (!(b instanceof Uint8Array)) throw argType("buf2", "an instance of Buffer or Uint8Array", b);
      return compareBytes(a, b);
    },
  });
  hidden(Buffer, { poolSize: 8192 });
  function compareBytes(a, b) {
    const n = Math.min(a.length, b.length);
    for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
    return a.length < b.length ? -1 : a.length > b.length ? 1 : 0;
  }
  const uint8Fill = Uint8Array.prototype.fill;
  const uint8Subarray = Uint8Array.prototype.subarray;
  hidden(FastBuffer.prototype, {
    toString: function toString(encoding, start, end) {
      if (arguments.length === 0) return native.encode(this, "utf8");
      const len = this.length;
      let s = start === undefined ? 0 : Math.trunc(+start) || 0;
      let e = end === undefined ? len : Math.trunc(+end) || 0;
      if (s < 0) s = 0;
      if (e > len) e = len;
      if (e <= s) return "";
      const view = s === 0 && e === len ? this : uint8Subarray.call(this, s, e);
      return native.encode(view, checkedEncoding(encoding));
    },
    toJSON: function toJSON() {
      return { type: "Buffer", data: Array.from(this) };
    },
    equals: function equals(other) {
      if (!(other instanceof Uint8Array)) throw argType("otherBuffer", "an instance of Buffer or Uint8Array", other);
      if (this === other) return true;
      return this.length === other.length && compareBytes(this, other) === 0;
    },
    compare: function compare(target) {
      if (!(target instanceof Uint8Array)) throw argType("target", "an instance of Buffer or Uint8Array", target);
      return compareBytes(this, target);
    },
    // As Node's (deprecated) slice: a view over the same memory, unlike Uint8Array's.
    slice: function slice(start, end) {
      return this.subarray(start, end);
    },
    copy: function copy(target, targetStart, sourceStart, sourceEnd) {
      const ts = targetStart === undefined ? 0 : Math.trunc(+targetStart) || 0;
      const ss = sourceStart === undefined ? 0 : Math.trunc(+sourceStart) || 0;
      const se = sourceEnd === undefined ? this.length : Math.min(Math.trunc(+sourceEnd) || 0, this.length);
      const n = Math.max(0, Math.min(se - ss, target.length - ts));
      if (n > 0) Uint8Array.prototype.set.call(target, uint8Subarray.call(this, ss, ss + n), ts);
      return n;
    },
    fill: function fill(value, offset, end, encoding) {
      if (typeof offset === "string") {
        encoding = offset;
        offset = 0;
        end = this.length;
      } else if (typeof end === "string") {
        encoding = end;
        end = this.length;
      }
      const o = offset === undefined ? 0 : offset;
      const e = end === undefined ? this.length : end;
      if (typeof value === "string") {
        const bytes = value.length === 0 ? new Uint8Array([0]) : new Uint8Array(native.decode(value, checkedEncoding(encoding)));
        for (let i = o, j = 0; i < e; i++, j = (j + 1) % bytes.length) this[i] = bytes[j];
        return this;
      }
      const src = bytesOf(value);
      if (src !== undefined) {
        for (let i = o, j = 0; i < e && src.length; i++, j = (j + 1) % src.length) this[i] = src[j];
        return this;
      }
      uint8Fill.call(this, Number(value) & 255, o, e);
      return this;
    },
    write: function write(string, offset, length, encoding) {
      if (typeof offset === "string") {
        encoding = offset;
        offset = 0;
      } else if (typeof length === "string") {
        encoding = length;
        length = undefined;
      }
      const o = offset === undefined ? 0 : offset;
      const bytes = new Uint8Array(native.decode(String(string), checkedEncoding(encoding)));
      const max = Math.min(this.length - o, length === undefined ? Infinity : length);
      const n = Math.max(0, Math.min(bytes.length, max));
      Uint8Array.prototype.set.call(this, bytes.subarray(0, n), o);
      return n;
    },
    // Node's <Buffer 68 69>, for util.inspect.
    inspect: function inspectBuffer() {
      const max = 50;
      const hex = native.encode(this.length > max ? uint8Subarray.call(this, 0, max) : this, "hex");
      let s = hex.replace(/(.{2})/g, "$1 ").trim();
      if (this.length > max) s += " ... " + (this.length - max) + " more byte" + (this.length - max > 1 ? "s" : "");
      return "<Buffer" + (s ? " " + s : "") + ">";
    },
  });
  const kMaxLength = 0x100000000;

  // --- atob, btoa -------------------------------------------------------------------------
  function atob(input) {
    if (arguments.length === 0) throw nodeError(TypeError, "ERR_MISSING_ARGS", 'The "input" argument must be specified');
    const s = "" + input;
    let counted = 0;
    let equals = 0;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c === 0x09 || c === 0x0a || c === 0x0c || c === 0x0d || c === 0x20) continue;
      const inAlphabet = (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2b || c === 0x2f;
      if (c === 0x3d) {
        counted++;
        equals++;
      } else if (inAlphabet) {
        counted++;
        if (equals) throw new DOMException("Invalid character", "InvalidCharacterError");
      } else {
        throw new DOMException("Invalid character", "InvalidCharacterError");
      }
      if (equals > 2) throw new DOMException("Invalid character", "InvalidCharacterError");
    }
    let rest = counted % 4;
    if (!rest) {
      rest = (counted - equals) % 4;
    } else if (equals) {
      throw new DOMException("Invalid character", "InvalidCharacterError");
    }
    if (rest === 1) throw new DOMException("The string to be decoded is not correctly encoded.", "InvalidCharacterError");
    return native.encode(new Uint8Array(native.decode(s, "base64")), "latin1");
  }
  function btoa(input) {
    if (arguments.length === 0) throw nodeError(TypeError, "ERR_MISSING_ARGS", 'The "input" argument must be specified');
    const s = "" + input;
    for (let i = 0; i < s.length; i++) {
      if (s.charCodeAt(i) > 0xff) throw new DOMException("Invalid character", "InvalidCharacterError");
    }
    return native.encode(new Uint8Array(native.decode(s, "latin1")), "base64");
  }

  // --- TextEncoder, TextDecoder (utf-8) ---------------------------------------------------
  class TextEncoder {
    get encoding() {
      return "utf-8";
    }
    encode(input) {
      return new Uint8Array(native.decode(input === undefined ? "" : String(input), "utf8"));
    }
  }
  class TextDecoder {
    #fatal;
    #ignoreBOM;
    constructor(label, options) {
      const l = label === undefined ? "utf-8" : String(label).trim().toLowerCase();
      if (l !== "utf-8" && l !== "utf8" && l !== "unicode-1-1-utf-8") {
        throw nodeError(RangeError, "ERR_ENCODING_NOT_SUPPORTED", 'The "' + label + '" encoding is not supported');
      }
      const o = options || {};
      this.#fatal = !!o.fatal;
      this.#ignoreBOM = !!o.ignoreBOM;
    }
    get encoding() {
      return "utf-8";
    }
    get fatal() {
      return this.#fatal;
    }
    get ignoreBOM() {
      return this.#ignoreBOM;
    }
    decode(input) {
      if (input === undefined) return "";
      const bytes = bytesOf(input);
      if (bytes === undefined) {
        throw argType("input", "an instance of ArrayBuffer or ArrayBufferView", input);
      }
      try {
        return native.utf8Decode(bytes, this.#fatal, this.#ignoreBOM);
      } catch (e) {
        throw nodeError(TypeError, "ERR_ENCODING_INVALID_ENCODED_DATA", "The encoded data was not valid for encoding utf-8");
      }
    }
  }

  // --- URL, URLSearchParams (WHATWG, parsed by the `url` crate) ---------------------------
  // Filled in by URLSearchParams's static block: the only ways into its private list.
  let paramsReset;
  let paramsAttach;
  class URLSearchParams {
    #list = [];
    #owner = null;
    static {
      paramsReset = function (p, query) {
        p.#list = query === "" ? [] : native.formParse(query.charAt(0) === "?" ? query.slice(1) : query);
      };
      paramsAttach = function (p, owner) {
        p.#owner = owner;
      };
    }
    constructor(init) {
      if (init === undefined || init === null) return;
      if (typeof init === "object" || typeof init === "function") {
        const iter = init[Symbol.iterator];
        if (iter !== undefined) {
          if (typeof iter !== "function") throw nodeError(TypeError, "ERR_ARG_NOT_ITERABLE", "Query pairs must be iterable");
          for (const pair of init) {
            if ((typeof pair !== "object" && typeof pair !== "function") || pair === null || typeof pair[Symbol.iterator] !== "function") {
              throw nodeError(TypeError, "ERR_INVALID_TUPLE", "Each query pair must be an iterable [name, value] tuple");
            }
            const kv = Array.from(pair);
            if (kv.length !== 2) throw nodeError(TypeError, "ERR_INVALID_TUPLE", "Each query pair must be an iterable [name, value] tuple");
            this.#list.push(String(kv[0]), String(kv[1]));
          }
        } else {
          for (const k of Reflect.ownKeys(init)) {
            if (typeof k !== "string") continue;
            const d = Object.getOwnPropertyDescriptor(init, k);
            if (d !== undefined && d.enumerable) this.#list.push(k, String(init[k]));
          }
        }
        return;
      }
      const s = String(init);
      this.#list = s === "" ? [] : native.formParse(s.charAt(0) === "?" ? s.slice(1) : s);
    }
    #update() {
      if (this.#owner !== null) this.#owner(this.toString());
    }
    get size() {
      return this.#list.length / 2;
    }
    append(name, value) {
      this.#list.push(String(name), String(value));
      this.#update();
    }
    delete(name, value) {
      const n = String(name);
      const v = value === undefined ? undefined : String(value);
      const out = [];
      for (let i = 0; i < this.#list.length; i += 2) {
        if (this.#list[i] === n && (v === undefined || this.#list[i + 1] === v)) continue;
        out.push(this.#list[i], this.#list[i + 1]);
      }
      this.#list = out;
      this.#update();
    }
    get(name) {
      const n = String(name);
      for (let i = 0; i < this.#list.length; i += 2) if (this.#list[i] === n) return this.#list[i + 1];
      return null;
    }
    getAll(name) {
      const n = String(name);
      const out = [];
      for (let i = 0; i < this.#list.length; i += 2) if (this.#list[i] === n) out.push(this.#list[i + 1]);
      return out;
    }
    has(name, value) {
      const n = String(name);
      const v = value === undefined ? undefined : String(value);
      for (let i = 0; i < this.#list.length; i += 2) {
        if (this.#list[i] === n && (v === undefined || this.#list[i + 1] === v)) return true;
      }
      return false;
    }
    set(name, value) {
      const n = String(name);
      const v = String(value);
      const out = [];
      let found = false;
      for (let i = 0; i < this.#list.length; i += 2) {
        if (this.#list[i] !== n) {
          out.push(this.#list[i], this.#list[i + 1]);
        } else if (!found) {
          found = true;
          out.push(n, v);
        }
      }
      if (!found) out.push(n, v);
      this.#list = out;
      this.#update();
    }
    sort() {
      const pairs = [];
      for (let i = 0; i < this.#list.length; i += 2) pairs.push([this.#list[i], this.#list[i + 1], i]);
      // By UTF-16 code units, stable: what JS's string comparison and index give.
      pairs.sort(function (a, b) { return a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[2] - b[2]; });
      const out = [];
      for (const p of pairs) out.push(p[0], p[1]);
      this.#list = out;
      this.#update();
    }
    forEach(fn, thisArg) {
      if (typeof fn !== "function") throw argType("callback", "of type function", fn);
      for (let i = 0; i < this.#list.length; i += 2) fn.call(thisArg, this.#list[i + 1], this.#list[i], this);
    }
    *entries() {
      for (let i = 0; i < this.#list.length; i += 2) yield [this.#list[i], this.#list[i + 1]];
    }
    *keys() {
      for (let i = 0; i < this.#list.length; i += 2) yield this.#list[i];
    }
    *values() {
      for (let i = 0; i < this.#list.length; i += 2) yield this.#list[i + 1];
    }
    [Symbol.iterator]() {
      return this.entries();
    }
    toString() {
      return native.formSerialize(this.#list);
    }
  }
  defineProperty(URLSearchParams.prototype, Symbol.toStringTag, { value: "URLSearchParams", configurable: true });

  function invalidUrl(input, base) {
    const e = nodeError(TypeError, "ERR_INVALID_URL", "Invalid URL");
    e.input = input;
    if (base !== undefined) e.base = base;
    return e;
  }
  // Index of each part in what native.urlParse answers.
  const HREF = 0, ORIGIN = 1, PROTOCOL = 2, USERNAME = 3, PASSWORD = 4, HOST = 5, HOSTNAME = 6, PORT = 7, PATHNAME = 8, SEARCH = 9, HASH = 10;
  class URL {
    #parts;
    #params = null;
    constructor(input, base) {
      if (arguments.length === 0) throw nodeError(TypeError, "ERR_MISSING_ARGS", 'The "url" argument must be specified');
      const i = "" + input;
      const b = base === undefined ? undefined : "" + base;
      const parts = native.urlParse(i, b);
      if (parts === null) throw invalidUrl(i, b);
      this.#parts = parts;
    }
    static canParse(input, base) {
      return native.urlParse("" + input, base === undefined ? undefined : "" + base) !== null;
    }
    #set(part, value) {
      const parts = native.urlSet(this.#parts[HREF], part, "" + value);
      if (parts === null) throw invalidUrl("" + value);
      this.#parts = parts;
      if (this.#params !== null && part !== "hash") paramsReset(this.#params, parts[SEARCH]);
    }
    get href() { return this.#parts[HREF]; }
    set href(v) { this.#set("href", v); }
    get origin() { return this.#parts[ORIGIN]; }
    get protocol() { return this.#parts[PROTOCOL]; }
    set protocol(v) { this.#set("protocol", v); }
    get username() { return this.#parts[USERNAME]; }
    set username(v) { this.#set("username", v); }
    get password() { return this.#parts[PASSWORD]; }
    set password(v) { this.#set("password", v); }
    get host() { return this.#parts[HOST]; }
    set host(v) { this.#set("host", v); }
    get hostname() { return this.#parts[HOSTNAME]; }
    set hostname(v) { this.#set("hostname", v); }
    get port() { return this.#parts[PORT]; }
    set port(v) { this.#set("port", v); }
    get pathname() { return this.#parts[PATHNAME]; }
    set pathname(v) { this.#set("pathname", v); }
    get search() { return this.#parts[SEARCH]; }
    set search(v) { this.#set("search", v); }
    get hash() { return this.#parts[HASH]; }
    set hash(v) { this.#set("hash", v); }
    get searchParams() {
      if (this.#params === null) {
        const p = new URLSearchParams(this.#parts[SEARCH]);
        const self = this;
        paramsAttach(p, function (query) {
          self.#parts = native.urlSet(self.#parts[HREF], "search", query);
        });
        this.#params = p;
      }
      return this.#params;
    }
    toString() { return this.#parts[HREF]; }
    toJSON() { return this.#parts[HREF]; }
  }
  defineProperty(URL.prototype, Symbol.toStringTag, { value: "URL", configurable: true });

  // --- structuredClone ----------------------------------------------------------------------
  const errorTypes = { Error, EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError };
  function notCloneable(v) {
    return new DOMException(String(v) + " could not be cloned.", "DataCloneError");
  }
  function structuredClone(value) {
    if (arguments.length === 0) throw nodeError(TypeError, "ERR_MISSING_ARGS", 'The "value" argument must be specified');
    const seen = new Map();
    function clone(v) {
      if (typeof v === "function" || typeof v === "symbol") throw notCloneable(v);
      if (v === null || typeof v !== "object") return v;
      if (seen.has(v)) return seen.get(v);
      let out;
      const tag = toStr.call(v);
      if (isArray(v)) {
        out = new Array(v.length);
        seen.set(v, out);
        for (const k of Object.keys(v)) out[k] = clone(v[k]);
        return out;
      }
      if (v instanceof Date) out = new Date(v.getTime());
      else if (v instanceof RegExp) out = new RegExp(v.source, v.flags);
      else if (v instanceof ArrayBuffer) out = v.slice(0);
      else if (isView(v)) {
        const buf = clone(v.buffer);
        if (v instanceof DataView) out = new DataView(buf, v.byteOffset, v.byteLength);
        else out = new globalThis[typedArrayTag.call(v)](buf, v.byteOffset, v.length);
      } else if (v instanceof Map) {
        out = new Map();
        seen.set(v, out);
        for (const [k, x] of v) out.set(clone(k), clone(x));
        return out;
      } else if (v instanceof Set) {
        out = new Set();
        seen.set(v, out);
        for (const x of v) out.add(clone(x));
        return out;
      } else if (v instanceof Error) {
        const name = hasOwn.call(errorTypes, v.name) ? v.name : "Error";
        out = new errorTypes[name](v.message);
      } else if (tag === "[object Boolean]" || tag === "[object Number]" || tag === "[object String]" || tag === "[object BigInt]") {
        out = Object(v.valueOf());
      } else if (tag !== "[object Object]" || v instanceof Promise || v instanceof WeakMap || v instanceof WeakSet) {
        throw new DOMException("#<" + (constructorName(v) || "Object") + "> could not be cloned.", "DataCloneError");
      } else {
        out = {};
        seen.set(v, out);
        for (const k of Object.keys(v)) out[k] = clone(v[k]);
        return out;
      }
      seen.set(v, out);
      return out;
    }
    return clone(value);
  }

  // --- util.inspect (a subset of Node's) and util.format ---------------------------------
  const keyIsIdentifier = /^[a-zA-Z_][a-zA-Z_0-9]*$/;
  const meta = [
    "\\x00", "\\x01", "\\x02", "\\x03", "\\x04", "\\x05", "\\x06", "\\x07", "\\b", "\\t", "\\n", "\\x0B", "\\f", "\\r",
    "\\x0E", "\\x0F", "\\x10", "\\x11", "\\x12", "\\x13", "\\x14", "\\x15", "\\x16", "\\x17", "\\x18", "\\x19", "\\x1A",
    "\\x1B", "\\x1C", "\\x1D", "\\x1E", "\\x1F",
  ];
  function quote(s) {
    let q = "'";
    if (s.indexOf("'") >= 0) {
      if (s.indexOf('"') < 0) q = '"';
      else if (s.indexOf("`") < 0 && s.indexOf("${") < 0) q = "`";
    }
    let out = "";
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c < 0x20) out += meta[c];
      else if (c === 0x5c) out += "\\\\";
      else if (c === 0x27 && q === "'") out += "\\'";
      else if (c >= 0x7f && c <= 0x9f) out += "\\x" + c.toString(16).toUpperCase();
      else if (c >= 0xd800 && c <= 0xdfff) {
        const next = s.charCodeAt(i + 1);
        if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
          out += s[i] + s[i + 1];
          i++;
        } else {
          out += "\\u" + c.toString(16).toUpperCase();
        }
      } else out += s[i];
    }
    return q + out + q;
  }
  function formatNumber(n) {
    return Object.is(n, -0) ? "-0" : "" + n;
  }
  function formatPrimitive(v) {
    switch (typeof v) {
      case "string": return quote(v);
      case "number": return formatNumber(v);
      case "bigint": return v + "n";
      case "symbol": return v.toString();
      default: return String(v);
    }
  }
  function functionBase(fn) {
    // Boa keeps no source text (toString gives `[native code]`), but only a class has
    // a read-only `prototype`.
    const proto = Object.getOwnPropertyDescriptor(fn, "prototype");
    if (proto !== undefined && !proto.writable && typeof proto.value === "object" && fn[Symbol.toStringTag] === undefined) {
      let b = "[class " + (fn.name || "(anonymous)");
      const sup = getPrototypeOf(fn);
      if (sup && sup !== Function.prototype && sup.name) b += " extends " + sup.name;
      return b + "]";
    }
    let type = "Function";
    const tag = fn[Symbol.toStringTag];
    if (tag === "AsyncFunction" || tag === "GeneratorFunction" || tag === "AsyncGeneratorFunction") type = tag;
    return "[" + type + (fn.name ? ": " + fn.name : " (anonymous)") + "]";
  }
  function constructorName(obj) {
    let o = obj;
    while (o !== null && o !== undefined) {
      const d = Object.getOwnPropertyDescriptor(o, "constructor");
      if (d !== undefined && typeof d.value === "function" && d.value.name !== "") return d.value.name;
      o = getPrototypeOf(o);
    }
    return null;
  }
  function inspect(value, options) {
    const o = options !== null && typeof options === "object" ? options : {};
    const ctx = {
      depth: o.depth === undefined ? 2 : o.depth === null ? Infinity : o.depth,
      showHidden: !!o.showHidden,
      breakLength: typeof o.breakLength === "number" ? o.breakLength : 80,
      compact: o.compact === undefined ? 3 : o.compact,
      seen: [],
      indentationLvl: 0,
      currentDepth: 0,
    };
    return formatValue(ctx, value, 0);
  }
  function formatValue(ctx, v, recurseTimes) {
    if (typeof v !== "object" && typeof v !== "function") return formatPrimitive(v);
    if (v === null) return "null";
    if (ctx.seen.indexOf(v) >= 0) return "[Circular *1]";
    return formatRaw(ctx, v, recurseTimes);
  }
  function formatRaw(ctx, value, recurseTimes) {
    let keys = ctx.showHidden ? Object.getOwnPropertyNames(value) : Object.keys(value);
    for (const sym of Object.getOwnPropertySymbols(value)) {
      if (ctx.showHidden || Object.prototype.propertyIsEnumerable.call(value, sym)) keys.push(sym);
    }
    const name = constructorName(value);
    const prefixOf = function (fallback, size) {
      const n = name === null ? "[" + fallback + ": null prototype]" : name;
      const base = size === undefined ? n : n + "(" + size + ")";
      return name === fallback && size === undefined ? "" : base + " ";
    };
    let braces;
    let base = "";
    let formatter = null;
    let arrayLike = false;
    let entries = 0;
    if (isArray(value)) {
      keys = keys.filter(function (k) { return typeof k !== "string" || !(String(k >>> 0) === k && (k >>> 0) < 4294967295); });
      braces = [(name === "Array" ? "" : prefixOf("Array", value.length)) + "[", "]"];
      if (value.length === 0 && keys.length === 0) return braces[0] + "]";
      arrayLike = true;
      formatter = formatArray;
    } else if (value instanceof Uint8Array && typeof value.inspect === "function" && value instanceof Buffer) {
      return value.inspect();
    } else if (isView(value) && !(value instanceof DataView)) {
      keys = keys.filter(function (k) { return typeof k !== "string" || String(k >>> 0) !== k; });
      const tag = typedArrayTag.call(value);
      braces = [(name === tag ? tag : name) + "(" + value.length + ") [", "]"];
      if (value.length === 0 && keys.length === 0) return braces[0] + "]";
      arrayLike = true;
      formatter = formatArray;
    } else if (value instanceof Map) {
      braces = [prefixOf("Map", value.size) + "{", "}"];
      if (value.size === 0 && keys.length === 0) return braces[0] + "}";
      formatter = formatMap;
    } else if (value instanceof Set) {
      braces = [prefixOf("Set", value.size) + "{", "}"];
      if (value.size === 0 && keys.length === 0) return braces[0] + "}";
      formatter = formatSet;
    } else if (typeof value === "function") {
      base = functionBase(value);
      keys = keys.filter(function (k) { return k !== "prototype" || ctx.showHidden; });
      if (keys.length === 0) return base;
      braces = ["{", "}"];
    } else if (value instanceof Date) {
      base = isNaN(value.getTime()) ? "Invalid Date" : value.toISOString();
      if (keys.length === 0) return base;
      braces = ["{", "}"];
    } else if (value instanceof RegExp) {
      base = RegExp.prototype.toString.call(value);
      keys = keys.filter(function (k) { return k !== "lastIndex"; });
      if (keys.length === 0) return base;
      braces = ["{", "}"];
    } else if (value instanceof Error) {
      base = typeof value.stack === "string" && value.stack !== "" ? value.stack : "[" + Error.prototype.toString.call(value) + "]";
      keys = keys.filter(function (k) { return k !== "stack" && k !== "message"; });
      if (keys.length === 0) return base;
      braces = ["{", "}"];
    } else {
      const tag = toStr.call(value);
      if (tag === "[object String]" || tag === "[object Number]" || tag === "[object Boolean]") {
        const t = tag.slice(8, -1);
        base = "[" + t + ": " + formatPrimitive(value.valueOf()) + "]";
        if (t === "String") keys = keys.filter(function (k) { return typeof k !== "string" || (String(k >>> 0) !== k && k !== "length"); });
        if (keys.length === 0) return base;
        braces = ["{", "}"];
      } else {
        braces = [prefixOf("Object") + "{", "}"];
        if (keys.length === 0) return braces[0] + "}";
      }
    }
    if (recurseTimes > ctx.depth) {
      return "[" + (name === null ? "Object: null prototype" : arrayLike && name === "Array" ? "Array" : name) + "]";
    }
    recurseTimes += 1;
    ctx.seen.push(value);
    ctx.currentDepth = recurseTimes;
    let output = formatter === null ? [] : formatter(ctx, value, recurseTimes);
    for (const k of keys) output.push(formatProperty(ctx, value, recurseTimes, k, arrayLike ? 1 : 0));
    ctx.seen.pop();
    return reduceToSingleString(ctx, output, base, braces, arrayLike, recurseTimes, value);
  }
  function formatArray(ctx, value, recurseTimes) {
    const output = [];
    const len = value.length;
    const max = Math.min(100, len);
    let holes = 0;
    for (let i = 0; i < len && output.length < max; i++) {
      if (!hasOwn.call(value, i)) {
        holes++;
        continue;
      }
      if (holes > 0) {
        output.push("<" + holes + " empty item" + (holes > 1 ? "s" : "") + ">");
        holes = 0;
        if (output.length >= max) break;
      }
      output.push(formatProperty(ctx, value, recurseTimes, i, 2));
    }
    if (holes > 0 && output.length < max) output.push("<" + holes + " empty item" + (holes > 1 ? "s" : "") + ">");
    if (len > max) output.push("... " + (len - max) + " more item" + (len - max > 1 ? "s" : ""));
    return output;
  }
  function formatMap(ctx, value, recurseTimes) {
    const output = [];
    ctx.indentationLvl += 2;
    for (const [k, v] of value) output.push(formatValue(ctx, k, recurseTimes) + " => " + formatValue(ctx, v, recurseTimes));
    ctx.indentationLvl -= 2;
    return output;
  }
  function formatSet(ctx, value, recurseTimes) {
    const output = [];
    ctx.indentationLvl += 2;
    for (const v of value) output.push(formatValue(ctx, v, recurseTimes));
    ctx.indentationLvl -= 2;
    return output;
  }
  // type: 0 an object's property, 1 an array's extra key, 2 an array entry.
  // Marks the getters of an Action's event's parts (prelude.js `markParts`).
  const eventPart = Symbol.for("tokenhook.eventPart");
  function formatProperty(ctx, value, recurseTimes, key, type) {
    let desc = Object.getOwnPropertyDescriptor(value, key) || { value: value[key], enumerable: true };
    // A part of an Action's event, made when first read (src/hooks/engine/event.rs):
    // shown as the data it is, not as the accessor it is made by.
    if (typeof desc.get === "function" && desc.get[eventPart] === true) desc = { value: value[key], enumerable: true };
    let str;
    if (desc.value !== undefined || !("get" in desc)) {
      ctx.indentationLvl += 2;
      str = formatValue(ctx, desc.value, recurseTimes);
      ctx.indentationLvl -= 2;
    } else if (desc.get !== undefined) {
      str = desc.set !== undefined ? "[Getter/Setter]" : "[Getter]";
    } else if (desc.set !== undefined) {
      str = "[Setter]";
    } else {
      str = "undefined";
    }
    if (type === 2) return str;
    let name;
    if (typeof key === "symbol") name = "[" + key.toString() + "]";
    else if (desc.enumerable === false) name = "[" + key + "]";
    else if (keyIsIdentifier.test(key)) name = key;
    else name = quote(String(key));
    return name + ": " + str;
  }
  function isBelowBreakLength(ctx, output, start, base) {
    let total = output.length + start;
    if (total + output.length > ctx.breakLength) return false;
    for (let i = 0; i < output.length; i++) {
      total += output[i].length;
      if (total > ctx.breakLength) return false;
    }
    return base === "" || base.indexOf("\n") < 0;
  }
  function groupArrayElements(ctx, output, value) {
    let totalLength = 0;
    let maxLength = 0;
    let outputLength = output.length;
    if (value !== undefined && value.length > 100 && output.length > 100) outputLength--;
    const separatorSpace = 2;
    const dataLen = new Array(outputLength);
    for (let i = 0; i < outputLength; i++) {
      const len = output[i].length;
      dataLen[i] = len;
      totalLength += len + separatorSpace;
      if (maxLength < len) maxLength = len;
    }
    const actualMax = maxLength + separatorSpace;
    if (actualMax * 3 + ctx.indentationLvl < ctx.breakLength && (totalLength / actualMax > 5 || maxLength <= 6)) {
      const averageBias = Math.sqrt(actualMax - totalLength / output.length);
      const biasedMax = Math.max(actualMax - 3 - averageBias, 1);
      const columns = Math.min(
        Math.round(Math.sqrt(2.5 * biasedMax * outputLength) / biasedMax),
        Math.floor((ctx.breakLength - ctx.indentationLvl) / actualMax),
        ctx.compact * 4,
        15
      );
      if (columns <= 1) return output;
      const tmp = [];
      const maxLineLength = [];
      for (let i = 0; i < columns; i++) {
        let lineLength = 0;
        for (let j = i; j < output.length; j += columns) if (dataLen[j] > lineLength) lineLength = dataLen[j];
        maxLineLength.push(lineLength + separatorSpace);
      }
      let padStart = true;
      if (value !== undefined) {
        for (let i = 0; i < output.length; i++) {
          if (typeof value[i] !== "number" && typeof value[i] !== "bigint") {
            padStart = false;
            break;
          }
        }
      }
      for (let i = 0; i < outputLength; i += columns) {
        const max = Math.min(i + columns, outputLength);
        let str = "";
        let j = i;
        for (; j < max - 1; j++) {
          const cell = output[j] + ", ";
          str += padStart ? cell.padStart(maxLineLength[j - i], " ") : cell.padEnd(maxLineLength[j - i], " ");
        }
        str += padStart ? output[j].padStart(maxLineLength[j - i] - separatorSpace, " ") : output[j];
        tmp.push(str);
      }
      if (outputLength < output.length) tmp.push(output[outputLength]);
      output = tmp;
    }
    return output;
  }
  function reduceToSingleString(ctx, output, base, braces, arrayLike, recurseTimes, value) {
    if (ctx.compact !== true) {
      if (typeof ctx.compact === "number" && ctx.compact >= 1) {
        const entries = output.length;
        if (arrayLike && entries > 6) output = groupArrayElements(ctx, output, value);
        if (ctx.currentDepth - recurseTimes < ctx.compact && entries === output.length) {
          const start = output.length + ctx.indentationLvl + braces[0].length + base.length + 10;
          if (isBelowBreakLength(ctx, output, start, base)) {
            const joined = output.join(", ");
            if (joined.indexOf("\n") < 0) return (base ? base + " " : "") + braces[0] + " " + joined + " " + braces[1];
          }
        }
      }
      const indentation = "\n" + " ".repeat(ctx.indentationLvl);
      return (base ? base + " " : "") + braces[0] + indentation + "  " + output.join("," + indentation + "  ") + indentation + braces[1];
    }
    if (isBelowBreakLength(ctx, output, 0, base)) {
      return braces[0] + (base ? " " + base : "") + " " + output.join(", ") + " " + braces[1];
    }
    const indentation = "\n" + " ".repeat(ctx.indentationLvl);
    return (base ? base + " " : "") + braces[0] + indentation + "  " + output.join("," + indentation + "  ") + indentation + braces[1];
  }
  const builtinNames = [
    "Object", "Function", "Array", "Number", "Boolean", "String", "Symbol", "Date", "Promise", "RegExp", "Error",
    "EvalError", "RangeError", "ReferenceError", "SyntaxError", "TypeError", "URIError", "ArrayBuffer", "Uint8Array",
    "Int8Array", "Uint16Array", "Int16Array", "Uint32Array", "Int32Array", "Float32Array", "Float64Array",
    "Uint8ClampedArray", "BigUint64Array", "BigInt64Array", "DataView", "Map", "BigInt", "Set", "WeakMap", "WeakSet",
    "Proxy", "Reflect", "SharedArrayBuffer", "WeakRef", "FinalizationRegistry",
  ];
  function hasBuiltInToString(value) {
    if (typeof value.toString !== "function") return true;
    if (hasOwn.call(value, "toString")) return false;
    let p = value;
    do {
      p = getPrototypeOf(p);
    } while (p !== null && !hasOwn.call(p, "toString"));
    if (p === null) return true;
    const d = Object.getOwnPropertyDescriptor(p, "constructor");
    return d !== undefined && typeof d.value === "function" && builtinNames.indexOf(d.value.name) >= 0;
  }
  function tryStringify(v) {
    try {
      return JSON.stringify(v);
    } catch (e) {
      if (e instanceof TypeError && /circular|cycl/i.test(String(e.message))) return "[Circular]";
      throw e;
    }
  }
  function format() {
    const args = arguments;
    const first = args[0];
    let a = 0;
    let str = "";
    let join = "";
    if (typeof first === "string") {
      if (args.length === 1) return first;
      let tempStr;
      let lastPos = 0;
      for (let i = 0; i < first.length - 1; i++) {
        if (first.charCodeAt(i) !== 37) continue;
        const next = first.charCodeAt(++i);
        if (a + 1 !== args.length) {
          switch (next) {
            case 115: { // s
              const arg = args[++a];
              if (typeof arg === "number") tempStr = formatNumber(arg);
              else if (typeof arg === "bigint") tempStr = arg + "n";
              else if (typeof arg !== "object" || arg === null || !hasBuiltInToString(arg)) tempStr = String(arg);
              else tempStr = inspect(arg, { depth: 0 });
              break;
            }
            case 106: // j
              tempStr = tryStringify(args[++a]);
              break;
            case 100: { // d
              const n = args[++a];
              if (typeof n === "bigint") tempStr = n + "n";
              else if (typeof n === "symbol") tempStr = "NaN";
              else tempStr = formatNumber(Number(n));
              break;
            }
            case 79: // O
              tempStr = inspect(args[++a]);
              break;
            case 111: // o
              tempStr = inspect(args[++a], { showHidden: true, depth: 4 });
              break;
            case 105: { // i
              const n = args[++a];
              if (typeof n === "bigint") tempStr = n + "n";
              else if (typeof n === "symbol") tempStr = "NaN";
              else tempStr = formatNumber(parseInt(n));
              break;
            }
            case 102: { // f
              const n = args[++a];
              tempStr = typeof n === "symbol" ? "NaN" : formatNumber(parseFloat(n));
              break;
            }
            case 99: // c
              a += 1;
              tempStr = "";
              break;
            case 37: // %
              str += first.slice(lastPos, i);
              lastPos = i + 1;
              continue;
            default:
              continue;
          }
          if (lastPos !== i - 1) str += first.slice(lastPos, i - 1);
          str += tempStr;
          lastPos = i + 1;
        } else if (next === 37) {
          str += first.slice(lastPos, i);
          lastPos = i + 1;
        }
      }
      if (lastPos !== 0) {
        a++;
        join = " ";
        if (lastPos < first.length) str += first.slice(lastPos);
      }
    }
    while (a < args.length) {
      const v = args[a];
      str += join;
      str += typeof v !== "string" ? inspect(v) : v;
      join = " ";
      a++;
    }
    return str;
  }
  const customPromisify = Symbol.for("nodejs.util.promisify.custom");
  function promisify(original) {
    if (typeof original !== "function") throw argType("original", "of type function", original);
    if (original[customPromisify]) {
      const fn = original[customPromisify];
      if (typeof fn !== "function") throw argType("util.promisify.custom", "of type function", fn);
      return fn;
    }
    function fn() {
      const args = Array.prototype.slice.call(arguments);
      const self = this;
      return new Promise(function (resolve, reject) {
        args.push(function (err, value) {
          if (err) reject(err);
          else resolve(value);
        });
        Reflect.apply(original, self, args);
      });
    }
    setPrototypeOf(fn, getPrototypeOf(original));
    defineProperty(fn, customPromisify, { value: fn, configurable: true });
    return Object.defineProperties(fn, Object.getOwnPropertyDescriptors(original));
  }
  defineProperty(promisify, "custom", { value: customPromisify, enumerable: true });
  function inherits(ctor, superCtor) {
    if (typeof ctor !== "function") throw argType("ctor", "of type function", ctor);
    if (typeof superCtor !== "function") throw argType("superCtor", "of type function", superCtor);
    defineProperty(ctor, "super_", { value: superCtor, writable: true, configurable: true });
    setPrototypeOf(ctor.prototype, superCtor.prototype);
  }
  defineProperty(inspect, "custom", { value: Symbol.for("nodejs.util.inspect.custom"), enumerable: true });

  // --- querystring ----------------------------------------------------------------------------
  function qsUnescapeBuffer(s) {
    const out = [];
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c === 37 && i + 2 < s.length && /^[0-9a-fA-F]{2}$/.test(s.slice(i + 1, i + 3))) {
        out.push(parseInt(s.slice(i + 1, i + 3), 16));
        i += 2;
      } else {
        out.push(c & 255);
      }
    }
    return new Uint8Array(out);
  }
  function qsUnescape(s) {
    try {
      return decodeURIComponent(s);
    } catch (e) {
      return native.encode(qsUnescapeBuffer(s), "utf8");
    }
  }
  function qsEscape(str) {
    let s = str;
    if (typeof s !== "string") {
      if (typeof s === "object") s = String(s);
      else s += "";
    }
    try {
      return encodeURIComponent(s);
    } catch (e) {
      throw nodeError(URIError, "ERR_INVALID_URI", "URI malformed");
    }
  }
  const querystring = {
    unescapeBuffer: function unescapeBuffer(s) {
      return wrap(qsUnescapeBuffer(String(s)).buffer);
    },
    unescape: function unescape(s) {
      return qsUnescape(String(s));
    },
    escape: qsEscape,
    stringify: function stringify(obj, sep, eq, options) {
      const s = sep || "&";
      const e = eq || "=";
      const encode = options && typeof options.encodeURIComponent === "function" ? options.encodeURIComponent : qsEscape;
      const convert = function (v) {
        if (typeof v === "string") return v.length ? encode(v) : "";
        if (typeof v === "number" && isFinite(v)) return Math.abs(v) < 1e21 ? "" + v : encode("" + v);
        if (typeof v === "bigint") return "" + v;
        if (typeof v === "boolean") return v ? "true" : "false";
        return "";
      };
      if (obj === null || typeof obj !== "object") return "";
      let fields = "";
      for (const k of Object.keys(obj)) {
        const v = obj[k];
        const ks = convert(k) + e;
        if (isArray(v)) {
          if (v.length === 0) continue;
          if (fields) fields += s;
          for (let j = 0; j < v.length; j++) {
            if (j) fields += s;
            fields += ks + convert(v[j]);
          }
        } else {
          if (fields) fields += s;
          fields += ks + convert(v);
        }
      }
      return fields;
    },
    parse: function parse(qs, sep, eq, options) {
      const obj = Object.create(null);
      if (typeof qs !== "string" || qs.length === 0) return obj;
      const s = sep ? String(sep) : "&";
      const e = eq ? String(eq) : "=";
      let maxKeys = 1000;
      if (options && typeof options.maxKeys === "number") maxKeys = options.maxKeys;
      const decode = options && typeof options.decodeURIComponent === "function" ? options.decodeURIComponent : qsUnescape;
      const decodeStr = function (x) {
        const plain = x.replace(/\+/g, " ");
        if (plain.indexOf("%") < 0) return plain;
        try {
          return decode(plain);
        } catch (err) {
          return qsUnescape(plain);
        }
      };
      let pairs = qs.split(s);
      if (maxKeys > 0 && pairs.length > maxKeys) pairs = pairs.slice(0, maxKeys);
      for (const pair of pairs) {
        if (pair.length === 0) continue;
        const at = pair.indexOf(e);
        const k = decodeStr(at >= 0 ? pair.slice(0, at) : pair);
        const v = at >= 0 ? decodeStr(pair.slice(at + e.length)) : "";
        const cur = obj[k];
        if (cur === undefined) obj[k] = v;
        else if (typeof cur === "string") obj[k] = [cur, v];
        else cur.push(v);
      }
      return obj;
    },
  };
  querystring.decode = querystring.parse;
  querystring.encode = querystring.stringify;

  // --- crypto ---------------------------------------------------------------------------------
  const hashNames = {
    md5: "md5", "rsa-md5": "md5",
    sha1: "sha1", "sha-1": "sha1", "rsa-sha1": "sha1",
    sha224: "sha224", "sha-224": "sha224", "rsa-sha224": "sha224",
    sha256: "sha256", "sha-256": "sha256", "rsa-sha256": "sha256",
    sha384: "sha384", "sha-384": "sha384", "rsa-sha384": "sha384",
    sha512: "sha512", "sha-512": "sha512", "rsa-sha512": "sha512",
  };
  function algorithmOf(name) {
    if (typeof name !== "string") return undefined;
    const lower = name.toLowerCase();
    return hasOwn.call(hashNames, lower) ? hashNames[lower] : undefined;
  }
  function dataBytes(data, encoding, what) {
    if (typeof data === "string") return new Uint8Array(native.decode(data, encodingOf(encoding) || "utf8"));
    const b = isView(data) ? bytesOf(data) : undefined;
    if (b === undefined) throw argType(what, "of type string or an instance of Buffer, TypedArray, or DataView", data);
    return b;
  }
  function joinChunks(chunks) {
    if (chunks.length === 1) return chunks[0];
    let n = 0;
    for (const c of chunks) n += c.length;
    const out = new Uint8Array(n);
    let pos = 0;
    for (const c of chunks) {
      out.set(c, pos);
      pos += c.length;
    }
    return out;
  }
  function digestOut(arrayBuffer, encoding) {
    const b = wrap(arrayBuffer);
    if (encoding === undefined || encoding === "buffer") return b;
    return b.toString(encodingOf(encoding) || "utf8");
  }
  // Chunks are copied when given: a Buffer changed after `update` must not change the
  // digest, as in Node, which hashes as it goes.
  class Hash {
    #alg;
    #chunks;
    #done = false;
    constructor(alg, chunks) {
      this.#alg = alg;
      this.#chunks = chunks || [];
    }
    update(data, encoding) {
      if (this.#done) throw nodeError(Error, "ERR_CRYPTO_HASH_FINALIZED", "Digest already called");
      this.#chunks.push(new Uint8Array(dataBytes(data, encoding, "data")));
      return this;
    }
    digest(encoding) {
      if (this.#done) throw nodeError(Error, "ERR_CRYPTO_HASH_FINALIZED", "Digest already called");
      this.#done = true;
      const out = native.hash(this.#alg, joinChunks(this.#chunks));
      this.#chunks = [];
      return digestOut(out, encoding);
    }
    copy() {
      if (this.#done) throw nodeError(Error, "ERR_CRYPTO_HASH_FINALIZED", "Digest already called");
      return new Hash(this.#alg, this.#chunks.slice());
    }
  }
  class Hmac {
    #alg;
    #key;
    #chunks = [];
    #done = false;
    constructor(alg, key) {
      this.#alg = alg;
      this.#key = key;
    }
    update(data, encoding) {
      if (this.#done) throw nodeError(Error, "ERR_CRYPTO_HASH_FINALIZED", "Digest already called");
      this.#chunks.push(new Uint8Array(dataBytes(data, encoding, "data")));
      return this;
    }
    // As Node: a second digest gives an empty result rather than an error.
    digest(encoding) {
      if (this.#done) return digestOut(new ArrayBuffer(0), encoding);
      this.#done = true;
      const out = native.hmac(this.#alg, this.#key, joinChunks(this.#chunks));
      this.#chunks = [];
      this.#key = null;
      return digestOut(out, encoding);
    }
  }
  function createHash(algorithm, options) {
    const alg = algorithmOf(algorithm);
    if (typeof algorithm !== "string") throw argType("algorithm", "of type string", algorithm);
    if (alg === undefined) throw new Error("Digest method not supported");
    return new Hash(alg);
  }
  function createHmac(hmac, key, options) {
    if (typeof hmac !== "string") throw argType("hmac", "of type string", hmac);
    const alg = algorithmOf(hmac);
    if (alg === undefined) throw nodeError(TypeError, "ERR_CRYPTO_INVALID_DIGEST", "Invalid digest: " + hmac);
    let k;
    if (typeof key === "string") {
      const enc = options && options.encoding;
      k = new Uint8Array(native.decode(key, encodingOf(enc) || "utf8"));
    } else if (isView(key) || key instanceof ArrayBuffer) {
      k = new Uint8Array(bytesOf(key));
    } else {
      throw argType("key", "of type string or an instance of ArrayBuffer, Buffer, TypedArray, DataView, KeyObject, or CryptoKey", key);
    }
    return new Hmac(alg, k);
  }
  function randomBytes(size, callback) {
    if (typeof size !== "number") throw argType("size", "of type number", size);
    if (!(size >= 0 && size <= 2147483647) || size !== Math.floor(size)) {
      throw nodeError(RangeError, "ERR_OUT_OF_RANGE",
        'The value of "size" is out of range. It must be >= 0 && <= 2147483647. Received ' + inspect(size));
    }
    if (callback !== undefined && typeof callback !== "function") throw argType("callback", "of type function", callback);
    const b = wrap(native.random(size));
    if (callback === undefined) return b;
    Promise.resolve().then(function () { callback(null, b); });
    return undefined;
  }
  function randomUUID() {
    const b = new Uint8Array(native.random(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = native.encode(b, "hex");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }
  function getRandomValues(array) {
    if (!isView(array) || array instanceof DataView || array instanceof Float32Array || array instanceof Float64Array) {
      throw new DOMException("The data argument must be an integer-type TypedArray", "TypeMismatchError");
    }
    if (array.byteLength > 65536) {
      throw new DOMException("The ArrayBufferView's byte length (" + array.byteLength + ") exceeds the number of bytes of entropy available via this API (65536)", "QuotaExceededError");
    }
    new Uint8Array(array.buffer, array.byteOffset, array.byteLength).set(new Uint8Array(native.random(array.byteLength)));
    return array;
  }
  function timingSafeEqual(buf1, buf2) {
    const a = isView(buf1) || buf1 instanceof ArrayBuffer ? bytesOf(buf1) : undefined;
    // Node's message for these two names no received value.
    if (a === undefined) throw nodeError(TypeError, "ERR_INVALID_ARG_TYPE", 'The "buf1" argument must be an instance of ArrayBuffer, Buffer, TypedArray, or DataView.');
    const b = isView(buf2) || buf2 instanceof ArrayBuffer ? bytesOf(buf2) : undefined;
    if (b === undefined) throw nodeError(TypeError, "ERR_INVALID_ARG_TYPE", 'The "buf2" argument must be an instance of ArrayBuffer, Buffer, TypedArray, or DataView.');
    if (a.byteLength !== b.byteLength) {
      throw nodeError(RangeError, "ERR_CRYPTO_TIMING_SAFE_EQUAL_LENGTH", "Input buffers must have the same byte length");
    }
    return native.equal(a, b);
  }
  const webcrypto = { getRandomValues, randomUUID };
  const crypto = {
    createHash,
    createHmac,
    randomBytes,
    randomUUID,
    getRandomValues,
    timingSafeEqual,
    getHashes: function getHashes() {
      return ["md5", "sha1", "sha224", "sha256", "sha384", "sha512"];
    },
    webcrypto,
    Hash,
    Hmac,
  };

  // --- axios ----------------------------------------------------------------------------------
  // The calls of the npm module that public Actions make, on top of `fetch` (so every
  // request goes through the hook's egress allow-list): `axios(config)`, `axios(url,
  // config)`, the method helpers, `create`, `defaults`, interceptors, `params`,
  // `headers`, `timeout`, `auth`, JSON bodies, `response.data/status/headers`, and
  // errors that carry `response` (axios 1.x behaviour).
  class AxiosError extends Error {
    constructor(message, code, config, request, response) {
      super(message);
      this.name = "AxiosError";
      this.code = code;
      this.config = config;
      this.request = request;
      this.response = response;
      this.status = response ? response.status : undefined;
      this.isAxiosError = true;
    }
    toJSON() {
      return { message: this.message, name: this.name, code: this.code, status: this.status };
    }
  }
  AxiosError.ERR_BAD_REQUEST = "ERR_BAD_REQUEST";
  AxiosError.ERR_BAD_RESPONSE = "ERR_BAD_RESPONSE";
  AxiosError.ECONNABORTED = "ECONNABORTED";
  AxiosError.ERR_NETWORK = "ERR_NETWORK";
  AxiosError.ERR_CANCELED = "ERR_CANCELED";
  AxiosError.ETIMEDOUT = "ETIMEDOUT";
  class CanceledError extends AxiosError {
    constructor(message, config, request) {
      super(message === undefined || message === null ? "canceled" : message, "ERR_CANCELED", config, request);
      this.name = "CanceledError";
      this.__CANCEL__ = true;
    }
  }
  const axiosMethods = ["delete", "get", "head", "options", "post", "put", "patch"];
  function isPlainObject(v) {
    if (v === null || typeof v !== "object") return false;
    const p = getPrototypeOf(v);
    return p === null || p === Object.prototype;
  }
  // Header sets as axios keeps them in `defaults.headers`: `common`, per method, and
  // plain names; flattened for one request.
  function flatHeaders(headers, method) {
    const out = {};
    if (!headers) return out;
    const put = function (src) {
      if (!src) return;
      for (const k of Object.keys(src)) {
        if (k === "common" || axiosMethods.indexOf(k) >= 0) continue;
        const v = src[k];
        if (v === undefined || v === null || v === false) continue;
        for (const have of Object.keys(out)) if (have.toLowerCase() === k.toLowerCase()) delete out[have];
        out[k] = String(v);
      }
    };
    put(headers.common);
    put(headers[method]);
    put(headers);
    return out;
  }
  function mergeConfig(a, b) {
    const out = Object.assign({}, a || {}, b || {});
    const ha = (a && a.headers) || {};
    const hb = (b && b.headers) || {};
    out.headers = Object.assign({}, ha, hb);
    for (const k of ["common"].concat(axiosMethods)) {
      if (isPlainObject(ha[k]) || isPlainObject(hb[k])) out.headers[k] = Object.assign({}, ha[k], hb[k]);
    }
    return out;
  }
  function hasHeader(headers, name) {
    return Object.keys(headers).some(function (k) { return k.toLowerCase() === name; });
  }
  // axios's default `params` serializer: nested objects as `a[b]=`, a flat array as
  // `key[]=` and a nested one with indexes, ISO dates, null and undefined left out, and
  // its URL encoding (`:`, `$`, `,` kept, spaces as `+`).
  function axiosEncode(v) {
    return encodeURIComponent(v).replace(/%3A/gi, ":").replace(/%24/g, "$").replace(/%2C/gi, ",").replace(/%20/g, "+");
  }
  function serializeParams(params) {
    if (params instanceof URLSearchParams) return params.toString();
    const out = [];
    const push = function (key, v) {
      out.push(axiosEncode(key) + "=" + axiosEncode(v instanceof Date ? v.toISOString() : String(v)));
    };
    const isFlat = function (arr) {
      return arr.every(function (x) { return x === null || x === undefined || typeof x !== "object" || x instanceof Date; });
    };
    const build = function (v, key, top) {
      if (v === null || v === undefined) return;
      if (v instanceof Date) return push(key, v);
      if (isArray(v)) {
        if (top && isFlat(v)) {
          for (const x of v) if (x !== null && x !== undefined) push(key + "[]", x);
        } else {
          v.forEach(function (x, i) { build(x, key + "[" + i + "]", false); });
        }
        return;
      }
      if (typeof v === "object") {
        for (const k of Object.keys(v)) build(v[k], key + "[" + k + "]", false);
        return;
      }
      push(key, v);
    };
    for (const k of Object.keys(params)) build(params[k], k, true);
    return out.join("&");
  }
  function fullURL(config) {
    let url = config.url === undefined ? "" : String(config.url);
    if (config.baseURL && !/^([a-z][a-z\d+\-.]*:)?\/\//i.test(url)) {
      url = url ? String(config.baseURL).replace(/\/+$/, "") + "/" + url.replace(/^\/+/, "") : String(config.baseURL);
    }
    if (config.params) {
      const q = config.paramsSerializer && typeof config.paramsSerializer === "function" ? config.paramsSerializer(config.params) : serializeParams(config.params);
      if (q) {
        const hash = url.indexOf("#");
        if (hash >= 0) url = url.slice(0, hash);
        url += (url.indexOf("?") >= 0 ? "&" : "?") + q;
      }
    }
    return url;
  }
  function parseBody(text, config) {
    if (config.responseType === "text") return text;
    if (typeof text === "string" && text.length > 0) {
      try {
        return JSON.parse(text);
      } catch (e) {
        if (config.responseType === "json") throw new AxiosError(e.message, "ERR_BAD_RESPONSE", config);
      }
    }
    return text;
  }
  function Interceptors() {
    const handlers = [];
    return {
      handlers: handlers,
      use: function (fulfilled, rejected) {
        handlers.push({ fulfilled: fulfilled, rejected: rejected });
        return handlers.length - 1;
      },
      eject: function (id) {
        if (handlers[id]) handlers[id] = null;
      },
      clear: function () {
        handlers.length = 0;
      },
    };
  }
  function dispatch(config) {
    const method = String(config.method || "get").toLowerCase();
    const headers = flatHeaders(config.headers, method);
    let body;
    const data = config.data;
    const sends = method === "post" || method === "put" || method === "patch";
    if (sends && (data === undefined || data === null || typeof data === "string")) {
      // As axios on Node: a string or no body is sent as a form unless told otherwise.
      if (!hasHeader(headers, "content-type")) headers["Content-Type"] = "application/x-www-form-urlencoded";
      body = typeof data === "string" ? data : "";
    } else if (data !== undefined && data !== null && method !== "get" && method !== "head") {
      if (typeof data === "string") {
        body = data;
      } else if (data instanceof URLSearchParams) {
        body = data.toString();
        if (!hasHeader(headers, "content-type")) headers["Content-Type"] = "application/x-www-form-urlencoded;charset=utf-8";
      } else if (data instanceof ArrayBuffer || isView(data)) {
        body = data;
      } else {
        body = JSON.stringify(data);
        if (!hasHeader(headers, "content-type")) headers["Content-Type"] = "application/json";
      }
    }
    if (config.auth) {
      const user = config.auth.username || "";
      const pass = config.auth.password || "";
      headers.Authorization = "Basic " + Buffer.from(user + ":" + pass, "utf8").toString("base64");
    }
    const signals = [];
    if (config.signal) signals.push(config.signal);
    const timeout = Number(config.timeout) || 0;
    let timer = null;
    let timedOut = false;
    let controller = null;
    if (timeout > 0) {
      controller = new AbortController();
      signals.push(controller.signal);
      timer = setTimeout(function () {
        timedOut = true;
        controller.abort();
      }, timeout);
    }
    const signal = signals.length === 0 ? undefined : signals.length === 1 ? signals[0] : AbortSignal.any(signals);
    const request = { method: method.toUpperCase(), url: fullURL(config) };
    return fetch(request.url, { method: request.method, headers: headers, body: body, signal: signal }).then(
      function (res) {
        if (timer !== null) clearTimeout(timer);
        return res.text().then(function (text) {
          const h = {};
          res.headers.forEach(function (v, k) { h[k] = v; });
          const response = { data: parseBody(text, config), status: res.status, statusText: res.statusText, headers: h, config: config, request: request };
          const validate = config.validateStatus === undefined ? function (s) { return s >= 200 && s < 300; } : config.validateStatus;
          if (!validate || validate(res.status)) return response;
          throw new AxiosError("Request failed with status code " + res.status,
            res.status >= 500 ? "ERR_BAD_RESPONSE" : "ERR_BAD_REQUEST", config, request, response);
        });
      },
      function (err) {
        if (timer !== null) clearTimeout(timer);
        if (err && err.isAxiosError) throw err;
        if (timedOut) {
          throw new AxiosError(config.timeoutErrorMessage || "timeout of " + timeout + "ms exceeded", "ECONNABORTED", config, request);
        }
        if (err && (err.name === "AbortError" || err.name === "TimeoutError" || (config.signal && config.signal.aborted))) {
          throw new CanceledError(null, config, request);
        }
        throw new AxiosError(err && err.message ? err.message : "Network Error", "ERR_NETWORK", config, request);
      }
    );
  }
  function createAxios(defaults) {
    const interceptors = { request: Interceptors(), response: Interceptors() };
    function request(configOrUrl, maybeConfig) {
      let config = typeof configOrUrl === "string" ? Object.assign({}, maybeConfig, { url: configOrUrl }) : Object.assign({}, configOrUrl);
      config = mergeConfig(instance.defaults, config);
      let chain = Promise.resolve(config);
      for (const h of interceptors.request.handlers.slice().reverse()) {
        if (h) chain = chain.then(h.fulfilled, h.rejected);
      }
      chain = chain.then(dispatch);
      for (const h of interceptors.response.handlers) {
        if (h) chain = chain.then(h.fulfilled, h.rejected);
      }
      return chain;
    }
    const instance = function axios(configOrUrl, maybeConfig) {
      return request(configOrUrl, maybeConfig);
    };
    instance.defaults = mergeConfig({
      headers: { common: { Accept: "application/json, text/plain, */*" } },
      timeout: 0,
    }, defaults);
    instance.interceptors = interceptors;
    instance.request = request;
    for (const m of ["delete", "get", "head", "options"]) {
      instance[m] = function (url, config) { return request(Object.assign({}, config, { method: m, url: url })); };
    }
    for (const m of ["post", "put", "patch"]) {
      instance[m] = function (url, data, config) { return request(Object.assign({}, config, { method: m, url: url, data: data })); };
    }
    instance.getUri = function (config) { return fullURL(mergeConfig(instance.defaults, config)); };
    instance.create = function (config) { return createAxios(mergeConfig(instance.defaults, config)); };
    instance.AxiosError = AxiosError;
    instance.CanceledError = CanceledError;
    instance.isAxiosError = function (e) { return e !== null && typeof e === "object" && e.isAxiosError === true; };
    instance.isCancel = function (e) { return !!(e && e.__CANCEL__); };
    instance.all = function (list) { return Promise.all(list); };
    instance.spread = function (fn) { return function (arr) { return fn.apply(null, arr); }; };
    instance.default = instance;
    return instance;
  }
  const axios = createAxios({});

  // --- modules and globals ------------------------------------------------------------------
  const util = {
    format, inspect, promisify, inherits,
    deprecate: function deprecate(fn) { return fn; },
    TextEncoder, TextDecoder,
  };
  const modules = {
    buffer: { Buffer, kMaxLength, constants: { MAX_LENGTH: kMaxLength }, atob, btoa },
    crypto,
    querystring,
    url: { URL, URLSearchParams },
    util,
  };
  const names = Object.keys(modules).sort();
  // npm modules given as built-ins: by their bare name only (no `node:`).
  const packages = { axios };
  function require(name) {
    const id = String(name);
    const bare = id.slice(0, 5) === "node:" ? id.slice(5) : id;
    if (hasOwn.call(modules, bare)) return modules[bare];
    if (hasOwn.call(packages, id)) return packages[id];
    const e = new Error("Cannot find module '" + id + "': tokenhook hooks can load only the Node built-ins " +
      names.join(", ") + " (with or without node:) and the npm module " + Object.keys(packages).join(", ") +
      ", no other npm modules");
    e.code = "MODULE_NOT_FOUND";
    throw e;
  }
  const globals = {
    Buffer, atob, btoa, TextEncoder, TextDecoder, URL, URLSearchParams, structuredClone, DOMException,
    crypto: webcrypto, require,
  };
  // Only names the prelude's lazy accessors still hold: a hook's own assignment stays.
  for (const k of Object.keys(globals)) {
    const d = Object.getOwnPropertyDescriptor(globalThis, k);
    if (d === undefined || d.get !== undefined) hidden(globalThis, { [k]: globals[k] });
  }
})
