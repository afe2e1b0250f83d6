//! The observability artefacts in `dashboards/` against the real binary.
//!
//! - Every metric a Grafana panel, a template variable, an alert rule or an alert unit test names
//!   is one that a running `chainsync` exports on `/metrics` (histogram series by their base name).
//! - The live `/metrics` output passes `promtool check metrics`, and `/healthz` and `/readyz` answer
//!   200 once the listener runs.
//! - The dashboards are provisionable Grafana JSON that pick their data source and chain through
//!   template variables; every alert rule has a severity, a summary, a runbook section and a unit test.
//!
//! - A real Prometheus scraping chainsync while the devnet has traffic, a stuck transfer and a reorg
//!   beyond the confirmation threshold has data for every panel query of both dashboards, and the
//!   shipped alert rules load, evaluate and fire on those series.
//!
//! The alert rules themselves are unit-tested by promtool (`scripts/check-dashboards.sh`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{metrics_url, repo_root, wait_for, write_config, Anvil, Chainsync, TestDb};
use serde_json::Value;

const DASHBOARDS: &[&str] = &[
    "dashboards/grafana/chainsync-overview.json",
    "dashboards/grafana/chainsync-chain.json",
];
const ALERT_RULES: &str = "dashboards/prometheus/alerts.yml";
const ALERT_TESTS: &str = "dashboards/prometheus/alerts_test.yml";
const RUNBOOK: &str = "dashboards/RUNBOOK.md";
/// Series Prometheus itself creates for every target.
const PROMETHEUS_OWN: &[&str] = &["up"];

fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

fn dashboard(relative: &str) -> Value {
    serde_json::from_str(&read(relative))
        .unwrap_or_else(|e| panic!("{relative} is not valid JSON: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Metric names in PromQL

/// PromQL words that are never metric names: aggregations, set operators, modifiers.
const PROMQL_KEYWORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
    "atan2",
];
/// Keywords followed by a parenthesised list of label names.
const LABEL_LIST_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Index just past the delimited region that starts at `start` (`chars[start] == open`), skipping
/// quoted strings inside it.
fn skip_delimited(chars: &[char], start: usize, open: char, close: char) -> usize {
    let mut depth = 0;
    let mut i = start;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => i = skip_string(chars, i) - 1,
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    chars.len()
}

/// Index just past the string literal that starts at `start`.
fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() {
        if chars[i] == '\\' && quote != '`' {
            i += 2;
            continue;
        }
        if chars[i] == quote {
            return i + 1;
        }
        i += 1;
    }
    chars.len()
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// The metric names a PromQL expression (possibly holding Grafana `$variables`) selects.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i);
        } else if c == '{' {
            i = skip_delimited(&chars, i, '{', '}'); // label matchers
        } else if c == '[' {
            i = skip_delimited(&chars, i, '[', ']'); // ranges and subqueries
        } else if c == '$' {
            // Grafana variable: $name or ${name}
            i += 1;
            if chars.get(i) == Some(&'{') {
                i = skip_delimited(&chars, i, '{', '}');
            } else {
                while i < chars.len() && is_name_char(chars[i]) {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit() || c == '.' {
            // Numbers and durations (0.99, 1e3, 5m)
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if is_name_start(c) {
            let start = i;
            while i < chars.len() && is_name_char(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let lower = word.to_ascii_lowercase();
            if LABEL_LIST_KEYWORDS.contains(&lower.as_str()) && chars.get(next) == Some(&'(') {
                i = skip_delimited(&chars, next, '(', ')');
            } else if PROMQL_KEYWORDS.contains(&lower.as_str()) || chars.get(next) == Some(&'(') {
                // keyword or function call
            } else {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The metric names a Grafana template variable query selects: `label_values(metric, label)`
/// names a metric, `label_values(label)` none; anything else is PromQL.
fn variable_query_metrics(query: &str) -> BTreeSet<String> {
    let query = query.trim();
    if let Some(arguments) = query
        .strip_prefix("label_values(")
        .and_then(|rest| rest.strip_suffix(')'))
    {
        return match arguments.rsplit_once(',') {
            Some((selector, _label)) => metric_names(selector),
            None => BTreeSet::new(),
        };
    }
    if query.starts_with("label_names(") {
        return BTreeSet::new();
    }
    if let Some(inner) = query
        .strip_prefix("query_result(")
        .and_then(|rest| rest.strip_suffix(')'))
    {
        return metric_names(inner);
    }
    metric_names(query)
}

/// Every `expr` in a dashboard's panels (rows included).
fn panel_exprs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                match (key.as_str(), item) {
                    ("expr", Value::String(expr)) => out.push(expr.clone()),
                    _ => panel_exprs(item, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| panel_exprs(item, out)),
        _ => {}
    }
}

/// The query of a `query` template variable (a string, or an object with `query`).
fn variable_query(variable: &Value) -> Option<String> {
    match &variable["query"] {
        Value::String(query) => Some(query.clone()),
        Value::Object(map) => map.get("query").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

fn template_variables(dashboard: &Value) -> Vec<Value> {
    dashboard["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The `expr:` of every rule in a Prometheus rule file, including block scalars (`expr: |`).
fn rule_exprs(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut exprs = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let indent = line.len() - line.trim_start().len();
        if let Some(rest) = line.trim_start().strip_prefix("expr:") {
            let rest = rest.trim();
            if rest.starts_with('|') || rest.starts_with('>') {
                let mut block = Vec::new();
                i += 1;
                while i < lines.len() {
                    let next = lines[i];
                    let next_indent = next.len() - next.trim_start().len();
                    if !next.trim().is_empty() && next_indent <= indent {
                        break;
                    }
                    block.push(next.trim());
                    i += 1;
                }
                exprs.push(block.join(" "));
                continue;
            }
            exprs.push(rest.trim_matches(|c| c == '"' || c == '\'').to_owned());
        }
        i += 1;
    }
    exprs
}

/// The alert rules of alerts.yml: name -> the text of its rule.
fn alert_rules(text: &str) -> BTreeMap<String, String> {
    let mut rules = BTreeMap::new();
    let mut current: Option<(String, Vec<&str>)> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let starts_rule = trimmed.starts_with("- alert:") || trimmed.starts_with("- record:");
        let starts_group = trimmed.starts_with("- name:");
        if starts_rule || starts_group {
            if let Some((name, body)) = current.take() {
                rules.insert(name, body.join("\n"));
            }
        }
        if let Some(name) = trimmed.strip_prefix("- alert:") {
            current = Some((name.trim().to_owned(), vec![line]));
        } else if let Some((_, body)) = current.as_mut() {
            body.push(line);
        }
    }
    if let Some((name, body)) = current {
        rules.insert(name, body.join("\n"));
    }
    rules
}

/// The metric names of the input series of alerts_test.yml (`series: 'name{...}'`).
fn alert_test_series(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| line.trim_start().strip_prefix("- series:"))
        .map(|series| {
            let series = series.trim().trim_matches(|c| c == '\'' || c == '"');
            series
                .split('{')
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
        .collect()
}

/// Every metric name the artefacts use, with where each is used.
fn used_metric_names() -> BTreeMap<String, BTreeSet<String>> {
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut record = |names: BTreeSet<String>, place: &str| {
        for name in names {
            used.entry(name).or_default().insert(place.to_owned());
        }
    };
    for path in DASHBOARDS {
        let dashboard = dashboard(path);
        let mut exprs = Vec::new();
        panel_exprs(&dashboard["panels"], &mut exprs);
        for expr in exprs {
            record(metric_names(&expr), path);
        }
        for variable in template_variables(&dashboard) {
            if variable["type"] == "query" {
                if let Some(query) = variable_query(&variable) {
                    record(variable_query_metrics(&query), path);
                }
            }
        }
    }
    let rules = read(ALERT_RULES);
    for expr in rule_exprs(&rules) {
        record(metric_names(&expr), ALERT_RULES);
    }
    record(alert_test_series(&read(ALERT_TESTS)), ALERT_TESTS);
    used
}

// ---------------------------------------------------------------------------------------------
// The live binary

/// Metric families on a `/metrics` page: name -> type, from the `# TYPE` lines.
fn exported_families(page: &str) -> BTreeMap<String, String> {
    page.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| {
            let mut parts = rest.split_whitespace();
            Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
        })
        .collect()
}

/// Whether `name` is a series of an exported family (histogram/summary series by base name).
fn is_exported(name: &str, families: &BTreeMap<String, String>) -> bool {
    if families.contains_key(name) || PROMETHEUS_OWN.contains(&name) {
        return true;
    }
    ["_bucket", "_sum", "_count"].iter().any(|suffix| {
        name.strip_suffix(suffix).is_some_and(|base| {
            families.get(base).is_some_and(|kind| {
                kind == "histogram" || (kind == "summary" && *suffix != "_bucket")
            })
        })
    })
}

/// One sample value of `name` with exactly the label text `labels` (e.g. `chain="devnet"`).
fn sample(page: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    page.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
}

async fn get(url: &str) -> Option<(u16, String)> {
    let response = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

/// `promtool check metrics` on `page`; promtool must be installed (scripts/check-dashboards.sh).
fn promtool_check_metrics(page: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "promtool is not on PATH: run scripts/check-dashboards.sh, which installs Debian's \
             prometheus package (make test does)"
        ),
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child
        .stdin
        .take()
        .expect("promtool stdin")
        .write_all(page.as_bytes())
        .expect("write /metrics to promtool");
    let output = child.wait_with_output().expect("promtool finishes");
    assert!(
        output.status.success(),
        "promtool check metrics rejects the /metrics output ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// One `chainsync run` against a real anvil and PostgreSQL: the metric names the artefacts use
/// are exported, promtool accepts the page, and the health endpoints answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_and_alerts_use_only_exported_metrics_of_a_running_binary() {
    let anvil = Anvil::start().await;
    anvil.mine(3).await;
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().expect("temp dir");
    // No contract needs to exist at the address for the listener to run.
    let config = write_config(
        dir.path(),
        &anvil.rpc_url(),
        &db.url,
        &[(
            "stream_lock_manager",
            "0x5fbdb2315678afecb367f93180aa3ca6417d1f2e".to_owned(),
            0,
        )],
        "",
    );
    let metrics = metrics_url(&config);
    let base = metrics.trim_end_matches("/metrics").to_owned();
    let _chainsync = Chainsync::run(&config);

    // The listener runs once it has completed a step and reached the node's head.
    let page = wait_for(
        "the devnet listener to complete a step",
        Duration::from_secs(60),
        || async {
            let (status, page) = get(&metrics).await?;
            let progressed = sample(
                &page,
                "chainsync_listener_progress_timestamp_seconds",
                "chain=\"devnet\"",
            )
            .is_some_and(|t| t > 0.0);
            let head = sample(&page, "chainsync_chain_head_block", "chain=\"devnet\"");
            (status == 200 && progressed && head == Some(3.0)).then_some(page)
        },
    )
    .await;

    let (status, body) = get(&format!("{base}/healthz"))
        .await
        .expect("/healthz answers");
    assert_eq!(status, 200, "/healthz: {body}");
    let (status, body) = get(&format!("{base}/readyz"))
        .await
        .expect("/readyz answers");
    assert_eq!(status, 200, "/readyz once the listener runs: {body}");

    promtool_check_metrics(&page);

    let families = exported_families(&page);
    assert!(
        families
            .keys()
            .all(|name| name.starts_with("chainsync_") || name.starts_with("process_")),
        "unexpected metric families: {:?}",
        families.keys().collect::<Vec<_>>()
    );
    let used = used_metric_names();
    assert!(
        used.contains_key("chainsync_chain_head_block") && used.contains_key("up"),
        "the metric name extraction found too little: {used:?}"
    );
    let missing: Vec<String> = used
        .iter()
        .filter(|(name, _)| !is_exported(name, &families))
        .map(|(name, places)| {
            let places: Vec<&str> = places.iter().map(String::as_str).collect();
            format!("  {name} (used in {})", places.join(", "))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "metric names used by dashboards/alerts that a running chainsync does not export \
         (every series must exist at 0 from start-up; see actors/src/metrics.rs):\n{}\n\
         exported: {:?}",
        missing.join("\n"),
        families.keys().collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------------------------------------
// Structure

/// The required template variables, panels with queries, and no data source bound by uid.
#[test]
fn dashboards_are_grafana_json_with_datasource_and_chain_variables() {
    for path in DASHBOARDS {
        let dashboard = dashboard(path);
        let schema = dashboard["schemaVersion"].as_u64().unwrap_or(0);
        assert!(schema >= 36, "{path}: schemaVersion {schema} < 36");
        assert!(
            dashboard["uid"].as_str().is_some_and(|uid| !uid.is_empty()),
            "{path}: a fixed dashboard uid keeps links stable"
        );

        let variables = template_variables(&dashboard);
        let variable = |name: &str| {
            variables
                .iter()
                .find(|v| v["name"] == name)
                .cloned()
                .unwrap_or_else(|| panic!("{path}: no template variable `{name}`"))
        };
        let datasource = variable("datasource");
        assert_eq!(
            datasource["type"], "datasource",
            "{path}: datasource variable"
        );
        assert_eq!(
            datasource["query"], "prometheus",
            "{path}: datasource variable"
        );
        let chain = variable("chain");
        assert_eq!(chain["type"], "query", "{path}: chain variable");
        assert_eq!(
            variable_query(&chain).as_deref(),
            Some("label_values(chainsync_chain_head_block, chain)"),
            "{path}: chain variable query"
        );
        assert_eq!(
            chain["datasource"]["uid"], "${datasource}",
            "{path}: the chain variable queries the selected data source"
        );

        let mut panels = Vec::new();
        for panel in dashboard["panels"].as_array().expect("panels") {
            panels.push(panel.clone());
            if let Some(nested) = panel["panels"].as_array() {
                panels.extend(nested.iter().cloned());
            }
        }
        let mut ids = BTreeSet::new();
        let mut charts = 0;
        for panel in &panels {
            let title = panel["title"].as_str().unwrap_or("<untitled>");
            assert!(
                ids.insert(panel["id"].as_u64().expect("panel id")),
                "{path}: duplicate panel id in `{title}`"
            );
            assert!(
                panel["gridPos"].is_object(),
                "{path}: `{title}` has no gridPos"
            );
            if panel["type"] == "row" {
                continue;
            }
            charts += 1;
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "{path}: panel `{title}` must use the datasource variable"
            );
            let targets = panel["targets"].as_array().cloned().unwrap_or_default();
            assert!(
                !targets.is_empty(),
                "{path}: panel `{title}` has no targets"
            );
            for target in targets {
                let expr = target["expr"].as_str().unwrap_or_default();
                assert!(
                    !expr.trim().is_empty(),
                    "{path}: panel `{title}`: empty expr"
                );
                assert!(
                    !metric_names(expr).is_empty(),
                    "{path}: panel `{title}`: `{expr}` selects no metric"
                );
            }
        }
        assert!(charts >= 10, "{path}: only {charts} panels");
        assert_no_hard_coded_datasource(path, &dashboard);
    }
}

/// Every `datasource` in the dashboard names the `${datasource}` variable (Grafana's own
/// annotation source excepted), never a fixed uid or name.
fn assert_no_hard_coded_datasource(path: &str, value: &Value) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                if key == "datasource" {
                    let ok = match item {
                        Value::String(name) => name.starts_with('$'),
                        Value::Object(source) => {
                            source.get("type") == Some(&Value::from("grafana"))
                                || (source.get("type") == Some(&Value::from("prometheus"))
                                    && source
                                        .get("uid")
                                        .and_then(Value::as_str)
                                        .is_some_and(|uid| uid.starts_with('$')))
                        }
                        Value::Null => true,
                        _ => false,
                    };
                    assert!(ok, "{path}: hard-coded data source {item}");
                }
                assert_no_hard_coded_datasource(path, item);
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|item| assert_no_hard_coded_datasource(path, item)),
        _ => {}
    }
}

/// The overview shows every signal an SRE looks at first.
#[test]
fn overview_dashboard_covers_the_operational_signals() {
    let dashboard = dashboard(DASHBOARDS[0]);
    let mut exprs = Vec::new();
    panel_exprs(&dashboard["panels"], &mut exprs);
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    let joined = exprs.join("\n");
    for metric in [
        "chainsync_chain_head_block",
        "chainsync_indexed_block",
        "chainsync_confirmed_block",
        "chainsync_chain_head_age_seconds",
        "chainsync_listener_progress_timestamp_seconds",
        "chainsync_events_total",
        "chainsync_transfers",
        "chainsync_stuck_transfers",
        "chainsync_transfer_confirmation_seconds_bucket",
        "chainsync_reorgs_total",
        "chainsync_reorg_depth_blocks_bucket",
        "chainsync_rpc_requests_total",
        "chainsync_rpc_request_duration_seconds_bucket",
        "chainsync_db_transaction_duration_seconds_bucket",
        "chainsync_admin_events_total",
        "chainsync_getlogs_range_reductions_total",
        "chainsync_actor_mailbox_messages",
    ] {
        assert!(
            used.contains(metric),
            "the overview has no panel on {metric}"
        );
    }
    for needle in [
        "chainsync_chain_head_block{chain=~\"$chain\", instance=~\"$instance\"} - chainsync_indexed_block",
        "rate(chainsync_events_total",
        "histogram_quantile(0.5, sum by (chain, le) (rate(chainsync_transfer_confirmation_seconds_bucket",
        "histogram_quantile(0.99, sum by (chain, le) (rate(chainsync_transfer_confirmation_seconds_bucket",
    ] {
        assert!(joined.contains(needle), "the overview has no query with `{needle}`");
    }
}

/// Every alert has a severity, a summary naming what failed, a runbook section and a unit test.
#[test]
fn every_alert_has_severity_summary_runbook_section_and_unit_test() {
    let text = read(ALERT_RULES);
    let rules = alert_rules(&text);
    assert_eq!(
        rules.len(),
        rule_exprs(&text).len(),
        "every rule in {ALERT_RULES} is an alert with one expr"
    );
    for expected in [
        "ChainsyncDown",
        "IndexerLagging",
        "ChainHeadStalled",
        "StuckTransfers",
        "DeepReorg",
        "ForkBeyondWindow",
        "RpcErrorRateHigh",
        "DatabaseErrors",
        "ContractUpgradedOrPaused",
        "ListenerNotProgressing",
    ] {
        assert!(rules.contains_key(expected), "no alert {expected}");
    }
    let runbook = read(RUNBOOK);
    let tests = read(ALERT_TESTS);
    // The series of these alerts carry no chain label (scrape status; database operations).
    let without_chain = ["ChainsyncDown", "DatabaseErrors"];
    for (name, rule) in &rules {
        let severity = rule
            .lines()
            .find_map(|l| l.trim().strip_prefix("severity:"))
            .map(str::trim)
            .unwrap_or_else(|| panic!("{name}: no severity label"));
        assert!(
            ["critical", "warning"].contains(&severity),
            "{name}: severity `{severity}`"
        );
        let summary = rule
            .lines()
            .find_map(|l| l.trim().strip_prefix("summary:"))
            .unwrap_or_else(|| panic!("{name}: no summary"));
        if without_chain.contains(&name.as_str()) {
            assert!(
                summary.contains("{{ $labels."),
                "{name}: summary names nothing"
            );
        } else {
            assert!(
                summary.contains("{{ $labels.chain }}"),
                "{name}: summary does not name the chain"
            );
        }
        let anchor = name.to_ascii_lowercase();
        assert!(
            rule.contains(&format!("runbook_url: \"{RUNBOOK}#{anchor}\"")),
            "{name}: no runbook_url to {RUNBOOK}#{anchor}"
        );
        assert!(
            runbook.lines().any(|l| l.trim() == format!("## {name}")),
            "{RUNBOOK} has no section `## {name}`"
        );
        assert!(
            tests.contains(&format!("alertname: {name}\n")),
            "{ALERT_TESTS} does not test {name}"
        );
    }
}

#[test]
fn metric_name_extraction_reads_promql_and_grafana_queries() {
    let names = |expr: &str| metric_names(expr).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"sum by (chain, le) (rate(a_bucket{chain=~"$chain", x="b{c}"}[$__rate_interval])) / on(chain) group_left(kind) b"#
        ),
        ["a_bucket", "b"]
    );
    assert_eq!(
        names("time() - t > 300 and t > 0 or max without (instance) (c offset 5m) > bool 1e3"),
        ["c", "t"]
    );
    assert_eq!(
        names("histogram_quantile(0.99, sum(rate(h_bucket[5m])) by (le))"),
        ["h_bucket"]
    );
    assert_eq!(
        variable_query_metrics("label_values(chainsync_chain_head_block, chain)")
            .into_iter()
            .collect::<Vec<_>>(),
        ["chainsync_chain_head_block"]
    );
    assert!(variable_query_metrics("label_values(chain)").is_empty());
    let rules = "      - alert: A\n        expr: |\n          x\n          / y\n        for: 1m\n      - alert: B\n        expr: z == 1\n";
    assert_eq!(rule_exprs(rules), ["x / y", "z == 1"]);
}

/// A Prometheus server for one test, killed on drop.
struct Prometheus {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Debian's `prometheus` scraping `target` (host:port) every second as job
    /// `chainsync`, with the shipped alert rules evaluated every second.
    async fn start(target: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = common::free_port();
        let rules = repo_root().join(ALERT_RULES);
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: chainsync\n    static_configs:\n      - targets: ['{target}']\n",
            rules.display()
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).expect("prometheus.yml");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect(
                "prometheus is on PATH: scripts/check-dashboards.sh installs Debian's prometheus package (make test does)",
            );
        let url = format!("http://127.0.0.1:{port}");
        let ready = format!("{url}/-/ready");
        wait_for(
            "Prometheus to be ready",
            Duration::from_secs(30),
            || async { get(&ready).await.filter(|(status, _)| *status == 200) },
        )
        .await;
        Self {
            child,
            url,
            _dir: dir,
        }
    }

    /// An instant query; the `data.result` array.
    async fn query(&self, expr: &str) -> Vec<Value> {
        let response = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", expr)])
            .send()
            .await
            .expect("query Prometheus");
        let body: Value = response.json().await.expect("JSON answer");
        assert_eq!(body["status"], "success", "query {expr}: {body}");
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    async fn api(&self, path: &str) -> Value {
        reqwest::get(format!("{}{path}", self.url))
            .await
            .expect("Prometheus API")
            .json()
            .await
            .expect("JSON answer")
    }
}

/// Whether an instant-query result holds at least one sample that is a number (not NaN).
fn has_numeric_sample(result: &[Value]) -> bool {
    result.iter().any(|series| {
        series["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(|v| !v.is_nan())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scraping_chainsync_under_traffic_has_data_for_every_panel() {
    use chainsync::devnet::{deploy, Traffic};

    // An 11th account for the reorg's transaction (the traffic generator uses the first ten).
    let anvil = Anvil::start_with(&["--accounts", "11"]).await;
    let db = TestDb::new().await;
    let deployment = deploy(&anvil.rpc_url()).await.expect("deploy");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(
        dir.path(),
        &anvil.rpc_url(),
        &db.url,
        &common::contracts(&deployment),
        "confirmations = 2\nstuck_after = \"2s\"\nhead_stall_after = \"10m\"\n",
    );
    let metrics = metrics_url(&config);
    let target = metrics
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_owned();
    let chainsync = Chainsync::run(&config);
    wait_for("chainsync's metrics", Duration::from_secs(30), || async {
        get(&metrics).await.filter(|(status, _)| *status == 200)
    })
    .await;
    let prometheus = Prometheus::start(&target).await;
    wait_for("the first scrape", Duration::from_secs(30), || async {
        let up = prometheus.query("up{job=\"chainsync\"} == 1").await;
        (!up.is_empty()).then_some(())
    })
    .await;

    // Traffic (every operation, admin events included), a transfer that gets stuck, a reorg
    // that replaces confirmed blocks, then more traffic: all while Prometheus scrapes.
    let mut traffic = Traffic::new(&anvil.rpc_url(), deployment.clone(), 606)
        .await
        .expect("traffic");
    traffic
        .run_steps(25.0, Some(120), std::future::pending())
        .await
        .expect("traffic");
    let watch = Command::new(env!("CARGO_BIN_EXE_chainsync"))
        .args(["watch", "--chain", "devnet"])
        .arg(format!("0x{}", "ab".repeat(32)))
        .arg("--config")
        .arg(&config)
        .env_remove("DATABASE_URL")
        .output()
        .expect("chainsync watch");
    assert!(
        watch.status.success(),
        "{}",
        String::from_utf8_lossy(&watch.stderr)
    );
    // The reorg replaces empty blocks by blocks holding a transfer of an account the generator
    // never uses, so the generator's transactions (and nonces) stay valid; with confirmations = 2
    // the replaced blocks were already confirmed.
    anvil.mine(3).await;
    let head = anvil.block_number().await;
    common::wait_indexed(&db.pool().await, head, Duration::from_secs(60)).await;
    let outsider = "0xBcd4042DE499D14e55001CcbB24a551F3b954096";
    anvil
        .rpc(
            "anvil_reorg",
            serde_json::json!([3, [[{"from": outsider, "to": outsider, "value": "0x1"}, 0]]]),
        )
        .await
        .expect("anvil_reorg");
    traffic
        .run_steps(25.0, Some(60), std::future::pending())
        .await
        .expect("traffic");
    wait_for(
        "the stuck transfer and the reorg in Prometheus",
        Duration::from_secs(30),
        || async {
            let stuck = prometheus.query("sum(chainsync_stuck_transfers) > 0").await;
            let deep = prometheus
                .query("sum(increase(chainsync_deep_reorgs_total[5m])) > 0")
                .await;
            (!stuck.is_empty() && !deep.is_empty()).then_some(())
        },
    )
    .await;

    // Every panel query of both dashboards, with the template variables set as a user would
    // (chain = devnet, instance = all), returns data.
    let mut empty = Vec::new();
    let mut checked = 0;
    for path in DASHBOARDS {
        let mut exprs = Vec::new();
        panel_exprs(&dashboard(path)["panels"], &mut exprs);
        for expr in exprs {
            let query = expr.replace("$chain", "devnet").replace("$instance", ".*");
            assert!(!query.contains('$'), "unsubstituted variable in {query}");
            checked += 1;
            if !has_numeric_sample(&prometheus.query(&query).await) {
                empty.push(format!("{path}: {query}"));
            }
        }
    }
    assert!(checked > 60, "only {checked} panel queries found");
    assert!(
        empty.is_empty(),
        "panel queries without data:\n{}",
        empty.join("\n")
    );

    // The shipped rules load and evaluate on the real series: the stuck transfer makes
    // StuckTransfers pending (it waits 5 minutes), the reorg fires ReorgBeyondConfirmations.
    let rules = prometheus.api("/api/v1/rules").await;
    let groups = rules["data"]["groups"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let rule_count: usize = groups
        .iter()
        .map(|g| g["rules"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(rule_count, alert_rules(&read(ALERT_RULES)).len());
    for group in &groups {
        for rule in group["rules"].as_array().cloned().unwrap_or_default() {
            assert_eq!(
                rule["health"], "ok",
                "rule {} is {}: {}",
                rule["name"], rule["health"], rule["lastError"]
            );
        }
    }
    let alerts = wait_for("the alerts", Duration::from_secs(20), || async {
        let alerts = prometheus.api("/api/v1/alerts").await["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let state = |name: &str| {
            alerts
                .iter()
                .find(|a| a["labels"]["alertname"] == name && a["labels"]["chain"] == "devnet")
                .map(|a| a["state"].as_str().unwrap_or_default().to_owned())
        };
        (state("StuckTransfers").as_deref() == Some("pending")
            && state("ReorgBeyondConfirmations").as_deref() == Some("firing"))
        .then_some(alerts)
    })
    .await;
    assert!(
        !alerts
            .iter()
            .any(|a| a["labels"]["alertname"] == "ChainsyncDown"),
        "ChainsyncDown while chainsync runs"
    );
    drop(chainsync);
}
