//! In-process tests of the console's sessions, CSRF and roles against `app(state)` with a
//! controlled clock.

use crate::http::app;
use crate::state::{AppState, Clock};
use crate::tokens::{self, TokenRole};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt as _;
use jiff::Timestamp;
use std::sync::{Arc, Mutex};
use tower::ServiceExt as _;

pub(super) const SERIAL: &str = "NR-2000-123456-4";

pub(super) struct H {
    pub(super) app: Router,
    pub(super) state: AppState,
    pub(super) admin: String,
    pub(super) clock: Arc<Mutex<Timestamp>>,
    pub(super) data: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) headers: axum::http::HeaderMap,
    pub(super) text: String,
}

impl Answer {
    pub(super) fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

pub(super) fn t0() -> Timestamp {
    "2026-11-23T10:00:00Z".parse().unwrap()
}

impl H {
    pub(super) async fn new() -> H {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let out = crate::datadir::init(&data, t0()).unwrap();
        let clock = Arc::new(Mutex::new(t0()));
        let c = clock.clone();
        let clock_fn: Clock = Arc::new(move || *c.lock().unwrap());
        let state = crate::datadir::open(crate::config::default_config(&data), clock_fn).unwrap();
        crate::domain::registry::register(
            &state,
            "setup",
            crate::domain::registry::RegisterRequest {
                serial: SERIAL.into(),
                model: None,
                purchase_date: "2026-06-01".into(),
                customer: "ACME".into(),
                device_key: None,
                allow_future: false,
            },
        )
        .await
        .unwrap();
        H {
            app: app(state.clone()),
            state,
            admin: out.admin_token,
            clock,
            data,
            _dir: dir,
        }
    }

    pub(super) async fn send(&self, req: Request<Body>) -> Answer {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    pub(super) async fn get(&self, path: &str, cookie: Option<&str>) -> Answer {
        let mut b = Request::get(path);
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, c);
        }
        self.send(b.body(Body::empty()).unwrap()).await
    }

    pub(super) async fn post(&self, path: &str, cookie: Option<&str>, form: &str) -> Answer {
        let mut b =
            Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, c);
        }
        self.send(b.body(Body::from(form.to_owned())).unwrap())
            .await
    }

    /// Signs in; returns the cookie pair and the session's CSRF token.
    pub(super) async fn sign_in(&self, token: &str) -> (String, String) {
        let a = self
            .post("/console/sign-in", None, &format!("token={token}"))
            .await;
        assert_eq!(
            (a.status, a.location()),
            (StatusCode::SEE_OTHER, "/console/")
        );
        let set = a.headers[header::SET_COOKIE].to_str().unwrap().to_owned();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict") && !set.contains("Secure"),
            "{set}"
        );
        let cookie = set.split(';').next().unwrap().to_owned();
        let page = self.get("/console/", Some(&cookie)).await;
        assert_eq!(page.status, StatusCode::OK);
        let csrf = page
            .text
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap()
            .to_owned();
        (cookie, csrf)
    }

    async fn coverage_end(&self) -> String {
        let s = np_common::Serial::parse(SERIAL).unwrap();
        self.state
            .store
            .device(&s)
            .await
            .unwrap()
            .unwrap()
            .coverage_end
            .to_string()
    }
}

#[tokio::test]
async fn no_session_goes_to_sign_in_and_wrong_tokens_are_limited() {
    let h = H::new().await;
    for path in ["/console/", "/console/devices", "/console/audit"] {
        let a = h.get(path, None).await;
        assert_eq!(
            (a.status, a.location()),
            (StatusCode::SEE_OTHER, "/console/sign-in")
        );
    }
    let a = h.get("/console/", Some("np_console=made-up")).await;
    assert_eq!(a.location(), "/console/sign-in");
    let a = h
        .post("/console/devices/NR-2000-123456-4/extend", None, "months=6")
        .await;
    assert_eq!(a.location(), "/console/sign-in");

    for _ in 0..super::session::MAX_FAILURES {
        let a = h.post("/console/sign-in", None, "token=npt_wrong").await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert!(
            !a.text.contains("npt_wrong"),
            "a wrong token is never echoed"
        );
    }
    let a = h
        .post("/console/sign-in", None, &format!("token={}", h.admin))
        .await;
    assert_eq!(
        a.status,
        StatusCode::TOO_MANY_REQUESTS,
        "even a right token waits"
    );
}

#[tokio::test]
async fn forms_need_the_csrf_token_and_sessions_expire() {
    let h = H::new().await;
    let (cookie, csrf) = h.sign_in(&h.admin).await;
    let path = format!("/console/devices/{SERIAL}/extend");
    let before = h.coverage_end().await;
    let a = h.post(&path, Some(&cookie), "months=6").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = h.post(&path, Some(&cookie), "months=6&csrf=forged").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(h.coverage_end().await, before);

    let a = h
        .post(&path, Some(&cookie), &format!("months=6&csrf={csrf}"))
        .await;
    assert_eq!(
        (a.status, a.location()),
        (
            StatusCode::SEE_OTHER,
            format!("/console/devices/{SERIAL}").as_str()
        )
    );
    assert_eq!(h.coverage_end().await, "2027-12-01");
    let page = h
        .get(&format!("/console/devices/{SERIAL}"), Some(&cookie))
        .await;
    assert!(page.text.contains("now ends on 2027-12-01"), "the notice");
    // The API's words for a bad value, on the page, with the API's status.
    let a = h
        .post(
            &path,
            Some(&cookie),
            &format!("months=6&years=1&csrf={csrf}"),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);

    *h.clock.lock().unwrap() = "2026-11-23T18:00:00Z".parse().unwrap();
    let a = h.get("/console/", Some(&cookie)).await;
    assert_eq!(a.location(), "/console/sign-in", "expired after 8 hours");
}

#[tokio::test]
async fn roles_hide_and_refuse_and_a_revoked_token_ends_its_session() {
    let h = H::new().await;
    let staff = tokens::create(&h.data, TokenRole::Staff, "sam", t0()).unwrap();
    let release = tokens::create(&h.data, TokenRole::Release, "rita", t0()).unwrap();

    let (cookie, csrf) = h.sign_in(&staff).await;
    let a = h
        .post(
            "/console/releases/5.3.0",
            Some(&cookie),
            &format!("op=yank&csrf={csrf}"),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.text.contains("may not publish firmware"), "{}", a.text);

    let (rcookie, rcsrf) = h.sign_in(&release).await;
    let page = h.get("/console/", Some(&rcookie)).await;
    assert!(
        !page.text.contains("href=\"/console/devices\""),
        "no Devices link"
    );
    let a = h
        .get(&format!("/console/devices/{SERIAL}"), Some(&rcookie))
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = h
        .post(
            &format!("/console/devices/{SERIAL}/extend"),
            Some(&rcookie),
            &format!("months=6&csrf={rcsrf}"),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);

    // Over TLS the cookie is also Secure.
    let mut req = Request::post("/console/sign-in")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("token={staff}")))
        .unwrap();
    req.extensions_mut().insert(crate::http::tls::ServedOverTls);
    let a = h.send(req).await;
    let set = a.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        set.ends_with("; Secure") && set.contains("HttpOnly"),
        "{set}"
    );

    tokens::revoke(&h.data, "sam").unwrap();
    let a = h.get("/console/", Some(&cookie)).await;
    assert_eq!(a.location(), "/console/sign-in");
}

#[tokio::test]
async fn devices_are_searched_filtered_and_paged() {
    let h = H::new().await;
    for n in 1..=30u32 {
        let digits = format!("3000{n:06}");
        let c = np_common::serial::luhn_check_digit(&digits);
        let customer = if n % 10 == 0 { "Globex" } else { "Initech" };
        crate::domain::registry::register(
            &h.state,
            "setup",
            crate::domain::registry::RegisterRequest {
                serial: format!("NR-3000-{n:06}-{c}"),
                model: None,
                purchase_date: "2026-06-01".into(),
                customer: customer.into(),
                device_key: None,
                allow_future: false,
            },
        )
        .await
        .unwrap();
    }
    let (cookie, _) = h.sign_in(&h.admin).await;
    let rows = |a: &Answer| {
        a.text
            .matches("<tr><td class=\"nw\"><a href=\"/console/devices/")
            .count()
    };
    let first = h.get("/console/devices?model=NR-3000", Some(&cookie)).await;
    assert_eq!(
        (first.status, rows(&first)),
        (StatusCode::OK, super::devices::PAGE)
    );
    let next = first
        .text
        .split("rel=\"next\"")
        .next()
        .and_then(|t| t.rsplit("href=\"").next())
        .and_then(|t| t.split('"').next())
        .unwrap()
        .replace("&#38;", "&")
        .replace("&amp;", "&");
    let second = h.get(&next, Some(&cookie)).await;
    assert_eq!(rows(&second), 30 - super::devices::PAGE);
    assert!(!second.text.contains("rel=\"next\""));
    let globex = h.get("/console/devices?search=globex", Some(&cookie)).await;
    assert_eq!(rows(&globex), 3);
    let prefix = h
        .get("/console/devices?search=nr-2000", Some(&cookie))
        .await;
    assert_eq!(rows(&prefix), 1, "the serial prefix finds the one NR-2000");
    let bad = h.get("/console/devices?status=lost", Some(&cookie)).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text.contains("is not one of active, revoked, replaced"));
    let missing = h.get("/console/nowhere", Some(&cookie)).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.text.contains("no such console page"));
}

/// Wrong tokens whose bodies arrive together (slow clients, many connections) are limited
/// like wrong tokens sent one after the other: the check and the count are one step.
#[tokio::test]
async fn wrong_tokens_sent_at_once_are_limited_too() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let h = H::new().await;
    let tries = 4 * super::session::MAX_FAILURES;
    let gate = Arc::new(tokio::sync::Notify::new());
    let waiting = Arc::new(AtomicUsize::new(0));
    let mut answers = Vec::new();
    for i in 0..tries {
        let (gate, waiting) = (gate.clone(), waiting.clone());
        let body = futures_util::stream::once(async move {
            let open = gate.notified();
            waiting.fetch_add(1, Ordering::SeqCst);
            open.await;
            Ok::<_, std::io::Error>(bytes::Bytes::from(format!("token=npt_wrong{i}")))
        });
        let req = Request::post("/console/sign-in")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from_stream(body))
            .unwrap();
        answers.push(tokio::spawn(h.app.clone().oneshot(req)));
    }
    while waiting.load(Ordering::SeqCst) < tries {
        tokio::task::yield_now().await;
    }
    gate.notify_waiters();
    let mut refused = 0;
    for a in answers {
        match a.await.unwrap().unwrap().status() {
            StatusCode::UNAUTHORIZED => refused += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(
        refused,
        super::session::MAX_FAILURES,
        "only so many tries per window"
    );
}

/// Signing in again from a signed-in browser ends the session it had.
#[tokio::test]
async fn signing_in_again_ends_the_previous_session() {
    let h = H::new().await;
    let (old, _) = h.sign_in(&h.admin).await;
    let a = h
        .post(
            "/console/sign-in",
            Some(&old),
            &format!("token={}", h.admin),
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    let a = h.get("/console/", Some(&old)).await;
    assert_eq!(
        (a.status, a.location()),
        (StatusCode::SEE_OTHER, "/console/sign-in")
    );
}

/// Opening the address of a form (a bookmark, a reload, a typed link) changes nothing and
/// lands on the page the form belongs to, not on the JSON API's 405.
#[tokio::test]
async fn form_addresses_opened_with_get_lead_back_to_their_page() {
    let h = H::new().await;
    let (cookie, _) = h.sign_in(&h.admin).await;
    let before = h.coverage_end().await;
    for (path, to) in [
        (
            format!("/console/devices/{SERIAL}/extend?months=6"),
            format!("/console/devices/{SERIAL}"),
        ),
        (
            format!("/console/devices/{SERIAL}/swap"),
            format!("/console/devices/{SERIAL}"),
        ),
        (
            format!("/console/devices/{SERIAL}/revoke"),
            format!("/console/devices/{SERIAL}"),
        ),
        (
            format!("/console/devices/{SERIAL}/action"),
            format!("/console/devices/{SERIAL}"),
        ),
        (
            "/console/releases/5.3.0".to_owned(),
            "/console/releases".to_owned(),
        ),
        ("/console/sign-out".to_owned(), "/console/".to_owned()),
    ] {
        let a = h.get(&path, Some(&cookie)).await;
        assert_eq!(
            (a.status, a.location()),
            (StatusCode::SEE_OTHER, to.as_str()),
            "{path}"
        );
    }
    assert_eq!(h.coverage_end().await, before, "a GET changes nothing");
    let a = h.get("/console/", Some(&cookie)).await;
    assert_eq!(a.status, StatusCode::OK, "a GET does not sign out");
    let a = h
        .send(
            Request::delete("/console/devices")
                .header(header::COOKIE, &cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(
        a.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "an HTML page"
    );
}

/// A malformed query (repeated or mistyped fields) is a console page in words, with the
/// console's headers, not the framework's plain text.
#[tokio::test]
async fn malformed_queries_are_console_pages() {
    let h = H::new().await;
    let (cookie, _) = h.sign_in(&h.admin).await;
    for path in [
        "/console/devices?search=a&search=b",
        "/console/audit?serial=a&serial=b",
        "/console/devices/NR-2000-123456-4/bundle?version=1&version=2",
        "/console/devices/%ff",
        "/console/devices/%ff/entitlement",
    ] {
        let a = h.get(path, Some(&cookie)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(
            a.headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{path}"
        );
        assert!(
            a.headers.contains_key(header::CONTENT_SECURITY_POLICY),
            "{path}"
        );
        assert!(
            a.text.contains("the address is malformed"),
            "{path}: {}",
            a.text
        );
    }
}

/// A confirmation of a reinstatement is for the gap it showed: confirmed after the gap has
/// grown (the page left open past midnight), the console shows the new gap and asks again.
#[tokio::test]
async fn a_reinstatement_confirmed_for_an_older_gap_asks_again() {
    let h = H::new().await;
    *h.clock.lock().unwrap() = "2027-06-02T23:00:00Z".parse().unwrap();
    let (cookie, csrf) = h.sign_in(&h.admin).await;
    let path = format!("/console/devices/{SERIAL}/extend");
    let before = h.coverage_end().await;
    let a = h
        .post(&path, Some(&cookie), &format!("months=6&csrf={csrf}"))
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert!(
        a.text.contains("name=\"gap_days\" value=\"1\""),
        "{}",
        a.text
    );
    assert!(a.text.contains("a new term of <strong>6 months</strong>"));

    *h.clock.lock().unwrap() = "2027-06-03T01:00:00Z".parse().unwrap();
    let stale = format!("months=6&reinstate=true&gap_days=1&csrf={csrf}");
    let a = h.post(&path, Some(&cookie), &stale).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "asked again");
    assert!(a.text.contains("<strong>2 days</strong>"), "the new gap");
    assert_eq!(h.coverage_end().await, before, "nothing changed");
    let a = h
        .post(
            &path,
            Some(&cookie),
            &format!("months=6&reinstate=true&csrf={csrf}"),
        )
        .await;
    assert_eq!(
        a.status,
        StatusCode::CONFLICT,
        "a confirmation names its gap"
    );

    let fresh = format!("months=6&reinstate=true&gap_days=2&csrf={csrf}");
    let a = h.post(&path, Some(&cookie), &fresh).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(h.coverage_end().await, "2027-12-03");
}

#[tokio::test]
async fn the_device_page_lists_the_boxs_receipts() {
    let h = H::new().await;
    let (cookie, _) = h.sign_in(&h.admin).await;
    let path = format!("/console/devices/{SERIAL}");
    let a = h.get(&path, Some(&cookie)).await;
    assert!(a.text.contains("No receipts."), "{}", a.text);
    let serial = np_common::Serial::parse(SERIAL).unwrap();
    let receipt = np_common::device_docs::Receipt {
        serial: serial.clone(),
        seq: 7,
        from_version: Some(np_common::Version::parse("1.0.0").unwrap()),
        to_version: Some(np_common::Version::parse("2.0.0").unwrap()),
        outcome: np_common::api::Outcome::RolledBack,
        detail: "rolled back to slot a: the health check failed".into(),
        at: t0(),
        image_sha256: None,
        request_nonce: None,
    };
    let key = np_common::SecretKey::from_seed(&[5; 32]);
    let stored = crate::store::StoredReceipt {
        envelope: np_common::device_docs::sign_device(&receipt, &key),
        receipt,
        received_at: t0(),
        via: "alice".into(),
    };
    let filed = h
        .state
        .store
        .file_receipt(&stored, Some("alice"), 100)
        .await;
    assert_eq!(
        filed.unwrap(),
        Some(crate::store::ReceiptFiled::New { latest: true })
    );
    let a = h.get(&path, Some(&cookie)).await;
    assert_eq!(a.status, StatusCode::OK);
    let section = a.text.split("id=\"receipts\"").nth(1).unwrap();
    let row = section.split("<tbody>").nth(1).unwrap();
    for cell in [
        "<td>7</td>",
        "rolled back",
        "<td>1.0.0</td>",
        "<td>2.0.0</td>",
        "the health check failed",
        "<td>alice</td>",
    ] {
        assert!(row.contains(cell), "{cell} missing: {row}");
    }
    // Filed again: a duplicate, nothing changes.
    let again = h
        .state
        .store
        .file_receipt(&stored, Some("alice"), 100)
        .await;
    assert_eq!(again.unwrap(), Some(crate::store::ReceiptFiled::Duplicate));
}

#[tokio::test]
async fn receipts_and_requests_pasted_into_the_device_page_go_through_the_api() {
    let h = H::new().await;
    let key = np_common::SecretKey::from_seed(&[6; 32]);
    let other = "NR-2000-654321-7";
    crate::domain::registry::register(
        &h.state,
        "setup",
        crate::domain::registry::RegisterRequest {
            serial: other.into(),
            model: None,
            purchase_date: "2026-06-01".into(),
            customer: "ACME".into(),
            device_key: Some(key.public_key().to_base64()),
            allow_future: false,
        },
    )
    .await
    .unwrap();
    let (cookie, csrf) = h.sign_in(&h.admin).await;
    let receipt = np_common::device_docs::Receipt {
        serial: np_common::Serial::parse(other).unwrap(),
        seq: 1,
        from_version: Some(np_common::Version::parse("1.0.0").unwrap()),
        to_version: Some(np_common::Version::parse("2.0.0").unwrap()),
        outcome: np_common::api::Outcome::Installed,
        detail: "2.0.0 installed and committed in slot b".into(),
        at: t0(),
        image_sha256: None,
        request_nonce: None,
    };
    let env = np_common::device_docs::sign_device(&receipt, &key).to_json_pretty();
    let form = |doc: &str| {
        serde_urlencoded::to_string([("csrf", csrf.as_str()), ("document", doc)]).unwrap()
    };
    // Pasted on another box's page: refused, naming the box it is from.
    let a = h
        .post(
            &format!("/console/devices/{SERIAL}/receipts"),
            Some(&cookie),
            &form(&env),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
    assert!(a.text.contains(&format!("is from {other}")), "{}", a.text);
    // Junk is named as such.
    let a = h
        .post(
            &format!("/console/devices/{other}/receipts"),
            Some(&cookie),
            &form("{\"x\""),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
    assert!(a.text.contains("paste the whole file"), "{}", a.text);
    // On its own page: stored, and listed.
    let a = h
        .post(
            &format!("/console/devices/{other}/receipts"),
            Some(&cookie),
            &form(&env),
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.text);
    let page = h
        .get(&format!("/console/devices/{other}"), Some(&cookie))
        .await;
    assert!(
        page.text.contains("1 receipt uploaded, 1 new."),
        "{}",
        page.text
    );
    assert!(page
        .text
        .contains("2.0.0 installed and committed in slot b"));
    // A request of a box with no device key on record: the API's 409, on the page.
    let req = np_common::device_docs::DeviceRequest {
        serial: np_common::Serial::parse(SERIAL).unwrap(),
        model: np_common::Model::parse("NR-2000").unwrap(),
        version: np_common::Version::parse("1.0.0").unwrap(),
        security_version: 1,
        active_slot: np_common::device_docs::SlotName::A,
        entitlement_sequence: None,
        time_floor: None,
        nonce: "00112233445566778899aabbccddeeff".into(),
        created_at: t0(),
    };
    let renv = np_common::device_docs::sign_device(&req, &key).to_json_pretty();
    let a = h
        .post(
            &format!("/console/devices/{SERIAL}/bundle-request"),
            Some(&cookie),
            &form(&renv),
        )
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text);
    assert!(a.text.contains("no registered device key"), "{}", a.text);
}
