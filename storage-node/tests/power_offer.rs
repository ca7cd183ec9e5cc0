//! `[power]` with an evening tariff: the signed offer drops CPU (and RAM) from 18:00 to 22:00 UTC
//! and restores it after, expiring exactly when that changes (an injected clock: `sign_offer`
//! takes the time).

use blackbox_net::Keypair;
use blackbox_storage_node::daemon::sign_offer;
use blackbox_storage_node::NodeConfig;

#[test]
fn a_dear_evening_withdraws_cpu_from_the_signed_offer() {
    let cfg: NodeConfig = toml::from_str(
        r#"
        quota = "1 GiB"
        [offer]
        cpu_cores = 2.0
        ram = "1 GiB"
        cpu_sat_per_core_hour = 20
        storage_sat_per_gb_month = 100
        [compute]
        enabled = true
        [power]
        watts_per_core = 10.0
        watts_per_tb = 6.0
        sat_per_kwh = 200.0
        margin = 1.5
        fuel_per_core_sec = 0.0
        [[power.tariff]]
        hours = "18:00-22:00"
        sat_per_kwh = 2000.0
        "#,
    )
    .unwrap();
    cfg.power.as_ref().unwrap().check().unwrap();
    let key = Keypair::generate_ed25519();
    let day = 20_424 * 86_400; // 2025-12-02 00:00 UTC
    let at = |h: u64, m: u64| day + h * 3600 + m * 60;
    // (time, cores offered, expiry): off-peak 2 sat/core-hour × 1.5 ≤ 20; peak 20 × 1.5 > 20.
    let cases = [
        (at(12, 0), 2000, at(13, 0)),
        (at(17, 30), 2000, at(18, 0)),
        (at(17, 59) + 59, 2000, at(18, 0)),
        (at(18, 0), 0, at(19, 0)),
        (at(21, 30), 0, at(22, 0)),
        (at(22, 0), 2000, at(23, 0)),
    ];
    for (now, cores, expires) in cases {
        let signed = sign_offer(&cfg, &key, [2; 33], now).unwrap();
        let o = &signed.offer;
        assert_eq!(o.resources.cpu_millicores, cores, "at {}", blackbox_util::utc(now));
        assert_eq!(o.resources.ram_bytes, if cores > 0 { 1 << 30 } else { 0 });
        assert_eq!(o.expires_at, expires, "at {}", blackbox_util::utc(now));
        assert_eq!(o.resources.storage_bytes, 1 << 30, "storage pays for its disk all day");
        signed.verify(&key.public().to_peer_id(), now).unwrap();
    }
    // Without [power], the evening changes nothing.
    let plain = NodeConfig { power: None, ..cfg };
    assert_eq!(sign_offer(&plain, &key, [2; 33], at(19, 0)).unwrap().offer.resources.cpu_millicores, 2000);
}
