//! `cargo xtask chart`: draws docs/benchmarks/regex.svg, the throughput of
//! the regex benchmark (native, Rust guest, Go guest) against input size,
//! from criterion's results in target/criterion/regex/<variant>/<size>/.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The variants, in legend order, with their colours.
const SERIES: &[(&str, &str, &str)] =
    &[("native", "native (regex crate)", "#1b9e77"), ("rust", "Rust guest", "#d95f02"), ("go", "Go guest", "#7570b3")];

/// One measured point: input size in bytes and throughput in MB/s (10^6 bytes).
#[derive(Debug, Clone, Copy)]
struct Point {
    bytes: u64,
    mb_per_s: f64,
}

pub fn chart(root: &Path) -> Result<()> {
    let results = root.join("target/criterion/regex");
    let mut series = Vec::new();
    for (variant, label, colour) in SERIES {
        let points = read_variant(&results.join(variant))?;
        if points.is_empty() {
            bail!(
                "no results in {}: run `cargo bench -p scale-runtime --bench workloads -- regex` first",
                results.display()
            );
        }
        eprintln!(
            "{variant}: {}",
            points.iter().map(|p| format!("{}B {:.1} MB/s", p.bytes, p.mb_per_s)).collect::<Vec<_>>().join(", ")
        );
        series.push((*label, *colour, points));
    }
    let svg = render(&series);
    let out = root.join("docs/benchmarks/regex.svg");
    std::fs::create_dir_all(out.parent().expect("a file in a folder"))?;
    std::fs::write(&out, svg).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("wrote {}", out.display());
    Ok(())
}

/// Every size measured for one variant, smallest first.
fn read_variant(dir: &Path) -> Result<Vec<Point>> {
    let mut points = Vec::new();
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let dir = entry?.path();
        let estimates = dir.join("new/estimates.json");
        let benchmark = dir.join("new/benchmark.json");
        if !estimates.is_file() || !benchmark.is_file() {
            continue;
        }
        let median_ns = json(&estimates)?["median"]["point_estimate"]
            .as_f64()
            .with_context(|| format!("{}: no median", estimates.display()))?;
        let bytes = json(&benchmark)?["throughput"]["Bytes"]
            .as_u64()
            .with_context(|| format!("{}: no throughput in bytes", benchmark.display()))?;
        points.push(Point { bytes, mb_per_s: bytes as f64 / median_ns * 1e3 });
    }
    points.sort_by_key(|p| p.bytes);
    Ok(points)
}

fn json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

// Plot area inside the picture.
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 440.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 200.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;

/// A round step for about five ticks up to `max`.
fn tick_step(max: f64) -> f64 {
    let rough = max / 5.0;
    let magnitude = 10f64.powf(rough.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * magnitude).find(|step| *step >= rough).unwrap_or(10.0 * magnitude)
}

fn render(series: &[(&str, &str, Vec<Point>)]) -> String {
    let all = || series.iter().flat_map(|(_, _, points)| points.iter());
    let min_bytes = all().map(|p| p.bytes).min().unwrap_or(1).max(1) as f64;
    let max_bytes = all().map(|p| p.bytes).max().unwrap_or(2).max(2) as f64;
    let step = tick_step(all().map(|p| p.mb_per_s).fold(0.0, f64::max).max(1.0));
    let y_max = (all().map(|p| p.mb_per_s).fold(0.0, f64::max) / step).ceil().max(1.0) * step;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    // Sizes double from one point to the next: a log2 axis spaces them evenly.
    let x = |bytes: f64| {
        let span = (max_bytes / min_bytes).log2();
        LEFT + if span > 0.0 { (bytes / min_bytes).log2() / span * plot_w } else { plot_w / 2.0 }
    };
    let y = |mb: f64| TOP + plot_h - mb / y_max * plot_h;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="28" font-size="16" text-anchor="middle">Regex benchmark: replace \b\w{{4}}\b with "wasm" (median)</text>"#,
        LEFT + plot_w / 2.0
    );
    // Horizontal grid and the y axis labels.
    let ticks = (y_max / step).round() as u32;
    for k in 0..=ticks {
        let tick = f64::from(k) * step;
        let ty = y(tick);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{ty:.1}" x2="{:.1}" y2="{ty:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{tick}</text>"##,
            LEFT + plot_w,
            LEFT - 8.0,
            ty + 4.0
        );
    }
    // The x axis labels: one per measured size.
    let mut sizes: Vec<u64> = all().map(|p| p.bytes).collect();
    sizes.sort_unstable();
    sizes.dedup();
    for bytes in sizes {
        let tx = x(bytes as f64);
        let _ = writeln!(
            svg,
            r##"<line x1="{tx:.1}" y1="{TOP}" x2="{tx:.1}" y2="{:.1}" stroke="#eee"/><text x="{tx:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 18.0,
            size_label(bytes)
        );
    }
    let _ =
        writeln!(svg, r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#444"/>"##);
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">input size</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 15.0
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate(22 {:.1}) rotate(-90)" text-anchor="middle">throughput (MB/s)</text>"#,
        TOP + plot_h / 2.0
    );
    // The series and the legend.
    for (i, (label, colour, points)) in series.iter().enumerate() {
        let path: Vec<String> =
            points.iter().map(|p| format!("{:.1},{:.1}", x(p.bytes as f64), y(p.mb_per_s))).collect();
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2.5"/>"#,
            path.join(" ")
        );
        for p in points {
            let _ = writeln!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{colour}"><title>{label}, {}: {:.1} MB/s</title></circle>"#,
                x(p.bytes as f64),
                y(p.mb_per_s),
                size_label(p.bytes),
                p.mb_per_s
            );
        }
        let ly = TOP + 20.0 + 22.0 * i as f64;
        let lx = WIDTH - RIGHT + 20.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="2.5"/><text x="{}" y="{}">{label}</text>"#,
            lx + 24.0,
            lx + 30.0,
            ly + 4.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn size_label(bytes: u64) -> String {
    if bytes.is_multiple_of(1024) { format!("{} KiB", bytes / 1024) } else { format!("{bytes} B") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_steps_are_round() {
        assert_eq!(tick_step(100.0), 20.0);
        assert_eq!(tick_step(430.0), 100.0);
        assert_eq!(tick_step(7.0), 2.0);
    }

    #[test]
    fn renders_every_point() {
        let points = vec![Point { bytes: 2048, mb_per_s: 100.0 }, Point { bytes: 4096, mb_per_s: 150.0 }];
        let svg = render(&[("a", "#000", points.clone()), ("b", "#111", points)]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<circle").count(), 4);
        assert!(svg.contains(">2 KiB<") && svg.contains(">4 KiB<"));
    }
}
