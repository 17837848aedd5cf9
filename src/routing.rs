//! Routing: which routes an event fires, in file order.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::config::{MatchValue, RouteConfig};
use crate::context::lookup;
use crate::templates::text_of;

/// One `when` or `unless` value pattern.
#[derive(Debug, Clone)]
enum Pattern {
    Exact(String),
    /// The pattern split at each `*`.
    Wildcard(Vec<String>),
}

impl Pattern {
    fn new(pattern: &str) -> Self {
        if pattern.contains('*') {
            Self::Wildcard(pattern.split('*').map(str::to_owned).collect())
        } else {
            Self::Exact(pattern.to_owned())
        }
    }

    fn matches(&self, text: &str) -> bool {
        match self {
            Self::Exact(expected) => expected == text,
            Self::Wildcard(parts) => wildcard_matches(parts, text),
        }
    }
}

/// Matches `text` against pattern pieces that were separated by `*`.
fn wildcard_matches(parts: &[String], text: &str) -> bool {
    let (first, rest) = parts.split_first().expect("split yields at least one part");
    let Some(mut remaining) = text.strip_prefix(first.as_str()) else {
        return false;
    };
    let (last, middle) = rest
        .split_last()
        .expect("a wildcard pattern has two parts or more");
    for part in middle {
        match remaining.find(part.as_str()) {
            Some(at) => remaining = &remaining[at + part.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last.as_str())
}

/// A condition: every key must have a value that one of its patterns matches.
#[derive(Debug, Clone, Default)]
struct Condition {
    keys: Vec<(String, Vec<Pattern>)>,
}

impl Condition {
    fn new(table: &std::collections::BTreeMap<String, MatchValue>) -> Self {
        let keys = table
            .iter()
            .map(|(key, value)| {
                (
                    key.clone(),
                    value.patterns().iter().map(|p| Pattern::new(p)).collect(),
                )
            })
            .collect();
        Self { keys }
    }

    fn matches(&self, context: &Map<String, Value>) -> bool {
        self.keys
            .iter()
            .all(|(key, patterns)| match lookup(context, key) {
                None | Some(Value::Null) => false,
                Some(value) => {
                    let text = text_of(value);
                    patterns.iter().any(|pattern| pattern.matches(&text))
                }
            })
    }
}

/// A route ready to match.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub template: String,
    pub to: Vec<String>,
    pub stop: bool,
    when: Condition,
    unless: Condition,
}

impl Route {
    /// Returns every key that `when` and `unless` read.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        let when = self.when.keys.iter();
        let unless = self.unless.keys.iter();
        when.chain(unless).map(|(key, _)| key.as_str())
    }
}

/// The routes of a config, indexed by the `eventType` values they name, so
/// an event only tests the routes that can match it.
#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Route>,
    by_event_type: HashMap<String, Vec<usize>>,
    /// Routes whose `when` does not pin `eventType` to exact values.
    unindexed: Vec<usize>,
}

impl Router {
    pub fn new(configs: &[RouteConfig]) -> Self {
        let mut router = Self::default();
        for (index, config) in configs.iter().enumerate() {
            let exact_types = config
                .when
                .get("eventType")
                .map(MatchValue::patterns)
                .filter(|patterns| patterns.iter().all(|pattern| !pattern.contains('*')));
            match exact_types {
                Some(types) => {
                    for event_type in types {
                        let indexes = router.by_event_type.entry(event_type.clone()).or_default();
                        // A type listed twice must not fire the route twice.
                        if indexes.last() != Some(&index) {
                            indexes.push(index);
                        }
                    }
                }
                None => router.unindexed.push(index),
            }
            router.routes.push(Route {
                name: config.name.clone(),
                template: config.template.clone(),
                to: config.to.clone(),
                stop: config.stop,
                when: Condition::new(&config.when),
                unless: Condition::new(&config.unless),
            });
        }
        router
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Returns every route that fires for an event, in file order, up to
    /// and including the first matching route with `stop = true`.
    pub fn matching(&self, event_type: &str, context: &Map<String, Value>) -> Vec<&Route> {
        let indexed = self
            .by_event_type
            .get(event_type)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let mut fired = Vec::new();
        for index in merge_sorted(indexed, &self.unindexed) {
            let route = &self.routes[index];
            let unless_matches = !route.unless.keys.is_empty() && route.unless.matches(context);
            if route.when.matches(context) && !unless_matches {
                fired.push(route);
                if route.stop {
                    break;
                }
            }
        }
        fired
    }
}

/// Merges two ascending index lists into one ascending sequence.
fn merge_sorted<'a>(first: &'a [usize], second: &'a [usize]) -> impl Iterator<Item = usize> + 'a {
    let (mut i, mut j) = (0, 0);
    std::iter::from_fn(move || {
        let next = match (first.get(i), second.get(j)) {
            (Some(&a), Some(&b)) if a <= b => {
                i += 1;
                a
            }
            (_, Some(&b)) => {
                j += 1;
                b
            }
            (Some(&a), None) => {
                i += 1;
                a
            }
            (None, None) => return None,
        };
        Some(next)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn routes(text: &str) -> Router {
        #[derive(serde::Deserialize)]
        struct File {
            routes: Vec<RouteConfig>,
        }
        let file: File = toml::from_str(text).unwrap();
        Router::new(&file.routes)
    }

    fn names(router: &Router, context: Value) -> Vec<String> {
        let context = context.as_object().unwrap().clone();
        let event_type = context["eventType"].as_str().unwrap().to_owned();
        router
            .matching(&event_type, &context)
            .iter()
            .map(|r| r.name.clone())
            .collect()
    }

    const ROUTES: &str = r#"
        [[routes]]
        name = "recordings"
        when = { eventType = ["RECORDING_AVAILABLE", "TRANSCRIPT_AVAILABLE"] }
        template = "t"
        to = ["a"]

        [[routes]]
        name = "staging"
        when = { environment = "staging" }
        unless = { eventType = ["hideTab", "unhideTab"] }
        template = "t"
        to = ["a"]
        stop = true

        [[routes]]
        name = "algebra"
        when = { "space.name" = "Algebra*", eventType = "*Space" }
        template = "t"
        to = ["a"]

        [[routes]]
        name = "all"
        template = "t"
        to = ["a"]
    "#;

    #[test]
    fn every_matching_route_fires_in_order() {
        let router = routes(ROUTES);
        let context = json!({"eventType": "RECORDING_AVAILABLE", "environment": "production"});
        assert_eq!(names(&router, context), ["recordings", "all"]);
    }

    #[test]
    fn stop_ends_the_search() {
        let router = routes(ROUTES);
        let context = json!({"eventType": "RECORDING_AVAILABLE", "environment": "staging"});
        assert_eq!(names(&router, context), ["recordings", "staging"]);
    }

    #[test]
    fn unless_blocks_a_route() {
        let router = routes(ROUTES);
        let context = json!({"eventType": "hideTab", "environment": "staging"});
        assert_eq!(names(&router, context), ["all"]);
    }

    #[test]
    fn dotted_path_and_wildcards_match() {
        let router = routes(ROUTES);
        let context = json!({"eventType": "joinSpace", "environment": "production", "space": {"name": "Algebra II"}});
        assert_eq!(names(&router, context), ["algebra", "all"]);
        let context = json!({"eventType": "joinSpace", "environment": "production", "space": {"name": "Geometry"}});
        assert_eq!(names(&router, context), ["all"]);
    }

    #[test]
    fn wildcard_cases() {
        let cases = [
            ("a*", "abc", true),
            ("*c", "abc", true),
            ("a*c", "abc", true),
            ("a*c", "ac", true),
            ("a*b*c", "aXbYc", true),
            ("ab*bc", "abc", false),
            ("*", "", true),
            ("a*", "b", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                Pattern::new(pattern).matches(text),
                expected,
                "{pattern} ~ {text}"
            );
        }
    }

    #[test]
    fn repeated_type_fires_route_once() {
        let router = routes("[[routes]]\nname = \"r\"\nwhen = { eventType = [\"x\", \"x\"] }\ntemplate = \"t\"\nto = [\"a\"]\n");
        assert_eq!(names(&router, json!({"eventType": "x"})), ["r"]);
    }

    #[test]
    fn numbers_match_as_text() {
        let router = routes(
            "[[routes]]\nname = \"n\"\nwhen = { roomId = \"7\" }\ntemplate = \"t\"\nto = [\"a\"]\n",
        );
        assert_eq!(
            names(&router, json!({"eventType": "x", "roomId": 7})),
            ["n"]
        );
    }
}
