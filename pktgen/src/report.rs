//! Reports: JSON results and a self-contained HTML page (run metadata: command line,
//! start time, machine, git commit; the verdict per frame size; every trial and which
//! side limited it) with SVG plots (throughput vs frame size in Mpps and, on separate
//! axes, Gbit/s; latency by percentile on log axes; loss vs the offered load), also
//! written as separate `.svg` files.

use crate::rfc2544::{LimitedBy, Rfc2544Report};
use anyhow::Context;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// One plotted series.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Hollow markers and a dashed line (e.g. generator-limited points).
    pub hollow: bool,
    /// Colour index (default: the series' position), to pair related series.
    pub color: Option<usize>,
}

impl Series {
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.into(),
            points,
            hollow: false,
            color: None,
        }
    }
}

/// Axis scale.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Linear,
    Log10,
    /// Percentiles (0..100) by their nines: 90, 99, 99.9, ... equally spaced (a log
    /// axis of 1 / (1 - p)); values above 99.9999 are drawn at 99.9999.
    Nines,
}

impl Scale {
    fn map(self, v: f64) -> f64 {
        match self {
            Scale::Linear => v,
            Scale::Log10 => v.log10(),
            Scale::Nines => -(1.0 - v.clamp(0.0, 99.9999) / 100.0).log10(),
        }
    }

    /// Points a log axis cannot show (zero or negative) are left out.
    fn shows(self, v: f64) -> bool {
        v.is_finite() && (self != Scale::Log10 || v > 0.0)
    }

    /// Axis range in mapped space and its ticks (mapped position, label).
    fn axis(self, lo: f64, hi: f64, from_zero: bool) -> (f64, f64, Vec<(f64, String)>) {
        match self {
            Scale::Linear => {
                let lo = if from_zero { lo.min(0.0) } else { lo };
                let mut hi = if hi <= lo { lo + 1.0 } else { hi };
                if from_zero {
                    hi *= 1.05;
                }
                let t = nice_ticks(lo, hi, 6)
                    .into_iter()
                    .map(|v| (v, fmt_num(v)))
                    .collect();
                (lo, hi, t)
            }
            Scale::Log10 => {
                let (a, b) = (lo.floor(), hi.ceil().max(lo.floor() + 1.0));
                let t = (a as i32..=b as i32)
                    .map(|e| (e as f64, fmt_num(10f64.powi(e))))
                    .collect();
                (a, b, t)
            }
            Scale::Nines => {
                let b = hi.ceil().max(1.0);
                let t = (0..=b as i32)
                    .map(|n| {
                        let label = match n {
                            0 => "0".to_string(),
                            1 => "90".to_string(),
                            n => {
                                format!("99{}", if n > 2 { "." } else { "" })
                                    + &"9".repeat((n - 2) as usize)
                            }
                        };
                        (n as f64, label)
                    })
                    .collect();
                (0.0, b, t)
            }
        }
    }
}

const COLORS: [&str; 7] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf",
];

/// HTML/XML text escape.
pub fn esc(s: &str) -> String {
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

/// An SVG line chart with markers and a linear x axis from its data, a y axis from 0.
pub fn line_chart(
    title: &str,
    xlabel: &str,
    ylabel: &str,
    series: &[Series],
    xscale: Scale,
) -> String {
    chart(title, xlabel, ylabel, series, xscale, Scale::Linear)
}

/// An SVG line chart with markers, with a scale for each axis (a linear y axis starts
/// at 0). Points a log axis cannot show are left out.
pub fn chart(
    title: &str,
    xlabel: &str,
    ylabel: &str,
    series: &[Series],
    xscale: Scale,
    yscale: Scale,
) -> String {
    // the legend sits between the title and the plot, two entries a row
    let rows = series.len().div_ceil(2) as f64;
    let (w, h) = (640.0, 330.0 + 16.0 * rows);
    let (ml, mr, mt, mb) = (70.0, 20.0, 40.0 + 16.0 * rows, 50.0);
    let pw = w - ml - mr;
    let ph = h - mt - mb;
    let keep = |(x, y): &(f64, f64)| xscale.shows(*x) && yscale.shows(*y);
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(keep)
        .map(|(x, y)| (xscale.map(x), yscale.map(y)))
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
    let (mut y0, mut y1) = (f64::MAX, f64::MIN);
    for (x, y) in &pts {
        x0 = x0.min(*x);
        x1 = x1.max(*x);
        y0 = y0.min(*y);
        y1 = y1.max(*y);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if xscale == Scale::Linear {
        // a little room so the end points do not sit on the frame
        let pad = (x1 - x0) * 0.03;
        x0 -= pad;
        x1 += pad;
    }
    let (x0, x1, xt) = xscale.axis(x0, x1, false);
    let (y0, y1, yt) = yscale.axis(y0, y1, true);
    let px = |x: f64| ml + (x - x0) / (x1 - x0) * pw;
    let py = |y: f64| mt + ph - (y - y0) / (y1 - y0) * ph;
    // axes and grid
    let _ = write!(
        s,
        "<rect x=\"{ml}\" y=\"{mt}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#444\"/>"
    );
    for (t, label) in yt {
        let y = py(t);
        let _ = write!(
            s,
            "<line x1=\"{ml}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            ml + pw,
            ml - 6.0,
            y + 4.0,
            esc(&label)
        );
    }
    for (t, label) in xt {
        if t < x0 - 1e-9 || t > x1 + 1e-9 {
            continue;
        }
        let x = px(t);
        let _ = write!(
            s,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{mt}\" y2=\"{}\" stroke=\"#ddd\"/><text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            mt + ph,
            mt + ph + 16.0,
            esc(&label)
        );
    }
    let scale_note = |sc: Scale| match sc {
        Scale::Linear => "",
        Scale::Log10 => " (log scale)",
        Scale::Nines => " (log scale of nines)",
    };
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}{}</text>"#,
        ml + pw / 2.0,
        h - 10.0,
        esc(xlabel),
        scale_note(xscale)
    );
    let _ = write!(
        s,
        r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">{}{}</text>"#,
        mt + ph / 2.0,
        mt + ph / 2.0,
        esc(ylabel),
        scale_note(yscale)
    );
    for (i, ser) in series.iter().enumerate() {
        let c = COLORS[ser.color.unwrap_or(i) % COLORS.len()];
        let path: Vec<String> = ser
            .points
            .iter()
            .filter(|p| keep(p))
            .map(|(x, y)| format!("{:.1},{:.1}", px(xscale.map(*x)), py(yscale.map(*y))))
            .collect();
        let dash = if ser.hollow {
            r#" stroke-dasharray="5,4""#
        } else {
            ""
        };
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2"{dash} points="{}"/>"#,
            path.join(" ")
        );
        for p in &path {
            if let Some((x, y)) = p.split_once(',') {
                if ser.hollow {
                    let _ = write!(
                        s,
                        r#"<circle cx="{x}" cy="{y}" r="4" fill="white" stroke="{c}" stroke-width="2"/>"#
                    );
                } else {
                    let _ = write!(s, r#"<circle cx="{x}" cy="{y}" r="3" fill="{c}"/>"#);
                }
            }
        }
        let ly = 44.0 + 16.0 * (i / 2) as f64;
        let lx = ml + (i % 2) as f64 * pw / 2.0;
        let _ = write!(
            s,
            r#"<rect x="{}" y="{}" width="10" height="10" fill="{}" stroke="{c}"/><text x="{}" y="{}">{}</text>"#,
            lx,
            ly - 9.0,
            if ser.hollow { "white" } else { c },
            lx + 14.0,
            ly,
            esc(&ser.name)
        );
    }
    s.push_str("</svg>");
    s
}

/// The RFC 2544 plots as (file name, SVG): throughput in Mpps and in Gbit/s (each on
/// its own axes; generator-limited frame sizes appear only as the generator's ceiling,
/// never as a DUT figure), latency by percentile (log axes) and frame loss vs the
/// load the generator actually offered.
pub fn rfc2544_plots(r: &Rfc2544Report) -> Vec<(String, String)> {
    let dut_pts = |f: &dyn Fn(f64, u16) -> f64| -> Vec<(f64, f64)> {
        r.results
            .iter()
            .filter_map(|s| {
                s.summary
                    .throughput
                    .map(|t| (s.frame_size as f64, f(t, s.frame_size)))
            })
            .collect()
    };
    let gen_pts = |f: &dyn Fn(f64, u16) -> f64| -> Vec<(f64, f64)> {
        r.results
            .iter()
            .filter(|s| s.summary.generator_limited)
            .filter_map(|s| {
                s.summary
                    .generator_max_pps
                    .map(|g| (s.frame_size as f64, f(g, s.frame_size)))
            })
            .collect()
    };
    let mpps = |pps: f64, _: u16| pps / 1e6;
    let gbps = |pps: f64, fs: u16| pps * fs as f64 * 8.0 / 1e9;
    let with_gen = |name: &str, dut: Vec<(f64, f64)>, gen: Vec<(f64, f64)>| {
        let mut v = vec![Series::new(name, dut)];
        if !gen.is_empty() {
            let mut g = Series::new("generator ceiling (generator-limited: no DUT figure)", gen);
            g.hollow = true;
            v.push(g);
        }
        v
    };
    let throughput = chart(
        &format!("RFC 2544 §26.1 throughput — {}", r.dut),
        "frame size (bytes)",
        "Mpps",
        &with_gen("DUT throughput (Mpps)", dut_pts(&mpps), gen_pts(&mpps)),
        Scale::Linear,
        Scale::Linear,
    );
    let throughput_gbps = chart(
        &format!("RFC 2544 §26.1 throughput, L2 incl. FCS — {}", r.dut),
        "frame size (bytes)",
        "Gbit/s",
        &with_gen("DUT throughput (Gbit/s)", dut_pts(&gbps), gen_pts(&gbps)),
        Scale::Linear,
        Scale::Linear,
    );
    let lat: Vec<Series> = r
        .results
        .iter()
        .filter_map(|s| {
            s.latency.as_ref().map(|l| {
                Series::new(
                    format!("{} B", s.frame_size),
                    l.latency_cdf.iter().map(|(us, p)| (*p, *us)).collect(),
                )
            })
        })
        .collect();
    let latency = chart(
        "Latency at throughput (§26.2): µs by percentile",
        "percentile",
        "latency (µs)",
        &lat,
        Scale::Nines,
        Scale::Log10,
    );
    let mut plr = Vec::new();
    for (i, s) in r.results.iter().enumerate() {
        let all = s
            .trials
            .iter()
            .map(|t| (t.tx_pps, t.plr, t.limited_by))
            .chain(
                s.loss_sweep
                    .iter()
                    .map(|p| (p.offered_pps, p.plr, p.limited_by)),
            );
        let (mut ok, mut gen): (Vec<_>, Vec<_>) =
            all.partition(|(_, _, by)| *by != LimitedBy::Generator);
        for v in [&mut ok, &mut gen] {
            v.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        let pts = |v: Vec<(f64, f64, LimitedBy)>| -> Vec<(f64, f64)> {
            v.into_iter()
                .map(|(o, p, _)| (o / 1e6, p * 100.0))
                .collect()
        };
        let mut o = Series::new(format!("{} B", s.frame_size), pts(ok));
        o.color = Some(i);
        plr.push(o);
        if !gen.is_empty() {
            let mut g = Series::new(format!("{} B generator-limited", s.frame_size), pts(gen));
            g.hollow = true;
            g.color = Some(i);
            plr.push(g);
        }
    }
    let plr = chart(
        "Frame loss vs offered load (§26.3)",
        "load the generator offered (Mpps)",
        "loss (%)",
        &plr,
        Scale::Linear,
        Scale::Linear,
    );
    vec![
        ("throughput.svg".into(), throughput),
        ("throughput-gbps.svg".into(), throughput_gbps),
        ("latency.svg".into(), latency),
        ("plr.svg".into(), plr),
    ]
}

fn fmt_opt(v: Option<f64>, scale: f64, prec: usize) -> String {
    match v {
        Some(v) => format!("{:.prec$}", v / scale),
        None => "—".into(),
    }
}

/// Writes `report.json`, the SVG plots and `report.html` into `dir` (created when
/// missing); returns the HTML path.
pub fn write_rfc2544(dir: &Path, r: &Rfc2544Report) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the report directory {}", dir.display()))?;
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))
    };
    write("report.json", &serde_json::to_string_pretty(r)?)?;
    let plots = rfc2544_plots(r);
    let m = &r.meta;
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>RFC 2544 — {dut}</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}\
         .meta td,.meta th{{text-align:left}}.gen{{color:#b35900;font-weight:bold}}</style></head><body>\
         <h1>RFC 2544 benchmark — {dut}</h1>\
         <table class=\"meta\"><tr><th>command line</th><td><code>{cmd}</code></td></tr>\
         <tr><th>start time (UTC)</th><td>{start}</td></tr>\
         <tr><th>machine</th><td>{host}: {cpu}, {cores} cores ({usable} usable by this run)</td></tr>\
         <tr><th>git commit</th><td>{git}</td></tr></table>\
         <p>Trial duration {dur:.1} s, loss threshold {plr} %, resolution {res} %, \
         highest rate {max:.3} Mpps. A trial whose generator fell more than {short} % short \
         of the asked rate without loss is generator-limited: it never counts as the \
         DUT's throughput.</p><h2>Verdict</h2><ul>",
        dut = esc(&r.dut),
        cmd = esc(&m.command_line),
        start = esc(&m.start_time),
        host = esc(&m.hostname),
        cpu = esc(&m.cpu_model),
        cores = m.cores,
        usable = m.cores_usable,
        git = esc(m.git_commit.as_deref().unwrap_or("unknown")),
        dur = r.config.duration.as_secs_f64(),
        plr = r.config.plr * 100.0,
        res = r.config.resolution * 100.0,
        max = r.config.max_rate_pps / 1e6,
        short = crate::rfc2544::GEN_SHORTFALL * 100.0,
    );
    for s in &r.results {
        let class = if s.summary.generator_limited {
            " class=\"gen\""
        } else {
            ""
        };
        let _ = write!(html, "<li{class}>{}</li>", esc(&s.summary.text));
    }
    html.push_str(
        "</ul><table><tr><th>frame (B)</th><th>throughput (Mpps)</th>\
         <th>Gbit/s</th><th>limited by</th><th>lat p50 (µs)</th><th>p99</th><th>p99.9</th>\
         <th>max</th><th>trials</th></tr>",
    );
    for s in &r.results {
        let l = s.latency.as_ref().map(|l| l.latency).unwrap_or_default();
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{}</td></tr>",
            s.frame_size,
            fmt_opt(s.summary.throughput, 1e6, 3),
            fmt_opt(s.summary.throughput_gbps, 1.0, 3),
            s.summary.limited_by.as_str(),
            l.p50_us,
            l.p99_us,
            l.p999_us,
            l.max_us,
            s.trials.len()
        );
    }
    html.push_str("</table><h2>Trials</h2><table><tr><th>frame (B)</th><th>asked (Mpps)</th><th>offered (Mpps)</th><th>received (Mpps)</th><th>loss (%)</th><th>limited by</th></tr>");
    for s in &r.results {
        for t in &s.trials {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.4}</td><td>{}</td></tr>",
                s.frame_size,
                t.offered_pps / 1e6,
                t.tx_pps / 1e6,
                t.rx_pps / 1e6,
                t.plr * 100.0,
                t.limited_by.as_str()
            );
        }
    }
    html.push_str("</table>");
    for (name, svg) in &plots {
        write(name, svg)?;
        let _ = write!(html, "<h2>{}</h2>{}", esc(name), svg);
    }
    html.push_str("</body></html>");
    write("report.html", &html)?;
    Ok(dir.join("report.html"))
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
            &[Series::new(
                "a",
                vec![(1.0, 2.0), (10.0, 3.0), (100.0, 1.0)],
            )],
            Scale::Log10,
        );
        assert!(svg.starts_with("<svg"));
        assert!(svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains("t&lt;1&gt;"));
        let empty = line_chart("e", "x", "y", &[], Scale::Linear);
        assert!(empty.contains("no data"));
    }

    /// A DUT forwarding `cap` pps behind a generator offering at most `gen` pps.
    struct Fake {
        cap: f64,
        gen: f64,
    }

    impl crate::rfc2544::TrialRunner for Fake {
        fn trial(
            &mut self,
            t: &crate::rfc2544::TrialSpec,
        ) -> anyhow::Result<crate::rfc2544::TrialResult> {
            let secs = t.duration.as_secs_f64();
            let offered = t.rate_pps.min(self.gen);
            let tx = (offered * secs) as u64;
            let rx = (offered.min(self.cap) * secs) as u64;
            Ok(crate::rfc2544::TrialResult {
                frame_size: t.frame_size,
                offered_pps: t.rate_pps,
                tx_pps: tx as f64 / secs,
                rx_pps: rx as f64 / secs,
                tx,
                rx,
                lost: tx - rx,
                plr: (tx - rx) as f64 / tx.max(1) as f64,
                latency_cdf: vec![(2.0, 0.0), (3.0, 50.0), (8.0, 99.0), (40.0, 100.0)],
                ..Default::default()
            })
        }
    }

    #[test]
    fn generator_limited_report_shows_no_dut_figure() {
        let cfg = crate::rfc2544::SearchConfig {
            frame_sizes: vec![64, 1518],
            duration: std::time::Duration::from_millis(100),
            max_rate_pps: 12e6,
            ..Default::default()
        };
        // 64 B: the generator tops out at 9.56 Mpps below the DUT's 20; 1518 B: the
        // DUT (capped at 0.5 Mpps in this model) limits
        let mut gen_lim = Fake {
            cap: 20e6,
            gen: 9.56e6,
        };
        let mut r = crate::rfc2544::run(&mut gen_lim, "fake", &cfg, true).unwrap();
        let mut dut_lim = Fake {
            cap: 0.5e6,
            gen: 9.56e6,
        };
        let r2 = crate::rfc2544::run(&mut dut_lim, "fake", &cfg, true).unwrap();
        r.results[1] = r2.results[1].clone();
        let dir = std::env::temp_dir().join(format!("pktgen-report-{}", std::process::id()));
        let html = std::fs::read_to_string(write_rfc2544(&dir, &r).unwrap()).unwrap();
        let plots: Vec<String> = [
            "throughput.svg",
            "throughput-gbps.svg",
            "latency.svg",
            "plr.svg",
        ]
        .iter()
        .map(|f| std::fs::read_to_string(dir.join(f)).unwrap())
        .collect();
        let json = std::fs::read_to_string(dir.join("report.json")).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(html.contains(
            "64 B: generator-limited at 9.560 Mpps: the DUT's throughput is above what this generator can offer"
        ));
        assert!(html.contains("limited by the DUT"));
        for k in ["command line", "start time (UTC)", "machine", "git commit"] {
            assert!(html.contains(k), "{k}");
        }
        // Mpps and Gbit/s on separate charts; the generator's ceiling is its own series
        assert!(plots[0].contains(">Mpps<") && !plots[0].contains("Gbit/s"));
        assert!(plots[1].contains(">Gbit/s<") && !plots[1].contains(">Mpps<"));
        assert!(plots[0].contains("generator ceiling"));
        // the DUT series has exactly one point (1518 B): no DUT figure at 64 B
        let dut_series = plots[0].split("<polyline").nth(1).unwrap();
        let pts = dut_series
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(pts.split_whitespace().count(), 1, "{pts}");
        // latency: log axes
        assert!(plots[2].contains("(log scale)") && plots[2].contains("(log scale of nines)"));
        assert!(plots[2].contains(">99.9<") || plots[2].contains(">99<"));
        // loss vs the offered load, generator-limited points apart
        assert!(plots[3].contains("64 B generator-limited"));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["generator_limited"], true);
        assert!(v["results"][0]["summary"]["throughput"].is_null());
        assert_eq!(v["results"][1]["summary"]["limited_by"], "dut");
    }

    #[test]
    fn log_axes_leave_out_what_they_cannot_show() {
        let svg = chart(
            "t",
            "x",
            "y",
            &[Series::new(
                "a",
                vec![(0.0, 0.0), (50.0, 2.0), (99.0, 20.0), (100.0, 200.0)],
            )],
            Scale::Nines,
            Scale::Log10,
        );
        // (0, 0) has no place on a log y axis; p100 is drawn at 99.9999
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains(">99.9999<"), "{svg}");
    }
}
