//! Reports: JSON results and a self-contained HTML page with SVG plots (throughput vs
//! frame size, latency distribution, PLR vs offered load), also written as separate
//! `.svg` files.

use crate::rfc2544::Rfc2544Report;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// One plotted series.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// Axis scale.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Linear,
    Log10,
}

const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let span = (hi - lo).max(f64::MIN_POSITIVE);
    let raw = span / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut v = Vec::new();
    while t <= hi + step * 1e-9 && v.len() < 50 {
        v.push(t);
        t += step;
    }
    v
}

fn fmt_num(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else if x.abs() >= 1e6 {
        format!("{:.1}M", x / 1e6)
    } else if x.abs() >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else if x.abs() >= 1.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.3}")
    }
}

/// An SVG line chart with markers.
pub fn line_chart(
    title: &str,
    xlabel: &str,
    ylabel: &str,
    series: &[Series],
    xscale: Scale,
) -> String {
    let (w, h) = (640.0, 360.0);
    let (ml, mr, mt, mb) = (70.0, 20.0, 40.0, 50.0);
    let pw = w - ml - mr;
    let ph = h - mt - mb;
    let tx = |x: f64| match xscale {
        Scale::Linear => x,
        Scale::Log10 => x.max(1e-9).log10(),
    };
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = write!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        w / 2.0,
        esc(title)
    );
    if pts.is_empty() {
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">no data</text></svg>"#,
            w / 2.0,
            h / 2.0
        );
        return s;
    }
    let (mut x0, mut x1) = (f64::MAX, f64::MIN);
    let (mut y0, mut y1) = (0.0f64, f64::MIN);
    for (x, y) in &pts {
        x0 = x0.min(tx(*x));
        x1 = x1.max(tx(*x));
        y0 = y0.min(*y);
        y1 = y1.max(*y);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    y1 *= 1.05;
    let px = |x: f64| ml + (tx(x) - x0) / (x1 - x0) * pw;
    let py = |y: f64| mt + ph - (y - y0) / (y1 - y0) * ph;
    // axes and grid
    let _ = write!(
        s,
        "<rect x=\"{ml}\" y=\"{mt}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#444\"/>"
    );
    for t in nice_ticks(y0, y1, 5) {
        let y = py(t);
        let _ = write!(
            s,
            "<line x1=\"{ml}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            ml + pw,
            ml - 6.0,
            y + 4.0,
            fmt_num(t)
        );
    }
    let xt: Vec<f64> = match xscale {
        Scale::Linear => nice_ticks(x0, x1, 6),
        Scale::Log10 => (x0.floor() as i32..=x1.ceil() as i32)
            .map(|e| 10f64.powi(e))
            .filter(|v| tx(*v) >= x0 - 1e-9 && tx(*v) <= x1 + 1e-9)
            .collect(),
    };
    for t in xt {
        let x = px(t);
        let _ = write!(
            s,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{mt}\" y2=\"{}\" stroke=\"#ddd\"/><text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            mt + ph,
            mt + ph + 16.0,
            fmt_num(t)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        ml + pw / 2.0,
        h - 10.0,
        esc(xlabel)
    );
    let _ = write!(
        s,
        r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">{}</text>"#,
        mt + ph / 2.0,
        mt + ph / 2.0,
        esc(ylabel)
    );
    for (i, ser) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let path: Vec<String> = ser
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        for p in &path {
            if let Some((x, y)) = p.split_once(',') {
                let _ = write!(s, r#"<circle cx="{x}" cy="{y}" r="3" fill="{c}"/>"#);
            }
        }
        let ly = mt + 14.0 + 16.0 * i as f64;
        let _ = write!(
            s,
            r#"<rect x="{}" y="{}" width="10" height="10" fill="{c}"/><text x="{}" y="{}">{}</text>"#,
            ml + 10.0,
            ly - 9.0,
            ml + 24.0,
            ly,
            esc(&ser.name)
        );
    }
    s.push_str("</svg>");
    s
}

/// The three RFC 2544 plots as (file name, SVG).
pub fn rfc2544_plots(r: &Rfc2544Report) -> Vec<(String, String)> {
    let thr = Series {
        name: "throughput (Mpps)".into(),
        points: r
            .results
            .iter()
            .map(|s| (s.frame_size as f64, s.throughput_pps / 1e6))
            .collect(),
    };
    let gbps = Series {
        name: "throughput (Gbit/s)".into(),
        points: r
            .results
            .iter()
            .map(|s| (s.frame_size as f64, s.throughput_mbps / 1e3))
            .collect(),
    };
    let throughput = line_chart(
        &format!("RFC 2544 §26.1 throughput — {}", r.dut),
        "frame size (bytes)",
        "Mpps / Gbit/s",
        &[thr, gbps],
        Scale::Linear,
    );
    let lat: Vec<Series> = r
        .results
        .iter()
        .filter_map(|s| {
            s.latency.as_ref().map(|l| Series {
                name: format!("{} B", s.frame_size),
                points: l.latency_cdf.iter().map(|(us, p)| (*p, *us)).collect(),
            })
        })
        .collect();
    let latency = line_chart(
        "Latency at throughput (§26.2): µs by percentile",
        "percentile",
        "latency (µs)",
        &lat,
        Scale::Linear,
    );
    let plr: Vec<Series> = r
        .results
        .iter()
        .map(|s| {
            let mut pts: Vec<(f64, f64)> = s
                .trials
                .iter()
                .map(|t| (t.offered_pps / 1e6, t.plr * 100.0))
                .chain(s.loss_curve.iter().map(|(o, p)| (o / 1e6, p * 100.0)))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series {
                name: format!("{} B", s.frame_size),
                points: pts,
            }
        })
        .collect();
    let plr = line_chart(
        "Frame loss vs offered load (§26.3)",
        "offered load (Mpps)",
        "loss (%)",
        &plr,
        Scale::Linear,
    );
    vec![
        ("throughput.svg".into(), throughput),
        ("latency.svg".into(), latency),
        ("plr.svg".into(), plr),
    ]
}

/// Writes `report.json`, the SVG plots and `report.html` into `dir`; returns the HTML
/// path.
pub fn write_rfc2544(dir: &Path, r: &Rfc2544Report) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(r)?)?;
    let plots = rfc2544_plots(r);
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>RFC 2544 — {}</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}</style></head><body>\
         <h1>RFC 2544 benchmark — {}</h1><p>Trial duration {:.1} s, loss threshold {} %, \
         resolution {} %.</p><table><tr><th>frame (B)</th><th>throughput (Mpps)</th>\
         <th>Mbit/s</th><th>lat p50 (µs)</th><th>p99</th><th>p99.9</th><th>max</th><th>trials</th></tr>",
        esc(&r.dut),
        esc(&r.dut),
        r.config.duration.as_secs_f64(),
        r.config.plr * 100.0,
        r.config.resolution * 100.0
    );
    for s in &r.results {
        let l = s.latency.as_ref().map(|l| l.latency).unwrap_or_default();
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{:.3}</td><td>{:.1}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{}</td></tr>",
            s.frame_size,
            s.throughput_pps / 1e6,
            s.throughput_mbps,
            l.p50_us,
            l.p99_us,
            l.p999_us,
            l.max_us,
            s.trials.len()
        );
    }
    html.push_str("</table>");
    for (name, svg) in &plots {
        std::fs::write(dir.join(name), svg)?;
        let _ = write!(html, "<h2>{}</h2>{}", esc(name), svg);
    }
    html.push_str("</body></html>");
    let p = dir.join("report.html");
    std::fs::write(&p, html)?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_has_points_and_labels() {
        let svg = line_chart(
            "t<1>",
            "x",
            "y",
            &[Series {
                name: "a".into(),
                points: vec![(1.0, 2.0), (10.0, 3.0), (100.0, 1.0)],
            }],
            Scale::Log10,
        );
        assert!(svg.starts_with("<svg"));
        assert!(svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains("t&lt;1&gt;"));
        let empty = line_chart("e", "x", "y", &[], Scale::Linear);
        assert!(empty.contains("no data"));
    }
}
