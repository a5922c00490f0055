//! Signing in with a staff token (a field "Token", a button "Sign in") and signing out.
//! A wrong token is counted against the client's address and never logged or echoed.

use super::csrf::CsrfForm;
use super::session::{self, client_ip, is_tls, set_cookie, Attempt, ConsoleUser};
use super::{render, ConsoleError, ConsoleState};
use askama::Template;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use std::time::Instant;

/// The largest sign-in form (a token is about 50 characters).
const MAX_SIGN_IN_BYTES: usize = 4096;

#[derive(Template)]
#[template(path = "console/sign_in.html")]
struct SignInPage {
    message: Option<String>,
}

#[derive(Deserialize)]
struct SignInForm {
    token: Option<String>,
}

/// `GET /console/sign-in`: the form, or the fleet when already signed in.
pub async fn form(State(state): State<ConsoleState>, req: Request) -> Response {
    let (mut parts, _) = req.into_parts();
    if ConsoleUser::from_request_parts(&mut parts, &state)
        .await
        .is_ok()
    {
        return Redirect::to("/console/").into_response();
    }
    render(StatusCode::OK, &SignInPage { message: None })
}

fn refused(status: StatusCode, message: String) -> Response {
    render(
        status,
        &SignInPage {
            message: Some(message),
        },
    )
}

/// `POST /console/sign-in`: checks the token, starts a session and sets its cookie (and
/// ends the session the browser had, if any). The body is read before the limiter is asked,
/// and the limiter checks and counts in one step, so slow or simultaneous tries are
/// counted like any other.
pub async fn submit(State(state): State<ConsoleState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let client = client_ip(&parts);
    let Ok(bytes) = axum::body::to_bytes(body, MAX_SIGN_IN_BYTES).await else {
        return ConsoleError::FormTooLarge.into_response();
    };
    let token = serde_urlencoded::from_bytes::<SignInForm>(&bytes)
        .ok()
        .and_then(|f| f.token)
        .map(|t| t.trim().to_owned())
        .unwrap_or_default();
    if token.is_empty() {
        return refused(
            StatusCode::BAD_REQUEST,
            "Enter your staff token (np-server token create prints one).".to_owned(),
        );
    }
    // Looked up before the attempt is counted: the lookup may wait on the database, the
    // attempt holds a lock.
    let looked_up = state.app.tokens.lookup(&token).await;
    let record = match state.sessions.attempt(client, Instant::now(), || looked_up) {
        Attempt::Right(r) => r,
        Attempt::Limited(wait) => {
            return refused(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Too many wrong tokens from your address; wait {} seconds and try again.",
                    wait.as_secs().max(1)
                ),
            )
        }
        Attempt::Wrong => {
            tracing::warn!(%client, "console sign-in with a wrong token");
            return refused(
                StatusCode::UNAUTHORIZED,
                "That token is not valid (unknown or revoked); ask an admin for a new one."
                    .to_owned(),
            );
        }
        Attempt::Failed(e) => return ConsoleError::internal(e).into_response(),
    };
    if let Some(old) = session::cookie_id(&parts.headers) {
        state.sessions.end(&old);
    }
    let Some(id) = state.sessions.start(&record.sha256, state.app.now()) else {
        return ConsoleError::internal("no session could be started (no random source)")
            .into_response();
    };
    tracing::info!(actor = %record.name, "console sign-in");
    (
        [(header::SET_COOKIE, set_cookie(Some(&id), is_tls(&parts)))],
        Redirect::to("/console/"),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct Nothing {}

/// `POST /console/sign-out`: ends the session and clears its cookie.
pub async fn sign_out(State(state): State<ConsoleState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let secure = is_tls(&parts);
    let id = session::cookie_id(&parts.headers);
    let req = Request::from_parts(parts, body);
    match <CsrfForm<Nothing> as axum::extract::FromRequest<ConsoleState>>::from_request(req, &state)
        .await
    {
        Ok(f) => {
            if let Some(id) = id {
                state.sessions.end(&id);
            }
            tracing::info!(actor = %f.user.caller.name, "console sign-out");
            (
                [(header::SET_COOKIE, set_cookie(None, secure))],
                Redirect::to("/console/sign-in"),
            )
                .into_response()
        }
        Err(r) => r,
    }
}
