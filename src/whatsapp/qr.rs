//! QR codes as images: SVG and PNG renderings of the QR string.

use qrcode::{Color, EcLevel, QrCode};

/// Pixels per module in the PNG.
const PNG_SCALE: usize = 8;
/// Quiet-zone width in modules.
const QUIET: usize = 4;

fn encode(data: &str) -> anyhow::Result<QrCode> {
    Ok(QrCode::with_error_correction_level(
        data.as_bytes(),
        EcLevel::L,
    )?)
}

/// An SVG image of the QR code.
pub fn svg(data: &str) -> anyhow::Result<String> {
    let code = encode(data)?;
    Ok(code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(256, 256)
        .quiet_zone(true)
        .build())
}

/// A PNG image (8-bit grayscale) of the QR code.
pub fn png(data: &str) -> anyhow::Result<Vec<u8>> {
    let code = encode(data)?;
    let width = code.width();
    let colors = code.to_colors();
    let side = (width + 2 * QUIET) * PNG_SCALE;
    let mut pixels = vec![255u8; side * side];
    for y in 0..width {
        for x in 0..width {
            if colors[y * width + x] == Color::Dark {
                for dy in 0..PNG_SCALE {
                    let row = (y + QUIET) * PNG_SCALE + dy;
                    let start = row * side + (x + QUIET) * PNG_SCALE;
                    pixels[start..start + PNG_SCALE].fill(0);
                }
            }
        }
    }
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, side as u32, side as u32);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&pixels)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_svg_and_png() {
        let data = crate::whatsapp::sim::qr_code("i1", 1);
        let s = svg(&data).unwrap();
        assert!(s.contains("<svg"));
        let p = png(&data).unwrap();
        assert_eq!(&p[..8], b"\x89PNG\r\n\x1a\n");
    }
}
