//! `[power]`: what the node's electricity costs per unit it sells, hour by hour, and whether each
//! price covers that cost times a margin (pure logic; the daemon applies the decisions to the
//! offer it signs and to the jobs it admits).

use blackbox_core::Prices;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::parse_hours;
use crate::jobs::in_window;

/// Hours in the month that storage prices are quoted for (30 days).
const HOURS_PER_MONTH: f64 = 720.0;

/// The `[power]` section: the machine's draw and the electricity price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PowerConfig {
    /// Watts the machine draws idle: shown, not charged to any resource (it is on anyway).
    pub watts_idle: f64,
    /// Extra watts per fully busy core.
    pub watts_per_core: f64,
    /// Watts per TB (10^12 bytes) of disk kept spinning for the storage offered.
    pub watts_per_tb: f64,
    /// Watt-hours to send one GB (10^9 bytes): the network equipment's share.
    pub wh_per_gb_egress: f64,
    /// Electricity price in satoshis per kWh; 0: `local_price_per_kwh` × `sat_per_local_unit`.
    pub sat_per_kwh: f64,
    /// Electricity price per kWh in the local currency (used when `sat_per_kwh` is 0).
    pub local_price_per_kwh: f64,
    /// Exchange rate: satoshis per unit of the local currency.
    pub sat_per_local_unit: f64,
    /// Time-of-use tariff: UTC hours at another price (`[[power.tariff]]`); first match wins.
    pub tariff: Vec<TariffPeriod>,
    /// A resource is sold only when its price is at least its cost × this.
    pub margin: f64,
    /// Fuel one core burns per second, to turn fuel prices into core-hours (`blackbox bench job`
    /// measures it: about 10^10 on a 2020s x86 core).
    pub fuel_per_core_sec: f64,
}

impl Default for PowerConfig {
    fn default() -> Self {
        Self {
            watts_idle: 30.0,
            watts_per_core: 12.0,
            watts_per_tb: 6.0,
            wh_per_gb_egress: 5.0,
            sat_per_kwh: 0.0,
            local_price_per_kwh: 0.0,
            sat_per_local_unit: 0.0,
            tariff: Vec::new(),
            margin: 1.2,
            fuel_per_core_sec: 1e10,
        }
    }
}

/// Electricity at another price during some hours of the day (UTC).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TariffPeriod {
    /// `HH:MM-HH:MM` in UTC; may wrap past midnight.
    pub hours: String,
    /// Price in those hours, satoshis per kWh.
    #[serde(default)]
    pub sat_per_kwh: Option<f64>,
    /// Or in the local currency per kWh (times `sat_per_local_unit`).
    #[serde(default)]
    pub local_price_per_kwh: Option<f64>,
}

/// A `[power]` section that cannot be used.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum PowerError {
    /// A tariff's hours do not parse.
    #[error("[power] tariff hours `{0}`: use HH:MM-HH:MM (UTC)")]
    Hours(String),
    /// A number is negative or not finite, or the margin is below 1.
    #[error("[power] {0}")]
    Value(String),
}

/// One resource's economics at one time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Line {
    /// `cpu`, `storage` or `egress`.
    pub resource: &'static str,
    /// What one unit is: `core-hour`, `GB-month`, `GB`.
    pub unit: &'static str,
    /// Energy of one unit, kWh.
    pub kwh: f64,
    /// Electricity price applied, sat per kWh.
    pub sat_per_kwh: f64,
    /// Satoshis the unit costs in electricity.
    pub cost_sat: f64,
    /// Satoshis the unit sells for.
    pub price_sat: f64,
    /// Price − cost.
    pub profit_sat: f64,
    /// Whether it is sold: price ≥ cost × margin (egress is always served: see `economics`).
    pub offered: bool,
}

impl PowerConfig {
    /// Checks the numbers and the tariff's hours.
    pub fn check(&self) -> Result<(), PowerError> {
        let nums = [
            ("watts_idle", self.watts_idle),
            ("watts_per_core", self.watts_per_core),
            ("watts_per_tb", self.watts_per_tb),
            ("wh_per_gb_egress", self.wh_per_gb_egress),
            ("sat_per_kwh", self.sat_per_kwh),
            ("local_price_per_kwh", self.local_price_per_kwh),
            ("sat_per_local_unit", self.sat_per_local_unit),
            ("fuel_per_core_sec", self.fuel_per_core_sec),
        ];
        for (name, v) in nums {
            if !v.is_finite() || v < 0.0 {
                return Err(PowerError::Value(format!("{name} must be a number ≥ 0, not {v}")));
            }
        }
        if !self.margin.is_finite() || self.margin < 1.0 {
            return Err(PowerError::Value(format!("margin must be ≥ 1, not {}", self.margin)));
        }
        for t in &self.tariff {
            parse_hours(&t.hours).ok_or_else(|| PowerError::Hours(t.hours.clone()))?;
            if t.sat_per_kwh.or(t.local_price_per_kwh).is_none_or(|v| !v.is_finite() || v < 0.0) {
                return Err(PowerError::Value(format!("tariff `{}` needs a price ≥ 0", t.hours)));
            }
        }
        Ok(())
    }

    fn base_price(&self) -> f64 {
        if self.sat_per_kwh > 0.0 {
            self.sat_per_kwh
        } else {
            self.local_price_per_kwh * self.sat_per_local_unit
        }
    }

    /// The electricity price (sat per kWh) at `minute` after midnight UTC.
    pub fn price_at(&self, minute: u16) -> f64 {
        for t in &self.tariff {
            if let Some((start, end)) = parse_hours(&t.hours) {
                if in_window(minute, start, end) {
                    return t
                        .sat_per_kwh
                        .unwrap_or_else(|| t.local_price_per_kwh.unwrap_or(0.0) * self.sat_per_local_unit);
                }
            }
        }
        self.base_price()
    }

    /// The price averaged over the day (what an always-on resource pays).
    pub fn daily_average(&self) -> f64 {
        (0..1440u16).map(|m| self.price_at(m)).sum::<f64>() / 1440.0
    }

    /// Every resource's cost and price at `now` (Unix seconds): CPU at the price of that minute,
    /// storage and egress at the daily average (disks spin and data is served all day).
    pub fn economics(&self, prices: &Prices, now: u64) -> Vec<Line> {
        let (now_price, avg) = (self.price_at(minute_of(now)), self.daily_average());
        let gfuel_per_core_hour = self.fuel_per_core_sec * 3600.0 / 1e9;
        let cpu_price = prices.cpu_sat_per_core_hour as f64 + prices.fuel_sat_per_gfuel as f64 * gfuel_per_core_hour;
        let line = |resource, unit, kwh: f64, sat_per_kwh: f64, price_sat: f64| {
            let cost_sat = kwh * sat_per_kwh;
            Line {
                resource,
                unit,
                kwh,
                sat_per_kwh,
                cost_sat,
                price_sat,
                profit_sat: price_sat - cost_sat,
                offered: price_sat >= cost_sat * self.margin,
            }
        };
        vec![
            line("cpu", "core-hour", self.watts_per_core / 1000.0, now_price, cpu_price),
            line(
                "storage",
                "GB-month",
                self.watts_per_tb / 1000.0 * HOURS_PER_MONTH / 1000.0,
                avg,
                prices.storage_sat_per_gb_month as f64,
            ),
            line("egress", "GB", self.wh_per_gb_egress / 1000.0, avg, prices.egress_sat_per_gb as f64),
        ]
    }

    /// Whether CPU is sold at `now`.
    pub fn cpu_offered(&self, prices: &Prices, now: u64) -> bool {
        self.economics(prices, now)[0].offered
    }

    /// The first minute boundary after `now` where the CPU decision changes, within a day.
    pub fn next_cpu_change(&self, prices: &Prices, now: u64) -> Option<u64> {
        let current = self.cpu_offered(prices, now);
        let first = (now / 60 + 1) * 60;
        (0..1440u64).map(|i| first + i * 60).find(|t| self.cpu_offered(prices, *t) != current)
    }

    /// The day split into UTC periods where CPU is sold or not: (start minute, end minute, sold).
    pub fn cpu_schedule(&self, prices: &Prices) -> Vec<(u16, u16, bool)> {
        let mut out: Vec<(u16, u16, bool)> = Vec::new();
        for m in 0..1440u16 {
            let sold = self.cpu_offered(prices, u64::from(m) * 60);
            match out.last_mut() {
                Some(last) if last.2 == sold => last.1 = m + 1,
                _ => out.push((m, m + 1, sold)),
            }
        }
        out
    }
}

/// Minutes after midnight UTC of a Unix time.
pub fn minute_of(secs: u64) -> u16 {
    ((secs / 60) % 1440) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evening_peak() -> PowerConfig {
        PowerConfig {
            watts_per_core: 10.0,
            sat_per_kwh: 200.0,
            tariff: vec![TariffPeriod {
                hours: "18:00-22:00".into(),
                sat_per_kwh: Some(2000.0),
                local_price_per_kwh: None,
            }],
            margin: 1.5,
            fuel_per_core_sec: 0.0,
            ..PowerConfig::default()
        }
    }

    #[test]
    fn cpu_is_withdrawn_in_expensive_hours_only() {
        let p = evening_peak();
        // 10 W per core: 0.01 kWh per core-hour; 2 sat off-peak, 20 sat at peak; × 1.5 margin.
        let prices = Prices { cpu_sat_per_core_hour: 10, ..Prices::default() };
        let at = |h: u64, m: u64| 86_400 * 20_000 + h * 3600 + m * 60;
        assert!(p.cpu_offered(&prices, at(17, 59)));
        assert!(!p.cpu_offered(&prices, at(18, 0)));
        assert!(!p.cpu_offered(&prices, at(21, 59)));
        assert!(p.cpu_offered(&prices, at(22, 0)));
        assert_eq!(p.next_cpu_change(&prices, at(12, 30) + 17), Some(at(18, 0)));
        assert_eq!(p.next_cpu_change(&prices, at(18, 0)), Some(at(22, 0)));
        assert_eq!(p.cpu_schedule(&prices), vec![(0, 1080, true), (1080, 1320, false), (1320, 1440, true)]);
        let line = &p.economics(&prices, at(19, 0))[0];
        assert!((line.cost_sat - 20.0).abs() < 1e-9 && (line.profit_sat + 10.0).abs() < 1e-9);
        // A price that always covers the peak never changes.
        let rich = Prices { cpu_sat_per_core_hour: 1000, ..Prices::default() };
        assert_eq!(p.next_cpu_change(&rich, at(1, 0)), None);
    }

    #[test]
    fn storage_and_local_currency_prices() {
        let p = PowerConfig {
            watts_per_tb: 6.0,
            local_price_per_kwh: 0.25,
            sat_per_local_unit: 1000.0,
            margin: 1.0,
            ..PowerConfig::default()
        };
        assert_eq!(p.price_at(600), 250.0);
        let prices = Prices { storage_sat_per_gb_month: 2, egress_sat_per_gb: 1, ..Prices::default() };
        let lines = p.economics(&prices, 0);
        // 6 W per TB = 0.006 W per GB; × 720 h = 4.32 Wh = 0.00432 kWh; × 250 = 1.08 sat.
        assert!((lines[1].cost_sat - 1.08).abs() < 1e-9 && lines[1].offered);
        // 5 Wh per GB served = 1.25 sat > 1 sat.
        assert!((lines[2].cost_sat - 1.25).abs() < 1e-9 && !lines[2].offered);
    }

    #[test]
    fn bad_sections_are_refused() {
        assert!(PowerConfig::default().check().is_ok());
        assert!(PowerConfig { margin: 0.5, ..PowerConfig::default() }.check().is_err());
        assert!(PowerConfig { watts_per_core: -1.0, ..PowerConfig::default() }.check().is_err());
        let bad = TariffPeriod { hours: "18-22".into(), sat_per_kwh: Some(1.0), local_price_per_kwh: None };
        assert!(PowerConfig { tariff: vec![bad], ..PowerConfig::default() }.check().is_err());
    }
}
