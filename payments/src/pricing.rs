//! Exact satoshi charges from a provider's signed prices.
//!
//! Charges are computed from cumulative usage and rounded up once, so the total a node earns is
//! exactly its prices × what it stored and served (no rounding drift over many small requests).

use crate::PaymentError;

/// Bytes in a GB (prices are per decimal GB).
pub const GB: u128 = 1_000_000_000;
/// Seconds in a billing month (30 days).
pub const MONTH_SECS: u128 = 30 * 86_400;

pub use blackbox_core::Prices;

/// What one payer has used of one provider, cumulative over a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Bytes stored × seconds leased.
    pub storage_byte_secs: u128,
    /// Bytes served.
    pub egress_bytes: u64,
    /// Core-seconds of CPU held by jobs (wall time × cores).
    pub cpu_core_secs: u64,
    /// Fuel used by jobs.
    pub fuel: u64,
}

fn ceil_div(a: u128, b: u128) -> u128 {
    a.div_ceil(b)
}

impl Usage {
    /// Satoshis owed for all of it at `prices`.
    pub fn owed(&self, p: &Prices) -> u64 {
        let storage = ceil_div(self.storage_byte_secs * u128::from(p.storage_sat_per_gb_month), GB * MONTH_SECS);
        let egress = ceil_div(u128::from(self.egress_bytes) * u128::from(p.egress_sat_per_gb), GB);
        let cpu = ceil_div(u128::from(self.cpu_core_secs) * u128::from(p.cpu_sat_per_core_hour), 3600);
        let fuel = ceil_div(u128::from(self.fuel) * u128::from(p.fuel_sat_per_gfuel), GB);
        u64::try_from(storage + egress + cpu + fuel).unwrap_or(u64::MAX)
    }

    /// Adds a lease of `secs` on `bytes`.
    pub fn with_storage(mut self, bytes: u64, secs: u64) -> Self {
        self.storage_byte_secs = self.storage_byte_secs.saturating_add(u128::from(bytes) * u128::from(secs));
        self
    }

    /// Adds `bytes` served.
    pub fn with_egress(mut self, bytes: u64) -> Self {
        self.egress_bytes = self.egress_bytes.saturating_add(bytes);
        self
    }

    /// Both usages together.
    pub fn plus(self, other: Usage) -> Self {
        Self {
            storage_byte_secs: self.storage_byte_secs.saturating_add(other.storage_byte_secs),
            egress_bytes: self.egress_bytes.saturating_add(other.egress_bytes),
            cpu_core_secs: self.cpu_core_secs.saturating_add(other.cpu_core_secs),
            fuel: self.fuel.saturating_add(other.fuel),
        }
    }

    /// This usage less `other` (never below zero), for taking back a charge.
    pub fn minus(self, other: Usage) -> Self {
        Self {
            storage_byte_secs: self.storage_byte_secs.saturating_sub(other.storage_byte_secs),
            egress_bytes: self.egress_bytes.saturating_sub(other.egress_bytes),
            cpu_core_secs: self.cpu_core_secs.saturating_sub(other.cpu_core_secs),
            fuel: self.fuel.saturating_sub(other.fuel),
        }
    }

    /// Adds `fuel` units of job fuel.
    pub fn with_fuel(mut self, fuel: u64) -> Self {
        self.fuel = self.fuel.saturating_add(fuel);
        self
    }

    /// Adds `secs` core-seconds of CPU.
    pub fn with_cpu(mut self, core_secs: u64) -> Self {
        self.cpu_core_secs = self.cpu_core_secs.saturating_add(core_secs);
        self
    }
}

/// The payer's guard: refuses to pay a cumulative `asked` above what `usage` costs at `prices`.
pub fn check_bill(prices: &Prices, usage: &Usage, asked: u64) -> Result<(), PaymentError> {
    let allowed = usage.owed(prices);
    if asked > allowed {
        return Err(PaymentError::Overbilled { asked, allowed });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const P: Prices = Prices {
        storage_sat_per_gb_month: 100,
        egress_sat_per_gb: 10,
        cpu_sat_per_core_hour: 36,
        fuel_sat_per_gfuel: 7,
    };

    #[test]
    fn charges() {
        // 1 GB for a month at 100 sat.
        assert_eq!(Usage::default().with_storage(1_000_000_000, 30 * 86_400).owed(&P), 100);
        // Any use at all costs at least one satoshi; rounding is up, once.
        assert_eq!(Usage::default().with_egress(1).owed(&P), 1);
        assert_eq!(Usage::default().with_egress(2_000_000_000).owed(&P), 20);
        assert_eq!(Usage::default().with_cpu(100).owed(&P), 1);
        assert_eq!(Usage::default().owed(&P), 0);
        let a = Usage::default().with_egress(5).with_cpu(2);
        let b = Usage::default().with_storage(3, 4).with_egress(1);
        assert_eq!(Usage::default().with_fuel(3_000_000_000).owed(&P), 21);
        assert_eq!(Usage::default().with_fuel(1).owed(&P), 1);
        assert_eq!(a.plus(b), Usage { storage_byte_secs: 12, egress_bytes: 6, cpu_core_secs: 2, fuel: 0 });
        assert_eq!(a.plus(b).minus(b), a);
        assert_eq!(b.minus(a), Usage { storage_byte_secs: 12, egress_bytes: 0, cpu_core_secs: 0, fuel: 0 });
        assert!(check_bill(&P, &Usage::default().with_egress(1), 1).is_ok());
        assert_eq!(
            check_bill(&P, &Usage::default().with_egress(1), 2),
            Err(PaymentError::Overbilled { asked: 2, allowed: 1 })
        );
    }

    proptest! {
        #[test]
        fn owed_is_monotonic_and_exact_over_splits(parts in proptest::collection::vec(0u64..5_000_000_000, 1..20)) {
            let mut u = Usage::default();
            let mut last = 0;
            for &b in &parts {
                u = u.with_egress(b).with_storage(b, 3600);
                let now = u.owed(&P);
                prop_assert!(now >= last);
                last = now;
            }
            let total: u64 = parts.iter().sum();
            let whole = Usage::default().with_egress(total).with_storage(total, 3600);
            prop_assert_eq!(u.owed(&P), whole.owed(&P));
        }
    }
}
