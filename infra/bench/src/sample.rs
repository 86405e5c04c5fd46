//! Timings of repeated calls, and their percentiles.

use std::time::Duration;

#[derive(Default, Clone)]
pub struct Sample {
    timings: Vec<Duration>,
}

impl Sample {
    pub fn record(&mut self, timing: Duration) {
        self.timings.push(timing);
    }

    pub fn len(&self) -> usize {
        self.timings.len()
    }

    /// Nearest-rank percentile: a timing that was actually observed, never an
    /// interpolation between two. `None` for an empty sample.
    pub fn percentile(&self, percent: f64) -> Option<Duration> {
        if self.timings.is_empty() {
            return None;
        }
        let mut sorted = self.timings.clone();
        sorted.sort_unstable();
        let rank = ((percent / 100.0) * sorted.len() as f64).ceil() as usize;
        Some(sorted[rank.clamp(1, sorted.len()) - 1])
    }

    pub fn median(&self) -> Option<Duration> {
        self.percentile(50.0)
    }
}

#[cfg(test)]
mod tests {
    use super::Sample;
    use std::time::Duration;

    fn sample(millis: &[u64]) -> Sample {
        let mut s = Sample::default();
        for &m in millis {
            s.record(Duration::from_millis(m));
        }
        s
    }

    #[test]
    fn percentiles_are_observed_timings_by_nearest_rank() {
        let s = sample(&[5, 1, 4, 2, 3]);
        assert_eq!(s.median(), Some(Duration::from_millis(3)));
        assert_eq!(s.percentile(99.0), Some(Duration::from_millis(5)));
        assert_eq!(s.percentile(0.0), Some(Duration::from_millis(1)));
        let hundred = sample(&(1..=100).collect::<Vec<_>>());
        assert_eq!(hundred.percentile(99.0), Some(Duration::from_millis(99)));
        assert_eq!(hundred.percentile(90.0), Some(Duration::from_millis(90)));
    }

    #[test]
    fn an_empty_sample_has_no_percentiles() {
        assert_eq!(Sample::default().median(), None);
    }
}
