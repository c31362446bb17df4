//! Output files of pictures: the format from the file name, checked before anything is
//! computed; SVG written as is, PNG rasterised by resvg with a system font; written to a
//! temporary file beside the target and renamed into place, so a failure leaves no file.

use super::PlotError;
use crate::atlas::{persist, temp_file_beside};
use std::io::Write;
use std::path::{Path, PathBuf};

/// PNG pixels per SVG pixel (sharp on high-density screens and in slides).
pub const PNG_SCALE: f32 = 2.0;

/// What an output file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.svg`
    Svg,
    /// `.png`
    Png,
    /// `.html` (the report)
    Html,
}

/// A checked output path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    path: PathBuf,
    format: Format,
}

impl Output {
    /// `path` if its extension is one of `allowed` and its folder exists.
    pub fn check(path: &Path, allowed: &[Format]) -> Result<Output, PlotError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let format = match ext.as_deref() {
            Some("svg") => Some(Format::Svg),
            Some("png") => Some(Format::Png),
            Some("html") | Some("htm") => Some(Format::Html),
            _ => None,
        }
        .filter(|f| allowed.contains(f));
        let Some(format) = format else {
            let names: Vec<&str> = allowed
                .iter()
                .map(|f| match f {
                    Format::Svg => ".svg",
                    Format::Png => ".png",
                    Format::Html => ".html",
                })
                .collect();
            return Err(PlotError::OutputFormat {
                path: path.into(),
                expected: names.join(" or "),
            });
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                return Err(PlotError::MissingFolder {
                    path: path.into(),
                    folder: dir.into(),
                });
            }
        }
        Ok(Output {
            path: path.into(),
            format,
        })
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Writes an SVG document: as text for `.svg`, rasterised for `.png`.
    pub fn write_svg(&self, svg: &str) -> Result<(), PlotError> {
        match self.format {
            Format::Png => {
                let png = rasterise(svg).map_err(|message| PlotError::Render {
                    path: self.path.clone(),
                    message,
                })?;
                self.write_bytes(&png)
            }
            Format::Svg | Format::Html => self.write_bytes(svg.as_bytes()),
        }
    }

    /// Writes `bytes` to the file (temporary file, then renamed).
    pub fn write_bytes(&self, bytes: &[u8]) -> Result<(), PlotError> {
        let mut temp = temp_file_beside(&self.path)?;
        temp.write_all(bytes)
            .and_then(|()| temp.flush())
            .map_err(|e| PlotError::Render {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
        persist(temp, &self.path)?;
        Ok(())
    }
}

/// The system fonts resvg draws text with; an error when there are none.
fn fonts() -> Result<resvg::usvg::fontdb::Database, String> {
    let mut db = resvg::usvg::fontdb::Database::new();
    db.load_system_fonts();
    if db.is_empty() {
        return Err(
            "no system font found to draw the text of a PNG: install one (Debian: \
             `apt-get install fonts-dejavu-core`, which scripts/setup.sh does) or write .svg"
                .into(),
        );
    }
    db.set_sans_serif_family("DejaVu Sans");
    Ok(db)
}

/// `svg` as PNG bytes at [`PNG_SCALE`].
pub fn rasterise(svg: &str) -> Result<Vec<u8>, String> {
    use resvg::{tiny_skia, usvg};
    let options = usvg::Options {
        fontdb: std::sync::Arc::new(fonts()?),
        ..usvg::Options::default()
    };
    let tree = usvg::Tree::from_str(svg, &options).map_err(|e| format!("invalid SVG: {e}"))?;
    let size = tree
        .size()
        .to_int_size()
        .scale_by(PNG_SCALE)
        .ok_or("empty picture")?;
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| format!("cannot allocate a {}x{} image", size.width(), size.height()))?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(PNG_SCALE, PNG_SCALE),
        &mut pixmap.as_mut(),
    );
    pixmap
        .encode_png()
        .map_err(|e| format!("encoding the PNG: {e}"))
}
