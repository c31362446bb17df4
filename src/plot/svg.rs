//! A minimal SVG writer (the elements the charts use, with text in DejaVu Sans), axis ticks and
//! the colour palettes.

use std::fmt::Write;

/// The font every text element asks for (Debian `fonts-dejavu-core`; any sans-serif otherwise).
pub const FONT: &str = "DejaVu Sans, Verdana, sans-serif";

/// An SVG document being drawn, in pixels.
#[derive(Debug, Clone)]
pub struct Svg {
    width: f64,
    height: f64,
    body: String,
}

/// `text` with `&`, `<`, `>` and quotes escaped for XML.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// `text` cut to `max` characters (an ellipsis marks the cut).
pub fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// Text anchor.
#[derive(Debug, Clone, Copy)]
pub enum Anchor {
    /// Left-aligned at x.
    Start,
    /// Centred on x.
    Middle,
    /// Right-aligned at x.
    End,
}

impl Anchor {
    fn name(self) -> &'static str {
        match self {
            Anchor::Start => "start",
            Anchor::Middle => "middle",
            Anchor::End => "end",
        }
    }
}

impl Svg {
    /// An empty white canvas.
    pub fn new(width: f64, height: f64) -> Svg {
        let mut svg = Svg {
            width,
            height,
            body: String::new(),
        };
        svg.rect(0.0, 0.0, width, height, "#ffffff", "");
        svg
    }

    /// Width in pixels.
    pub fn width(&self) -> f64 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> f64 {
        self.height
    }

    /// A filled rectangle; `extra` is appended inside the element (e.g. a `<title>`).
    pub fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: &str, extra: &str) {
        let _ = write!(
            self.body,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="{fill}""#
        );
        if extra.is_empty() {
            self.body.push_str("/>\n");
        } else {
            let _ = writeln!(self.body, ">{extra}</rect>");
        }
    }

    /// A straight line.
    pub fn line(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, stroke: &str, width: f64) {
        let _ = writeln!(
            self.body,
            r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="{stroke}" stroke-width="{width}"/>"#
        );
    }

    /// An open polyline through `points`.
    pub fn polyline(&mut self, points: &[(f64, f64)], stroke: &str, width: f64, class: &str) {
        let mut d = String::new();
        for (x, y) in points {
            let _ = write!(d, "{x:.1},{y:.1} ");
        }
        let _ = writeln!(
            self.body,
            r#"<polyline class="{class}" points="{}" fill="none" stroke="{stroke}" stroke-width="{width}" stroke-linejoin="round"/>"#,
            d.trim_end()
        );
    }

    /// A filled circle (a scatter point).
    pub fn circle(&mut self, cx: f64, cy: f64, r: f64, fill: &str) {
        let _ = writeln!(
            self.body,
            r#"<circle cx="{cx:.1}" cy="{cy:.1}" r="{r:.2}" fill="{fill}"/>"#
        );
    }

    /// Text at `(x, y)` (baseline), escaped.
    pub fn text(&mut self, x: f64, y: f64, size: f64, anchor: Anchor, text: &str) {
        let _ = writeln!(
            self.body,
            r#"<text x="{x:.1}" y="{y:.1}" font-size="{size}" text-anchor="{}" font-family="{FONT}">{}</text>"#,
            anchor.name(),
            escape(text)
        );
    }

    /// Text rotated by `degrees` around `(x, y)`.
    pub fn text_rotated(
        &mut self,
        x: f64,
        y: f64,
        size: f64,
        anchor: Anchor,
        degrees: f64,
        text: &str,
    ) {
        let _ = writeln!(
            self.body,
            r#"<text x="{x:.1}" y="{y:.1}" font-size="{size}" text-anchor="{}" font-family="{FONT}" transform="rotate({degrees} {x:.1} {y:.1})">{}</text>"#,
            anchor.name(),
            escape(text)
        );
    }

    /// Starts a group with `attributes` (closed by [`Svg::close_group`]).
    pub fn open_group(&mut self, attributes: &str) {
        let _ = writeln!(self.body, "<g {attributes}>");
    }

    /// Closes the group [`Svg::open_group`] opened.
    pub fn close_group(&mut self) {
        self.body.push_str("</g>\n");
    }

    /// The document.
    pub fn finish(&self) -> String {
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">\n{}</svg>\n",
            self.body,
            w = self.width,
            h = self.height
        )
    }
}

/// About `n` round tick values covering `[lo, hi]` (1, 2, 5 × 10^k steps).
pub fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return vec![lo];
    }
    let raw = (hi - lo) / n.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .min_by(|a, b| (a / raw).ln().abs().total_cmp(&(b / raw).ln().abs()))
        .unwrap_or(magnitude);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// A tick value as short text.
pub fn tick_label(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1e4 || v.abs() < 1e-3 {
        format!("{v:.1e}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Colour of categories beyond the named ones ("other").
pub const OTHER: &str = "#a6a6a6";
/// Colour of cells without a value.
pub const MISSING: &str = "#c8c8c8";

/// matplotlib's tab20, dark shades first then light: 20 well-separated colours.
const TAB20: [&str; 20] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
    "#f7b6d2", "#dbdb8d", "#9edae5", "#393b79",
];

/// The colour of category `i`: tab20 for the first 20, then hues spaced by the golden angle at
/// two lightness levels (distinct for any number, though the legend names at most
/// `scatter::MAX_NAMED`).
pub fn category(i: usize) -> String {
    if let Some(c) = TAB20.get(i) {
        return (*c).to_string();
    }
    let j = i - TAB20.len();
    let hue = (j as f64 * 137.507_764) % 360.0;
    let light = if j.is_multiple_of(2) { 0.45 } else { 0.65 };
    hsl(hue, 0.65, light)
}

fn hsl(h: f64, s: f64, l: f64) -> String {
    let c = (1.0 - (2.0 * l - 1.0).abs()) * s;
    let x = c * (1.0 - ((h / 60.0) % 2.0 - 1.0).abs());
    let m = l - c / 2.0;
    let (r, g, b) = match (h / 60.0) as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    rgb(r + m, g + m, b + m)
}

fn rgb(r: f64, g: f64, b: f64) -> String {
    let byte = |v: f64| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    format!("#{:02x}{:02x}{:02x}", byte(r), byte(g), byte(b))
}

/// viridis at `t` in [0, 1] (matplotlib's map, 9 stops, linear between them).
pub fn viridis(t: f64) -> String {
    const STOPS: [(f64, f64, f64); 9] = [
        (0.267, 0.005, 0.329),
        (0.279, 0.175, 0.483),
        (0.230, 0.322, 0.546),
        (0.173, 0.449, 0.558),
        (0.128, 0.567, 0.551),
        (0.153, 0.680, 0.504),
        (0.360, 0.785, 0.388),
        (0.678, 0.864, 0.190),
        (0.993, 0.906, 0.144),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let pos = t * (STOPS.len() - 1) as f64;
    let i = (pos.floor() as usize).min(STOPS.len() - 2);
    let f = pos - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    rgb(
        a.0 + (b.0 - a.0) * f,
        a.1 + (b.1 - a.1) * f,
        a.2 + (b.2 - a.2) * f,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_inside() {
        assert_eq!(
            ticks(0.0, 1.0, 5),
            vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        let t = ticks(3.7, 118.0, 5);
        assert_eq!(t.first(), Some(&20.0));
        assert_eq!(t.last(), Some(&100.0));
    }

    #[test]
    fn categories_are_distinct() {
        let colours: std::collections::HashSet<String> = (0..60).map(category).collect();
        assert_eq!(colours.len(), 60);
        assert_eq!(viridis(0.0), "#440154");
        assert_eq!(viridis(1.0), "#fde725");
    }

    #[test]
    fn text_is_escaped() {
        let mut svg = Svg::new(10.0, 10.0);
        svg.text(1.0, 1.0, 10.0, Anchor::Start, "a<b & \"c\"");
        assert!(svg.finish().contains("a&lt;b &amp; &quot;c&quot;"));
    }
}
