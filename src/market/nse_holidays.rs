//! NSE equity-segment trading holidays built into the default calendar (docs/config.md,
//! "Market hours", names the circulars).
//!
//! Only weekdays are listed: a holiday on a Saturday or Sunday closes nothing more. 2027 is not
//! here: when this list was written the exchange had not published it. Until a release carries
//! it, add the dates with `[market] holidays`.

/// `(year, month, day, occasion)`.
pub const NSE_HOLIDAYS: &[(i16, i8, i8, &str)] = &[
    // NSE circular CMTR72260 (12 January 2026): an extra closure.
    (2026, 1, 15, "Municipal Corporation Election, Maharashtra"),
    // NSE "Holidays for trading" 2026, equity segment (docs/config.md: where it was read).
    (2026, 1, 26, "Republic Day"),
    (2026, 3, 3, "Holi"),
    (2026, 3, 26, "Shri Ram Navami"),
    (2026, 3, 31, "Shri Mahavir Jayanti"),
    (2026, 4, 3, "Good Friday"),
    (2026, 4, 14, "Dr. Baba Saheb Ambedkar Jayanti"),
    (2026, 5, 1, "Maharashtra Day"),
    (2026, 5, 28, "Bakri Id"),
    (2026, 6, 26, "Muharram"),
    (2026, 9, 14, "Ganesh Chaturthi"),
    (2026, 10, 2, "Mahatma Gandhi Jayanti"),
    (2026, 10, 20, "Dussehra"),
    (2026, 11, 10, "Diwali Balipratipada"),
    (2026, 11, 24, "Prakash Gurpurb Sri Guru Nanak Dev"),
    (2026, 12, 25, "Christmas"),
];

/// The years the built-in list covers completely.
pub const COVERED_YEARS: &[i16] = &[2026];
