//! Lists in settings: a TOML array in the file, or one comma-separated string from an
//! environment variable.

use serde::Deserialize;

/// A list from a TOML array, or from one comma-separated string (an environment variable).
pub(crate) fn list_or_comma_separated<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Either::deserialize(d)? {
        Either::List(list) => list,
        Either::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
    })
}
