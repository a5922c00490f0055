//! OpenAPI schemas (utoipa) for the value types that travel as strings: serials, models,
//! versions, keys and digests. Built only with the `openapi` feature, which np-server turns
//! on to describe its HTTP API; the agent never links it.

use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::RefOr;

/// A string schema with a description, an example and an optional pattern.
fn string(description: &str, example: &str, pattern: Option<&str>) -> RefOr<Schema> {
    let mut b = ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .description(Some(description))
        .examples([serde_json::Value::String(example.to_owned())]);
    if let Some(p) = pattern {
        b = b.pattern(Some(p));
    }
    RefOr::T(Schema::Object(b.build()))
}

macro_rules! string_schema {
    ($ty:ty, $name:literal, $desc:literal, $example:literal, $pattern:expr) => {
        impl utoipa::PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                string($desc, $example, $pattern)
            }
        }
        impl utoipa::ToSchema for $ty {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed($name)
            }
        }
    };
}

string_schema!(
    crate::Serial,
    "Serial",
    "A standard serial PP-MMMM-NNNNNN-C; C is the Luhn check digit over the ten digits",
    "NR-2000-123456-4",
    Some("^[A-Z]{2}-[0-9]{4}-[0-9]{6}-[0-9]$")
);
string_schema!(
    crate::Model,
    "Model",
    "A model PP-MMMM (family and model number)",
    "NR-2000",
    Some("^[A-Z]{2}-[0-9]{4}$")
);
string_schema!(
    crate::Version,
    "Version",
    "A semantic version (build metadata is not newer than the same version without it)",
    "5.3.0",
    None
);
string_schema!(
    crate::PublicKey,
    "PublicKey",
    "An Ed25519 public key: standard base64 of the raw 32 bytes",
    "zHIy0cxT3YjO3bOqm1n9dVfPZ3wK7iV0yP0b9yH3Gk4=",
    None
);
string_schema!(
    crate::KeyId,
    "KeyId",
    "Lowercase hex SHA-256 of a raw 32-byte public key",
    "6f1c0e8d9a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5",
    Some("^[0-9a-f]{64}$")
);
string_schema!(
    crate::Sha256Digest,
    "Sha256",
    "Lowercase hex SHA-256",
    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    Some("^[0-9a-f]{64}$")
);
