//! Tuned kernel choices (`dinoscope tune`): lookup by exact key, or through a stored key that
//! stands in for one the cache does not hold, and the shapes a dry run asks for.

use super::*;
use std::collections::BTreeMap;

impl Gpu {
    /// The tuned choice stored under `key` (see `dinoscope tune`).
    pub fn choice(&self, key: &str) -> Option<String> {
        self.choices.lock().ok()?.get(key).cloned()
    }

    /// Stores a tuned choice (and forgets which stored keys stood in for missing ones).
    pub fn set_choice(&self, key: &str, value: &str) {
        if let Ok(mut c) = self.choices.lock() {
            c.insert(key.to_string(), value.to_string());
        }
        if let Ok(mut n) = self.nearest.lock() {
            n.clear();
        }
    }

    /// Whether any tuned choice is loaded (products skip the lookup otherwise).
    pub fn has_choices(&self) -> bool {
        self.choices.lock().is_ok_and(|c| !c.is_empty())
    }

    /// Every tuned choice.
    pub fn choices(&self) -> BTreeMap<String, String> {
        self.choices.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// For a key with no choice of its own: the stored choice whose key and value `distance`
    /// puts nearest (`None`: that choice cannot stand in), as `(key, value)`. The answer is
    /// remembered for `key`, so the stored choices are searched once per missing key, not once
    /// per product recorded.
    pub fn nearest_choice(
        &self,
        key: &str,
        distance: impl Fn(&str, &str) -> Option<f64>,
    ) -> Option<(String, String)> {
        if let Some(found) = self.nearest.lock().ok()?.get(key) {
            let k = found.clone()?;
            return self.choice(&k).map(|v| (k, v));
        }
        let best = self
            .choices()
            .into_iter()
            .filter_map(|(k, v)| distance(&k, &v).map(|d| (d, k, v)))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, k, v)| (k, v));
        if let Ok(mut n) = self.nearest.lock() {
            n.insert(key.to_string(), best.as_ref().map(|(k, _)| k.clone()));
        }
        best
    }

    /// The keys that missed the stored choices so far: how many found a stand-in and which did
    /// not (see [`Gpu::nearest_choice`]).
    pub fn missed_choices(&self) -> (usize, Vec<String>) {
        let Ok(n) = self.nearest.lock() else {
            return (0, Vec::new());
        };
        let alone = n
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.clone());
        (n.values().filter(|v| v.is_some()).count(), alone.collect())
    }

    /// Notes a kernel shape key asked for during a dry run.
    pub fn note_shape(&self, key: &str) {
        if let Ok(mut s) = self.shapes.lock() {
            s.insert(key.to_string());
        }
    }

    /// The shape keys a dry run asked for.
    pub fn shapes(&self) -> Vec<String> {
        self.shapes
            .lock()
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}
