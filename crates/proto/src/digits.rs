//! Decimal digits appended to a `String` without the formatting machinery (`write!` of an integer goes
//! through `Formatter::pad_integral`, hundreds of instructions): for text made for every frame,
//! connection or log line (device times, addresses, the log's time).

/// Appends the last `width` decimal digits of `n`, with leading zeros.
pub fn push_fixed(out: &mut String, n: u32, width: u32) {
    for place in (0..width).rev() {
        let digit = n / 10u32.pow(place) % 10;
        out.push(char::from(b'0' + digit as u8));
    }
}

/// Appends `n` in decimal, without leading zeros.
pub fn push_decimal(out: &mut String, n: u32) {
    let width = n.checked_ilog10().unwrap_or(0) + 1;
    push_fixed(out, n, width);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_written_as_std_writes_them() {
        for n in [
            0,
            1,
            9,
            10,
            99,
            100,
            255,
            65_535,
            999_999,
            1_000_000,
            u32::MAX,
        ] {
            let mut out = String::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string());
            for width in [1, 2, 4, 6, 10] {
                let mut out = String::new();
                push_fixed(&mut out, n, width);
                let full = format!("{n:0>10}");
                assert_eq!(out, full[10 - width as usize..], "{n} in {width}");
            }
        }
    }
}
