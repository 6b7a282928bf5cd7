//! Kite's binary tick layout (what `KiteTicker._parse_binary` reads): a message is a u16
//! packet count, then per packet a u16 length and the packet. Every field is a big-endian
//! 32-bit integer, prices in the segment's smallest unit (paise for equities). Tradable
//! instruments: ltp 8 bytes, quote 44, full 184 (with 5+5 levels of market depth). Indices
//! (segment 9): ltp 8, quote 28, full 32.

use super::market::Quote;

/// The three streaming modes, named as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Ltp,
    Quote,
    Full,
}

impl Mode {
    pub fn parse(name: &str) -> Option<Mode> {
        match name {
            "ltp" => Some(Mode::Ltp),
            "quote" => Some(Mode::Quote),
            "full" => Some(Mode::Full),
            _ => None,
        }
    }
}

/// The segment byte of an instrument token (its low 8 bits).
pub fn segment(instrument_token: u32) -> u8 {
    (instrument_token & 0xff) as u8
}

pub const SEGMENT_INDICES: u8 = 9;

/// Price divisor of a segment, as the client applies it: currency (3) in 1e-7 rupee, BSE
/// currency (6) and NCO (12) in 1e-4, everything else in paise.
pub fn divisor(segment: u8) -> u32 {
    match segment {
        3 => 10_000_000,
        6 | 12 => 10_000,
        _ => 100,
    }
}

/// Length of one packet of `mode` for this instrument.
pub fn packet_len(instrument_token: u32, mode: Mode) -> usize {
    let index = segment(instrument_token) == SEGMENT_INDICES;
    match (mode, index) {
        (Mode::Ltp, _) => 8,
        (Mode::Quote, true) => 28,
        (Mode::Full, true) => 32,
        (Mode::Quote, false) => 44,
        (Mode::Full, false) => 184,
    }
}

/// One packet (without its length prefix).
pub fn encode_packet(q: &Quote, mode: Mode) -> Vec<u8> {
    let mut p = Vec::with_capacity(packet_len(q.instrument_token, mode));
    let mut put = |v: u32| p.extend_from_slice(&v.to_be_bytes());
    put(q.instrument_token);
    put(q.last_price);
    if mode == Mode::Ltp {
        return p;
    }
    if segment(q.instrument_token) == SEGMENT_INDICES {
        // Indices: high, low, open, close (in that order), the change, then a timestamp.
        for v in [q.high, q.low, q.open, q.close] {
            put(v);
        }
        put(q.last_price.wrapping_sub(q.close));
        if mode == Mode::Full {
            put(q.exchange_time);
        }
        return p;
    }
    for v in [
        q.last_quantity,
        q.average_price,
        q.volume,
        q.buy_quantity,
        q.sell_quantity,
        q.open,
        q.high,
        q.low,
        q.close,
    ] {
        put(v);
    }
    if mode == Mode::Quote {
        return p;
    }
    for v in [
        q.last_trade_time,
        q.oi,
        q.oi_day_high,
        q.oi_day_low,
        q.exchange_time,
    ] {
        put(v);
    }
    for level in q.depth.iter() {
        p.extend_from_slice(&level.quantity.to_be_bytes());
        p.extend_from_slice(&level.price.to_be_bytes());
        p.extend_from_slice(&level.orders.to_be_bytes());
        p.extend_from_slice(&[0, 0]); // padding: each level is 12 bytes
    }
    p
}

/// A whole binary message: the packet count, then each packet behind its length.
pub fn encode_message(packets: &[Vec<u8>]) -> Vec<u8> {
    let mut m = Vec::with_capacity(2 + packets.iter().map(|p| 2 + p.len()).sum::<usize>());
    m.extend_from_slice(&(packets.len() as u16).to_be_bytes());
    for p in packets {
        m.extend_from_slice(&(p.len() as u16).to_be_bytes());
        m.extend_from_slice(p);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::super::market::Market;
    use super::*;
    use std::time::{Duration, Instant};

    fn quote(token: u32) -> Quote {
        Market::new(Duration::from_secs(1)).quotes(&[token], Instant::now())[0].clone()
    }

    fn be(p: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(p[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn packet_lengths_match_what_the_client_dispatches_on() {
        for (token, mode, len) in [
            (738561, Mode::Ltp, 8),
            (738561, Mode::Quote, 44),
            (738561, Mode::Full, 184),
            (256265, Mode::Ltp, 8),
            (256265, Mode::Quote, 28),
            (256265, Mode::Full, 32),
        ] {
            assert_eq!(
                encode_packet(&quote(token), mode).len(),
                len,
                "{token} {mode:?}"
            );
            assert_eq!(packet_len(token, mode), len);
        }
    }

    #[test]
    fn fields_sit_where_the_client_reads_them() {
        let q = quote(738561);
        let p = encode_packet(&q, Mode::Full);
        assert_eq!(be(&p, 0), 738561);
        assert_eq!(be(&p, 4), q.last_price);
        assert_eq!(be(&p, 28), q.open);
        assert_eq!(be(&p, 40), q.close);
        assert_eq!(be(&p, 60), q.exchange_time);
        // First sell level (the 6th of 10) at 64 + 5 * 12.
        assert_eq!(be(&p, 64 + 60 + 4), q.depth[5].price);
        let i = quote(256265);
        let p = encode_packet(&i, Mode::Quote);
        assert_eq!((be(&p, 8), be(&p, 12)), (i.high, i.low));
    }

    #[test]
    fn a_message_frames_each_packet_with_its_length() {
        let m = encode_message(&[vec![1; 8], vec![2; 44]]);
        assert_eq!(&m[..4], &[0, 2, 0, 8]);
        assert_eq!(&m[12..14], &[0, 44]);
        assert_eq!(m.len(), 2 + 2 + 8 + 2 + 44);
    }
}
