//! Errors of the console, rendered as a page: the API's own errors (same status, same
//! words), a form without its CSRF token, a malformed or oversized form, and failures of
//! the server itself (logged, never shown).

use crate::http::error::ApiError;
use askama::Template;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// A failure of a console request.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The same error the JSON API gives (role, validation, not found, conflict...).
    #[error("{}", .0.message)]
    Api(ApiError),
    /// A state-changing form came without the session's CSRF token.
    #[error("the form's security token is missing or out of date; reload the page and try again")]
    Csrf,
    /// The form's fields do not parse.
    #[error("the form is malformed ({0}); reload the page and try again")]
    BadForm(String),
    /// The form is larger than any console form.
    #[error("the form is larger than the console accepts")]
    FormTooLarge,
    /// A template failed to render (a bug).
    #[error("the page could not be drawn: {0}")]
    Render(String),
}

impl From<ApiError> for ConsoleError {
    fn from(e: ApiError) -> Self {
        ConsoleError::Api(e)
    }
}

impl From<crate::store::StoreError> for ConsoleError {
    fn from(e: crate::store::StoreError) -> Self {
        ConsoleError::Api(e.into())
    }
}

impl ConsoleError {
    /// A server failure: logged, and shown as "the server failed".
    pub fn internal(cause: impl std::fmt::Display) -> ConsoleError {
        ConsoleError::Api(ApiError::internal(cause))
    }

    /// The HTTP status of the page.
    pub fn status(&self) -> StatusCode {
        match self {
            ConsoleError::Api(e) => e.status,
            ConsoleError::Csrf => StatusCode::FORBIDDEN,
            ConsoleError::BadForm(_) => StatusCode::BAD_REQUEST,
            ConsoleError::FormTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ConsoleError::Render(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage {
    status: u16,
    reason: String,
    message: String,
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            ConsoleError::Render(e) => {
                tracing::error!(error = %e, "console template failed");
                "the server failed to draw the page; it has been logged".to_owned()
            }
            other => other.to_string(),
        };
        let page = ErrorPage {
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or("Error").to_owned(),
            message,
        };
        let body = page.render().unwrap_or_else(|_| "error".to_owned());
        (status, super::PAGE_HEADERS, body).into_response()
    }
}
