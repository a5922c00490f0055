//! The devices page: one field "Search" (a serial prefix or part of the customer's name),
//! filters for model, status and coverage end, a page of [`PAGE`] boxes at a time.
//! Devices are for the staff and admin roles, as in the API.

use super::{render, ConsoleError, ConsoleState, ConsoleUser, Frame};
use crate::domain::device::DeviceRecord;
use crate::domain::validate;
use crate::http::auth::StaffCaller;
use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use jiff::civil::Date;
use jiff::ToSpan as _;
use np_common::docs::Status;
use serde::Deserialize;

/// Boxes per page.
pub const PAGE: usize = 25;

/// The query of the devices page.
#[derive(Debug, Default, Deserialize)]
pub struct DevicesQuery {
    /// Serial prefix or part of the customer.
    #[serde(default)]
    pub search: String,
    /// A model, or empty.
    #[serde(default)]
    pub model: String,
    /// A status, or empty.
    #[serde(default)]
    pub status: String,
    /// `30`, `60`, `90` (days), `lapsed`, or empty.
    #[serde(default)]
    pub ends: String,
    /// Continue after this serial.
    #[serde(default)]
    pub after: String,
}

/// A filter built from the query; refuses values that are not ours.
#[derive(Debug)]
pub struct Filter {
    search: String,
    model: Option<np_common::Model>,
    status: Option<Status>,
    ends: Option<Ends>,
}

#[derive(Debug, Clone, Copy)]
enum Ends {
    Within(Date, Date),
    Lapsed(Date),
}

impl Filter {
    /// Parses the query on `today` (422 with the API's words for a bad value).
    pub fn parse(q: &DevicesQuery, today: Date) -> Result<Filter, ConsoleError> {
        let model = match q.model.trim() {
            "" => None,
            m => Some(validate::model(m)?),
        };
        let status = match q.status.trim() {
            "" => None,
            "active" => Some(Status::Active),
            "revoked" => Some(Status::Revoked),
            "replaced" => Some(Status::Replaced),
            other => {
                return Err(crate::http::error::ApiError::unprocessable(
                    "bad_status",
                    format!("status {other:?} is not one of active, revoked, replaced"),
                )
                .into())
            }
        };
        let ends = match q.ends.trim() {
            "" => None,
            "lapsed" => Some(Ends::Lapsed(today)),
            d @ ("30" | "60" | "90") => {
                let days: i32 = d.parse().unwrap_or(30);
                let limit = today
                    .checked_add(days.days())
                    .map_err(ConsoleError::internal)?;
                Some(Ends::Within(today, limit))
            }
            other => {
                return Err(crate::http::error::ApiError::unprocessable(
                    "bad_filter",
                    format!("coverage filter {other:?} is not 30, 60, 90 or lapsed"),
                )
                .into())
            }
        };
        Ok(Filter {
            search: q.search.trim().to_lowercase(),
            model,
            status,
            ends,
        })
    }

    /// Whether the box matches.
    pub fn keeps(&self, d: &DeviceRecord) -> bool {
        let text = self.search.is_empty()
            || d.serial.as_str().to_lowercase().starts_with(&self.search)
            || d.customer.to_lowercase().contains(&self.search);
        let ends = match self.ends {
            None => true,
            Some(Ends::Within(today, limit)) => {
                d.status == Status::Active && d.coverage_end > today && d.coverage_end <= limit
            }
            Some(Ends::Lapsed(today)) => d.status == Status::Active && d.coverage_end <= today,
        };
        text && ends
            && self.model.as_ref().is_none_or(|m| &d.model == m)
            && self.status.is_none_or(|s| d.status == s)
    }
}

#[derive(Template)]
#[template(path = "console/devices.html")]
struct DevicesPage {
    frame: Frame,
    q: DevicesQuery,
    models: Vec<String>,
    devices: Vec<DeviceRecord>,
    next: Option<String>,
    today: Date,
}

impl DevicesPage {
    fn next_link(&self, after: &str) -> String {
        use super::q;
        format!(
            "/console/devices?search={}&model={}&status={}&ends={}&after={}",
            q(&self.q.search),
            q(&self.q.model),
            q(&self.q.status),
            q(&self.q.ends),
            q(after)
        )
    }
}

/// `GET /console/devices`.
pub async fn page(
    State(state): State<ConsoleState>,
    user: ConsoleUser,
    super::ConsoleQuery(q): super::ConsoleQuery<DevicesQuery>,
) -> Result<Response, ConsoleError> {
    StaffCaller::check(user.caller.clone())?;
    let today = state.app.today();
    let filter = Filter::parse(&q, today)?;
    let after = Some(q.after.trim()).filter(|a| !a.is_empty());
    let page = state
        .app
        .store
        .list_devices(after, PAGE, |d| filter.keeps(d))
        .await?;
    let models = state
        .app
        .config
        .catalog
        .models
        .iter()
        .map(|m| m.model.to_string())
        .collect();
    Ok(render(
        StatusCode::OK,
        &DevicesPage {
            frame: Frame::new(&user, "Devices", "devices"),
            q,
            models,
            devices: page.devices,
            next: page.next_after,
            today,
        },
    ))
}
