//! Plots of scenario runs: one column per run, one panel per quantity (offered vs delivered
//! rate, queue fill, drops per class, latency per class). Drawn as SVG with plotters; PNG is
//! the same SVG rasterized with resvg (system fonts).

use std::path::Path;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use sluice::engine::Priority;
use sluice_workloads::overload::{ClassResult, Sample, ScenarioResult};

const PANEL_W: u32 = 560;
const PANEL_H: u32 = 300;

/// Checks a `--plot` path: it must end in `.svg` or `.png`.
pub fn plot_path(s: &str) -> Result<std::path::PathBuf, String> {
    let lower = s.to_ascii_lowercase();
    if lower.ends_with(".svg") || lower.ends_with(".png") {
        Ok(s.into())
    } else {
        Err(format!("`{s}`: the plot file must end in .svg or .png"))
    }
}

/// Draws `runs` to `path` (SVG or PNG by its extension).
pub fn write(path: &Path, runs: &[ScenarioResult]) -> Result<(), String> {
    let svg = svg(runs)?;
    let png = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if png {
        let mut opt = resvg::usvg::Options::default();
        {
            let db = opt.fontdb_mut();
            db.load_system_fonts();
            if db.faces().next().is_none() {
                return Err(
                    "no system fonts found to draw the PNG's text; write an .svg instead \
                            or install a TrueType font (e.g. fonts-dejavu-core)"
                        .into(),
                );
            }
            db.set_sans_serif_family("DejaVu Sans");
        }
        let tree = resvg::usvg::Tree::from_str(&svg, &opt).map_err(|e| e.to_string())?;
        let size = tree.size().to_int_size();
        let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height())
            .ok_or("the plot has no size")?;
        resvg::render(
            &tree,
            resvg::tiny_skia::Transform::default(),
            &mut pixmap.as_mut(),
        );
        pixmap
            .save_png(path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    } else {
        std::fs::write(path, svg).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

fn class_color(class: Priority) -> RGBColor {
    match class {
        Priority::DEBUG => RGBColor(140, 140, 140),
        Priority::INFO => RGBColor(31, 119, 180),
        Priority::WARN => RGBColor(255, 127, 14),
        Priority::ERROR => RGBColor(214, 39, 40),
        Priority::CRITICAL => RGBColor(148, 103, 189),
        _ => RGBColor(44, 160, 44),
    }
}

/// Rates per second between consecutive samples of a cumulative counter.
fn rates(series: &[Sample], f: impl Fn(&Sample) -> u64) -> Vec<(f64, f64)> {
    series
        .windows(2)
        .map(|w| {
            let dt = (w[1].t_s - w[0].t_s).max(1e-3);
            (w[1].t_s, f(&w[1]).saturating_sub(f(&w[0])) as f64 / dt)
        })
        .collect()
}

fn max_y(series: &[&[(f64, f64)]]) -> f64 {
    series
        .iter()
        .flat_map(|s| s.iter().map(|p| p.1))
        .fold(0.0, f64::max)
        .max(10.0)
        * 1.1
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

type TimeChart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A panel over time: its caption, `time (s)` on x, `y_desc` on y, ticks in `k`/`M`.
fn time_chart<'a, 'b>(
    area: &'a Area<'b>,
    caption: String,
    y_desc: &str,
    t_max: f64,
    y_max: f64,
) -> Result<TimeChart<'a, 'b>, String> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(32)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..t_max, 0.0..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc(y_desc)
        .y_label_formatter(&|v| super::progress::human(*v))
        .draw()
        .map_err(err)?;
    Ok(chart)
}

fn err(e: impl std::fmt::Display) -> String {
    format!("cannot draw the plot: {e}")
}

/// The SVG text of the plot.
pub fn svg(runs: &[ScenarioResult]) -> Result<String, String> {
    if runs.is_empty() {
        return Err("nothing to plot".into());
    }
    let mut buf = String::new();
    {
        let cols = runs.len() as u32;
        let width = (PANEL_W * cols).max(900);
        let root = SVGBackend::with_string(&mut buf, (width, PANEL_H * 4 + 50)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let first = &runs[0];
        let mut title = format!(
            "{}: {} profile, up to {}x a sink of {} records/s",
            first.job,
            first.profile,
            first.overload,
            super::progress::human(first.sink_capacity),
        );
        if first.edge_capacity > 0 {
            title.push_str(&format!(", edge of {} records", first.edge_capacity));
        }
        let root = root.titled(&title, ("sans-serif", 24)).map_err(err)?;
        let columns = root.split_evenly((1, runs.len()));
        for (area, run) in columns.iter().zip(runs) {
            let rows = area.split_evenly((4, 1));
            rate_panel(&rows[0], run)?;
            queue_panel(&rows[1], run)?;
            drops_panel(&rows[2], run)?;
            latency_panel(&rows[3], run)?;
        }
        root.present().map_err(err)?;
    }
    Ok(buf)
}

fn rate_panel(area: &Area<'_>, run: &ScenarioResult) -> Result<(), String> {
    let offered = rates(&run.series, |s| s.offered);
    let delivered = rates(&run.series, Sample::delivered_total);
    let t_max = run.series.last().map_or(1.0, |s| s.t_s).max(0.1);
    let y_max = max_y(&[&offered, &delivered]).max(run.sink_capacity * 1.2);
    let mut chart = time_chart(
        area,
        format!("{}: offered vs delivered", run.policy),
        "records/s",
        t_max,
        y_max,
    )?;
    chart
        .draw_series(LineSeries::new(
            offered,
            RGBColor(120, 120, 120).stroke_width(2),
        ))
        .map_err(err)?
        .label("offered")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RGBColor(120, 120, 120)));
    chart
        .draw_series(LineSeries::new(delivered, BLUE.stroke_width(2)))
        .map_err(err)?
        .label("delivered")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLUE));
    let cap = run.sink_capacity;
    chart
        .draw_series(LineSeries::new(
            [(0.0, cap), (t_max, cap)],
            RGBColor(44, 160, 44).stroke_width(1),
        ))
        .map_err(err)?
        .label("sink capacity")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RGBColor(44, 160, 44)));
    legend(&mut chart)
}

fn queue_panel(area: &Area<'_>, run: &ScenarioResult) -> Result<(), String> {
    let queued: Vec<(f64, f64)> = run
        .series
        .iter()
        .map(|s| (s.t_s, s.queued as f64))
        .collect();
    let deferred: Vec<(f64, f64)> = run
        .series
        .iter()
        .map(|s| (s.t_s, s.deferred as f64))
        .collect();
    let held: Vec<(f64, f64)> = run
        .series
        .iter()
        .map(|s| (s.t_s, s.offered.saturating_sub(s.emitted) as f64))
        .collect();
    let buffered: Vec<(f64, f64)> = run
        .series
        .iter()
        .map(|s| (s.t_s, s.buffered as f64))
        .collect();
    // An edge sized in time: its capacity moves, and is drawn with the backlog.
    let capacity: Vec<(f64, f64)> = run
        .series
        .iter()
        .map(|s| (s.t_s, s.capacity as f64))
        .collect();
    let moves = capacity.windows(2).any(|w| w[0].1 != w[1].1);
    let capacity = if moves { capacity } else { Vec::new() };
    let t_max = run.series.last().map_or(1.0, |s| s.t_s).max(0.1);
    let y_max = max_y(&[&queued, &deferred, &held, &buffered, &capacity]);
    let mut chart = time_chart(
        area,
        if run.edge_capacity > 0 {
            format!(
                "{}: backlog (edge capacity {})",
                run.policy, run.edge_capacity
            )
        } else {
            format!("{}: backlog", run.policy)
        },
        "records",
        t_max,
        y_max,
    )?;
    let series = [
        ("queued on the edge", queued, BLUE),
        ("deferred (on disk)", deferred, RGBColor(44, 160, 44)),
        ("held back at the producer", held, RED),
        ("buffered in Kafka", buffered, RGBColor(148, 103, 189)),
        (
            "edge capacity (sized in time)",
            capacity,
            RGBColor(127, 127, 127),
        ),
    ];
    for (name, points, color) in series {
        if points.iter().all(|p| p.1 == 0.0) {
            continue;
        }
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color));
    }
    legend(&mut chart)
}

fn drops_panel(area: &Area<'_>, run: &ScenarioResult) -> Result<(), String> {
    let per_class: Vec<(Priority, Vec<(f64, f64)>)> = run
        .classes
        .keys()
        .map(|&c| {
            (
                c,
                rates(&run.series, |s| s.dropped.get(&c).copied().unwrap_or(0)),
            )
        })
        .collect();
    let refs: Vec<&[(f64, f64)]> = per_class.iter().map(|(_, p)| p.as_slice()).collect();
    let t_max = run.series.last().map_or(1.0, |s| s.t_s).max(0.1);
    let y_max = max_y(&refs);
    let mut chart = time_chart(
        area,
        format!("{}: dropped per class", run.policy),
        "records/s dropped",
        t_max,
        y_max,
    )?;
    for (class, points) in per_class {
        let color = class_color(class);
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(err)?
            .label(class.name())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color));
    }
    legend(&mut chart)
}

fn latency_panel(area: &Area<'_>, run: &ScenarioResult) -> Result<(), String> {
    let classes: Vec<(Priority, &ClassResult)> = run.classes.iter().map(|(c, r)| (*c, r)).collect();
    let top = classes
        .iter()
        .map(|(_, c)| c.latency_ms.p999)
        .fold(1.0, f64::max)
        * 10.0;
    let n = classes.len().max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("{}: latency per class (p50 / p99 / p99.9)", run.policy),
            ("sans-serif", 16),
        )
        .margin(8)
        .x_label_area_size(32)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..n as f64, (0.01..top).log_scale())
        .map_err(err)?;
    let names: Vec<String> = classes.iter().map(|(c, _)| c.name().to_string()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 0.01 {
                names.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_desc("class (delivered records)")
        .y_desc("latency (ms, log)")
        .draw()
        .map_err(err)?;
    const QUANTILES: [(&str, f64); 3] = [("p50", 0.3), ("p99", 0.65), ("p99.9", 1.0)];
    for (q, &(qname, alpha)) in QUANTILES.iter().enumerate() {
        let bars: Vec<Rectangle<(f64, f64)>> = classes
            .iter()
            .enumerate()
            .filter(|(_, (_, c))| c.delivered > 0)
            .map(|(i, (name, c))| {
                let v = match q {
                    0 => c.latency_ms.p50,
                    1 => c.latency_ms.p99,
                    _ => c.latency_ms.p999,
                }
                .max(0.011);
                let x0 = i as f64 + 0.15 + q as f64 * 0.23;
                Rectangle::new(
                    [(x0, 0.01), (x0 + 0.21, v)],
                    class_color(*name).mix(alpha).filled(),
                )
            })
            .collect();
        chart
            .draw_series(bars)
            .map_err(err)?
            .label(qname)
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 12, y + 5)], BLACK.mix(alpha).filled())
            });
    }
    legend(&mut chart)
}

fn legend<'a, 'b: 'a, X: Ranged, Y: Ranged>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, Y>>,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 12))
        .draw()
        .map_err(err)
}
