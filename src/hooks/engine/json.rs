//! The driver's final state as JSON text, written straight from the JS values.
//!
//! Boa's `JSON.stringify` was the costliest step of a warm call: it builds every nested
//! value as its own UTF-16 string and copies it into its parent. This writer produces
//! the same text for the values hooks produce almost always (plain objects and arrays
//! of primitives) and gives up on anything else, before any JS could observe it: it
//! reads own data properties only, so no getter, `toJSON`, or proxy trap runs. The
//! caller then falls back to the driver's `JSON.stringify`, which stays the reference
//! for D11's conversions.

use boa_engine::builtins::function::{BoundFunction, OrdinaryFunction};
use boa_engine::builtins::object::OrdinaryObject;
use boa_engine::native_function::NativeFunctionObject;
use boa_engine::object::ObjectInitializer;
use boa_engine::object::builtins::JsArray;
use boa_engine::property::Attribute;
use boa_engine::property::PropertyKey;
use boa_engine::string::JsStrVariant;
use boa_engine::value::JsVariant;
use boa_engine::{Context, JsObject, JsString, JsValue, js_string};
use std::fmt::Write as _;

/// The invocation's input as JS values, as `JsValue::from_json` builds them except that
/// objects share their shapes as object literals do: `from_json` gives each object a
/// property table of its own, which made building the input cost as much as running the
/// seed hook.
pub(crate) fn input(v: &serde_json::Value, ctx: &mut Context) -> JsValue {
    use serde_json::Value;
    match v {
        Value::Null => JsValue::null(),
        Value::Bool(b) => JsValue::from(*b),
        Value::Number(n) => match n.as_i64().and_then(|i| i32::try_from(i).ok()) {
            Some(i) => JsValue::from(i),
            None => JsValue::from(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => JsValue::from(JsString::from(s.as_str())),
        Value::Array(items) => {
            let items: Vec<JsValue> = items.iter().map(|x| input(x, ctx)).collect();
            JsArray::from_iter(items, ctx).into()
        }
        Value::Object(map) => {
            let mut o = ObjectInitializer::with_native_data(OrdinaryObject, ctx);
            for (k, x) in map {
                let x = input(x, o.context());
                o.property(JsString::from(k.as_str()), x, Attribute::all());
            }
            o.build().into()
        }
    }
}

/// The writer met a value whose conversion could run JS or throw; nothing has run yet.
#[derive(Debug)]
pub(crate) struct Unsupported;

type Result<T> = std::result::Result<T, Unsupported>;

// Beyond these, the JS path is as good: deep nesting would otherwise recurse without
// bound here, and long sparse arrays would loop over holes.
const MAX_DEPTH: usize = 64;
const MAX_ARRAY_LEN: u32 = 10_000;

/// `JSON.stringify({ state, next: -1, logs })`, as the driver's `finish` writes it;
/// no `logs` stands for an empty list.
pub(crate) fn final_text(
    state: &JsValue,
    logs: Option<&JsObject>,
    ctx: &mut Context,
) -> Result<String> {
    let mut w = Writer {
        out: String::with_capacity(256),
        stack: Vec::new(),
        plain_protos: Vec::new(),
        to_json: js_string!("toJSON").into(),
        ctx,
    };
    // The wrapper object itself would be looked up for `toJSON` on Object.prototype.
    let object_proto = w.ctx.intrinsics().constructors().object().prototype();
    w.check_chain(Some(object_proto))?;
    w.out.push_str("{\"state\":");
    if !w.value(state)? {
        // An undefined state is left out, as JSON.stringify leaves out the property.
        w.out.truncate(1);
    } else {
        w.out.push(',');
    }
    w.out.push_str("\"next\":-1,\"logs\":");
    match logs {
        None => w.out.push_str("[]"),
        Some(logs) => {
            if !w.object(logs)? {
                return Err(Unsupported);
            }
        }
    }
    w.out.push('}');
    Ok(w.out)
}

struct Writer<'a> {
    out: String,
    /// Objects being written, to report cycles (to the JS path, which throws).
    stack: Vec<JsObject>,
    /// Prototypes already known to hold no `toJSON` all along their chain.
    plain_protos: Vec<JsObject>,
    to_json: PropertyKey,
    ctx: &'a mut Context,
}

/// Objects whose own properties are all in their property map and are read without
/// running JS: ordinary objects, arrays (whose only exotic method is defining) and
/// functions (exotic only when called).
fn is_plain(o: &JsObject) -> bool {
    o.is_ordinary() || o.is_array() || is_function(o)
}

fn is_function(o: &JsObject) -> bool {
    o.is::<OrdinaryFunction>() || o.is::<NativeFunctionObject>() || o.is::<BoundFunction>()
}

impl Writer<'_> {
    /// Writes `v` and returns true, or returns false for a value JSON.stringify omits
    /// (undefined, a symbol).
    fn value(&mut self, v: &JsValue) -> Result<bool> {
        match v.variant() {
            JsVariant::Undefined | JsVariant::Symbol(_) => return Ok(false),
            JsVariant::Null => self.out.push_str("null"),
            JsVariant::Boolean(b) => self.out.push_str(if b { "true" } else { "false" }),
            JsVariant::Integer32(i) => {
                let _ = write!(self.out, "{i}");
            }
            JsVariant::Float64(f) => self.number(f),
            JsVariant::String(s) => self.string(&s),
            // A TypeError unless BigInt.prototype has a toJSON: the JS path decides.
            JsVariant::BigInt(_) => return Err(Unsupported),
            JsVariant::Object(o) => return self.object(&o),
        }
        Ok(true)
    }

    fn number(&mut self, f: f64) {
        if !f.is_finite() {
            self.out.push_str("null");
        } else if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
            // Below 2^53 an integral double prints as its integer (and -0 as 0).
            let _ = write!(self.out, "{}", f as i64);
        } else {
            // Number::toString's shortest round-trip digits are Boa's to give.
            let s = JsValue::from(f)
                .to_string(self.ctx)
                .map(|s| s.to_std_string_escaped())
                .unwrap_or_else(|_| "null".into());
            self.out.push_str(&s);
        }
    }

    /// QuoteJSONString: the named escapes, other controls and lone surrogates as
    /// lowercase `\uXXXX`, everything else as is.
    fn string(&mut self, s: &JsString) {
        let out = &mut self.out;
        out.push('"');
        match s.as_str().variant() {
            JsStrVariant::Latin1(bytes) => {
                // Runs of printable ASCII go in whole: most strings are only that.
                let mut rest = bytes;
                while !rest.is_empty() {
                    let run = rest
                        .iter()
                        .position(|&b| !(b' '..0x7f).contains(&b) || b == b'"' || b == b'\\')
                        .unwrap_or(rest.len());
                    if let Ok(ascii) = std::str::from_utf8(&rest[..run]) {
                        out.push_str(ascii);
                    }
                    if let Some(&b) = rest.get(run) {
                        push_escaped(out, char::from(b));
                        rest = &rest[run + 1..];
                    } else {
                        rest = &[];
                    }
                }
            }
            JsStrVariant::Utf16(units) => {
                for c in char::decode_utf16(units.iter().copied()) {
                    match c {
                        Ok(c) => push_escaped(out, c),
                        Err(e) => {
                            let _ = write!(out, "\\u{:04x}", e.unpaired_surrogate());
                        }
                    }
                }
            }
        }
        out.push('"');
    }

    /// As `value`, for an object: functions are omitted (after their toJSON lookup).
    fn object(&mut self, o: &JsObject) -> Result<bool> {
        if !is_plain(o) || self.stack.len() >= MAX_DEPTH {
            return Err(Unsupported);
        }
        if self.stack.iter().any(|s| JsObject::equals(s, o)) {
            return Err(Unsupported);
        }
        // SerializeJSONProperty calls a toJSON found anywhere on the chain.
        if o.borrow().properties().get(&self.to_json).is_some() {
            return Err(Unsupported);
        }
        self.check_chain(o.prototype())?;
        if o.is_callable() {
            return Ok(false);
        }
        self.stack.push(o.clone());
        let done = if o.is_array() {
            self.array(o)
        } else {
            self.members(o)
        };
        self.stack.pop();
        done.map(|()| true)
    }

    /// Fails if any object from `proto` up has a `toJSON` or could run JS when read.
    fn check_chain(&mut self, mut proto: Option<JsObject>) -> Result<()> {
        while let Some(p) = proto {
            if self.plain_protos.iter().any(|q| JsObject::equals(q, &p)) {
                return Ok(());
            }
            if !is_plain(&p) || p.borrow().properties().get(&self.to_json).is_some() {
                return Err(Unsupported);
            }
            proto = p.prototype();
            self.plain_protos.push(p);
        }
        Ok(())
    }

    /// SerializeJSONObject: enumerable own string keys, indices first in order, then
    /// the rest in creation order.
    fn members(&mut self, o: &JsObject) -> Result<()> {
        let obj = o.borrow();
        let props = obj.properties();
        let mut indices: Vec<u32> = props.index_property_keys().collect();
        indices.sort_unstable();
        let keys = indices
            .into_iter()
            .map(PropertyKey::from)
            .chain(obj.shape().keys());
        self.out.push('{');
        let mut first = true;
        for key in keys {
            if matches!(key, PropertyKey::Symbol(_)) {
                continue;
            }
            let Some(desc) = props.get(&key) else {
                continue;
            };
            if desc.enumerable() != Some(true) {
                continue;
            }
            // A getter would run JS.
            let Some(v) = desc.value() else {
                return Err(Unsupported);
            };
            let mark = self.out.len();
            if !first {
                self.out.push(',');
            }
            match &key {
                PropertyKey::String(s) => self.string(s),
                PropertyKey::Index(i) => {
                    let _ = write!(self.out, "\"{}\"", i.get());
                }
                PropertyKey::Symbol(_) => unreachable!("skipped above"),
            }
            self.out.push(':');
            if self.value(v)? {
                first = false;
            } else {
                self.out.truncate(mark);
            }
        }
        self.out.push('}');
        Ok(())
    }

    /// SerializeJSONArray: every index below `length`, holes read through the chain,
    /// and what JSON cannot hold as `null`.
    fn array(&mut self, o: &JsObject) -> Result<()> {
        let obj = o.borrow();
        let props = obj.properties();
        let len = props
            .get(&js_string!("length").into())
            .and_then(|d| d.value().and_then(JsValue::as_number))
            .ok_or(Unsupported)?;
        if !(0.0..=f64::from(MAX_ARRAY_LEN)).contains(&len) {
            return Err(Unsupported);
        }
        self.out.push('[');
        for i in 0..len as u32 {
            if i > 0 {
                self.out.push(',');
            }
            let key = PropertyKey::from(i);
            let v = match props.get(&key) {
                Some(desc) => desc.value().cloned().ok_or(Unsupported)?,
                None => inherited(o, &key)?,
            };
            if !self.value(&v)? {
                self.out.push_str("null");
            }
        }
        self.out.push(']');
        Ok(())
    }
}

/// A hole's value: whatever the prototypes hold at that index (they are plain: the
/// array's chain was checked before).
fn inherited(o: &JsObject, key: &PropertyKey) -> Result<JsValue> {
    let mut proto = o.prototype();
    while let Some(p) = proto {
        if let Some(desc) = p.borrow().properties().get(key) {
            return desc.value().cloned().ok_or(Unsupported);
        }
        proto = p.prototype();
    }
    Ok(JsValue::undefined())
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        '\u{8}' => out.push_str("\\b"),
        '\t' => out.push_str("\\t"),
        '\n' => out.push_str("\\n"),
        '\u{c}' => out.push_str("\\f"),
        '\r' => out.push_str("\\r"),
        c if c < ' ' => {
            let _ = write!(out, "\\u{:04x}", c as u32);
        }
        c => out.push(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use boa_engine::Source;

    /// The writer's text for `expr` as the state, checked against JSON.stringify's, or
    /// None when it leaves the value to JSON.stringify.
    fn both(ctx: &mut Context, expr: &str) -> Option<String> {
        let v = ctx
            .eval(Source::from_bytes(&format!("globalThis.v = ({expr}); v")))
            .unwrap();
        let logs = ctx
            .eval(Source::from_bytes(
                "globalThis.l = [{level: 'info', line: 'a \"b\"'}]; l",
            ))
            .unwrap()
            .as_object()
            .unwrap();
        let ours = final_text(&v, Some(&logs), ctx).ok()?;
        let js = ctx
            .eval(Source::from_bytes(
                "JSON.stringify({state: v, next: -1, logs: l})",
            ))
            .unwrap()
            .as_string()
            .unwrap()
            .to_std_string()
            .unwrap();
        assert_eq!(ours, js, "{expr}");
        Some(ours)
    }

    #[test]
    fn writes_what_json_stringify_writes() {
        let ctx = &mut Context::default();
        for expr in [
            "({a: 1, b: 'x', c: null, d: true, e: false, u: undefined, f: function () {}, g: () => 1, s: Symbol('s')})",
            "({n: NaN, i: Infinity, ni: -Infinity, z: -0, big: 1700000000, neg: -5, fl: 1.5, tiny: -1.5e-7, huge: 1e21, e20: 123456789012345680000, p31: 2 ** 31, m31: -(2 ** 31), p53: 2 ** 53 - 1, p53b: 2 ** 53, p60: 2 ** 60, min: 5e-324, pt: 0.1})",
            "[1, undefined, function () {}, Symbol('s'), [], {}, [[[]]], null]",
            "[1, , 3]",
            "({b: 1, 2: 'x', a: 2, 1: 'y', '-1': 3, '4294967295': 4, [Symbol('k')]: 5})",
            "'\\u0000\\b\\t\\n\\f\\r\"\\\\\\u001f\\u007f é ü 😀 \\ud800 x\\udc00 \\u2028'",
            "'plain latin1 \\u00e9\\u00ff'",
            "(function () { const o = Object.create(null); o.k = [1, 'two']; return o; })()",
            "(function () { const o = {a: 1}; Object.defineProperty(o, 'hidden', {value: 2, enumerable: false}); Object.defineProperty(o, 'shown', {value: 3, enumerable: true}); return o; })()",
            "(function () { class C { constructor() { this.x = 1; } } return new C(); })()",
            "Object.freeze({frozen: [1, 2]})",
            "(function () { const o = {a: 1, b: 2, c: 3}; delete o.b; o.d = 4; return o; })()",
            "(function () { const a = [1, 2]; a[5] = 6; a.extra = 'x'; return a; })()",
            "(function () { const a = []; a[100] = 1; return a; })()",
            "(function () { const a = [0.5, 1, 2]; a.length = 2; return a; })()",
            "undefined",
            "Symbol('top')",
            "function () {}",
            "'top'",
            "42",
        ] {
            assert!(both(ctx, expr).is_some(), "left to JS: {expr}");
        }
    }

    #[test]
    fn leaves_anything_that_could_run_js_to_json_stringify() {
        let ctx = &mut Context::default();
        for expr in [
            "new Date(0)",
            "({d: new Date(0)})",
            "({toJSON: function () { return 1; }})",
            "({get g() { return 1; }})",
            "[1, 2].map(function (x) { return {x: x, get y() { return x; }}; })",
            "new Proxy({}, {})",
            "({p: new Proxy([], {})})",
            "({b: 1n})",
            "(function () { const o = {}; o.self = o; return o; })()",
            "(function () { const a = []; a.push(a); return a; })()",
            "({n: new Number(1), s: new String('s'), t: new Boolean(true)})",
            "new Map([[1, 2]])",
            "new Error('x')",
            "/re/",
            "new Uint8Array(2)",
            "(function () { return arguments; })(1, 2)",
            "(function () { let o = {}; for (let i = 0; i < 100; i++) o = {o: o}; return o; })()",
            "(function () { const a = []; a.length = 20000; return a; })()",
            "(function () { class C { toJSON() { return 'c'; } } return {c: new C()}; })()",
            "(function () { const f = function () {}; f.toJSON = 1; return {f: f}; })()",
        ] {
            assert!(both(ctx, expr).is_none(), "written by Rust: {expr}");
        }
    }

    #[test]
    fn changed_prototypes_are_honoured() {
        let ctx = &mut Context::default();
        ctx.eval(Source::from_bytes("Array.prototype[1] = 'inherited';"))
            .unwrap();
        assert_eq!(
            both(ctx, "[1, , 3]").unwrap(),
            "{\"state\":[1,\"inherited\",3],\"next\":-1,\"logs\":[{\"level\":\"info\",\"line\":\"a \\\"b\\\"\"}]}"
        );
        ctx.eval(Source::from_bytes(
            "Object.defineProperty(Array.prototype, 2, {get: function () { return 'g'; }});",
        ))
        .unwrap();
        assert!(both(ctx, "[1, , , 4]").is_none());
        let ctx = &mut Context::default();
        ctx.eval(Source::from_bytes(
            "Object.prototype.toJSON = function () { return 'all'; };",
        ))
        .unwrap();
        assert!(both(ctx, "1").is_none(), "the wrapper object has a toJSON");
        let ctx = &mut Context::default();
        ctx.eval(Source::from_bytes(
            "Function.prototype.toJSON = function () { return 'fn'; };",
        ))
        .unwrap();
        assert!(both(ctx, "({f: function () {}})").is_none());
    }
}
