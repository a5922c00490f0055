//! The OpenAPI description of the HTTP API, served at `GET /api/v1/openapi.json`. It is
//! generated from the code: each handler carries a `#[utoipa::path]` and each body type
//! derives `ToSchema`, so the description changes with them. Every operation also answers
//! the one error shape (`ErrorBody`), added here as its `default` response. The prose that
//! goes with it is docs/api.md.

use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

/// The API's description; `ApiDoc::openapi()` builds it.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "NP Update & Warranty HTTP API",
        description = "The vendor server's staff API (bearer tokens) and device API (requests \
            signed with the box's device key). Every error is \
            {\"error\": {\"code\", \"message\", \"details\"?}}; see docs/api.md for the rules."
    ),
    paths(
        super::healthz,
        super::metrics,
        super::keyring::current,
        super::keyring::draft,
        super::keyring::install,
        serve,
        super::devices::register,
        super::devices::import_devices,
        super::devices::edit,
        super::devices::list,
        super::devices::show,
        super::devices::extend,
        super::devices::swap,
        super::devices::revoke,
        super::devices::entitlement,
        super::actions::create,
        super::actions::cancel,
        super::cases::open,
        super::cases::list,
        super::cases::show,
        super::cases::add_entry,
        super::cases::open_rma,
        super::cases::change_rma,
        super::cases::request_diagnostics,
        super::cases::cancel_diagnostics,
        super::cases::device_diagnostics,
        super::bundle::bundle,
        super::offline::bundle_for_request,
        super::offline::upload_receipts,
        super::offline::list_receipts,
        super::device_api::check_in,
        super::device_api::event,
        super::device_api::list_events,
        super::blobs::upload,
        super::blobs::download,
        super::releases::create,
        super::releases::list,
        super::releases::show,
        super::releases::set,
        super::audit::list,
    ),
    components(schemas(np_common::api::ErrorBody)),
    modifiers(&SecurityAndErrors),
    tags(
        (name = "devices", description = "Boxes and their warranties (role staff or admin)"),
        (name = "cases", description = "Support cases, RMA and diagnostics (role staff or admin)"),
        (name = "releases", description = "Firmware releases and images (role release or admin)"),
        (name = "audit", description = "The audit log (any staff token)"),
        (name = "device", description = "What a box calls, signed with its device key"),
        (name = "keys", description = "Key rotation and keyring renewal (role admin)"),
        (name = "server", description = "Health, metrics, the keyring and this description (no credentials)"),
    )
)]
pub struct ApiDoc;

/// The security schemes, and the error shape as every operation's `default` response.
struct SecurityAndErrors;

impl Modify for SecurityAndErrors {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "staff",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A staff token (`np-server token create`): roles admin, staff, release",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "device",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                np_common::api::HEADER_SIGNATURE,
                "A signed device request: X-NP-Serial, X-NP-Time and X-NP-Signature, base64 \
                 Ed25519 by the box's device key over the method, path and query, time and the \
                 body's SHA-256 (docs/api.md, \"Signed device requests\")",
            ))),
        );
        components.responses.insert(
            "Error".to_owned(),
            RefOr::T(
                ResponseBuilder::new()
                    .description(
                        "An error: {\"error\": {\"code\", \"message\", \"details\"?}} with a \
                         fitting status (400, 401, 403, 404, 405, 409, 413, 416, 422, 500)",
                    )
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build(),
            ),
        );
        for item in api.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                op.responses
                    .responses
                    .entry("default".to_owned())
                    .or_insert_with(|| RefOr::Ref(Ref::from_response_name("Error")));
            }
        }
    }
}

/// `GET /api/v1/openapi.json`: this description (no credentials).
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "server",
    responses((status = 200, description = "The OpenAPI 3.1 description of this API", body = Object)))]
pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{header, Method, Request, StatusCode};
    use axum::Router;
    use http_body_util::BodyExt as _;
    use serde_json::Value;
    use std::collections::BTreeSet;
    use tower::ServiceExt as _;

    fn app() -> (Router, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let now = "2026-11-23T10:00:00Z".parse().expect("time");
        crate::datadir::init(&data, now).expect("init");
        let config = crate::config::default_config(&data);
        let state =
            crate::datadir::open(config, crate::state::fixed_clock(now)).expect("open data");
        (crate::http::app(state), dir)
    }

    /// The paths the router mounts. axum keeps no public list of them, but its `Debug`
    /// output shows the route table (`RouteId(n): "/path"`) before the fallback router.
    fn mounted_paths(router: &Router) -> BTreeSet<String> {
        let dbg = format!("{router:?}");
        let routes = dbg.split("fallback_router").next().unwrap_or_default();
        let mut paths = BTreeSet::new();
        let mut rest = routes;
        while let Some(i) = rest.find("\"/") {
            let tail = &rest[i + 1..];
            let end = tail.find('"').unwrap_or(tail.len());
            paths.insert(tail[..end].to_owned());
            rest = &tail[end..];
        }
        paths
    }

    /// The methods a mounted path answers: the `Allow` header of the 405 that a method no
    /// route uses gets (HEAD, which axum adds to every GET, left out).
    async fn methods(router: &Router, path: &str) -> BTreeSet<String> {
        let concrete: String = path
            .split('/')
            .map(|seg| if seg.starts_with('{') { "x" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        let req = Request::builder()
            .method(Method::TRACE)
            .uri(&concrete)
            .body(Body::empty())
            .expect("request");
        let resp = router.clone().oneshot(req).await.expect("answer");
        assert_eq!(
            resp.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "TRACE {concrete}"
        );
        let allow = resp
            .headers()
            .get(header::ALLOW)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        allow
            .split(',')
            .map(|m| m.trim().to_ascii_lowercase())
            .filter(|m| !m.is_empty() && m != "head")
            .collect()
    }

    async fn get_json(router: &Router, path: &str) -> (StatusCode, Value) {
        let req = Request::builder()
            .uri(path)
            .body(Body::empty())
            .expect("request");
        let resp = router.clone().oneshot(req).await.expect("answer");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let v = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{path} is not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (status, v)
    }

    #[tokio::test]
    async fn the_description_lists_every_mounted_route() {
        let (router, _dir) = app();
        let (status, doc) = get_json(&router, "/api/v1/openapi.json").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
            "{}",
            doc["openapi"]
        );

        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                documented.insert(format!("{} {path}", method.to_ascii_uppercase()));
            }
        }
        let mut mounted = BTreeSet::new();
        // The console is web pages for people, described in README.md, not the API.
        for path in mounted_paths(&router)
            .into_iter()
            .filter(|p| p != "/console" && !p.starts_with("/console/"))
        {
            for method in methods(&router, &path).await {
                mounted.insert(format!("{} {path}", method.to_ascii_uppercase()));
            }
        }
        // The parser found the route table (a change in axum's Debug output fails here).
        assert!(mounted.contains("GET /healthz"), "{mounted:?}");
        assert!(
            mounted.contains("POST /api/v1/device/check-in"),
            "{mounted:?}"
        );
        let undocumented: Vec<_> = mounted.difference(&documented).collect();
        let not_mounted: Vec<_> = documented.difference(&mounted).collect();
        assert!(
            undocumented.is_empty(),
            "routes without #[utoipa::path] in ApiDoc: {undocumented:?}"
        );
        assert!(
            not_mounted.is_empty(),
            "documented but not mounted: {not_mounted:?}"
        );
    }

    #[tokio::test]
    async fn every_operation_answers_the_error_shape() {
        let (router, _dir) = app();
        let (_, doc) = get_json(&router, "/api/v1/openapi.json").await;
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["ErrorBody"]["properties"]["error"]["$ref"],
            "#/components/schemas/ErrorInfo"
        );
        let info = &schemas["ErrorInfo"];
        let required: BTreeSet<_> = info["required"]
            .as_array()
            .expect("required")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(required, BTreeSet::from(["code", "message"]));
        assert!(info["properties"]["details"].is_object(), "{info}");
        assert_eq!(
            doc["components"]["responses"]["Error"]["content"]["application/json"]["schema"]
                ["$ref"],
            "#/components/schemas/ErrorBody"
        );
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                assert_eq!(
                    op["responses"]["default"]["$ref"], "#/components/responses/Error",
                    "{method} {path}"
                );
            }
        }
        // And the error a client really gets has that shape.
        let (status, body) = get_json(&router, "/api/v1/no-such-route").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["code"], "not_found");
        assert!(body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("/api/v1/openapi.json")));
    }

    #[tokio::test]
    async fn dates_and_instants_have_their_formats() {
        let (router, _dir) = app();
        let (_, doc) = get_json(&router, "/api/v1/openapi.json").await;
        let device = &doc["components"]["schemas"]["DeviceRecord"]["properties"];
        assert_eq!(device["coverage_end"]["format"], "date", "{device}");
        assert_eq!(device["registered_at"]["format"], "date-time", "{device}");
        let serial = &doc["components"]["schemas"]["Serial"];
        assert_eq!(serial["type"], "string", "{serial}");
        assert!(serial["pattern"].is_string(), "{serial}");
    }

    #[tokio::test]
    async fn staff_and_device_routes_name_their_security_scheme() {
        let (router, _dir) = app();
        let (_, doc) = get_json(&router, "/api/v1/openapi.json").await;
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["staff"]["scheme"], "bearer");
        assert_eq!(schemes["device"]["name"], "x-np-signature");
        let op = &doc["paths"]["/api/v1/device/check-in"]["post"];
        assert!(op["security"][0]["device"].is_array(), "{op}");
        let op = &doc["paths"]["/api/v1/devices"]["post"];
        assert!(op["security"][0]["staff"].is_array(), "{op}");
        assert!(doc["paths"]["/healthz"]["get"]["security"].is_null());
    }
}
