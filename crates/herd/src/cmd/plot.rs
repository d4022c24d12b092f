//! Loss curves as a self-contained SVG (no plotting library: a few lines and labels).

use std::path::Path;

use anyhow::{Context, Result, bail};
use herd_train::trainer::StepReport;

/// Reads a run's `metrics.jsonl` and draws training and held-out loss against steps.
pub fn loss_svg(metrics: &Path, out: &Path) -> Result<()> {
    let text = std::fs::read_to_string(metrics)
        .with_context(|| format!("reading {}", metrics.display()))?;
    let mut rows = vec![];
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let r: StepReport = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not a step report", metrics.display(), i + 1))?;
        rows.push(r);
    }
    if rows.is_empty() {
        bail!("{} has no steps yet", metrics.display());
    }
    let train: Vec<(f64, f64)> = rows.iter().map(|r| (r.step as f64, r.loss)).collect();
    let eval: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| r.eval_loss.map(|e| (r.step as f64, e)))
        .collect();
    herd_model::io::atomic_write(out, svg(&train, &eval).as_bytes())
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

fn svg(train: &[(f64, f64)], eval: &[(f64, f64)]) -> String {
    let (w, h, left, right, top, bottom) = (800.0, 420.0, 70.0, 20.0, 30.0, 50.0);
    let all = train.iter().chain(eval);
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-3);
    let (y0, y1) = (y0 - pad, y1 + pad);
    let px = |x: f64| left + (x - x0) / (x1 - x0) * (w - left - right);
    let py = |y: f64| top + (1.0 - (y - y0) / (y1 - y0)) * (h - top - bottom);
    let path = |pts: &[(f64, f64)]| {
        pts.iter()
            .enumerate()
            .map(|(i, &(x, y))| {
                format!(
                    "{}{:.1},{:.1}",
                    if i == 0 { "M" } else { "L" },
                    px(x),
                    py(y)
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    for i in 0..=5 {
        let y = y0 + (y1 - y0) * i as f64 / 5.0;
        s += &format!(
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{y:.3}</text>\n",
            w - right,
            py(y),
            py(y),
            left - 6.0,
            py(y) + 4.0
        );
        let x = x0 + (x1 - x0) * i as f64 / 5.0;
        s += &format!(
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{x:.0}</text>\n",
            px(x),
            h - bottom + 18.0
        );
    }
    s += &format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">step</text>\n",
        (left + w - right) / 2.0,
        h - 10.0
    );
    s += &format!(
        "<text x=\"16\" y=\"{}\" transform=\"rotate(-90 16 {})\" text-anchor=\"middle\">loss</text>\n",
        (top + h - bottom) / 2.0,
        (top + h - bottom) / 2.0
    );
    s += &format!(
        "<path d=\"{}\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\"/>\n",
        path(train)
    );
    if !eval.is_empty() {
        s += &format!(
            "<path d=\"{}\" fill=\"none\" stroke=\"#d62728\" stroke-width=\"2\"/>\n",
            path(eval)
        );
        for &(x, y) in eval {
            s += &format!(
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#d62728\"/>\n",
                px(x),
                py(y)
            );
        }
    }
    s += &format!(
        "<rect x=\"{}\" y=\"8\" width=\"12\" height=\"3\" fill=\"#1f77b4\"/><text x=\"{}\" y=\"14\">training loss</text><rect x=\"{}\" y=\"8\" width=\"12\" height=\"3\" fill=\"#d62728\"/><text x=\"{}\" y=\"14\">held-out loss</text>\n</svg>\n",
        w - 260.0,
        w - 244.0,
        w - 140.0,
        w - 124.0
    );
    s
}
