//! Charts as SVG documents, drawn with plotters. The time axis counts back from now
//! (`-45m`, `-6h`, `-3d`), so the pages need no clock or time zone logic.

use plotters::{
    coord::{cartesian::Cartesian2d, types::RangedCoordf64, Shift},
    prelude::*,
};

use crate::units::scale_for;

/// The data line's colour: the one stroke no axis or grid line uses (tests find the line by it).
pub const SERIES_COLOR: RGBColor = RGBColor(0x1f, 0x6f, 0xd1);
/// [`SERIES_COLOR`] as the SVG writes it.
pub const SERIES_STROKE: &str = "#1F6FD1";

/// The bars' colour, and as the SVG writes it.
pub const BAR_COLOR: RGBColor = RGBColor(0xe0, 0x8a, 0x1e);
pub const BAR_FILL: &str = "#E08A1E";

pub const WIDTH: u32 = 860;
pub const HEIGHT: u32 = 280;

/// An SVG line chart of `points` (unix seconds, value) over the `range` seconds before `now`.
/// `unit` follows the SI prefix on the y axis (`H/s`, `hash`).
pub fn line_chart(
    title: &str,
    unit: &str,
    points: &[(i64, f64)],
    now: i64,
    range: i64,
) -> Result<String, String> {
    let max = points.iter().map(|p| p.1).fold(0.0, f64::max);
    let (divisor, prefix) = scale_for(max);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        let mut chart = frame(
            &root,
            title,
            &format!("{prefix}{unit}"),
            max / divisor,
            range,
        )?;
        let series: Vec<(f64, f64)> = points
            .iter()
            .filter(|(t, _)| now - t <= range && *t <= now)
            .map(|(t, v)| ((t - now) as f64, v / divisor))
            .collect();
        if series.is_empty() {
            root.draw(&Text::new(
                "no data yet",
                ((WIDTH / 2 - 40) as i32, (HEIGHT / 2) as i32),
                ("sans-serif", 15)
                    .into_font()
                    .color(&RGBColor(140, 140, 140)),
            ))
            .map_err(err)?;
        } else {
            chart
                .draw_series(LineSeries::new(series, SERIES_COLOR.stroke_width(2)))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// An SVG bar chart of `buckets` (bucket start, amount), each `bucket` seconds wide, over the
/// `range` seconds before `now`.
pub fn bar_chart(
    title: &str,
    unit: &str,
    buckets: &[(i64, f64)],
    bucket: i64,
    now: i64,
    range: i64,
) -> Result<String, String> {
    let max = buckets.iter().map(|b| b.1).fold(0.0, f64::max);
    let (divisor, prefix) = scale_for(max);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        let mut chart = frame(
            &root,
            title,
            &format!("{prefix}{unit}"),
            max / divisor,
            range,
        )?;
        let color = BAR_COLOR.filled();
        chart
            .draw_series(
                buckets
                    .iter()
                    // The oldest bucket may start before the range: it is cut, not left out.
                    .filter(|(t, _)| t + bucket > now - range && *t <= now)
                    .map(|(t, v)| {
                        let start = ((t - now) as f64).max(-(range as f64));
                        let end = ((t + bucket - now) as f64).min(0.0);
                        Rectangle::new([(start, 0.0), (end, v / divisor)], color)
                    }),
            )
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

type Chart<'a> = ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// White background, title, axes and grid: time back from now on x, `unit` on y up to a
/// little above `max` (in the prefixed unit).
fn frame<'a>(
    root: &DrawingArea<SVGBackend<'a>, Shift>,
    title: &str,
    unit: &str,
    max: f64,
    range: i64,
) -> Result<Chart<'a>, String> {
    root.fill(&WHITE).map_err(err)?;
    let top = if max > 0.0 { max * 1.15 } else { 1.0 };
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(28)
        .y_label_area_size(72)
        .build_cartesian_2d(-(range as f64)..0.0, 0.0..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_labels(7)
        .y_labels(5)
        .x_label_formatter(&|x| ago(*x))
        .y_label_formatter(&|y| format!("{y:.1} {unit}"))
        .light_line_style(RGBColor(236, 236, 236))
        .draw()
        .map_err(err)?;
    Ok(chart)
}

fn err(e: impl std::fmt::Debug) -> String {
    format!("chart: {e:?}")
}

/// `-90` seconds as `-1m`, `-7200` as `-2h`, `-172800` as `-2d`; `0` as `now`.
fn ago(x: f64) -> String {
    let s = (-x).round() as i64;
    match s {
        0 => "now".into(),
        s if s < 3_600 => format!("-{}m", s / 60),
        s if s < 172_800 => format!("-{}h", s / 3_600),
        s => format!("-{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_chart_draws_its_points_and_labels() {
        let now = 10_000;
        let points: Vec<(i64, f64)> = (0..60).map(|i| (now - 3_600 + i * 60, 2.0e12)).collect();
        let svg = line_chart("Pool hashrate", "H/s", &points, now, 3_600).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..60]);
        assert!(svg.contains("Pool hashrate"));
        assert!(svg.contains(SERIES_STROKE), "the series is drawn");
        assert!(svg.contains("TH/s"), "the axis is in TH/s");
        assert!(!svg.contains("no data yet"));
    }

    #[test]
    fn an_empty_chart_says_so_and_bars_are_drawn() {
        let empty = line_chart("Hashrate", "H/s", &[], 100, 3_600).unwrap();
        assert!(empty.contains("no data yet"));
        assert!(!empty.contains(SERIES_STROKE));
        let bars = bar_chart("ehash", "hash", &[(40, 5.0), (100, 7.0)], 60, 130, 3_600).unwrap();
        // One bar per bucket.
        assert_eq!(bars.matches(BAR_FILL).count(), 2, "{bars}");
    }

    #[test]
    fn time_labels_count_back_from_now() {
        assert_eq!(ago(0.0), "now");
        assert_eq!(ago(-90.0), "-1m");
        assert_eq!(ago(-7_200.0), "-2h");
        assert_eq!(ago(-259_200.0), "-3d");
    }
}
