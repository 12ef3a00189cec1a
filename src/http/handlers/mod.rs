//! One module per resource, one file per action.

pub mod businesses;
pub mod keys;
pub mod ops;

use super::error::FieldError;

/// A trimmed display name of 1..=`max` characters with no control characters.
pub(crate) fn display_name(field: &str, value: &str, max: usize) -> Result<String, FieldError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    if trimmed.chars().count() > max {
        return Err(FieldError::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(display_name("name", "  Acme  ", 10).unwrap(), "Acme");
        assert!(display_name("name", "   ", 10).is_err());
        assert!(display_name("name", "abcdefghijk", 10).is_err());
        assert!(display_name("name", "a\u{0}b", 10).is_err());
        assert_eq!(
            display_name("name", "Café", 4).unwrap(),
            "Café",
            "counts characters, not bytes"
        );
    }
}
