//! The statistics the gate's tests rest on, over `statrs` distributions.
//!
//! - [`count_upper_tail`]: P(X ≥ x) for an over-dispersed count with mean `mu` and variance
//!   `phi · mu` (negative binomial; Poisson when `phi` is 1). Errors in a cascade are not
//!   independent, so Poisson is only the floor of the model (quasi-Poisson dispersion, McCullagh &
//!   Nelder, *Generalized Linear Models*, 2nd ed., §6.2.3).
//! - [`dispersion`]: the quasi-Poisson dispersion φ = Pearson χ² / degrees of freedom.
//! - [`rate_step_p_value`]: the conditional test for two Poisson rates (Przyborowski & Wilenski,
//!   1940): given `x1 + x0` events, `x1 ~ Binomial(x1 + x0, n1 / (n1 + n0))` when the rates are equal.
//! - [`benjamini_hochberg`]: false-discovery-rate control across the many fingerprints tested in
//!   one run (Benjamini & Hochberg, 1995).

use statrs::distribution::{Binomial, DiscreteCDF, NegativeBinomial, Poisson};

/// Largest dispersion used: past it a count carries almost no evidence either way.
pub const MAX_DISPERSION: f64 = 50.0;

/// P(X ≥ `x`) for a count with mean `mu` ≥ 0 and variance `phi · mu` (`phi` ≥ 1, clamped to
/// [1, [`MAX_DISPERSION`]]). `x` = 0 gives 1; `mu` = 0 gives 0 for any `x` > 0.
pub fn count_upper_tail(x: u64, mu: f64, phi: f64) -> f64 {
    if x == 0 {
        return 1.0;
    }
    if !(mu.is_finite() && mu > 0.0) {
        return 0.0;
    }
    let phi = if phi.is_finite() {
        phi.clamp(1.0, MAX_DISPERSION)
    } else {
        1.0
    };
    // Var = mu + mu^2 / r = phi * mu  =>  r = mu / (phi - 1); p = r / (r + mu).
    let tail = if phi <= 1.0 + 1e-9 {
        Poisson::new(mu).map(|d| d.sf(x - 1)).ok()
    } else {
        let r = mu / (phi - 1.0);
        NegativeBinomial::new(r, r / (r + mu))
            .map(|d| d.sf(x - 1))
            .ok()
    };
    tail.filter(|p| p.is_finite())
        .unwrap_or(1.0)
        .clamp(0.0, 1.0)
}

/// Quasi-Poisson dispersion of observed counts against their expectations:
/// φ = Σ (o − e)² / e / (k − 1) over the `k` pairs with `e` > 0, clamped to [1,
/// [`MAX_DISPERSION`]]. Fewer than `min_pairs` pairs give `default` (not enough data to tell).
pub fn dispersion(pairs: &[(f64, f64)], min_pairs: usize, default: f64) -> f64 {
    let used: Vec<&(f64, f64)> = pairs.iter().filter(|(_, e)| *e > 0.0).collect();
    if used.len() < min_pairs.max(2) {
        return default.clamp(1.0, MAX_DISPERSION);
    }
    let chi2: f64 = used.iter().map(|(o, e)| (o - e).powi(2) / e).sum();
    (chi2 / (used.len() - 1) as f64).clamp(1.0, MAX_DISPERSION)
}

/// One-sided p-value that rate 1 (`x1` events in `n1` exposures) exceeds rate 0 (`x0` in `n0`):
/// P(X ≥ x1) for X ~ Binomial(x1 + x0, n1 / (n1 + n0)). 1 when there is nothing to compare
/// (no events, or an exposure of 0).
pub fn rate_step_p_value(x1: u64, n1: f64, x0: u64, n0: f64) -> f64 {
    if x1 == 0 || !(n1 > 0.0 && n0 > 0.0) {
        return 1.0;
    }
    let p = n1 / (n1 + n0);
    Binomial::new(p, x1 + x0)
        .map(|d| d.sf(x1 - 1))
        .ok()
        .filter(|v| v.is_finite())
        .unwrap_or(1.0)
        .clamp(0.0, 1.0)
}

/// Benjamini–Hochberg step-up: which of `p_values` are discoveries at false-discovery rate `q`,
/// and each one's adjusted p-value (q-value), in input order.
pub fn benjamini_hochberg(p_values: &[f64], q: f64) -> Vec<(bool, f64)> {
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p_values[a].total_cmp(&p_values[b]));
    let mut adjusted = vec![1.0; m];
    let mut running = 1.0_f64;
    for (rank, &i) in order.iter().enumerate().rev() {
        let adj = (p_values[i] * m as f64 / (rank + 1) as f64).min(1.0);
        running = running.min(adj);
        adjusted[i] = running;
    }
    adjusted.into_iter().map(|a| (a <= q, a)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_tail_matches_closed_form() {
        // P(X >= 1) = 1 - e^{-mu}
        let mu: f64 = 0.7;
        assert!((count_upper_tail(1, mu, 1.0) - (1.0 - (-mu).exp())).abs() < 1e-12);
        assert_eq!(count_upper_tail(0, 3.0, 1.0), 1.0);
        assert_eq!(count_upper_tail(2, 0.0, 1.0), 0.0);
    }

    #[test]
    fn dispersion_widens_the_tail() {
        let poisson = count_upper_tail(12, 4.0, 1.0);
        let overdispersed = count_upper_tail(12, 4.0, 4.0);
        assert!(poisson < 0.001, "{poisson}");
        assert!(
            overdispersed > poisson * 10.0,
            "{overdispersed} vs {poisson}"
        );
    }

    #[test]
    fn dispersion_of_poisson_like_counts_is_one_and_of_bursts_is_large() {
        let flat: Vec<(f64, f64)> = (0..24).map(|i| ((i % 3) as f64 + 1.0, 2.0)).collect();
        assert!(dispersion(&flat, 6, 3.0) < 1.5);
        let bursty: Vec<(f64, f64)> = (0..24)
            .map(|i| (if i % 6 == 0 { 12.0 } else { 0.0 }, 2.0))
            .collect();
        assert!(dispersion(&bursty, 6, 1.0) > 5.0);
        assert_eq!(dispersion(&flat[..2], 6, 3.0), 3.0);
    }

    #[test]
    fn rate_step_detects_a_step_and_not_equal_rates() {
        // 30 in 1000 vs 1 in 1000: a step.
        assert!(rate_step_p_value(30, 1000.0, 1, 1000.0) < 1e-6);
        // Equal rates: no evidence.
        assert!(rate_step_p_value(10, 1000.0, 10, 1000.0) > 0.4);
        // Traffic grew 5x, errors grew 5x: the same rate.
        assert!(rate_step_p_value(50, 5000.0, 10, 1000.0) > 0.3);
        assert_eq!(rate_step_p_value(0, 10.0, 0, 10.0), 1.0);
    }

    #[test]
    fn benjamini_hochberg_controls_many_tests() {
        let p = [0.001, 0.2, 0.04, 0.03, 0.9];
        let r = benjamini_hochberg(&p, 0.05);
        assert!(r[0].0);
        assert!(!r[1].0 && !r[4].0);
        // 0.04 * 5 / 3 = 0.0667 > 0.05; 0.03 * 5 / 2 = 0.075 -> adjusted min(0.075, 0.0667)
        assert!(!r[2].0 && !r[3].0);
        assert!((r[0].1 - 0.005).abs() < 1e-12);
        assert!(benjamini_hochberg(&[], 0.05).is_empty());
    }
}
