//! Bearer-token authentication for the staff API. A token's name is the audit actor; its
//! role decides what it may do: `staff` devices and warranties, `release` firmware,
//! `admin` both (and tokens). No or an unknown token is 401, the wrong role 403.
//! Tokens are compared by their SHA-256 and never logged.

use crate::http::error::ApiError;
use crate::state::AppState;
use crate::tokens::TokenRole;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name (the audit actor).
    pub name: String,
    /// The token's role.
    pub role: TokenRole,
}

/// Finds the caller of a request from its `Authorization: Bearer` header.
pub async fn authenticate(parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
    let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
        return Err(ApiError::unauthorized(
            "this request needs a token: send `Authorization: Bearer <token>`",
        ));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
        })?;
    match state.tokens.lookup(token).await.map_err(token_error)? {
        Some(t) => Ok(Caller {
            name: t.name,
            role: t.role,
        }),
        None => Err(ApiError::unauthorized(
            "the token is not valid (unknown or revoked); ask an admin for a new one",
        )),
    }
}

fn require(caller: Caller, allowed: &[TokenRole], what: &str) -> Result<Caller, ApiError> {
    if caller.role == TokenRole::Admin || allowed.contains(&caller.role) {
        Ok(caller)
    } else {
        Err(ApiError::forbidden(
            "forbidden",
            format!(
                "token {:?} has the {} role, which may not {what}",
                caller.name, caller.role
            ),
        ))
    }
}

macro_rules! role_extractor {
    ($(#[$doc:meta])* $name:ident, [$($role:expr),*], $what:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name(pub Caller);

        impl $name {
            /// The caller if its role allows this, else 403 (the console's sessions use it too).
            pub fn check(caller: Caller) -> Result<Self, ApiError> {
                require(caller, &[$($role),*], $what).map($name)
            }
        }

        impl FromRequestParts<AppState> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
                $name::check(authenticate(parts, state).await?)
            }
        }
    };
}

role_extractor!(
    /// A caller with the `staff` or `admin` role.
    StaffCaller,
    [TokenRole::Staff],
    "manage devices and warranties"
);
role_extractor!(
    /// A caller with the `release` or `admin` role.
    ReleaseCaller,
    [TokenRole::Release],
    "publish firmware"
);
role_extractor!(
    /// A caller with the `admin` role.
    AdminCaller,
    [],
    "draft or install signing keyrings: that needs an admin token (`np-server token create --role admin`)"
);
role_extractor!(
    /// Any authenticated caller (any role).
    AnyCaller,
    [TokenRole::Staff, TokenRole::Release],
    "read this"
);

/// A failed token lookup: 503 when the store is unreachable, else 500.
pub(crate) fn token_error(e: crate::tokens::TokenError) -> ApiError {
    match e {
        crate::tokens::TokenError::Store(s) => ApiError::from(s),
        other => ApiError::internal(other),
    }
}
