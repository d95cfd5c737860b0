//! An Action's `event`, each of its parts made from the call's input the first time it
//! is read (D21 in docs/decisions.md).
//!
//! Building the whole event for every step (nine objects, some thirty properties, made
//! anew so that what one step writes into its event no later step sees) was the
//! largest part of a step's fixed cost, and most Actions read two or three parts. So
//! each event is one object whose seven keys, in the order of Auth0's event, are
//! accessors: the first read of one makes that part, which the event then keeps, and a
//! write replaces it, so reads, writes, spreads and `JSON.stringify(event)` behave as
//! on plain data. They stay accessors: turning one into a data property on first read
//! changed the object's shape, about 4 µs per part in a probe.
//! `util.inspect` shows their values (builtins.js `formatProperty`).
//!
//! The event carries what it is made from (its call's input, its step, that step's
//! secrets and its flow), so an event a hook keeps and reads during a later request
//! still shows its own request.

use super::json;
use boa_engine::object::builtins::{JsArray, JsFunction};
use boa_engine::object::{FunctionObjectBuilder, IntegrityLevel, ObjectInitializer};
use boa_engine::property::Attribute;
use boa_engine::{
    Context, Finalize, JsData, JsObject, JsResult, JsString, JsValue, NativeFunction, Trace,
    js_string,
};
use serde_json::Value;
use std::rc::Rc;

/// The event's keys, in the order of Auth0's `credentials-exchange` event.
const PARTS: [&str; 7] = [
    "accessToken",
    "client",
    "request",
    "resource_server",
    "tenant",
    "transaction",
    "secrets",
];

/// What one event is made from.
#[derive(Trace, Finalize, JsData)]
struct EventOf {
    #[unsafe_ignore_trace]
    input: Rc<Value>,
    /// Every step's secrets; this event shows `secrets[step]`.
    #[unsafe_ignore_trace]
    secrets: Rc<Vec<Value>>,
    #[unsafe_ignore_trace]
    step: usize,
    /// The flow object of the call (prelude.js `actions`), whose finished steps a later
    /// step's `customClaims` shows.
    flow: JsValue,
    /// Each part once made (or written).
    made: [Option<JsValue>; 7],
}

/// `event.accessToken` of a step after the first: its `customClaims` (what the steps
/// before it set, D19) is made when first read, from its own flow.
#[derive(Trace, Finalize, JsData)]
struct ClaimsOf {
    flow: JsValue,
    #[unsafe_ignore_trace]
    step: usize,
    made: Option<JsValue>,
}

/// The accessors the parts put on the objects they make, made or found once.
#[derive(Clone, Trace, Finalize)]
struct Shared {
    /// `event.transaction.target_scopes`: the live target scopes (prelude.js).
    target_scopes: JsFunction,
    claims_get: JsFunction,
    claims_set: JsFunction,
}

#[derive(Trace, Finalize)]
struct Part {
    #[unsafe_ignore_trace]
    index: usize,
    shared: Shared,
}

/// Makes the events of one engine's steps: the accessors are made once, per engine.
pub(super) struct Events {
    parts: Vec<(JsString, JsFunction, JsFunction)>,
}

impl Events {
    /// `mark_parts` is prelude.js `markParts`.
    pub(super) fn new(
        target_scopes: JsFunction,
        view_claims: JsFunction,
        mark_parts: &JsFunction,
        ctx: &mut Context,
    ) -> JsResult<Self> {
        let function = |f: NativeFunction, name: &str, ctx: &mut Context| {
            let o = FunctionObjectBuilder::new(ctx.realm(), f)
                .name(JsString::from(name))
                .build();
            // A function object built from a native function is always callable.
            JsFunction::from_object(o.into()).expect("a native function is callable")
        };
        // `view_claims` is prelude.js `viewClaims(flow, step)`: the claims the steps
        // before `step` set.
        let claims_get = function(
            NativeFunction::from_copy_closure_with_captures(claims_get, view_claims),
            "get customClaims",
            ctx,
        );
        let claims_set = function(
            NativeFunction::from_fn_ptr(claims_set),
            "set customClaims",
            ctx,
        );
        let shared = Shared {
            target_scopes,
            claims_get,
            claims_set,
        };
        let parts = PARTS
            .iter()
            .enumerate()
            .map(|(index, name)| {
                let captured = || Part {
                    index,
                    shared: shared.clone(),
                };
                let get = function(
                    NativeFunction::from_copy_closure_with_captures(part_get, captured()),
                    &format!("get {name}"),
                    ctx,
                );
                let set = function(
                    NativeFunction::from_copy_closure_with_captures(part_set, captured()),
                    &format!("set {name}"),
                    ctx,
                );
                (JsString::from(*name), get, set)
            })
            .collect::<Vec<_>>();
        let getters = parts
            .iter()
            .map(|(_, get, _)| JsValue::from(get.clone()))
            .chain([
                shared.claims_get.clone().into(),
                shared.target_scopes.clone().into(),
            ]);
        let getters = JsArray::from_iter(getters, ctx);
        mark_parts.call(&JsValue::undefined(), &[getters.into()], ctx)?;
        Ok(Events { parts })
    }

    /// Step `step`'s event: one object whose parts are made when first read.
    pub(super) fn make(
        &self,
        input: &Rc<Value>,
        secrets: &Rc<Vec<Value>>,
        step: usize,
        flow: &JsValue,
        ctx: &mut Context,
    ) -> JsValue {
        let data = EventOf {
            input: input.clone(),
            secrets: secrets.clone(),
            step,
            flow: flow.clone(),
            made: Default::default(),
        };
        let mut o = ObjectInitializer::with_native_data(data, ctx);
        for (key, get, set) in &self.parts {
            o.accessor(
                key.clone(),
                Some(get.clone()),
                Some(set.clone()),
                Attribute::ENUMERABLE | Attribute::CONFIGURABLE,
            );
        }
        o.build().into()
    }
}

fn part_get(this: &JsValue, _: &[JsValue], part: &Part, ctx: &mut Context) -> JsResult<JsValue> {
    let Some(o) = this.as_object() else {
        return Ok(JsValue::undefined());
    };
    let (input, secrets, step, flow) = match o.downcast_ref::<EventOf>() {
        // Read through an object inheriting from an event: it has no parts of its own.
        None => return Ok(JsValue::undefined()),
        Some(d) => match &d.made[part.index] {
            Some(v) => return Ok(v.clone()),
            None => (d.input.clone(), d.secrets.clone(), d.step, d.flow.clone()),
        },
    };
    let v = make_part(part, &input, secrets.get(step), step, &flow, ctx);
    if let Some(mut d) = o.downcast_mut::<EventOf>() {
        d.made[part.index] = Some(v.clone());
    }
    Ok(v)
}

/// Whether writes to the parts of `o` go through: not once it was frozen, as a frozen
/// object's data properties stay (a sealed one too: its accessors look alike).
fn writable(o: &JsObject, ctx: &mut Context) -> JsResult<bool> {
    Ok(!o.test_integrity_level(IntegrityLevel::Frozen, ctx)?)
}

fn part_set(this: &JsValue, args: &[JsValue], part: &Part, ctx: &mut Context) -> JsResult<JsValue> {
    let Some(o) = this.as_object() else {
        return Ok(JsValue::undefined());
    };
    if !writable(&o, ctx)? {
        return Ok(JsValue::undefined());
    }
    if let Some(mut d) = o.downcast_mut::<EventOf>() {
        d.made[part.index] = Some(args.first().cloned().unwrap_or_default());
    }
    Ok(JsValue::undefined())
}

fn claims_get(
    this: &JsValue,
    _: &[JsValue],
    view_claims: &JsFunction,
    ctx: &mut Context,
) -> JsResult<JsValue> {
    let Some(o) = this.as_object() else {
        return Ok(JsValue::undefined());
    };
    let (flow, step) = match o.downcast_ref::<ClaimsOf>() {
        None => return Ok(JsValue::undefined()),
        Some(d) => match &d.made {
            Some(v) => return Ok(v.clone()),
            None => (d.flow.clone(), d.step),
        },
    };
    let v = view_claims.call(
        &JsValue::undefined(),
        &[flow, JsValue::from(step as u32)],
        ctx,
    )?;
    if let Some(mut d) = o.downcast_mut::<ClaimsOf>() {
        d.made = Some(v.clone());
    }
    Ok(v)
}

fn claims_set(this: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let Some(o) = this.as_object() else {
        return Ok(JsValue::undefined());
    };
    if !writable(&o, ctx)? {
        return Ok(JsValue::undefined());
    }
    if let Some(mut d) = o.downcast_mut::<ClaimsOf>() {
        d.made = Some(args.first().cloned().unwrap_or_default());
    }
    Ok(JsValue::undefined())
}

/// One part of the event, as Auth0's event holds it (a missing field is undefined, a
/// missing list or object an empty one).
fn make_part(
    part: &Part,
    input: &Value,
    secrets: Option<&Value>,
    step: usize,
    flow: &JsValue,
    ctx: &mut Context,
) -> JsValue {
    let field = |v: Option<&Value>, ctx: &mut Context| match v {
        Some(v) => json::input(v, ctx),
        None => JsValue::undefined(),
    };
    let list = |v: Option<&Value>, ctx: &mut Context| match v {
        Some(v @ Value::Array(_)) => json::input(v, ctx),
        _ => json::input(&Value::Array(Vec::new()), ctx),
    };
    let object = |v: Option<&Value>, ctx: &mut Context| match v {
        Some(v @ Value::Object(_)) => json::input(v, ctx),
        _ => json::input(&Value::Object(Default::default()), ctx),
    };
    let client = input.get("client");
    let at = |k: &str| client.and_then(|c| c.get(k));
    let request = input.get("request");
    let req = |k: &str| request.and_then(|r| r.get(k));
    match PARTS[part.index] {
        "accessToken" => {
            let scope = list(input.get("scope"), ctx);
            if step == 0 {
                let claims = object(input.get("custom_claims"), ctx);
                let mut o = ObjectInitializer::new(ctx);
                o.property(js_string!("scope"), scope, Attribute::all())
                    .property(js_string!("customClaims"), claims, Attribute::all());
                o.build().into()
            } else {
                let data = ClaimsOf {
                    flow: flow.clone(),
                    step,
                    made: None,
                };
                let mut o = ObjectInitializer::with_native_data(data, ctx);
                o.property(js_string!("scope"), scope, Attribute::all())
                    .accessor(
                        js_string!("customClaims"),
                        Some(part.shared.claims_get.clone()),
                        Some(part.shared.claims_set.clone()),
                        Attribute::ENUMERABLE | Attribute::CONFIGURABLE,
                    );
                o.build().into()
            }
        }
        "client" => {
            let id = field(at("id"), ctx);
            let name = field(at("name"), ctx);
            let metadata = object(at("metadata"), ctx);
            let mut o = ObjectInitializer::new(ctx);
            o.property(js_string!("client_id"), id, Attribute::all())
                .property(js_string!("name"), name, Attribute::all())
                .property(js_string!("metadata"), metadata, Attribute::all());
            o.build().into()
        }
        "request" => {
            let body = object(req("body"), ctx);
            let keys = [
                ("ip", js_string!("ip")),
                ("method", js_string!("method")),
                ("hostname", js_string!("hostname")),
                ("user_agent", js_string!("user_agent")),
                ("language", js_string!("language")),
            ];
            let values: Vec<(JsString, JsValue)> = keys
                .into_iter()
                .map(|(k, key)| (key, field(req(k), ctx)))
                .collect();
            let query = object(None, ctx);
            let mut o = ObjectInitializer::new(ctx);
            o.property(js_string!("body"), body, Attribute::all());
            for (key, v) in values {
                o.property(key, v, Attribute::all());
            }
            o.property(js_string!("query"), query, Attribute::all());
            o.build().into()
        }
        "resource_server" => {
            let id = field(input.get("audience"), ctx);
            let mut o = ObjectInitializer::new(ctx);
            o.property(js_string!("identifier"), id, Attribute::all());
            o.build().into()
        }
        "tenant" => {
            let id = field(at("tenant"), ctx);
            let mut o = ObjectInitializer::new(ctx);
            o.property(js_string!("id"), id, Attribute::all());
            o.build().into()
        }
        "transaction" => {
            let requested = list(input.get("requested_scope"), ctx);
            let mut o = ObjectInitializer::new(ctx);
            o.property(js_string!("requested_scopes"), requested, Attribute::all())
                .accessor(
                    js_string!("target_scopes"),
                    Some(part.shared.target_scopes.clone()),
                    None,
                    Attribute::ENUMERABLE,
                );
            o.build().into()
        }
        _ => object(secrets, ctx),
    }
}
