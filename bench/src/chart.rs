//! The picture of the table: for every row, how many times faster than CPython it ran and how
//! close it came to its raw bound, as bars on one log scale, with each target marked.
//!
//! Both bars read "higher is better". The CPython bar is CPython's median over ours. The bound
//! bar is the bound's median over ours: 1 means "as fast as the bound", and a target of
//! "≤ 3× the bound" becomes a mark at 1/3.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One row of the chart.
pub struct Bar {
    pub name: String,
    /// CPython's median over ours, and the least the target asks (if any).
    pub cpython: Option<(f64, Option<f64>)>,
    /// The bound's median over ours, and the least the target asks.
    pub bound: Option<(f64, f64)>,
}

/// The x range: from 1/100 of the bound (or of CPython) to 1,000 times CPython.
const LOW: f64 = 0.01;
const HIGH: f64 = 2000.0;

/// Writes the chart of `bars` as SVG to `path`.
pub fn write(path: &Path, bars: &[Bar]) -> Result<(), Box<dyn std::error::Error>> {
    let bars: Vec<&Bar> = bars.iter().filter(|b| b.cpython.is_some() || b.bound.is_some()).collect();
    let height = 110 + 26 * bars.len() as u32;
    let root = SVGBackend::new(path, (1100, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let n = bars.len() as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption("multiproc: times faster than CPython, and share of the raw bound (log scale)", ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(50)
        .y_label_area_size(430)
        .build_cartesian_2d((LOW..HIGH).log_scale(), 0.0..n)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_label_formatter(&|x| format!("{x}×"))
        .label_style(("sans-serif", 11))
        .draw()?;
    // Row i is drawn from the top: band [n-i-1, n-i).
    let band = |i: usize| n - i as f64 - 1.0;
    let clamp = |v: f64| v.clamp(LOW, HIGH);
    chart
        .draw_series(bars.iter().enumerate().filter_map(|(i, b)| {
            let (ratio, _) = b.cpython?;
            let y = band(i);
            Some(Rectangle::new([(LOW, y + 0.52), (clamp(ratio), y + 0.9)], BLUE.mix(0.7).filled()))
        }))?
        .label("× CPython (CPython median ÷ ours)");
    chart
        .draw_series(bars.iter().enumerate().filter_map(|(i, b)| {
            let (share, _) = b.bound?;
            let y = band(i);
            Some(Rectangle::new([(LOW, y + 0.1), (clamp(share), y + 0.48)], full_palette::ORANGE.mix(0.8).filled()))
        }))?
        .label("share of the raw bound (bound median ÷ ours)");
    let targets = bars.iter().enumerate().flat_map(|(i, b)| {
        let y = band(i);
        let cpython = b.cpython.and_then(|(_, t)| t).map(|t| (t, y + 0.5, y + 0.95));
        let bound = b.bound.map(|(_, t)| (t, y + 0.05, y + 0.5));
        cpython
            .into_iter()
            .chain(bound)
            .map(|(t, lo, hi)| PathElement::new(vec![(clamp(t), lo), (clamp(t), hi)], BLACK.stroke_width(2)))
    });
    chart.draw_series(targets)?;
    // The row names, right-aligned against the plot, and a legend under it (drawn on the whole
    // picture, outside the plot, in pixels).
    let name_style = TextStyle::from(("sans-serif", 12).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
    for (i, b) in bars.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(LOW, band(i) + 0.5));
        root.draw(&Text::new(b.name.clone(), (x - 8, y), name_style.clone()))?;
    }
    let (_, bottom) = chart.backend_coord(&(LOW, 0.0));
    let y = bottom + 38;
    let text = TextStyle::from(("sans-serif", 12).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    let mut x = 120;
    for (fill, label) in [
        (BLUE.mix(0.7), "times faster than CPython (CPython median ÷ ours)"),
        (full_palette::ORANGE.mix(0.8), "share of the raw bound (bound median ÷ ours)"),
    ] {
        root.draw(&Rectangle::new([(x, y - 6), (x + 16, y + 6)], fill.filled()))?;
        root.draw(&Text::new(label, (x + 22, y), text.clone()))?;
        x += 320;
    }
    root.draw(&PathElement::new(vec![(x + 8, y - 8), (x + 8, y + 8)], BLACK.stroke_width(2)))?;
    root.draw(&Text::new("target", (x + 16, y), text))?;
    root.present()?;
    Ok(())
}
