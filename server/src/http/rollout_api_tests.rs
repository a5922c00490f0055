//! In-process tests of rollout plans and the guard against `app(state)` with a controlled
//! clock: stages advance with the clock, the guard halts a failing release by itself and
//! a resume sets its baseline, and a yanked release refuses a resume, a percent or a plan.

use super::{some, summary, H, SERIAL};
use axum::http::StatusCode;
use np_common::serial::luhn_check_digit;
use serde_json::{json, Value};

fn serial(n: u32) -> String {
    let digits = format!("2000{n:06}");
    format!("NR-2000-{n:06}-{}", luhn_check_digit(&digits))
}

impl H {
    async fn box_event(&self, serial: &str, event: &str) -> StatusCode {
        let body = serde_json::to_vec(
            &json!({"version": "5.3.0", "event": event, "detail": "from the test"}),
        )
        .unwrap();
        let now = self.state.now();
        let a = self
            .device(
                &self.key,
                serial,
                "POST",
                "/api/v1/device/events",
                &body,
                now,
                None,
            )
            .await;
        a.status
    }

    async fn set(&self, body: Value) -> (StatusCode, Value) {
        let a = self
            .staff("PATCH", "/api/v1/releases/5.3.0", Some(body))
            .await;
        (a.status, a.json())
    }

    async fn show(&self) -> Value {
        self.staff("GET", "/api/v1/releases/5.3.0", None)
            .await
            .json()
    }
}

#[tokio::test]
async fn a_plan_advances_with_the_clock_and_staff_may_still_steer_it() {
    let h = H::new().await;
    h.register(SERIAL, "2026-03-01").await;
    h.publish("5.3.0", json!({})).await;
    let (status, r) = h
        .set(json!({"plan": {"stages": [{"percent": 1, "hold": "24h"},
            {"percent": 10, "hold": "24h"}, {"percent": 100}], "max_failure_percent": 5}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["rollout_percent"], 1);
    assert_eq!(
        (r["stage"]["stage"].clone(), r["stage"]["next_at"].clone()),
        (json!(1), json!("2026-11-24T10:00:00Z"))
    );
    assert_eq!(r["plan"]["min_attempts"], 20);
    h.set_now("2026-11-24T09:59:59Z");
    assert_eq!(h.show().await["rollout_percent"], 1);
    h.set_now("2026-11-24T10:00:00Z");
    assert_eq!(h.show().await["rollout_percent"], 10);
    // A staff percent holds in this stage; pausing stops the hold's clock.
    assert_eq!(h.set(json!({"rollout_percent": 0})).await.0, StatusCode::OK);
    assert_eq!(
        summary(&h.check_in("5.1.0").await),
        (some("5.3.0"), some("outside_rollout"), None)
    );
    assert_eq!(h.set(json!({"paused": true})).await.0, StatusCode::OK);
    h.set_now("2026-11-26T10:00:00Z");
    let r = h.show().await;
    assert_eq!(
        (r["rollout_percent"].clone(), r["stage"]["stage"].clone()),
        (json!(0), json!(2))
    );
    assert_eq!(h.set(json!({"paused": false})).await.0, StatusCode::OK);
    h.set_now("2026-11-27T10:00:00Z");
    let r = h.show().await;
    assert_eq!(
        (r["rollout_percent"].clone(), r["stage"]["stage"].clone()),
        (json!(100), json!(3))
    );
    assert_eq!(
        summary(&h.check_in("5.1.0").await),
        (some("5.3.0"), None, some("5.3.0"))
    );
    // `null` drops the plan: the fixed percent (the staff's 0) is back.
    let (status, r) = h.set(json!({ "plan": null })).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(
        (r["rollout_percent"].clone(), r.get("plan"), r.get("stage")),
        (json!(0), None, None)
    );
}

#[tokio::test]
async fn bad_plans_are_422_with_what_was_wrong() {
    let h = H::new().await;
    h.publish("5.3.0", json!({})).await;
    let cases = [
        (json!({"stages": []}), "at least one stage"),
        (
            json!({"stages": [{"percent": 10, "hold": "1h"}, {"percent": 5}]}),
            "must rise",
        ),
        (
            json!({"stages": [{"percent": 0, "hold": "1h"}, {"percent": 5}]}),
            "1 to 100, not 0",
        ),
        (
            json!({"stages": [{"percent": 10}, {"percent": 50}]}),
            "needs a hold",
        ),
        (
            json!({"stages": [{"percent": 10, "hold": "1h"}, {"percent": 50, "hold": "1h"}]}),
            "drop the hold or end at 100",
        ),
        (
            json!({"stages": [{"percent": 10, "hold": "tomorrow"}, {"percent": 50}]}),
            "not a time such as 24h",
        ),
        (
            json!({"stages": [{"percent": 100}], "max_failure_percent": 0}),
            "failure percent must be 1 to 100",
        ),
        (
            json!({"stages": [{"percent": 100}], "min_attempts": 0}),
            "attempts must be 1",
        ),
    ];
    for (plan, words) in cases {
        let (status, body) = h.set(json!({ "plan": plan })).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{plan}: {body}");
        assert_eq!(body["error"]["code"], "bad_plan", "{body}");
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(
            msg.starts_with("plan: ") && msg.contains(words),
            "{plan}: {msg}"
        );
    }
    // Nothing changed: the release keeps its fixed percent.
    let r = h.show().await;
    assert_eq!(
        (r["rollout_percent"].clone(), r.get("plan")),
        (json!(100), None)
    );
}

#[tokio::test]
async fn the_guard_halts_a_failing_release_and_a_resume_forgets_old_failures() {
    let h = H::new().await;
    let serials: Vec<String> = (1..=12).map(serial).collect();
    for s in &serials {
        h.register(s, "2026-03-01").await;
    }
    h.register(SERIAL, "2026-03-01").await;
    h.publish("5.3.0", json!({})).await;
    let (status, r) = h
        .set(json!({"plan": {"stages": [{"percent": 100}],
            "max_failure_percent": 50, "min_attempts": 4}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    // Three boxes fail or roll back: below min_attempts, nothing halts.
    for (s, e) in serials.iter().zip(["rollback", "failure", "rollback"]) {
        assert_eq!(h.box_event(s, e).await, StatusCode::OK);
    }
    // A refusal is no attempt; a box reporting again counts once.
    assert_eq!(h.box_event(&serials[3], "refusal").await, StatusCode::OK);
    assert_eq!(h.box_event(&serials[0], "rollback").await, StatusCode::OK);
    let r = h.show().await;
    assert_eq!(
        (
            r["attempts"].clone(),
            r["failures"].clone(),
            r["paused"].clone()
        ),
        (json!(3), json!(3), json!(false))
    );
    // The fourth attempt makes 3 of 4 ≥ 50 %: halted by the server.
    assert_eq!(h.box_event(&serials[3], "download").await, StatusCode::OK);
    let r = h.show().await;
    assert_eq!(r["paused"], true, "{r}");
    assert_eq!(r["halt"]["figures"], json!({"attempts": 4, "failures": 3}));
    assert_eq!(r["halt"]["max_failure_percent"], 50);
    assert_eq!(
        summary(&h.check_in("5.1.0").await),
        (some("5.3.0"), some("paused"), None)
    );
    let audit = h.staff("GET", "/api/v1/audit", None).await.json();
    let halt = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "release_halt")
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(halt["actor"], "rollout-guard", "{audit}");
    assert_eq!(
        (
            halt["after"]["attempts"].clone(),
            halt["after"]["failures"].clone()
        ),
        (json!(4), json!(3))
    );
    let m = h.staff("GET", "/metrics", None).await;
    let text = String::from_utf8_lossy(&m.bytes).into_owned();
    assert!(
        text.contains("np_rollout_halts_total{version=\"5.3.0\"} 1"),
        "{text}"
    );

    // Staff resume: the same failures do not halt it again.
    let (status, r) = h.set(json!({"paused": false})).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!((r["paused"].clone(), r.get("halt")), (json!(false), None));
    assert_eq!(h.box_event(&serials[1], "failure").await, StatusCode::OK);
    assert_eq!(h.box_event(&serials[4], "commit").await, StatusCode::OK);
    assert_eq!(h.box_event(&serials[5], "commit").await, StatusCode::OK);
    assert_eq!(h.box_event(&serials[6], "rollback").await, StatusCode::OK);
    assert_eq!(
        h.show().await["paused"],
        false,
        "1 of 3 new attempts, below min_attempts"
    );
    assert_eq!(h.box_event(&serials[7], "commit").await, StatusCode::OK);
    assert_eq!(
        h.show().await["paused"],
        false,
        "1 of 4 new attempts failed: 25 %"
    );
    assert_eq!(h.box_event(&serials[8], "failure").await, StatusCode::OK);
    let r = h.show().await;
    assert_eq!(r["paused"], false, "2 of 5: 40 %");
    assert_eq!(h.box_event(&serials[9], "rollback").await, StatusCode::OK);
    let r = h.show().await;
    assert_eq!(
        (r["paused"].clone(), r["halt"]["figures"].clone()),
        (json!(true), json!({"attempts": 6, "failures": 3})),
        "3 of 6 new: 50 %"
    );
    let m = h.staff("GET", "/metrics", None).await;
    assert!(
        String::from_utf8_lossy(&m.bytes).contains("np_rollout_halts_total{version=\"5.3.0\"} 2")
    );
}

#[tokio::test]
async fn the_guard_figures_survive_a_restart() {
    let h = H::new().await;
    let serials: Vec<String> = (1..=3).map(serial).collect();
    for s in &serials {
        h.register(s, "2026-03-01").await;
    }
    h.publish("5.3.0", json!({})).await;
    for (s, e) in serials.iter().zip(["rollback", "commit", "download"]) {
        assert_eq!(h.box_event(s, e).await, StatusCode::OK);
    }
    // The counters rebuilt from the store match the live ones.
    let fresh = crate::domain::guard::Tallies::default();
    h.state.store.replay_reports(&fresh).await.unwrap();
    let v = np_common::Version::parse("5.3.0").unwrap();
    assert_eq!(fresh.figures(&v), h.state.tallies.figures(&v));
    assert_eq!(
        fresh.figures(&v),
        crate::domain::plan::Figures {
            attempts: 3,
            failures: 1
        }
    );
}

#[tokio::test]
async fn a_yanked_release_refuses_a_resume_a_percent_or_a_plan() {
    let h = H::new().await;
    h.publish("5.3.0", json!({})).await;
    assert_eq!(
        h.set(json!({"paused": true, "yanked": true})).await.0,
        StatusCode::OK
    );
    for body in [
        json!({"paused": false}),
        json!({"rollout_percent": 50}),
        json!({"plan": {"stages": [{"percent": 100}]}}),
    ] {
        let (status, r) = h.set(body.clone()).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}: {r}");
        assert_eq!(r["error"]["code"], "yanked");
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap()
                .contains("release 5.3.0 is yanked"),
            "{r}"
        );
    }
    let r = h.show().await;
    assert_eq!(
        (r["paused"].clone(), r["rollout_percent"].clone()),
        (json!(true), json!(100))
    );
    // Pausing a yanked release again is harmless.
    assert_eq!(h.set(json!({"paused": true})).await.0, StatusCode::OK);
}
