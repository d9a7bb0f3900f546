//! The configuration reference (docs/configuration.md) against the code: every key of
//! `Settings` and of config/default.toml has a row, and every row is a key serde accepts.

use std::collections::BTreeSet;

use super::Settings;

const REFERENCE: &str = include_str!("../../docs/configuration.md");
const DEFAULT_FILE: &str = include_str!("../../config/default.toml");
const TABLE_HEADER: &str = "| key | default | meaning |";

/// What deserializing `toml` into `Settings` says; `None` when it is accepted.
fn refusal(toml: &str) -> Option<String> {
    config::Config::builder()
        .add_source(config::File::from_str(toml, config::FileFormat::Toml))
        .build()
        .and_then(|c| c.try_deserialize::<Settings>())
        .err()
        .map(|e| e.to_string())
}

/// The fields of `Settings` (`section`: `None`) or of one section, as serde lists them when
/// it refuses an unknown one: "unknown field `x`, expected one of `a`, `b` for key `s`".
fn fields(section: Option<&str>) -> Vec<String> {
    let toml = match section {
        None => "unknown_probe = 1".to_owned(),
        Some(section) => format!("[{section}]\nunknown_probe = 1"),
    };
    let message = refusal(&toml).expect("an unknown key is refused");
    let expected = message
        .split_once("expected")
        .unwrap_or_else(|| panic!("serde names the fields: {message}"))
        .1;
    let expected = expected.split(" for key").next().unwrap();
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(String::from)
        .collect()
}

/// `section.key` of every field of every section of `Settings`.
fn code_keys() -> BTreeSet<String> {
    let sections = fields(None);
    assert!(sections.len() > 5, "sections: {sections:?}");
    sections
        .iter()
        .flat_map(|s| fields(Some(s)).into_iter().map(move |f| format!("{s}.{f}")))
        .collect()
}

/// The keys named in the table's first column; `` `a.b` / `.c` `` names `a.b` and `a.c`.
fn table_keys(reference: &str) -> BTreeSet<String> {
    let table = reference
        .split(TABLE_HEADER)
        .nth(1)
        .expect("docs/configuration.md has the table");
    let mut keys = BTreeSet::new();
    for row in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
        let cell = row.split('|').nth(1).unwrap();
        let mut section = String::new();
        for name in cell.split('`').skip(1).step_by(2) {
            let key = match name.strip_prefix('.') {
                Some(field) => format!("{section}.{field}"),
                None => name.to_owned(),
            };
            section = key.split('.').next().unwrap().to_owned();
            keys.insert(key);
        }
    }
    keys
}

/// `section.key` of every key config/default.toml sets (an array of tables is one key).
fn default_file_keys() -> BTreeSet<String> {
    let file: serde_json::Map<String, serde_json::Value> = config::Config::builder()
        .add_source(config::File::from_str(
            DEFAULT_FILE,
            config::FileFormat::Toml,
        ))
        .build()
        .and_then(|c| c.try_deserialize())
        .expect("config/default.toml is TOML");
    let mut keys = BTreeSet::new();
    for (section, table) in &file {
        let table = table.as_object().expect("a section");
        keys.extend(table.keys().map(|key| format!("{section}.{key}")));
    }
    keys
}

#[test]
fn the_configuration_reference_names_every_setting_and_only_settings() {
    let table = table_keys(REFERENCE);
    let code = code_keys();
    let missing: Vec<_> = code.difference(&table).collect();
    assert!(
        missing.is_empty(),
        "settings without a row in docs/configuration.md: {missing:?}"
    );
    for key in &table {
        let (section, field) = key.split_once('.').expect("section.key");
        let refused = refusal(&format!("[{section}]\n{field} = 0")).unwrap_or_default();
        assert!(
            !refused.contains("unknown field"),
            "{key} is no setting: {refused}"
        );
    }
    let extra: Vec<_> = table.difference(&code).collect();
    assert!(extra.is_empty(), "rows that name no setting: {extra:?}");
    let undocumented: Vec<_> = default_file_keys().difference(&table).cloned().collect();
    assert!(
        undocumented.is_empty(),
        "config/default.toml keys without a row: {undocumented:?}"
    );
}
