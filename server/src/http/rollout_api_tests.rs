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

    async fn check_in_as(&self, serial: &str, version: &str, last_result: Value) -> Value {
        let body = serde_json::to_vec(&json!({"version": version, "slot": "a", "state": "idle",
            "nonce": "00ff", "last_result": last_result}))
        .unwrap();
        let now = self.state.now();
        let a = self
            .device(
                &self.key,
                serial,
                "POST",
                "/api/v1/device/check-in",
                &body,
                now,
                None,
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.json());
        a.json()
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
    // `null` drops the plan: the release stays at the percent the plan had reached.
    let (status, r) = h.set(json!({ "plan": null })).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(
        (r["rollout_percent"].clone(), r.get("plan"), r.get("stage")),
        (json!(100), None, None)
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
    // A download (the image staged) is no attempt.
    assert_eq!(h.box_event(&serials[3], "download").await, StatusCode::OK);
    assert_eq!(h.show().await["attempts"], 3);
    // The fourth attempt makes 3 of 4 ≥ 50 %: halted by the server.
    assert_eq!(h.box_event(&serials[3], "install").await, StatusCode::OK);
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

    // A box that started before the halt is still installing it.
    h.set_now("2026-11-23T10:30:00Z");
    assert_eq!(h.box_event(&serials[10], "install").await, StatusCode::OK);

    // Staff resume: the same failures do not halt it again.
    h.set_now("2026-11-23T11:00:00Z");
    let (status, r) = h.set(json!({"paused": false})).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!((r["paused"].clone(), r.get("halt")), (json!(false), None));
    h.set_now("2026-11-23T11:00:01Z");
    // Boxes that tried it before the resume fail now: they counted before, not again
    // (never more failures than attempts).
    assert_eq!(h.box_event(&serials[1], "failure").await, StatusCode::OK);
    assert_eq!(h.box_event(&serials[3], "rollback").await, StatusCode::OK);
    assert_eq!(h.box_event(&serials[10], "rollback").await, StatusCode::OK);
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
async fn the_guard_figures_survive_a_restart_and_unknown_versions_are_not_counted() {
    let h = H::new().await;
    let serials: Vec<String> = (1..=3).map(serial).collect();
    for s in &serials {
        h.register(s, "2026-03-01").await;
    }
    h.publish("5.3.0", json!({})).await;
    for (s, e) in serials.iter().zip(["rollback", "commit", "install"]) {
        assert_eq!(h.box_event(s, e).await, StatusCode::OK);
    }
    // The box that rolled back installs 5.4.0 later: its newest result no longer says it
    // rolled back 5.3.0, and its failure still counts.
    h.publish("5.4.0", json!({})).await;
    h.check_in_as(
        &serials[0],
        "5.4.0",
        json!({"version": "5.4.0", "outcome": "installed", "detail": "ok",
            "at": "2026-11-23T10:00:00Z"}),
    )
    .await;
    // A version that is no release is not counted, nor stored.
    let body = serde_json::to_vec(&json!({"version": "9.9.9", "event": "failure", "detail": "x"}))
        .unwrap();
    let a = h
        .device(
            &h.key,
            &serials[1],
            "POST",
            "/api/v1/device/events",
            &body,
            h.state.now(),
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    // The counts rebuilt from the store (as at start) match the live ones.
    let marks = h.state.store.tally_marks().await.unwrap();
    assert!(
        marks.iter().all(|(v, _, _)| v.to_string() != "9.9.9"),
        "{marks:?}"
    );
    let fresh = crate::domain::guard::Tallies::default();
    for (v, s, m) in marks {
        fresh.load(v, s, m);
    }
    let f = |attempts, failures| crate::domain::plan::Figures { attempts, failures };
    for (v, want) in [("5.3.0", f(3, 1)), ("5.4.0", f(1, 0)), ("9.9.9", f(0, 0))] {
        let v = np_common::Version::parse(v).unwrap();
        assert_eq!(h.state.tallies.figures(&v, 0), want, "{v}");
        assert_eq!(fresh.figures(&v, 0), want, "{v}");
    }
}

#[tokio::test]
async fn a_rollback_ordered_by_staff_is_no_failure() {
    let h = H::new().await;
    let other = serial(1);
    h.register(SERIAL, "2026-03-01").await;
    h.register(&other, "2026-03-01").await;
    h.publish("5.3.0", json!({})).await;
    assert_eq!(h.box_event(SERIAL, "commit").await, StatusCode::OK);
    h.check_in("5.3.0").await;
    let a = h
        .staff(
            "POST",
            &format!("/api/v1/devices/{SERIAL}/actions"),
            Some(json!({"action": "rollback"})),
        )
        .await;
    assert!(a.status.is_success(), "{:?}", a.json());
    h.set_now("2026-11-23T10:01:00Z");
    // The check-in hands the action over; the box rolls back and says so.
    assert!(h.check_in("5.3.0").await.get("action").is_some());
    h.set_now("2026-11-23T10:02:00Z");
    assert_eq!(h.box_event(SERIAL, "rollback").await, StatusCode::OK);
    h.check_in_as(
        SERIAL,
        "5.1.0",
        json!({"version": "5.3.0", "outcome": "rolled_back",
            "detail": "a staff rollback action", "at": "2026-11-23T10:02:00Z"}),
    )
    .await;
    // Later check-ins repeat it: still no failure.
    h.set_now("2026-11-23T11:00:00Z");
    h.check_in_as(
        SERIAL,
        "5.1.0",
        json!({"version": "5.3.0", "outcome": "rolled_back",
            "detail": "a staff rollback action", "at": "2026-11-23T10:02:00Z"}),
    )
    .await;
    let r = h.show().await;
    assert_eq!(
        (r["attempts"].clone(), r["failures"].clone()),
        (json!(1), json!(0)),
        "{r}"
    );
    // A box that rolls back by itself (no staff action) is a failure, also when it says
    // so only in its check-in.
    h.check_in_as(
        &other,
        "5.1.0",
        json!({"version": "5.3.0", "outcome": "rolled_back",
            "detail": "health check failed", "at": "2026-11-23T10:59:00Z"}),
    )
    .await;
    let r = h.show().await;
    assert_eq!(
        (r["attempts"].clone(), r["failures"].clone()),
        (json!(2), json!(1)),
        "{r}"
    );
}

#[tokio::test]
async fn a_plan_over_a_threshold_already_reached_halts_at_once() {
    let h = H::new().await;
    let serials: Vec<String> = (1..=4).map(serial).collect();
    for s in &serials {
        h.register(s, "2026-03-01").await;
    }
    h.publish("5.3.0", json!({})).await;
    for (s, e) in serials
        .iter()
        .zip(["rollback", "failure", "commit", "commit"])
    {
        assert_eq!(h.box_event(s, e).await, StatusCode::OK);
    }
    assert_eq!(h.show().await["paused"], false, "no plan, no guard");
    let (status, r) = h
        .set(json!({"plan": {"stages": [{"percent": 100}],
            "max_failure_percent": 50, "min_attempts": 4}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["paused"], true, "{r}");
    assert_eq!(r["halt"]["figures"], json!({"attempts": 4, "failures": 2}));
}

#[tokio::test]
async fn changing_only_the_guard_keeps_the_stages_and_dropping_the_plan_freezes_its_percent() {
    let h = H::new().await;
    h.publish("5.3.0", json!({})).await;
    let stages = json!([{"percent": 1, "hold": "24h"}, {"percent": 10, "hold": "24h"},
        {"percent": 100}]);
    let (status, _) = h.set(json!({"plan": {"stages": stages}})).await;
    assert_eq!(status, StatusCode::OK);
    h.set_now("2026-11-24T12:00:00Z");
    let (status, r) = h
        .set(json!({"plan": {"stages": stages, "max_failure_percent": 5, "min_attempts": 30}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(
        (
            r["stage"]["stage"].clone(),
            r["rollout_percent"].clone(),
            r["stage"]["next_at"].clone(),
            r["plan"]["max_failure_percent"].clone(),
            r["plan"]["min_attempts"].clone()
        ),
        (
            json!(2),
            json!(10),
            json!("2026-11-25T10:00:00Z"),
            json!(5),
            json!(30)
        ),
        "{r}"
    );
    // Other stages start over.
    let (_, r) = h
        .set(json!({"plan": {"stages": [{"percent": 5, "hold": "1h"}, {"percent": 100}]}}))
        .await;
    assert_eq!(
        (r["stage"]["stage"].clone(), r["rollout_percent"].clone()),
        (json!(1), json!(5))
    );
    // Without its plan the release stays at the percent the plan had reached.
    let (status, r) = h.set(json!({ "plan": null })).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(
        (r["rollout_percent"].clone(), r.get("plan")),
        (json!(5), None),
        "{r}"
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
