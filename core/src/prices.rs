//! What a provider charges, as signed into its offer and pinned into each payment channel.

/// Prices in satoshis; the one type offers, channels, billing and the client's payer share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Prices {
    /// Per GB (10^9 bytes) stored for a month (30 days).
    pub storage_sat_per_gb_month: u64,
    /// Per GB served.
    pub egress_sat_per_gb: u64,
    /// Per core-hour of CPU.
    pub cpu_sat_per_core_hour: u64,
    /// Per 10^9 units of job fuel (WebAssembly instructions, roughly).
    pub fuel_sat_per_gfuel: u64,
}
