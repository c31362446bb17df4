//! The four charts, as SVG: a scatter of a layout (categorical or continuous colour), line
//! charts, a heatmap and horizontal bars. Pure functions of their data.

use super::svg::{self, shorten, tick_label, ticks, Anchor, Svg};
use crate::layout::umap::Rng;

/// Categories named in a scatter's legend; the rest share the colour "other".
pub const MAX_NAMED: usize = 20;
/// Legend text is cut to this many characters.
const LEGEND_CHARS: usize = 30;

/// How scatter points are coloured.
#[derive(Debug, Clone, PartialEq)]
pub enum Colouring {
    /// One label per point (`None`: no value).
    Categories(Vec<Option<String>>),
    /// One value in [0, 1] per point (`None`: no value).
    Continuous(Vec<Option<f64>>),
}

/// A scatter's title, what the colour means, and how many points.
#[derive(Debug, Clone, PartialEq)]
pub struct ScatterText {
    /// Title line.
    pub title: String,
    /// What the colour shows (legend heading).
    pub colour_by: String,
    /// What a point without a value is called in the legend.
    pub missing: String,
}

/// Point radius and opacity for `n` points: large and opaque for a few hundred cells, small and
/// translucent for 100,000 (so dense regions read as dense).
pub fn point_style(n: usize) -> (f64, f64) {
    let n = n.max(1) as f64;
    let radius = (90.0 / n.sqrt()).clamp(0.7, 4.0);
    let alpha = (2000.0 / n).sqrt().clamp(0.25, 0.9);
    (radius, alpha)
}

/// The legend of a categorical colouring: the [`MAX_NAMED`] most frequent categories (count
/// descending, then name), then "other" for the rest, then missing values; each with its colour
/// and count. Returns the entries and each point's colour.
pub fn legend(
    labels: &[Option<String>],
    missing: &str,
) -> (Vec<(String, String, usize)>, Vec<String>) {
    let mut counts: std::collections::HashMap<&str, usize> = Default::default();
    let mut n_missing = 0;
    for l in labels {
        match l {
            Some(l) => *counts.entry(l.as_str()).or_default() += 1,
            None => n_missing += 1,
        }
    }
    let mut order: Vec<(&str, usize)> = counts.into_iter().collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let named = if order.len() > MAX_NAMED + 1 {
        MAX_NAMED
    } else {
        order.len()
    };
    let mut colour_of: std::collections::HashMap<&str, String> = Default::default();
    let mut entries = Vec::new();
    for (i, (name, count)) in order[..named].iter().enumerate() {
        let colour = svg::category(i);
        colour_of.insert(name, colour.clone());
        entries.push((name.to_string(), colour, *count));
    }
    let rest = &order[named..];
    if !rest.is_empty() {
        let total = rest.iter().map(|r| r.1).sum();
        entries.push((
            format!("other ({} categories)", rest.len()),
            svg::OTHER.into(),
            total,
        ));
    }
    if n_missing > 0 {
        entries.push((missing.to_string(), svg::MISSING.into(), n_missing));
    }
    let colours = labels
        .iter()
        .map(|l| match l {
            Some(l) => colour_of
                .get(l.as_str())
                .cloned()
                .unwrap_or_else(|| svg::OTHER.into()),
            None => svg::MISSING.into(),
        })
        .collect();
    (entries, colours)
}

/// A scatter of `points` (any range: scaled to the square plot area), drawn in a seeded random
/// order so no colour hides another, with a legend on the right.
pub fn scatter(points: &[[f32; 2]], colouring: &Colouring, text: &ScatterText) -> Svg {
    let (side, left, top, legend_w) = (620.0, 20.0, 50.0, 300.0);
    let mut svg = Svg::new(left + side + legend_w, top + side + 30.0);
    svg.text(left, 30.0, 17.0, Anchor::Start, &text.title);
    let (lo, hi) = bounds(points);
    let span = (hi[0] - lo[0]).max(hi[1] - lo[1]).max(1e-9);
    let pad = 10.0;
    let scale = (side - 2.0 * pad) / span;
    // Equal scales on both axes, the narrower axis centred.
    let offset = [
        (span - (hi[0] - lo[0])) / 2.0 * scale,
        (span - (hi[1] - lo[1])) / 2.0 * scale,
    ];
    let at = |p: &[f32; 2]| {
        (
            left + pad + offset[0] + (f64::from(p[0]) - lo[0]) * scale,
            top + side - pad - offset[1] - (f64::from(p[1]) - lo[1]) * scale,
        )
    };
    svg.rect(left, top, side, side, "#fafafa", "");
    let colours: Vec<String> = match colouring {
        Colouring::Categories(labels) => legend(labels, &text.missing).1,
        Colouring::Continuous(values) => values
            .iter()
            .map(|v| v.map_or_else(|| svg::MISSING.to_string(), svg::viridis))
            .collect(),
    };
    let (radius, alpha) = point_style(points.len());
    let mut order: Vec<usize> = (0..points.len()).collect();
    let mut rng = Rng::new(0);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    svg.open_group(&format!(r#"class="points" fill-opacity="{alpha:.2}""#));
    for i in order {
        let (x, y) = at(&points[i]);
        svg.circle(x, y, radius, &colours[i]);
    }
    svg.close_group();
    let lx = left + side + 20.0;
    svg.text(lx, top + 14.0, 14.0, Anchor::Start, &text.colour_by);
    svg.open_group(r#"class="legend""#);
    match colouring {
        Colouring::Categories(labels) => {
            let (entries, _) = legend(labels, &text.missing);
            let row = ((side - 30.0) / entries.len().max(1) as f64).min(20.0);
            for (i, (name, colour, count)) in entries.iter().enumerate() {
                let y = top + 34.0 + i as f64 * row;
                svg.rect(lx, y - 10.0, 12.0, 12.0, colour, "");
                let label = format!("{} ({count})", shorten(name, LEGEND_CHARS));
                svg.text(lx + 18.0, y, 12.0, Anchor::Start, &label);
            }
        }
        Colouring::Continuous(values) => {
            let steps = 50;
            let (bar_h, y0) = (240.0, top + 30.0);
            for s in 0..steps {
                let t = 1.0 - s as f64 / steps as f64;
                let y = y0 + s as f64 * bar_h / steps as f64;
                svg.rect(
                    lx,
                    y,
                    18.0,
                    bar_h / steps as f64 + 0.5,
                    &svg::viridis(t),
                    "",
                );
            }
            for t in [0.0, 0.5, 1.0] {
                let y = y0 + (1.0 - t) * bar_h;
                svg.text(lx + 24.0, y + 4.0, 12.0, Anchor::Start, &tick_label(t));
            }
            let missing = values.iter().filter(|v| v.is_none()).count();
            if missing > 0 {
                let y = y0 + bar_h + 30.0;
                svg.rect(lx, y - 10.0, 12.0, 12.0, svg::MISSING, "");
                let label = format!("{} ({missing})", text.missing);
                svg.text(lx + 18.0, y, 12.0, Anchor::Start, &label);
            }
        }
    }
    svg.close_group();
    svg
}

fn bounds(points: &[[f32; 2]]) -> ([f64; 2], [f64; 2]) {
    let mut lo = [f64::INFINITY; 2];
    let mut hi = [f64::NEG_INFINITY; 2];
    for p in points {
        for a in 0..2 {
            lo[a] = lo[a].min(f64::from(p[a]));
            hi[a] = hi[a].max(f64::from(p[a]));
        }
    }
    if points.is_empty() {
        ([0.0; 2], [1.0; 2])
    } else {
        (lo, hi)
    }
}

/// One line of a line chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend name.
    pub name: String,
    /// `(x, y)` points in x order.
    pub points: Vec<(f64, f64)>,
}

/// A line chart of `series` in a `width × height` panel with axes, ticks and a legend; the y
/// axis is logarithmic when every value is positive and they span more than two decades.
pub fn lines(title: &str, x_label: &str, series: &[Series], width: f64, height: f64) -> Svg {
    let mut svg = Svg::new(width, height);
    let (left, right, top, bottom) = (70.0, 190.0, 40.0, 45.0);
    let (pw, ph) = (width - left - right, height - top - bottom);
    svg.text(left, 24.0, 15.0, Anchor::Start, title);
    let all = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for &(x, y) in all.filter(|p| p.0.is_finite() && p.1.is_finite()) {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if !x0.is_finite() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let log = y0 > 0.0 && y1 / y0 > 100.0;
    let f = |y: f64| if log { y.log10() } else { y };
    let (fy0, mut fy1) = (f(y0), f(y1));
    if fy1 <= fy0 {
        fy1 = fy0 + 1.0;
    }
    let px = |x: f64| left + (x - x0) / (x1 - x0) * pw;
    let py = |y: f64| top + ph - (f(y) - fy0) / (fy1 - fy0) * ph;
    svg.rect(left, top, pw, ph, "#fafafa", "");
    svg.line(left, top + ph, left + pw, top + ph, "#444", 1.0);
    svg.line(left, top, left, top + ph, "#444", 1.0);
    for t in ticks(x0, x1, 6) {
        svg.line(px(t), top + ph, px(t), top + ph + 4.0, "#444", 1.0);
        svg.text(px(t), top + ph + 17.0, 11.0, Anchor::Middle, &tick_label(t));
    }
    let y_ticks = ticks(fy0, fy1, 5)
        .into_iter()
        .map(|t| if log { 10f64.powf(t) } else { t });
    for t in y_ticks {
        svg.line(left - 4.0, py(t), left + pw, py(t), "#e3e3e3", 1.0);
        svg.text(left - 7.0, py(t) + 4.0, 11.0, Anchor::End, &tick_label(t));
    }
    svg.text(left + pw / 2.0, height - 8.0, 12.0, Anchor::Middle, x_label);
    if log {
        svg.text_rotated(
            16.0,
            top + ph / 2.0,
            12.0,
            Anchor::Middle,
            -90.0,
            "value (log scale)",
        );
    }
    for (i, s) in series.iter().enumerate() {
        let colour = svg::category(i);
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter(|p| p.1.is_finite() && (!log || p.1 > 0.0))
            .map(|&(x, y)| (px(x), py(y)))
            .collect();
        svg.polyline(&pts, &colour, 2.0, "series");
        let ly = top + 12.0 + i as f64 * 18.0;
        svg.rect(left + pw + 14.0, ly - 9.0, 14.0, 4.0, &colour, "");
        svg.text(
            left + pw + 34.0,
            ly,
            12.0,
            Anchor::Start,
            &shorten(&s.name, 22),
        );
    }
    svg
}

/// A heatmap: `values[row][col]` in [0, 1] (`None`: blank) coloured with viridis; `notes`, when
/// given, is printed in each cell.
pub struct Heatmap<'a> {
    /// Title line.
    pub title: &'a str,
    /// Row labels (top to bottom).
    pub rows: &'a [String],
    /// Column labels (left to right).
    pub cols: &'a [String],
    /// Values in [0, 1].
    pub values: &'a [Vec<Option<f64>>],
    /// Text in each cell, if any.
    pub notes: Option<&'a [Vec<String>]>,
    /// What the colour means.
    pub scale_label: &'a str,
}

/// Characters of the longest label (at most 28, the length labels are cut to; 4 when none).
fn longest(labels: &[String]) -> f64 {
    labels
        .iter()
        .map(|l| l.chars().count().min(28))
        .max()
        .unwrap_or(4) as f64
}

/// Draws a [`Heatmap`]; cells are square-ish, sized to fit about 900 pixels of width.
pub fn heatmap(h: &Heatmap) -> Svg {
    let label_w = 12.0 + 7.0 * longest(h.rows);
    let col_label_h = 12.0 + 6.5 * longest(h.cols);
    let cell = (700.0 / h.cols.len().max(1) as f64).clamp(14.0, 44.0);
    let (top, left) = (40.0 + col_label_h, label_w);
    let width = left + cell * h.cols.len() as f64 + 120.0;
    let height = top + cell * h.rows.len() as f64 + 20.0;
    let mut svg = Svg::new(width.max(420.0), height.max(200.0));
    svg.text(8.0, 24.0, 15.0, Anchor::Start, h.title);
    for (c, name) in h.cols.iter().enumerate() {
        let x = left + (c as f64 + 0.5) * cell + 4.0;
        svg.text_rotated(x, top - 6.0, 11.0, Anchor::Start, -60.0, &shorten(name, 28));
    }
    svg.open_group(r#"class="cells""#);
    for (r, name) in h.rows.iter().enumerate() {
        let y = top + r as f64 * cell;
        svg.text(
            left - 6.0,
            y + cell / 2.0 + 4.0,
            11.0,
            Anchor::End,
            &shorten(name, 28),
        );
        for c in 0..h.cols.len() {
            let x = left + c as f64 * cell;
            let v = h
                .values
                .get(r)
                .and_then(|row| row.get(c))
                .copied()
                .flatten();
            let fill = v.map_or_else(|| "#ffffff".to_string(), svg::viridis);
            let note = h.notes.and_then(|n| n.get(r)).and_then(|row| row.get(c));
            let tip = format!(
                "<title>{} / {}: {}</title>",
                svg::escape(name),
                svg::escape(&h.cols[c]),
                note.cloned()
                    .unwrap_or_else(|| v.map_or("-".into(), |v| format!("{v:.3}")))
            );
            svg.rect(x, y, cell - 1.0, cell - 1.0, &fill, &tip);
            if let Some(note) = note.filter(|n| !n.is_empty() && cell >= 22.0) {
                let light = v.is_some_and(|v| v < 0.6);
                let colour_text = if light { "#ffffff" } else { "#222222" };
                svg.open_group(&format!(r#"fill="{colour_text}""#));
                svg.text(
                    x + cell / 2.0,
                    y + cell / 2.0 + 4.0,
                    10.0,
                    Anchor::Middle,
                    note,
                );
                svg.close_group();
            }
        }
    }
    svg.close_group();
    let sx = left + cell * h.cols.len() as f64 + 16.0;
    for s in 0..40 {
        let t = 1.0 - s as f64 / 40.0;
        svg.rect(sx, top + s as f64 * 3.0, 14.0, 3.5, &svg::viridis(t), "");
    }
    svg.text(sx + 20.0, top + 8.0, 11.0, Anchor::Start, "1");
    svg.text(sx + 20.0, top + 120.0, 11.0, Anchor::Start, "0");
    svg.text_rotated(
        sx + 48.0,
        top + 60.0,
        11.0,
        Anchor::Middle,
        -90.0,
        h.scale_label,
    );
    svg
}

/// Horizontal bars: `(label, value, group)` with values in [0, 1], bars coloured by group, and
/// an optional dashed reference line per group (e.g. perfect mixing).
pub fn bars(title: &str, items: &[(String, f64, String)], reference: &[(String, f64)]) -> Svg {
    let groups: Vec<&str> = {
        let mut g: Vec<&str> = items.iter().map(|i| i.2.as_str()).collect();
        g.dedup();
        g.sort_unstable();
        g.dedup();
        g
    };
    let (left, top, bar, plot_w) = (230.0, 50.0, 18.0, 420.0);
    let height = top + items.len() as f64 * (bar + 4.0) + 60.0;
    let mut svg = Svg::new(left + plot_w + 160.0, height);
    svg.text(8.0, 24.0, 15.0, Anchor::Start, title);
    let x = |v: f64| left + v.clamp(0.0, 1.0) * plot_w;
    let colour = |g: &str| svg::category(groups.iter().position(|x| *x == g).unwrap_or(0));
    svg.open_group(r#"class="bars""#);
    for (i, (label, value, group)) in items.iter().enumerate() {
        let y = top + i as f64 * (bar + 4.0);
        svg.text(
            left - 6.0,
            y + bar - 5.0,
            11.0,
            Anchor::End,
            &shorten(label, 32),
        );
        let tip = format!("<title>{}: {value:.3}</title>", svg::escape(label));
        svg.rect(
            left,
            y,
            (x(*value) - left).max(0.5),
            bar,
            &colour(group),
            &tip,
        );
        svg.text(
            x(*value) + 4.0,
            y + bar - 5.0,
            10.0,
            Anchor::Start,
            &format!("{value:.2}"),
        );
    }
    svg.close_group();
    let bottom = top + items.len() as f64 * (bar + 4.0);
    svg.line(left, bottom, left + plot_w, bottom, "#444", 1.0);
    for t in ticks(0.0, 1.0, 5) {
        svg.text(x(t), bottom + 16.0, 11.0, Anchor::Middle, &tick_label(t));
    }
    for (group, value) in reference {
        svg.line(x(*value), top - 6.0, x(*value), bottom, "#555", 1.0);
        svg.text(
            x(*value),
            top - 9.0,
            10.0,
            Anchor::Middle,
            &format!("{group} ideal"),
        );
    }
    for (i, g) in groups.iter().enumerate() {
        let ly = top + 10.0 + i as f64 * 18.0;
        svg.rect(left + plot_w + 30.0, ly - 10.0, 12.0, 12.0, &colour(g), "");
        svg.text(left + plot_w + 48.0, ly, 12.0, Anchor::Start, g);
    }
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legend_keeps_the_frequent_and_lumps_the_tail() {
        let mut labels: Vec<Option<String>> = Vec::new();
        for c in 0..30 {
            for _ in 0..(40 - c) {
                labels.push(Some(format!("type{c:02}")));
            }
        }
        labels.push(None);
        let (entries, colours) = legend(&labels, "(none)");
        assert_eq!(entries.len(), MAX_NAMED + 2);
        assert_eq!(entries[0].0, "type00");
        assert_eq!(entries[MAX_NAMED].0, "other (10 categories)");
        assert_eq!(
            entries[MAX_NAMED].2,
            (20..30).map(|c| 40 - c).sum::<usize>()
        );
        assert_eq!(
            entries[MAX_NAMED + 1],
            ("(none)".into(), svg::MISSING.into(), 1)
        );
        assert_eq!(colours.last().map(String::as_str), Some(svg::MISSING));
        // 21 categories fit without an "other" of one.
        let few: Vec<Option<String>> = (0..21).map(|c| Some(c.to_string())).collect();
        assert_eq!(legend(&few, "-").0.len(), 21);
    }

    #[test]
    fn point_style_shrinks_with_the_count() {
        let (r_small, a_small) = point_style(500);
        let (r_big, a_big) = point_style(100_000);
        assert!(r_small > r_big && a_small > a_big);
        assert!(r_big >= 0.7 && a_big >= 0.25);
    }
}
