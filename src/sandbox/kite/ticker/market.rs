//! A make-believe market for the sandbox ticker: every instrument token gets a plausible
//! starting price (seeded by the token, so it is the same on every connection and run) and a
//! random walk with one step per tick interval. The market is shared by all connections and
//! moved by time, not by how many clients watch it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::packet::{divisor, segment, SEGMENT_INDICES};

/// A walk of several minutes of idle time is not worth replaying step by step.
const MAX_CATCH_UP_STEPS: u32 = 50;

/// One level of market depth.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Level {
    pub quantity: u32,
    pub price: u32,
    pub orders: u16,
}

/// Everything a full packet carries; prices in the segment's unit (see `packet::divisor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub instrument_token: u32,
    pub last_price: u32,
    pub last_quantity: u32,
    pub average_price: u32,
    pub volume: u32,
    pub buy_quantity: u32,
    pub sell_quantity: u32,
    pub open: u32,
    pub high: u32,
    pub low: u32,
    pub close: u32,
    pub last_trade_time: u32,
    pub oi: u32,
    pub oi_day_high: u32,
    pub oi_day_low: u32,
    pub exchange_time: u32,
    /// 5 bids (best first), then 5 offers (best first).
    pub depth: [Level; 10],
}

struct Instrument {
    quote: Quote,
    /// Sum of price × quantity in units, for the average traded price.
    turnover: u64,
    stepped_at: Instant,
}

pub struct Market {
    step_every: Duration,
    instruments: HashMap<u32, Instrument>,
    rng: fastrand::Rng,
}

fn unix_secs() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

/// The smallest price move: 5 paise, or the same 1/20 of a unit in the finer segments.
fn tick_size(instrument_token: u32) -> u32 {
    divisor(segment(instrument_token)) / 20
}

impl Market {
    pub fn new(step_every: Duration) -> Market {
        Market {
            step_every: step_every.max(Duration::from_millis(10)),
            instruments: HashMap::new(),
            rng: fastrand::Rng::new(),
        }
    }

    /// The current quotes of `tokens` (in that order), each moved on by the steps due since
    /// it was last looked at.
    pub fn quotes(&mut self, tokens: &[u32], now: Instant) -> Vec<Quote> {
        tokens
            .iter()
            .map(|&token| {
                let step_every = self.step_every;
                let inst = self
                    .instruments
                    .entry(token)
                    .or_insert_with(|| opening(token, now));
                let due = now.saturating_duration_since(inst.stepped_at).as_nanos()
                    / step_every.as_nanos();
                let steps = due.min(MAX_CATCH_UP_STEPS as u128) as u32;
                for _ in 0..steps {
                    step(inst, &mut self.rng);
                }
                if due > 0 {
                    inst.stepped_at = now;
                    let t = unix_secs();
                    inst.quote.exchange_time = t;
                    inst.quote.last_trade_time = t;
                }
                inst.quote.clone()
            })
            .collect()
    }
}

/// The instrument as the day opens: a price seeded by its token.
fn opening(token: u32, now: Instant) -> Instrument {
    let mut seed = fastrand::Rng::with_seed(u64::from(token));
    let unit = divisor(segment(token));
    let rupees = match segment(token) {
        SEGMENT_INDICES => seed.u32(10_000..=25_000),
        3 | 6 => seed.u32(70..=90),
        _ => seed.u32(100..=3_000),
    };
    let price = rupees * unit;
    let t = unix_secs();
    let mut quote = Quote {
        instrument_token: token,
        last_price: price,
        last_quantity: 0,
        average_price: price,
        volume: 0,
        buy_quantity: 0,
        sell_quantity: 0,
        open: price,
        high: price,
        low: price,
        close: price - price / 100 + seed.u32(0..=price / 50),
        last_trade_time: t,
        oi: 0,
        oi_day_high: 0,
        oi_day_low: 0,
        exchange_time: t,
        depth: [Level::default(); 10],
    };
    if segment(token) == 2 || segment(token) == 5 {
        // Derivatives carry open interest.
        quote.oi = seed.u32(10_000..=500_000);
        quote.oi_day_high = quote.oi;
        quote.oi_day_low = quote.oi;
    }
    fill_depth(&mut quote, &mut seed);
    Instrument {
        quote,
        turnover: 0,
        stepped_at: now,
    }
}

/// One trade: the price moves 1-4 ticks up or down (never zero: "prices moving" must show).
fn step(inst: &mut Instrument, rng: &mut fastrand::Rng) {
    let q = &mut inst.quote;
    let tick = tick_size(q.instrument_token);
    let moved = tick * rng.u32(1..=4);
    q.last_price = if rng.bool() || q.last_price <= moved + tick {
        q.last_price + moved
    } else {
        q.last_price - moved
    };
    q.high = q.high.max(q.last_price);
    q.low = q.low.min(q.last_price);
    q.last_quantity = rng.u32(1..=500);
    q.volume = q.volume.saturating_add(q.last_quantity);
    inst.turnover += u64::from(q.last_price) * u64::from(q.last_quantity);
    q.average_price = (inst.turnover / u64::from(q.volume.max(1))) as u32;
    if q.oi > 0 {
        q.oi = q.oi.saturating_add(rng.u32(0..=200)).saturating_sub(100);
        q.oi_day_high = q.oi_day_high.max(q.oi);
        q.oi_day_low = q.oi_day_low.min(q.oi);
    }
    fill_depth(q, rng);
}

/// Five bids below the last price and five offers above it, one tick apart.
fn fill_depth(q: &mut Quote, rng: &mut fastrand::Rng) {
    let tick = tick_size(q.instrument_token);
    let (mut bought, mut sold) = (0u32, 0u32);
    for i in 0..5u32 {
        let bid = Level {
            quantity: rng.u32(1..=2_000),
            price: q.last_price.saturating_sub(tick * (i + 1)),
            orders: rng.u16(1..=40),
        };
        let offer = Level {
            quantity: rng.u32(1..=2_000),
            price: q.last_price + tick * (i + 1),
            orders: rng.u16(1..=40),
        };
        bought += bid.quantity;
        sold += offer.quantity;
        q.depth[i as usize] = bid;
        q.depth[5 + i as usize] = offer;
    }
    // The book beyond five levels is deeper still.
    q.buy_quantity = bought * 7;
    q.sell_quantity = sold * 7;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_start_at_the_same_place_and_then_move() {
        let t0 = Instant::now();
        let mut a = Market::new(Duration::from_millis(100));
        let mut b = Market::new(Duration::from_millis(100));
        let first = a.quotes(&[738561], t0)[0].last_price;
        assert_eq!(first, b.quotes(&[738561], t0)[0].last_price);
        let later = a.quotes(&[738561], t0 + Duration::from_millis(100))[0].clone();
        assert_ne!(later.last_price, first, "one step is always a move");
        assert!(later.volume > 0);
        assert!(later.low <= later.last_price && later.last_price <= later.high);
        assert!(later.depth[0].price < later.last_price && later.depth[5].price > later.last_price);
    }

    #[test]
    fn no_step_without_time() {
        let t0 = Instant::now();
        let mut m = Market::new(Duration::from_secs(1));
        let q = m.quotes(&[256265], t0)[0].clone();
        assert_eq!(m.quotes(&[256265], t0 + Duration::from_millis(500))[0], q);
    }
}
