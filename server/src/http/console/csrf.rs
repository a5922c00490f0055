//! Cross-site request forgery: every form that changes something carries the session's
//! CSRF token in a hidden `csrf` field. [`CsrfForm`] is the only way a console handler
//! reads a posted form: it finds the session, refuses (403) a form without the session's
//! token, and only then parses the fields.

use super::{ConsoleError, ConsoleState, ConsoleUser};
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// The largest console form body.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// A posted form whose CSRF token matched its session.
#[derive(Debug)]
pub struct CsrfForm<T> {
    /// The signed-in user.
    pub user: ConsoleUser,
    /// The form's fields.
    pub form: T,
}

#[derive(Deserialize)]
struct TokenField {
    csrf: Option<String>,
}

/// Compares without stopping at the first difference.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Checks a form's `csrf` value against the session's.
pub fn check(user: &ConsoleUser, sent: Option<&str>) -> Result<(), ConsoleError> {
    match sent {
        Some(s) if !user.csrf.is_empty() && same(s, &user.csrf) => Ok(()),
        _ => Err(ConsoleError::Csrf),
    }
}

impl<T: DeserializeOwned> FromRequest<ConsoleState> for CsrfForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &ConsoleState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let user = ConsoleUser::from_request_parts(&mut parts, state).await?;
        let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
            .await
            .map_err(|_| ConsoleError::FormTooLarge.into_response())?;
        let token: TokenField = parse(&bytes).map_err(IntoResponse::into_response)?;
        check(&user, token.csrf.as_deref()).map_err(IntoResponse::into_response)?;
        let form = parse(&bytes).map_err(IntoResponse::into_response)?;
        Ok(CsrfForm { user, form })
    }
}

fn parse<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ConsoleError> {
    serde_urlencoded::from_bytes(bytes).map_err(|e| ConsoleError::BadForm(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_whole_strings() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
        assert!(!same("", "a"));
    }
}
