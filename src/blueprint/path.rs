//! Source paths into what a mapping reads: `event.properties.products[0].price`,
//! `item.price` (the current element inside an `each`), `config.application_id` (the
//! integration's non-secret config).

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    Event,
    Item,
    Config,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    root: Root,
    steps: Vec<Step>,
    text: String,
}

/// What a path is evaluated against.
pub struct Scope<'a> {
    pub event: &'a Value,
    pub config: &'a Value,
    pub item: Option<&'a Value>,
}

impl Path {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut segments = text.split('.');
        let root = match segments.next() {
            Some("event") => Root::Event,
            Some("item") => Root::Item,
            Some("config") => Root::Config,
            _ => {
                return Err(format!(
                    "path {text:?} must start with event., item. or config. (quote a literal: \"'text'\")"
                ));
            }
        };
        let mut steps = Vec::new();
        for segment in segments {
            let (key, mut rest) = match segment.find('[') {
                Some(i) => segment.split_at(i),
                None => (segment, ""),
            };
            if key.is_empty() && rest.is_empty() {
                return Err(format!("path {text:?} has an empty segment"));
            }
            if !key.is_empty() {
                if !key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '$'))
                {
                    return Err(format!(
                        "path {text:?}: segment {key:?} may hold only letters, digits, _, - and $"
                    ));
                }
                steps.push(Step::Key(key.to_owned()));
            }
            while !rest.is_empty() {
                let close = rest
                    .find(']')
                    .ok_or_else(|| format!("path {text:?}: unclosed ["))?;
                let index = rest[1..close]
                    .parse::<usize>()
                    .map_err(|_| format!("path {text:?}: [{}] is not an index", &rest[1..close]))?;
                steps.push(Step::Index(index));
                rest = &rest[close + 1..];
                if !rest.is_empty() && !rest.starts_with('[') {
                    return Err(format!("path {text:?}: unexpected {rest:?} after ]"));
                }
            }
        }
        if steps.is_empty() && root != Root::Item {
            return Err(format!("path {text:?} names no field"));
        }
        Ok(Self {
            root,
            steps,
            text: text.to_owned(),
        })
    }

    pub fn root(&self) -> Root {
        self.root
    }

    /// The value at the path, if there is one.
    pub fn lookup<'a>(&self, scope: &Scope<'a>) -> Option<&'a Value> {
        let mut value = match self.root {
            Root::Event => scope.event,
            Root::Config => scope.config,
            Root::Item => scope.item?,
        };
        for step in &self.steps {
            value = match step {
                Step::Key(k) => value.as_object()?.get(k)?,
                Step::Index(i) => value.as_array()?.get(*i)?,
            };
        }
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(path: &str, event: &Value) -> Option<Value> {
        let config = json!({"application_id": "app-1"});
        let scope = Scope {
            event,
            config: &config,
            item: None,
        };
        Path::parse(path).unwrap().lookup(&scope).cloned()
    }

    #[test]
    fn looks_up_nested_keys_and_indexes() {
        let e = json!({"properties": {"products": [{"price": 1}, {"price": 2}]}});
        assert_eq!(at("event.properties.products[1].price", &e), Some(json!(2)));
        assert_eq!(at("event.properties.products[2].price", &e), None);
        assert_eq!(at("event.properties.missing", &e), None);
        assert_eq!(at("config.application_id", &e), Some(json!("app-1")));
    }

    #[test]
    fn malformed_paths_are_refused_with_the_reason() {
        for bad in [
            "properties.x",
            "event..x",
            "event.a b",
            "event.x[",
            "event.x[a]",
            "event",
            "event.x[0]y",
        ] {
            assert!(Path::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
