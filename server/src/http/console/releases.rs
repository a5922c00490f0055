//! The releases page: each release's models, channel, security version, rollout state, the
//! boxes running it and the boxes whose update to it failed or rolled back; and for the
//! release and admin roles, the rollout controls (percent, pause, resume, yank), which go
//! through the API's own `PATCH /api/v1/releases/{version}` handler.

use super::csrf::CsrfForm;
use super::fleet::all_devices;
use super::{render, ConsoleError, ConsoleState, ConsoleUser, Frame, Notice};
use crate::http::auth::{AnyCaller, ReleaseCaller};
use crate::http::error::{ApiError, ApiJson, ApiPath};
use crate::http::releases::{self, ReleaseBody, SetRequest};
use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use np_common::api::Outcome;
use serde::Deserialize;
use std::collections::HashMap;

/// One release as a row.
#[derive(Debug)]
pub struct ReleaseRow {
    body: ReleaseBody,
    models: String,
    failures: u64,
    rollbacks: u64,
}

impl ReleaseRow {
    fn state(&self) -> String {
        let b = &self.body;
        rollout_words(
            b.yanked,
            b.paused,
            b.halt.as_ref(),
            b.rollout_percent,
            b.stage,
        )
    }
}

/// The rollout in words: yanked; halted by the guard with its figures; paused; or rolling
/// out; with the plan's stage when the release has a plan.
fn rollout_words(
    yanked: bool,
    paused: bool,
    halt: Option<&crate::store::Halt>,
    percent: u8,
    stage: Option<crate::domain::plan::Progress>,
) -> String {
    let stage = stage
        .map(|s| format!(", stage {} of {}", s.stage, s.stages))
        .unwrap_or_default();
    match (yanked, paused, halt) {
        (true, _, _) => "yanked".to_owned(),
        (false, true, Some(h)) => format!(
            "halted ({} of {} failed) at {percent}%{stage}",
            h.figures.failures, h.figures.attempts
        ),
        (false, true, None) => format!("paused at {percent}%{stage}"),
        (false, false, _) => format!("rolling out to {percent}%{stage}"),
    }
}

#[derive(Template)]
#[template(path = "console/releases.html")]
struct ReleasesPage {
    frame: Frame,
    rows: Vec<ReleaseRow>,
}

impl ReleasesPage {
    fn when(t: &jiff::Timestamp) -> String {
        super::when(t)
    }
}

async fn show(
    state: &ConsoleState,
    user: &ConsoleUser,
    status: StatusCode,
    notice: Option<Notice>,
) -> Result<Response, ConsoleError> {
    let caller = AnyCaller::check(user.caller.clone())?;
    let list = releases::list(State(state.app.clone()), caller).await?.0;
    // (failed, rolled back) per version, from what each box reported last.
    let mut outcomes: HashMap<String, (u64, u64)> = HashMap::new();
    for d in all_devices(&state.app.store).await? {
        if let Some(r) = d.last_result.as_ref() {
            let Some(v) = r.version.as_ref() else {
                continue;
            };
            let e = outcomes.entry(v.to_string()).or_default();
            match r.outcome {
                Outcome::Failed => e.0 += 1,
                Outcome::RolledBack => e.1 += 1,
                Outcome::Installed | Outcome::Refused => {}
            }
        }
    }
    let rows = list
        .releases
        .into_iter()
        .map(|body| {
            let (failures, rollbacks) = outcomes
                .get(&body.release.version.to_string())
                .copied()
                .unwrap_or_default();
            ReleaseRow {
                models: body
                    .release
                    .models
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                body,
                failures,
                rollbacks,
            }
        })
        .collect();
    let mut frame = Frame::new(user, "Releases", "releases");
    if notice.is_some() {
        frame.notice = notice;
    }
    Ok(render(status, &ReleasesPage { frame, rows }))
}

/// `GET /console/releases`.
pub async fn page(
    State(state): State<ConsoleState>,
    user: ConsoleUser,
) -> Result<Response, ConsoleError> {
    show(&state, &user, StatusCode::OK, None).await
}

/// A rollout control's form: which button, and the percent field.
#[derive(Debug, Deserialize)]
pub struct ChangeForm {
    #[serde(default)]
    op: String,
    #[serde(default)]
    rollout_percent: String,
}

fn request(form: &ChangeForm) -> Result<(SetRequest, String), ApiError> {
    let none = SetRequest {
        rollout_percent: None,
        paused: None,
        yanked: None,
        plan: None,
    };
    Ok(match form.op.as_str() {
        "rollout" => {
            let p = form.rollout_percent.trim();
            let n: i64 = p.parse().map_err(|_| {
                ApiError::unprocessable(
                    "bad_rollout",
                    format!("Rollout percent must be a whole number from 0 to 100, not {p:?}"),
                )
            })?;
            (
                SetRequest {
                    rollout_percent: Some(n),
                    ..none
                },
                format!("now rolls out to {n}%"),
            )
        }
        "pause" => (
            SetRequest {
                paused: Some(true),
                ..none
            },
            "is paused".to_owned(),
        ),
        "resume" => (
            SetRequest {
                paused: Some(false),
                ..none
            },
            "is resumed".to_owned(),
        ),
        "yank" => (
            SetRequest {
                yanked: Some(true),
                ..none
            },
            "is yanked: no box is offered it any more".to_owned(),
        ),
        other => {
            return Err(ApiError::bad_request(
                "bad_request",
                format!("{other:?} is not a release control"),
            ))
        }
    })
}

/// `POST /console/releases/{version}`: one rollout control.
pub async fn change(
    State(state): State<ConsoleState>,
    super::ConsolePath(version): super::ConsolePath<String>,
    CsrfForm { user, form }: CsrfForm<ChangeForm>,
) -> Result<Response, ConsoleError> {
    let caller = ReleaseCaller::check(user.caller.clone())?;
    let (req, words) = match request(&form) {
        Ok(r) => r,
        Err(e) => return show(&state, &user, e.status, Some(Notice::error(e.message))).await,
    };
    let name = caller.0.name.clone();
    match releases::set(
        State(state.app.clone()),
        caller,
        ApiPath(version.clone()),
        ApiJson(req),
    )
    .await
    {
        Ok(_) => {
            tracing::info!(%version, actor = %name, "release changed (console)");
            state
                .sessions
                .leave_notice(&user, Notice::ok(format!("Release {version} {words}.")));
            Ok(Redirect::to("/console/releases").into_response())
        }
        Err(e) => show(&state, &user, e.status, Some(Notice::error(e.message))).await,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::domain::plan::{Figures, Progress};
    use crate::store::Halt;

    #[test]
    fn a_halted_release_shows_the_guard_s_figures_and_its_stage() {
        let halt = Halt {
            at: "2026-11-01T00:00:00Z".parse().unwrap(),
            figures: Figures {
                attempts: 40,
                failures: 7,
            },
            max_failure_percent: 5,
        };
        let stage = Progress {
            stage: 2,
            stages: 3,
            percent: 10,
            next_at: None,
        };
        assert_eq!(
            rollout_words(false, true, Some(&halt), 10, Some(stage)),
            "halted (7 of 40 failed) at 10%, stage 2 of 3"
        );
        assert_eq!(
            rollout_words(false, true, None, 10, Some(stage)),
            "paused at 10%, stage 2 of 3"
        );
        assert_eq!(
            rollout_words(false, false, None, 20, None),
            "rolling out to 20%"
        );
        assert_eq!(rollout_words(true, true, Some(&halt), 10, None), "yanked");
    }
}
