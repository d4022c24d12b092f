//! Reports: a self-contained HTML page (inline CSS and SVG, no scripts) and the same content
//! as Markdown: each run's scores with 95% intervals, per-category breakdowns, runs of the
//! same task side by side, a bar chart of relative scores and ratings with their intervals.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::Value;

use crate::ratings::Rating;
use crate::store::RunInfo;

/// The number a run is known by, with its interval: (metric name, value, lo, hi).
pub fn headline(run: &RunInfo) -> Option<(&'static str, f64, f64, f64)> {
    let m = &run.summary.as_ref()?["metrics"];
    let pick = |k: &'static str| -> Option<(&'static str, f64, f64, f64)> {
        let e = &m[k];
        Some((
            k,
            e["value"].as_f64()?,
            e["lo"].as_f64().unwrap_or(f64::NAN),
            e["hi"].as_f64().unwrap_or(f64::NAN),
        ))
    };
    match run.kind.as_str() {
        "multiple_choice" => pick("acc"),
        "generate" => pick("exact_match"),
        "judge_single" => pick("score"),
        _ => pick("relative_score").or_else(|| pick("win_rate_adjusted")),
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn fmt(x: f64) -> String {
    if x.is_nan() {
        "–".into()
    } else {
        format!("{x:.4}")
    }
}

fn metric_cells(metrics: &Value) -> Vec<(String, String)> {
    let mut out = vec![];
    if let Value::Object(o) = metrics {
        for (k, v) in o {
            let cell = if let Some(x) = v.get("value").and_then(Value::as_f64) {
                format!(
                    "{} [{}, {}] (n={})",
                    fmt(x),
                    fmt(v["lo"].as_f64().unwrap_or(f64::NAN)),
                    fmt(v["hi"].as_f64().unwrap_or(f64::NAN)),
                    v["n"]
                )
            } else if let Some(x) = v.as_f64() {
                if x.fract() == 0.0 {
                    format!("{x}")
                } else {
                    fmt(x)
                }
            } else {
                continue;
            };
            out.push((k.clone(), cell));
        }
    }
    out
}

/// Horizontal bars with whiskers: (label, value, lo, hi).
pub fn bar_chart(title: &str, rows: &[(String, f64, f64, f64)], reference: Option<f64>) -> String {
    let w = 640.0;
    let (left, right, row_h) = (230.0, 70.0, 26.0);
    let h = 40.0 + row_h * rows.len() as f64;
    let finite = |x: f64| if x.is_finite() { Some(x) } else { None };
    let hi = rows
        .iter()
        .filter_map(|r| finite(r.3).or(finite(r.1)))
        .fold(reference.unwrap_or(0.0), f64::max)
        .max(1e-9)
        * 1.05;
    let lo = rows
        .iter()
        .filter_map(|r| finite(r.2).or(finite(r.1)))
        .fold(0.0f64, f64::min);
    let x = |v: f64| left + (v - lo) / (hi - lo) * (w - left - right);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="{t}"><text x="4" y="16" font-weight="bold">{t}</text>"#,
        t = esc(title)
    );
    for (i, (label, v, l, u)) in rows.iter().enumerate() {
        let y = 28.0 + i as f64 * row_h;
        let _ = write!(
            s,
            r#"<text x="{tx}" y="{ty}" text-anchor="end" font-size="12">{}</text>"#,
            esc(label),
            tx = left - 6.0,
            ty = y + 14.0
        );
        if v.is_finite() {
            let _ = write!(
                s,
                r##"<rect x="{}" y="{y}" width="{:.1}" height="18" fill="#6b8fd6"/>"##,
                x(lo.min(0.0).max(lo)),
                (x(*v) - x(lo.min(0.0).max(lo))).max(0.0)
            );
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{}" font-size="11">{}</text>"#,
                x(*v) + 4.0,
                y + 13.0,
                fmt(*v)
            );
        }
        if l.is_finite() && u.is_finite() {
            let ym = y + 9.0;
            let _ = write!(
                s,
                r##"<line x1="{:.1}" x2="{:.1}" y1="{ym}" y2="{ym}" stroke="#222"/><line x1="{:.1}" x2="{:.1}" y1="{}" y2="{}" stroke="#222"/><line x1="{:.1}" x2="{:.1}" y1="{}" y2="{}" stroke="#222"/>"##,
                x(*l),
                x(*u),
                x(*l),
                x(*l),
                ym - 5.0,
                ym + 5.0,
                x(*u),
                x(*u),
                ym - 5.0,
                ym + 5.0
            );
        }
    }
    if let Some(r) = reference {
        let _ = write!(
            s,
            r##"<line x1="{0:.1}" x2="{0:.1}" y1="22" y2="{1}" stroke="#c33" stroke-dasharray="4 3"/>"##,
            x(r),
            h - 4.0
        );
    }
    s.push_str("</svg>");
    s
}

/// Ratings as points with interval whiskers, best first.
pub fn rating_chart(title: &str, ratings: &[Rating]) -> String {
    let rows: Vec<(String, f64, f64, f64)> = ratings
        .iter()
        .map(|r| (r.model.clone(), r.rating, r.lo, r.hi))
        .collect();
    let w = 640.0;
    let (left, right, row_h) = (230.0, 70.0, 24.0);
    let h = 40.0 + row_h * rows.len() as f64;
    let lo = rows
        .iter()
        .map(|r| r.2.min(r.1))
        .fold(f64::INFINITY, f64::min)
        - 10.0;
    let hi = rows
        .iter()
        .map(|r| r.3.max(r.1))
        .fold(f64::NEG_INFINITY, f64::max)
        + 10.0;
    let x = |v: f64| left + (v - lo) / (hi - lo).max(1e-9) * (w - left - right);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="{t}"><text x="4" y="16" font-weight="bold">{t}</text>"#,
        t = esc(title)
    );
    for (i, (label, v, l, u)) in rows.iter().enumerate() {
        let y = 36.0 + i as f64 * row_h;
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end" font-size="12">{}</text>"#,
            left - 6.0,
            y + 4.0,
            esc(label)
        );
        let _ = write!(
            s,
            r##"<line x1="{:.1}" x2="{:.1}" y1="{y}" y2="{y}" stroke="#222"/><circle cx="{:.1}" cy="{y}" r="4" fill="#d6803b"/><text x="{:.1}" y="{}" font-size="11">{:.0}</text>"##,
            x(*l),
            x(*u),
            x(*v),
            x(u.max(*v)) + 6.0,
            y + 4.0,
            v
        );
    }
    s.push_str("</svg>");
    s
}

/// Ratings computed for the report, by method name.
pub type RatingSets = Vec<(String, Vec<Rating>)>;

const CSS: &str = "body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;font-size:14px}th{background:#f3f3f3}code{font-size:12px}h2{margin-top:2em;border-bottom:1px solid #ddd}";

/// The HTML page and the Markdown text for these runs.
pub fn render(runs: &[RunInfo], ratings: &RatingSets) -> (String, String) {
    let mut h = String::new();
    let mut md = String::new();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>herd eval report</title><style>{CSS}</style></head><body><h1>herd eval report</h1>"
    );
    md.push_str("# herd eval report\n\n");

    // Overview.
    h.push_str("<h2>Runs</h2><table><tr><th>run</th><th>task</th><th>model</th><th>metric</th><th>value [95% CI]</th><th>items</th><th>model sha256</th><th>created</th></tr>");
    md.push_str("## Runs\n\n| run | task | model | metric | value [95% CI] | items | model sha256 | created |\n|---|---|---|---|---|---|---|---|\n");
    for r in runs {
        let n = r
            .summary
            .as_ref()
            .and_then(|s| s["n"].as_u64())
            .unwrap_or(0);
        let (m, v) = match headline(r) {
            Some((m, v, lo, hi)) => (m, format!("{} [{}, {}]", fmt(v), fmt(lo), fmt(hi))),
            None => ("–", "unfinished".into()),
        };
        let sha: String = r.model_sha256.chars().take(16).collect();
        let _ = write!(
            h,
            "<tr><td><code>{}</code></td><td>{} v{}</td><td>{}</td><td>{m}</td><td>{v}</td><td>{n}</td><td><code>{}</code></td><td>{}</td></tr>",
            esc(&r.id),
            esc(&r.task),
            esc(&r.task_version),
            esc(&r.model),
            esc(&sha),
            esc(&r.created)
        );
        let _ = writeln!(
            md,
            "| `{}` | {} v{} | {} | {m} | {v} | {n} | `{sha}` | {} |",
            r.id, r.task, r.task_version, r.model, r.created
        );
    }
    h.push_str("</table>");
    md.push('\n');

    // Side by side: tasks × models.
    let mut by_task: BTreeMap<&str, Vec<&RunInfo>> = BTreeMap::new();
    for r in runs {
        by_task.entry(r.task.as_str()).or_default().push(r);
    }
    for (task, rs) in &by_task {
        if rs.len() < 2 {
            continue;
        }
        let _ = write!(h, "<h2>{} side by side</h2>", esc(task));
        let _ = writeln!(md, "## {task} side by side\n");
        let cats: Vec<String> = {
            let mut c: Vec<String> = rs
                .iter()
                .flat_map(|r| {
                    r.summary
                        .as_ref()
                        .and_then(|s| s["categories"].as_object())
                        .map(|o| o.keys().cloned().collect::<Vec<_>>())
                        .unwrap_or_default()
                })
                .collect();
            c.sort();
            c.dedup();
            c
        };
        h.push_str("<table><tr><th>category</th>");
        md.push_str("| category |");
        for r in rs {
            let _ = write!(
                h,
                "<th>{}<br><code>{}</code></th>",
                esc(&r.model),
                esc(&r.id)
            );
            let _ = write!(md, " {} (`{}`) |", r.model, r.id);
        }
        h.push_str("</tr>");
        md.push('\n');
        md.push_str(&"|---".repeat(rs.len() + 1));
        md.push_str("|\n");
        let rows = std::iter::once("(all)".to_string()).chain(cats);
        for c in rows {
            let _ = write!(h, "<tr><td>{}</td>", esc(&c));
            let _ = write!(md, "| {c} |");
            for r in rs {
                let v = headline_in(r, if c == "(all)" { None } else { Some(&c) });
                let _ = write!(h, "<td>{}</td>", esc(&v));
                let _ = write!(md, " {v} |");
            }
            h.push_str("</tr>");
            md.push('\n');
        }
        h.push_str("</table>");
        md.push('\n');
    }

    // Relative scores.
    let rel: Vec<(String, f64, f64, f64)> = runs
        .iter()
        .filter_map(|r| {
            let e = &r.summary.as_ref()?["metrics"]["relative_score"];
            let base = r.summary.as_ref()?["metrics"]["baseline"]
                .as_str()
                .map(str::to_string);
            Some((
                format!(
                    "{}{}",
                    r.model,
                    base.map(|b| format!(" / {b}")).unwrap_or_default()
                ),
                e["value"].as_f64()?,
                e["lo"].as_f64()?,
                e["hi"].as_f64()?,
            ))
        })
        .collect();
    if !rel.is_empty() {
        h.push_str("<h2>Relative scores</h2><p>The model's total score over its baseline's (1.0: as good as the baseline), with 95% bootstrap intervals over questions.</p>");
        h.push_str(&bar_chart("relative score", &rel, Some(1.0)));
        md.push_str("## Relative scores\n\n| model | relative score [95% CI] |\n|---|---|\n");
        for (m, v, lo, hi) in &rel {
            let _ = writeln!(md, "| {m} | {} [{}, {}] |", fmt(*v), fmt(*lo), fmt(*hi));
        }
        md.push('\n');
    }

    for (method, rs) in ratings {
        let _ = write!(h, "<h2>Ratings: {}</h2>", esc(method));
        h.push_str(&rating_chart(method, rs));
        h.push_str("<table><tr><th>model</th><th>rating</th><th>95% CI</th><th>battles</th></tr>");
        let _ = writeln!(
            md,
            "## Ratings: {method}\n\n| model | rating | 95% CI | battles |\n|---|---|---|---|"
        );
        for r in rs {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{:.1}</td><td>[{:.1}, {:.1}]</td><td>{}</td></tr>",
                esc(&r.model),
                r.rating,
                r.lo,
                r.hi,
                r.battles
            );
            let _ = writeln!(
                md,
                "| {} | {:.1} | [{:.1}, {:.1}] | {} |",
                r.model, r.rating, r.lo, r.hi, r.battles
            );
        }
        h.push_str("</table>");
        md.push('\n');
    }

    // Per run detail.
    for r in runs {
        let Some(s) = &r.summary else { continue };
        let _ = write!(
            h,
            "<h2>{} on {}</h2><p>run <code>{}</code>, backend {}, settings <code>{}</code></p>",
            esc(&r.model),
            esc(&r.task),
            esc(&r.id),
            esc(&r.backend),
            esc(&r.settings.to_string())
        );
        let _ = writeln!(
            md,
            "## {} on {}\n\nrun `{}`, backend {}, settings `{}`\n",
            r.model, r.task, r.id, r.backend, r.settings
        );
        h.push_str("<table><tr><th>metric</th><th>value [95% CI]</th></tr>");
        md.push_str("| metric | value [95% CI] |\n|---|---|\n");
        for (k, v) in metric_cells(&s["metrics"]) {
            let _ = write!(h, "<tr><td>{}</td><td>{}</td></tr>", esc(&k), esc(&v));
            let _ = writeln!(md, "| {k} | {v} |");
        }
        h.push_str("</table>");
        md.push('\n');
        if let Some(cats) = s["categories"].as_object().filter(|c| c.len() > 1) {
            let bars: Vec<(String, f64, f64, f64)> = cats
                .iter()
                .filter_map(|(c, m)| {
                    let (k, ..) = headline(r)?;
                    let e = &m[k];
                    Some((
                        c.clone(),
                        e["value"].as_f64()?,
                        e["lo"].as_f64().unwrap_or(f64::NAN),
                        e["hi"].as_f64().unwrap_or(f64::NAN),
                    ))
                })
                .collect();
            if let Some((k, ..)) = headline(r) {
                h.push_str(&bar_chart(&format!("{k} by category"), &bars, None));
                let _ = writeln!(md, "| category | {k} [95% CI] | n |\n|---|---|---|");
                for (c, m) in cats {
                    let e = &m[k];
                    let _ = writeln!(
                        md,
                        "| {c} | {} [{}, {}] | {} |",
                        fmt(e["value"].as_f64().unwrap_or(f64::NAN)),
                        fmt(e["lo"].as_f64().unwrap_or(f64::NAN)),
                        fmt(e["hi"].as_f64().unwrap_or(f64::NAN)),
                        e["n"]
                    );
                }
                md.push('\n');
            }
        }
    }
    h.push_str("</body></html>\n");
    (h, md)
}

fn headline_in(r: &RunInfo, cat: Option<&str>) -> String {
    let Some((k, ..)) = headline(r) else {
        return "–".into();
    };
    let Some(s) = &r.summary else {
        return "–".into();
    };
    let m = match cat {
        None => &s["metrics"],
        Some(c) => &s["categories"][c],
    };
    match m[k]["value"].as_f64() {
        Some(v) => format!(
            "{} ±{}",
            fmt(v),
            fmt(1.96 * m[k]["stderr"].as_f64().unwrap_or(f64::NAN))
        ),
        None => "–".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::summarize;
    use crate::store::ItemRow;
    use crate::task::Kind;
    use serde_json::json;

    fn run(id: &str, model: &str, right: &[(&str, bool)]) -> RunInfo {
        let rows: Vec<ItemRow> = right
            .iter()
            .enumerate()
            .map(|(i, (cat, ok))| ItemRow {
                key: format!("q{i}"),
                seq: i as i64,
                category: cat.to_string(),
                prompt: json!({}),
                output: json!({}),
                score: Some(*ok as u8 as f64),
                detail: json!({"acc": *ok as u8, "acc_norm": *ok as u8}),
            })
            .collect();
        RunInfo {
            id: id.into(),
            task: "quiz".into(),
            task_version: "1".into(),
            kind: "multiple_choice".into(),
            task_sha256: String::new(),
            task_text: String::new(),
            model: model.into(),
            model_sha256: "ab".repeat(32),
            backend: "local".into(),
            settings: json!({"seed": 1}),
            created: "2026-01-01T00:00:00Z".into(),
            finished: Some("2026-01-01T00:01:00Z".into()),
            summary: Some(summarize(Kind::MultipleChoice, &rows, 100, 1)),
        }
    }

    #[test]
    fn html_is_self_contained_and_markdown_has_intervals_categories_and_comparison() {
        let a = run(
            "r1",
            "small<model>",
            &[
                ("maths", true),
                ("maths", false),
                ("history", true),
                ("history", true),
            ],
        );
        let b = run(
            "r2",
            "big",
            &[
                ("maths", true),
                ("maths", true),
                ("history", true),
                ("history", false),
            ],
        );
        let ratings = vec![(
            "online Elo".to_string(),
            vec![Rating {
                model: "big".into(),
                rating: 1010.0,
                median: 1010.0,
                lo: 990.0,
                hi: 1030.0,
                battles: 4,
            }],
        )];
        let (html, md) = render(&[a, b], &ratings);
        // No scripts, stylesheets or images from elsewhere; names are escaped.
        assert!(!html.contains("<script") && !html.contains("<link") && !html.contains("src="));
        assert_eq!(
            html.matches("http").count(),
            html.matches("http://www.w3.org/2000/svg").count()
        );
        assert!(html.contains("small&lt;model&gt;") && !html.contains("small<model>"));
        assert!(
            html.contains("<svg")
                && html.contains("acc by category")
                && html.contains("Ratings: online Elo")
        );
        // Scores with intervals, per category, and the two runs side by side.
        assert!(
            md.contains("| `r1` | quiz v1 | small<model> | acc | 0.7500 ["),
            "{md}"
        );
        assert!(md.contains("## quiz side by side"), "{md}");
        assert!(md.contains("| maths | 0.5000 ±"), "{md}");
        assert!(
            md.contains("| history | 1.0000 [1.0000, 1.0000] | 2 |"),
            "{md}"
        );
        assert!(
            md.contains("| big | 1010.0 | [990.0, 1030.0] | 4 |"),
            "{md}"
        );
    }
}
