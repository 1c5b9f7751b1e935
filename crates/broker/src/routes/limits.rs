//! The bounds of every duration and count a bus request carries. A value outside its bounds
//! is a 400 naming the field, the value and the bound, never clamped silently and never
//! allowed to overflow a deadline (a lease of `u64::MAX` ms used to wrap around).

use std::time::Duration;

use crate::Error;

/// Longest lease a pull or stream may ask for: one day. A consumer that needs longer should
/// settle and re-publish; a lease that long already hides a crashed consumer's events for a day.
pub(crate) const MAX_LEASE_MS: u64 = 24 * 60 * 60 * 1000;

/// Longest delay of a delayed publish or a nack: 366 days, so a yearly reminder fits.
pub(crate) const MAX_DELAY_MS: u64 = 366 * 24 * 60 * 60 * 1000;

/// `value` must lie in `min..=max`; the error names `field` and both bounds.
pub(crate) fn within<T>(field: &str, value: T, min: T, max: T) -> Result<T, Error>
where
    T: PartialOrd + std::fmt::Display + Copy,
{
    if value < min || value > max {
        return Err(Error::BadRequest(format!(
            "{field} {value} must be between {min} and {max}"
        )));
    }
    Ok(value)
}

/// A lease in milliseconds: 1 ms to [`MAX_LEASE_MS`].
pub(crate) fn lease(ms: u64) -> Result<Duration, Error> {
    within("lease_ms", ms, 1, MAX_LEASE_MS).map(Duration::from_millis)
}

/// A delay in milliseconds (`field` says which): 0 to [`MAX_DELAY_MS`].
pub(crate) fn delay(field: &str, ms: u64) -> Result<Duration, Error> {
    within(field, ms, 0, MAX_DELAY_MS).map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_bounds_values_name_the_field_and_the_bounds() {
        let e = lease(u64::MAX).unwrap_err().to_string();
        assert!(
            e.contains("lease_ms") && e.contains(&MAX_LEASE_MS.to_string()),
            "{e}"
        );
        assert!(lease(0).is_err());
        assert_eq!(lease(1).ok(), Some(Duration::from_millis(1)));
        let e = delay("delay_ms", MAX_DELAY_MS + 1).unwrap_err().to_string();
        assert!(e.starts_with("delay_ms "), "{e}");
        assert_eq!(within("max", 5usize, 1, 5).ok(), Some(5));
    }
}
