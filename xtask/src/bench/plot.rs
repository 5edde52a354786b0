//! The report's SVG plots, drawn with plotters' SVG backend.
//!
//! Every panel is a set of lines with points, one per server. Logarithmic
//! axes are drawn as linear axes over log10 of the values, labelled with
//! the values themselves.

use std::path::Path;

use plotters::prelude::*;

/// One line of a panel.
#[derive(Debug, Clone)]
pub struct Series {
    /// Its legend.
    pub label: String,
    /// Its points (x, y), in data units.
    pub points: Vec<(f64, f64)>,
}

/// How an axis maps and labels its values.
#[derive(Debug, Clone)]
pub enum Axis {
    /// Linear from 0.
    Linear,
    /// Logarithmic (values > 0).
    Log,
    /// Named positions 0, 1, 2, ...
    Categories(Vec<String>),
}

impl Axis {
    fn map(&self, v: f64) -> f64 {
        match self {
            Axis::Log => v.max(1e-9).log10(),
            _ => v,
        }
    }

    fn label(&self, v: f64) -> String {
        match self {
            Axis::Linear => format_number(v),
            // Only at 1, 2 and 5 times a power of ten: the ticks plotters
            // picks on the log10 scale fall anywhere (10^2.5 = 316).
            Axis::Log => {
                let decade = v.floor();
                [1.0f64, 2.0, 5.0]
                    .iter()
                    .find(|m| (v - decade - m.log10()).abs() < 0.02)
                    .map_or_else(String::new, |m| format_number(m * 10f64.powf(decade)))
            }
            Axis::Categories(names) => {
                let i = v.round();
                if (v - i).abs() < 1e-6 && i >= 0.0 {
                    names.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            }
        }
    }

    /// The plotted range covering `values` (data units).
    fn range(&self, values: impl Iterator<Item = f64>) -> (f64, f64) {
        let mapped: Vec<f64> = values
            .filter(|v| v.is_finite())
            .map(|v| self.map(v))
            .collect();
        let lo = mapped.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = mapped.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if !lo.is_finite() {
            return (0.0, 1.0);
        }
        match self {
            Axis::Linear => (0.0, if hi > 0.0 { hi * 1.1 } else { 1.0 }),
            Axis::Log => {
                let pad = ((hi - lo) * 0.08).max(0.1);
                (lo - pad, hi + pad)
            }
            Axis::Categories(names) => (-0.3, names.len().max(1) as f64 - 0.7),
        }
    }
}

fn format_number(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".to_owned()
    } else if a >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if a >= 10.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// One panel of a figure.
#[derive(Debug, Clone)]
pub struct Panel {
    /// Its title.
    pub title: String,
    /// The x axis's name and kind.
    pub x: (String, Axis),
    /// The y axis's name and kind.
    pub y: (String, Axis),
    /// Its lines.
    pub series: Vec<Series>,
}

type DrawResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Draws `panels` side by side into the SVG file `path`.
pub fn figure(path: &Path, panels: &[Panel]) -> Result<(), String> {
    draw(path, panels).map_err(|e| format!("{}: {e}", path.display()))
}

fn draw(path: &Path, panels: &[Panel]) -> DrawResult<()> {
    let width = 460 * panels.len().max(1) as u32;
    let root = SVGBackend::new(path, (width, 400)).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_evenly((1, panels.len().max(1)));
    for (area, panel) in areas.iter().zip(panels) {
        draw_panel(area, panel)?;
    }
    root.present()?;
    Ok(())
}

fn draw_panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    panel: &Panel,
) -> DrawResult<()> {
    let (x_name, x_axis) = &panel.x;
    let (y_name, y_axis) = &panel.y;
    let (x0, x1) = x_axis.range(
        panel
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0)),
    );
    let (y0, y1) = y_axis.range(
        panel
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1)),
    );
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(38)
        .y_label_area_size(56)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    let x_labels = match x_axis {
        Axis::Categories(names) => names.len() * 4,
        // Enough ticks that 1, 2 and 5 times each power of ten get one.
        Axis::Log => ((x1 - x0) * 20.0).ceil().clamp(8.0, 200.0) as usize,
        Axis::Linear => 8,
    };
    let mut mesh = chart.configure_mesh();
    if matches!(x_axis, Axis::Log) {
        // One tick per 1/20 decade carries a label only at 1-2-5: no grid
        // line for each.
        mesh.disable_x_mesh();
    }
    mesh.x_desc(x_name.as_str())
        .y_desc(y_name.as_str())
        .x_labels(x_labels)
        .y_labels(8)
        .x_label_formatter(&|v| x_axis.label(*v))
        .y_label_formatter(&|v| y_axis.label(*v))
        .draw()?;
    for (i, series) in panel.series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let points: Vec<(f64, f64)> = series
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|&(x, y)| (x_axis.map(x), y_axis.map(y)))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(series.label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 3, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", 12))
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_an_svg_with_every_series() {
        let path = std::env::temp_dir().join(format!("xtask-plot-{}.svg", std::process::id()));
        let panel = Panel {
            title: "t".into(),
            x: ("connections".into(), Axis::Log),
            y: ("MiB/s".into(), Axis::Linear),
            series: vec![
                Series {
                    label: "alpha-server".into(),
                    points: vec![(1.0, 5.0), (16.0, 9.0), (256.0, 7.0)],
                },
                Series {
                    label: "beta-server".into(),
                    points: vec![(1.0, 2.0), (16.0, f64::NAN), (256.0, 3.0)],
                },
            ],
        };
        let categories = Panel {
            title: "c".into(),
            x: (
                "percentile".into(),
                Axis::Categories(vec!["p50".into(), "p99".into()]),
            ),
            y: ("µs".into(), Axis::Log),
            series: vec![Series {
                label: "gamma".into(),
                points: vec![(0.0, 30.0), (1.0, 3000.0)],
            }],
        };
        figure(&path, &[panel, categories]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(svg.starts_with("<svg"));
        for label in ["alpha-server", "beta-server", "gamma", "connections", "p99"] {
            assert!(svg.contains(label), "{label} missing");
        }
    }

    #[test]
    fn log_axis_labels_are_values() {
        assert_eq!(Axis::Log.label(2.0), "100");
        assert_eq!(Axis::Log.label(0.0), "1.0");
        assert_eq!(Axis::Log.label(2.0f64.log10() + 1.0), "20");
        assert_eq!(Axis::Log.label(2.5), "");
        assert_eq!(Axis::Categories(vec!["a".into()]).label(0.0), "a");
        assert_eq!(Axis::Categories(vec!["a".into()]).label(0.5), "");
        assert_eq!(format_number(123_456.0), "123k");
    }
}
