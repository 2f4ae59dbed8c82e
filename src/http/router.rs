//! Picks the route for a request, as API Gateway does: among the routes
//! whose path matches and whose method is the request's (or `ANY`), the
//! most specific path wins (literal over `{param}` over `{proxy+}`, segment
//! by segment), then an explicit method over `ANY`.

use std::sync::Arc;

use crate::config::http::HttpRoute;

/// The outcome of routing one request.
pub enum Match {
    Found {
        route: Arc<HttpRoute>,
        params: Vec<(String, String)>,
    },
    /// Some path matched, with other methods (for `Allow`).
    WrongMethod(Vec<String>),
    None,
}

/// How well a route fits: its path's specificity, then an exact method
/// over `ANY`.
type Rank = (Vec<u8>, bool);

/// Path parameters: name and decoded value.
type Params = Vec<(String, String)>;

pub fn find(routes: &[Arc<HttpRoute>], method: &str, path: &str) -> Match {
    let mut best: Option<(&Arc<HttpRoute>, Params, Rank)> = None;
    let mut other_methods: Vec<String> = Vec::new();
    for route in routes {
        let Some(params) = route.path.matches(path) else {
            continue;
        };
        let method_ok = route.method.as_deref().is_none_or(|m| m == method);
        if !method_ok {
            other_methods.extend(route.method.clone());
            continue;
        }
        let rank = (route.path.specificity(), route.method.is_some());
        if best.as_ref().is_none_or(|(_, _, r)| rank > *r) {
            best = Some((route, params, rank));
        }
    }
    match best {
        Some((route, params, _)) => Match::Found {
            route: Arc::clone(route),
            params,
        },
        None if !other_methods.is_empty() => {
            other_methods.sort();
            other_methods.dedup();
            Match::WrongMethod(other_methods)
        }
        None => Match::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::http::{RouteAuth, RoutePath};

    fn route(method: Option<&str>, path: &str, function: &str) -> Arc<HttpRoute> {
        Arc::new(HttpRoute {
            method: method.map(str::to_owned),
            path: RoutePath::parse(path).unwrap(),
            function: function.to_owned(),
            auth: RouteAuth::None,
            throttle: None,
        })
    }

    fn function(m: Match) -> String {
        match m {
            Match::Found { route, .. } => route.function.clone(),
            Match::WrongMethod(allowed) => format!("405 {allowed:?}"),
            Match::None => "404".to_owned(),
        }
    }

    #[test]
    fn the_most_specific_route_with_the_method_wins() {
        let routes = vec![
            route(None, "/{proxy+}", "catch_all"),
            route(Some("GET"), "/pets/{id}", "get_pet"),
            route(Some("GET"), "/pets/dog", "get_dog"),
            route(None, "/pets/{id}", "any_pet"),
        ];
        assert_eq!(function(find(&routes, "GET", "/pets/dog")), "get_dog");
        assert_eq!(function(find(&routes, "GET", "/pets/cat")), "get_pet");
        assert_eq!(function(find(&routes, "POST", "/pets/cat")), "any_pet");
        assert_eq!(function(find(&routes, "POST", "/pets/dog")), "any_pet");
        assert_eq!(function(find(&routes, "DELETE", "/toys/1")), "catch_all");
    }

    #[test]
    fn a_path_with_other_methods_is_405_and_none_is_404() {
        let routes = vec![
            route(Some("POST"), "/r", "a"),
            route(Some("GET"), "/r", "b"),
        ];
        assert_eq!(
            function(find(&routes, "PUT", "/r")),
            "405 [\"GET\", \"POST\"]"
        );
        assert_eq!(function(find(&routes, "GET", "/s")), "404");
    }
}
