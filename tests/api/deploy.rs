//! `deploy/`: the Grafana dashboard and the Prometheus alert rules name only metrics that
//! `/metrics` exposes (the rules' own logic is tested by `promtool test rules`).

use std::collections::BTreeSet;

use crate::helpers::*;

/// Every `logproxy_*` and `process_*` metric name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for prefix in ["logproxy_", "process_"] {
        for (at, _) in text.match_indices(prefix) {
            let boundary = text[..at]
                .chars()
                .next_back()
                .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
            let name: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if boundary {
                names.insert(name);
            }
        }
    }
    names
}

#[actix_web::test]
async fn every_metric_the_dashboard_and_the_alert_rules_name_is_exposed() {
    let app = spawn_app().await;
    app.get("deploy-app", "").await; // the HTTP series appear with their first request
    let exposed: BTreeSet<String> = app
        .metrics()
        .await
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .collect();
    let root = env!("CARGO_MANIFEST_DIR");
    for file in [
        "deploy/grafana/logproxy.json",
        "deploy/prometheus/alerts.yml",
    ] {
        let text = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
        let named = metric_names(&text);
        assert!(named.len() >= 5, "{file} names {named:?}");
        for name in named {
            let family = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| exposed.contains(*f)))
                .unwrap_or(&name);
            assert!(
                exposed.contains(family),
                "{file} names {name}, not in /metrics"
            );
        }
    }
}
