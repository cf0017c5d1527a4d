//! Packing codes into bytes: `8 / bits` codes per byte, the lowest index in the lowest bits.

use super::{expect_len, QuantError};

fn per_byte(bits: u32) -> Result<usize, QuantError> {
    match bits {
        2 | 4 | 8 => Ok(8 / bits as usize),
        _ => Err(QuantError::UnsupportedBits(bits)),
    }
}

/// Pack `codes` (each below `2^bits`; higher bits are dropped) into `out`.
pub fn pack(codes: &[u8], bits: u32, out: &mut [u8]) -> Result<(), QuantError> {
    let n = per_byte(bits)?;
    expect_len("codes", out.len() * n, codes.len())?;
    match n {
        1 => out.copy_from_slice(codes),
        2 => pack_n::<2>(codes, out),
        _ => pack_n::<4>(codes, out),
    }
    Ok(())
}

/// `N` codes of `8 / N` bits per byte; a constant `N` lets the compiler vectorise the loop.
#[inline(always)]
fn pack_n<const N: usize>(codes: &[u8], out: &mut [u8]) {
    let bits = 8 / N as u32;
    let mask = ((1u16 << bits) - 1) as u8;
    for (byte, chunk) in out.iter_mut().zip(codes.chunks_exact(N)) {
        let mut b = 0u8;
        for (i, &c) in chunk.iter().enumerate() {
            b |= (c & mask) << (i as u32 * bits);
        }
        *byte = b;
    }
}

/// Unpack `packed` bytes into `out` codes (`out.len() == packed.len() * 8 / bits`).
pub fn unpack(packed: &[u8], bits: u32, out: &mut [u8]) -> Result<(), QuantError> {
    let n = per_byte(bits)?;
    expect_len("codes", packed.len() * n, out.len())?;
    let mask = ((1u16 << bits) - 1) as u8;
    for (&byte, chunk) in packed.iter().zip(out.chunks_exact_mut(n)) {
        for (i, c) in chunk.iter_mut().enumerate() {
            *c = (byte >> (i as u32 * bits)) & mask;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_bit_codes_pack_low_nibble_first() {
        let mut out = [0u8; 2];
        pack(&[1, 2, 15, 0], 4, &mut out).unwrap();
        assert_eq!(out, [0x21, 0x0F]);
    }

    #[test]
    fn two_bit_codes_pack_four_per_byte() {
        let mut out = [0u8; 1];
        pack(&[3, 0, 1, 2], 2, &mut out).unwrap();
        assert_eq!(out, [0b10_01_00_11]);
    }

    #[test]
    fn unpack_inverts_pack_for_every_width() {
        for bits in [2u32, 4, 8] {
            let codes: Vec<u8> = (0..64u32).map(|i| (i * 7 % (1 << bits)) as u8).collect();
            let mut packed = vec![0u8; 64 * bits as usize / 8];
            pack(&codes, bits, &mut packed).unwrap();
            let mut back = vec![0u8; 64];
            unpack(&packed, bits, &mut back).unwrap();
            assert_eq!(back, codes, "{bits} bits");
        }
    }

    #[test]
    fn a_wrong_output_length_is_refused() {
        let mut out = [0u8; 3];
        assert!(matches!(
            pack(&[0; 4], 4, &mut out),
            Err(QuantError::LengthMismatch { .. })
        ));
    }
}
