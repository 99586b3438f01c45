//! Compilation: a blueprint document to the language's types. It runs when a blueprint
//! is stored or loaded, not per event, and collects every error with its location so
//! one attempt shows them all.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::language::{Field, FieldValue, Mapping, Report, Source, TRANSFORMS, Transform};
use super::path::{Path, Root};
use super::{Blueprint, BlueprintError, CallSpec, VERSION, transform};

pub(super) fn compile<C: Copy>(
    doc: &Value,
    calls: &[CallSpec<C>],
) -> Result<Blueprint<C>, Vec<BlueprintError>> {
    let mut c = Compiler::default();
    let blueprint = c.blueprint(doc, calls);
    match (blueprint, c.errors.is_empty()) {
        (Some(b), true) => Ok(b),
        _ => Err(c.errors),
    }
}

/// Compiles a document, collecting every error with its location.
#[derive(Default)]
struct Compiler {
    errors: Vec<BlueprintError>,
}

impl Compiler {
    fn err(&mut self, at: &str, message: impl Into<String>) {
        self.errors.push(BlueprintError {
            at: at.to_owned(),
            message: message.into(),
        });
    }

    fn object<'v>(
        &mut self,
        v: &'v Value,
        at: &str,
        allowed: &[&str],
    ) -> Option<&'v Map<String, Value>> {
        let Some(obj) = v.as_object() else {
            self.err(at, format!("must be an object, not {}", transform::kind(v)));
            return None;
        };
        for key in obj.keys() {
            if !allowed.contains(&key.as_str()) {
                self.err(
                    &join(at, key),
                    format!("unknown key; expected one of: {}", allowed.join(", ")),
                );
            }
        }
        Some(obj)
    }

    fn blueprint<C: Copy>(&mut self, doc: &Value, calls: &[CallSpec<C>]) -> Option<Blueprint<C>> {
        let obj = self.object(
            doc,
            "",
            &["version", "name", "description", "consent", "mappings"],
        )?;
        match obj.get("version").and_then(Value::as_u64) {
            Some(VERSION) => {}
            _ => self.err("version", format!("must be {VERSION}")),
        }
        let consent = obj.get("consent").and_then(|c| {
            let o = self.object(c, "consent", &["from"])?;
            match o.get("from") {
                Some(from) => self.source(from, "consent.from", false),
                None => {
                    self.err("consent.from", "is required: the path of the consent flag");
                    None
                }
            }
        });
        let Some(list) = obj.get("mappings").and_then(Value::as_array) else {
            self.err("mappings", "must be a list of mappings");
            return None;
        };
        if list.is_empty() {
            self.err("mappings", "must hold at least one mapping");
        }
        let mut mappings = Vec::new();
        let mut by_event = HashMap::new();
        // Which mapping of the document took each event, for messages.
        let mut taken = HashMap::new();
        let mut names = HashSet::new();
        for (i, m) in list.iter().enumerate() {
            let at = format!("mappings[{i}]");
            let Some((name, events, mapping)) = self.mapping(m, &at, calls) else {
                continue;
            };
            if !names.insert(name.clone()) {
                self.err(
                    &join(&at, "name"),
                    format!("{name:?} is the name of another mapping"),
                );
            }
            for event in events {
                if let Some(&other) = taken.get(&event) {
                    self.err(
                        &join(&at, "events"),
                        format!("{event:?} is already taken by mappings[{other}]; an event can have one mapping"),
                    );
                } else {
                    taken.insert(event.clone(), i);
                    by_event.insert(event, mappings.len());
                }
            }
            // A mapping without a call of this destination was reported above, and
            // the blueprint will not compile.
            mappings.extend(mapping);
        }
        Some(Blueprint {
            consent,
            mappings,
            by_event,
        })
    }

    /// One mapping: its name and events (checked across mappings by the caller), and
    /// its compiled form if it names one of the destination's calls.
    fn mapping<C: Copy>(
        &mut self,
        m: &Value,
        at: &str,
        calls: &[CallSpec<C>],
    ) -> Option<(String, Vec<String>, Option<Mapping<C>>)> {
        let obj = self.object(m, at, &["name", "description", "events", "call", "fields"])?;
        let name = match obj.get("name").and_then(Value::as_str) {
            Some(n) if !n.trim().is_empty() => n.to_owned(),
            _ => {
                self.err(&join(at, "name"), "is required: a name for the mapping");
                String::new()
            }
        };
        let mut events = Vec::new();
        match obj.get("events").and_then(Value::as_array) {
            Some(list) if !list.is_empty() => {
                for (i, e) in list.iter().enumerate() {
                    match e.as_str() {
                        Some(s) if !s.trim().is_empty() => events.push(s.to_owned()),
                        _ => self.err(&format!("{at}.events[{i}]"), "must be an event name"),
                    }
                }
            }
            _ => self.err(
                &join(at, "events"),
                "must list the event names this mapping takes",
            ),
        }
        let call = obj.get("call").and_then(Value::as_str).unwrap_or_default();
        let spec = calls.iter().find(|c| c.name == call);
        if spec.is_none() {
            let known: Vec<&str> = calls.iter().map(|c| c.name).collect();
            self.err(
                &join(at, "call"),
                format!(
                    "{call:?} is not a call of this destination; expected one of: {}",
                    known.join(", ")
                ),
            );
        }
        let fields_at = join(at, "fields");
        let errors_before = self.errors.len();
        let fields = match obj.get("fields").and_then(Value::as_array) {
            Some(list) => self.fields(list, &fields_at, false),
            None => {
                self.err(&fields_at, "must be a list of fields");
                Vec::new()
            }
        };
        if let Some(spec) = spec {
            let mut produced = Vec::new();
            destination_paths(&fields, "", &mut produced);
            // Fields that failed to compile produce nothing; checking the call's
            // required fields then would only repeat those errors.
            if self.errors.len() == errors_before {
                for required in spec.required {
                    if !produced.iter().any(|p| p == required) {
                        self.err(
                            &fields_at,
                            format!("{call} needs the field {required:?}, which no entry produces"),
                        );
                    }
                }
            }
            for p in &produced {
                if !spec.accepts(p) {
                    self.err(
                        &fields_at,
                        format!(
                            "{call} has no field {p:?}; its fields are: {}",
                            spec.fields.join(", ")
                        ),
                    );
                }
            }
        }
        let mapping = spec.map(|spec| Mapping {
            call: spec.call,
            fields,
        });
        Some((name, events, mapping))
    }

    fn fields(&mut self, list: &[Value], at: &str, in_item: bool) -> Vec<Field> {
        let mut fields = Vec::new();
        let mut seen = HashSet::new();
        for (i, f) in list.iter().enumerate() {
            let at = format!("{at}[{i}]");
            if let Some(field) = self.field(f, &at, in_item) {
                if !seen.insert(field.to.join(".")) {
                    self.err(
                        &join(&at, "to"),
                        format!("{:?} is set by an earlier entry", field.to.join(".")),
                    );
                }
                fields.push(field);
            }
        }
        fields
    }

    fn field(&mut self, f: &Value, at: &str, in_item: bool) -> Option<Field> {
        let obj = self.object(
            f,
            at,
            &[
                "to",
                "from",
                "value",
                "each",
                "fields",
                "transform",
                "default",
                "required",
                "warn_if_missing",
                "description",
            ],
        )?;
        let to: Vec<String> = match obj.get("to").and_then(Value::as_str) {
            Some(t)
                if !t.is_empty()
                    && t.split('.').all(|s| {
                        !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    }) =>
            {
                t.split('.').map(str::to_owned).collect()
            }
            _ => {
                self.err(
                    &join(at, "to"),
                    "is required: the destination field, dotted (customer.email_sha256)",
                );
                return None;
            }
        };
        let kinds = ["from", "value", "each"]
            .iter()
            .filter(|k| obj.contains_key(**k))
            .count();
        if kinds != 1 {
            self.err(at, "needs exactly one of from, value or each");
            return None;
        }
        if obj.contains_key("fields") != obj.contains_key("each") {
            self.err(
                at,
                "each and fields go together: each names the list, fields map one element",
            );
        }
        let required = obj
            .get("required")
            .and_then(|r| self.report(r, &join(at, "required"), true));
        let warn = obj
            .get("warn_if_missing")
            .and_then(|r| self.report(r, &join(at, "warn_if_missing"), false));
        let value = if let Some(over) = obj.get("each") {
            if obj.contains_key("transform") {
                self.err(
                    at,
                    "each takes no transform; put transforms on the element's fields",
                );
            }
            let over = self.source(over, &join(at, "each"), in_item)?;
            let list = obj
                .get("fields")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let fields = self.fields(list, &join(at, "fields"), true);
            FieldValue::Each { over, fields }
        } else {
            let from = match (obj.get("from"), obj.get("value")) {
                (Some(from), _) => self.source(from, &join(at, "from"), in_item)?,
                (None, Some(v)) => Source::Literal(v.clone()),
                (None, None) => unreachable!("checked above"),
            };
            FieldValue::Source(self.transformed(from, obj, at, in_item))
        };
        let default = obj.get("default").cloned();
        Some(Field {
            name: to.join("."),
            to,
            value,
            default,
            required,
            warn,
        })
    }

    /// `from` with the entry's transforms (a field's default is the field's own).
    fn transformed(
        &mut self,
        from: Source,
        obj: &Map<String, Value>,
        at: &str,
        in_item: bool,
    ) -> Source {
        match self.piped(from, obj, at, in_item) {
            Source::Piped {
                from, transforms, ..
            } if transforms.is_empty() => *from,
            Source::Piped {
                from, transforms, ..
            } => Source::Piped {
                from,
                transforms,
                default: None,
            },
            other => other,
        }
    }

    fn piped(&mut self, from: Source, obj: &Map<String, Value>, at: &str, in_item: bool) -> Source {
        let transforms = match obj.get("transform") {
            None => Vec::new(),
            Some(Value::Array(list)) => list
                .iter()
                .enumerate()
                .filter_map(|(i, t)| self.transform(t, &format!("{at}.transform[{i}]"), in_item))
                .collect(),
            Some(_) => {
                self.err(&join(at, "transform"), "must be a list of transforms");
                Vec::new()
            }
        };
        let default = obj.get("default").cloned();
        if transforms.is_empty() && default.is_none() {
            from
        } else {
            Source::Piped {
                from: Box::new(from),
                transforms,
                default,
            }
        }
    }

    fn report(&mut self, r: &Value, at: &str, allow_true: bool) -> Option<Report> {
        match r {
            Value::Bool(true) if allow_true => Some(Report {
                message: "is required but missing from the event".into(),
                hint: None,
            }),
            Value::Bool(false) if allow_true => None,
            Value::Object(_) => {
                let obj = self.object(r, at, &["message", "hint"])?;
                let message = obj.get("message").and_then(Value::as_str);
                if message.is_none() {
                    self.err(&join(at, "message"), "is required: what to report");
                }
                Some(Report {
                    message: message.unwrap_or_default().to_owned(),
                    hint: obj.get("hint").and_then(Value::as_str).map(str::to_owned),
                })
            }
            _ => {
                self.err(
                    at,
                    if allow_true {
                        "must be true or {\"message\", \"hint\"}"
                    } else {
                        "must be {\"message\", \"hint\"}"
                    },
                );
                None
            }
        }
    }

    fn source(&mut self, v: &Value, at: &str, in_item: bool) -> Option<Source> {
        match v {
            Value::String(s) if s.len() >= 2 && s.starts_with('\'') && s.ends_with('\'') => {
                Some(Source::Literal(Value::String(s[1..s.len() - 1].to_owned())))
            }
            Value::String(s) => match Path::parse(s) {
                Ok(p) if p.root() == Root::Item && !in_item => {
                    self.err(at, format!("{s:?}: item. paths exist only inside each"));
                    None
                }
                Ok(p) => Some(Source::Path(p)),
                Err(e) => {
                    self.err(at, e);
                    None
                }
            },
            Value::Array(list) if !list.is_empty() => {
                let sources: Vec<Source> = list
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| self.source(s, &format!("{at}[{i}]"), in_item))
                    .collect();
                (sources.len() == list.len()).then_some(Source::First(sources))
            }
            Value::Object(obj) if obj.contains_key("all") => {
                self.object(v, at, &["all"])?;
                let Some(Value::Array(list)) = obj.get("all") else {
                    self.err(&join(at, "all"), "must be a list of sources");
                    return None;
                };
                let sources: Vec<Source> = list
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| self.source(s, &format!("{at}.all[{i}]"), in_item))
                    .collect();
                (sources.len() == list.len()).then_some(Source::All(sources))
            }
            Value::Object(obj) if obj.contains_key("value") => {
                self.object(v, at, &["value"])?;
                Some(Source::Literal(obj["value"].clone()))
            }
            Value::Object(obj) => {
                self.object(v, at, &["from", "transform", "default"])?;
                let Some(from) = obj.get("from") else {
                    self.err(at, "a nested source needs from");
                    return None;
                };
                let from = self.source(from, &join(at, "from"), in_item)?;
                Some(self.piped(from, obj, at, in_item))
            }
            _ => {
                self.err(at, "must be a path (event.properties.x), a quoted literal ('USD'), a list of sources, or {\"from\": ...}");
                None
            }
        }
    }

    fn transform(&mut self, t: &Value, at: &str, in_item: bool) -> Option<Transform> {
        let simple = |name: &str| match name {
            "string" => Some(Transform::String),
            "integer" => Some(Transform::Integer),
            "upper" => Some(Transform::Upper),
            "lower" => Some(Transform::Lower),
            "trim" => Some(Transform::Trim),
            "timestamp" => Some(Transform::Timestamp),
            "sha256_email" => Some(Transform::Sha256Email),
            "array" => Some(Transform::Array),
            _ => None,
        };
        match t {
            Value::String(name) => {
                let found = simple(name);
                if found.is_none() {
                    self.err(
                        at,
                        format!("unknown transform {name:?}; transforms are: {TRANSFORMS}"),
                    );
                }
                found
            }
            Value::Object(obj) if obj.len() == 1 => {
                let (name, arg) = obj.iter().next().expect("one entry");
                let arg_at = join(at, name);
                match name.as_str() {
                    "minor_units" => {
                        let o = self.object(arg, &arg_at, &["currency"])?;
                        let Some(currency) = o.get("currency") else {
                            self.err(
                                &join(&arg_at, "currency"),
                                "is required: where the ISO 4217 currency code is",
                            );
                            return None;
                        };
                        let currency =
                            self.source(currency, &join(&arg_at, "currency"), in_item)?;
                        Some(Transform::MinorUnits { currency })
                    }
                    "url_param" => match arg.as_str() {
                        Some(p) if !p.is_empty() => Some(Transform::UrlParam(p.to_owned())),
                        _ => {
                            self.err(&arg_at, "must name the query parameter");
                            None
                        }
                    },
                    "subtract" => {
                        let Some(list) = arg.as_array() else {
                            self.err(
                                &arg_at,
                                "must be a list of sources to subtract when present",
                            );
                            return None;
                        };
                        let sources: Vec<Source> = list
                            .iter()
                            .enumerate()
                            .filter_map(|(i, s)| self.source(s, &format!("{arg_at}[{i}]"), in_item))
                            .collect();
                        (sources.len() == list.len()).then_some(Transform::Subtract(sources))
                    }
                    "multiply" => self.source(arg, &arg_at, in_item).map(Transform::Multiply),
                    other if simple(other).is_some() => {
                        self.err(
                            at,
                            format!("{other:?} takes no argument; write it as a plain string"),
                        );
                        None
                    }
                    other => {
                        self.err(
                            at,
                            format!("unknown transform {other:?}; transforms are: {TRANSFORMS}"),
                        );
                        None
                    }
                }
            }
            _ => {
                self.err(
                    at,
                    format!(
                        "must be a transform name or a one-key object; transforms are: {TRANSFORMS}"
                    ),
                );
                None
            }
        }
    }
}

fn join(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_owned()
    } else {
        format!("{at}.{key}")
    }
}

/// The destination fields a list of fields produces (`line_items`, `line_items[].total`).
fn destination_paths(fields: &[Field], prefix: &str, out: &mut Vec<String>) {
    for f in fields {
        let mut path = prefix.to_owned();
        for (i, segment) in f.to.iter().enumerate() {
            if i > 0 || !prefix.is_empty() {
                path.push('.');
            }
            path.push_str(segment);
            if i + 1 < f.to.len() && !out.contains(&path) {
                out.push(path.clone());
            }
        }
        out.push(path.clone());
        if let FieldValue::Each { fields, .. } = &f.value {
            destination_paths(fields, &format!("{path}[]"), out);
        }
    }
}
