//! Names of the wire enums for people and logs: the snake_case word the API uses
//! (`rollback`, `rolled_back`), never Rust's debug formatting.

use serde::Serialize;

/// The wire name of a unit enum variant (`EventKind::Rollback` → `rollback`), or `-`.
pub fn wire_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "-".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use np_common::api::EventKind;
    use np_common::docs::ActionKind;

    #[test]
    fn wire_names_not_debug() {
        assert_eq!(wire_name(&EventKind::Rollback), "rollback");
        assert_eq!(wire_name(&ActionKind::Upgrade), "upgrade");
    }
}
