//! The flow of one token request (D19, docs/decisions.md): the enabled Hook, then each
//! bound Action in order, in one worker call. What a later step sees of the earlier
//! ones ([`View`]) and how their effects add up ([`Merged`]) are pure functions, so the
//! worker (which builds each step's event) and the sidecar (which applies the result)
//! agree by construction.

use super::engine::Form;
use crate::token::claims::{self, ClaimPolicy, EffectForm, HookEffect};
use serde_json::{Map, Value};

/// What the next step's event shows of the steps before it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct View {
    /// The token's scopes once the legacy Hook ran (D5 replaces them); `None` while
    /// they are still the IdP's. Actions see them as `event.accessToken.scope`, and
    /// their target scopes never exceed them (D6).
    grant: Option<Vec<String>>,
    /// The live target scopes once an Action changed them (`event.transaction.
    /// target_scopes`); `None` while no Action did, when they are the grant.
    target: Option<Vec<String>>,
    /// The custom claims set so far that the token will carry
    /// (`event.accessToken.customClaims`), in the order set; a later set of a name wins.
    claims: Map<String, Value>,
}

impl View {
    /// Takes in one step's effect.
    pub fn absorb(&mut self, form: Form, effect: &HookEffect, policy: ClaimPolicy) {
        let effect_form = match form {
            Form::Legacy => EffectForm::Legacy,
            Form::Action => EffectForm::Action,
        };
        for (k, v) in &effect.claims {
            // Only claims the token will carry: a restricted or (for the legacy form)
            // unnamespaced name is dropped by the rules, so no later step sees it.
            if claims::rejection(k, policy, effect_form).is_none() {
                self.claims.remove(k);
                self.claims.insert(k.clone(), v.clone());
            }
        }
        match (form, &effect.scope) {
            (Form::Legacy, Some(s)) => self.grant = Some(claims::normalize_scopes(s)),
            (Form::Action, Some(s)) => self.target = Some(s.clone()),
            (_, None) => {}
        }
    }

    /// Writes the view into the next step's input (the fields `Engine::arguments`
    /// reads): the scopes, the claims so far and the live target scopes.
    pub fn write_input(&self, input: &mut Value) {
        let Some(obj) = input.as_object_mut() else {
            return;
        };
        let list = |l: &[String]| Value::Array(l.iter().cloned().map(Value::String).collect());
        if let Some(g) = &self.grant {
            obj.insert("scope".into(), list(g));
        }
        if let Some(t) = &self.target {
            obj.insert("target_scopes".into(), list(t));
        }
        if !self.claims.is_empty() {
            obj.insert("custom_claims".into(), Value::Object(self.claims.clone()));
        }
    }
}

/// The steps' effects as the claim rules take them (`claims::apply_flow`).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Merged {
    /// The legacy Hook's result, applied first by its own rules.
    pub hook: Option<HookEffect>,
    /// Every Action's changes together: claims in the order set (a later set of a
    /// name wins), the last target scopes set.
    pub actions: Option<HookEffect>,
}

impl Merged {
    pub fn add(&mut self, effect: HookEffect) {
        match effect.form {
            EffectForm::Legacy => self.hook = Some(effect),
            EffectForm::Action => {
                let all = self.actions.get_or_insert_with(|| HookEffect {
                    form: EffectForm::Action,
                    ..Default::default()
                });
                for (k, v) in effect.claims {
                    all.claims.remove(&k);
                    all.claims.insert(k, v);
                }
                if effect.scope.is_some() {
                    all.scope = effect.scope;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const STRICT: ClaimPolicy = ClaimPolicy {
        allow_unnamespaced: false,
    };

    fn effect(form: EffectForm, claims: Value, scope: Option<&[&str]>) -> HookEffect {
        HookEffect {
            claims: claims.as_object().cloned().unwrap_or_default(),
            scope: scope.map(|s| s.iter().map(|x| x.to_string()).collect()),
            form,
        }
    }

    // Breaks if a later Action's event stopped showing the Hook's claims, showed a claim
    // the rules drop (a restricted `sub`, an unnamespaced legacy key), or lost the
    // order in which a claim was last set.
    #[test]
    fn later_steps_see_the_claims_the_token_will_carry() {
        let mut v = View::default();
        v.absorb(
            Form::Legacy,
            &effect(
                EffectForm::Legacy,
                json!({"https://a/x": 1, "plain": 2, "sub": "evil"}),
                Some(&["read write", "read"]),
            ),
            STRICT,
        );
        v.absorb(
            Form::Action,
            &effect(
                EffectForm::Action,
                json!({"plain": 3, "https://a/x": 4}),
                Some(&["read", "extra"]),
            ),
            STRICT,
        );
        let mut input = json!({"scope": ["upstream"]});
        v.write_input(&mut input);
        assert_eq!(input["scope"], json!(["read", "write"]));
        assert_eq!(input["target_scopes"], json!(["read", "extra"]));
        let shown: Vec<(&String, &Value)> =
            input["custom_claims"].as_object().unwrap().iter().collect();
        assert_eq!(
            shown,
            vec![
                (&"plain".to_string(), &json!(3)),
                (&"https://a/x".to_string(), &json!(4))
            ]
        );
    }

    // Breaks if nothing-changed steps overwrote the input (an Action that set no
    // target scopes must leave `event.transaction.target_scopes` as the grant).
    #[test]
    fn an_untouched_view_leaves_the_input_alone() {
        let mut input = json!({"scope": ["a"]});
        View::default().write_input(&mut input);
        assert_eq!(input, json!({"scope": ["a"]}));
    }

    // Breaks if a later Action's claim did not win, or if an Action that set no scopes
    // undid an earlier one's target scopes.
    #[test]
    fn actions_merge_in_order() {
        let mut m = Merged::default();
        m.add(effect(
            EffectForm::Legacy,
            json!({"https://h": 1}),
            Some(&[]),
        ));
        m.add(effect(
            EffectForm::Action,
            json!({"a": 1, "b": 1}),
            Some(&["x"]),
        ));
        m.add(effect(EffectForm::Action, json!({"a": 2}), None));
        let a = m.actions.unwrap();
        assert_eq!(Value::Object(a.claims), json!({"b": 1, "a": 2}));
        assert_eq!(a.scope, Some(vec!["x".to_string()]));
        assert_eq!(m.hook.unwrap().scope, Some(vec![]));
    }

    // Breaks if Action target scopes were intersected with the IdP's scopes instead of
    // the Hook's (a scope the Hook granted would vanish once an Action touched the
    // target set), or if the size limit counted only one step's claims.
    #[test]
    fn flow_rules_apply_the_hook_then_the_actions() {
        let payload = json!({"scope": "read"}).as_object().cloned().unwrap();
        let hook = effect(EffectForm::Legacy, json!({}), Some(&["read", "admin"]));
        let actions = effect(EffectForm::Action, json!({}), Some(&["admin", "other"]));
        let out = claims::apply_flow(payload.clone(), Some(hook), Some(actions), STRICT).unwrap();
        assert_eq!(out.scopes, vec!["admin".to_string()]);
        assert!(out.scope_changed);
        let half = "v".repeat(60 * 1024);
        let hook = effect(
            EffectForm::Legacy,
            json!({"https://a": half}),
            Some(&["read"]),
        );
        let actions = effect(EffectForm::Action, json!({"b": half}), None);
        assert!(matches!(
            claims::apply_flow(payload, Some(hook), Some(actions), STRICT),
            Err(claims::ClaimsError::TooLarge(_))
        ));
    }
}
