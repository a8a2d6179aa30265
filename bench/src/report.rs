//! A scenario's result: a label, its parameters and its figures, printed
//! as a human table row and as one JSON line.

use serde_json::{json, Map, Value};

/// One scenario run against one broker.
#[derive(Debug, Clone)]
pub struct Report {
    /// Which scenario (`throughput`, `latency`, ...).
    pub scenario: &'static str,
    /// A short human label with the parameters, e.g. `throughput 10->1 q0 16B`.
    pub label: String,
    /// Figures in print order. NaN when a figure could not be measured.
    pub metrics: Vec<(&'static str, f64)>,
}

impl Report {
    pub fn new(scenario: &'static str, label: String) -> Report {
        Report {
            scenario,
            label,
            metrics: Vec::new(),
        }
    }

    pub fn push(&mut self, name: &'static str, value: f64) {
        self.metrics.push((name, value));
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        self.metrics.iter().find(|(n, _)| *n == name).map(|m| m.1)
    }

    /// The JSON line: `{"scenario":..,"label":..,<metric>:<value>,..}`.
    pub fn json(&self) -> String {
        let mut m = Map::new();
        m.insert("scenario".into(), json!(self.scenario));
        m.insert("label".into(), json!(self.label));
        for (k, v) in &self.metrics {
            let v = if v.is_finite() {
                json!((v * 1000.0).round() / 1000.0)
            } else {
                Value::Null
            };
            m.insert((*k).into(), v);
        }
        Value::Object(m).to_string()
    }

    /// One human row: the label, then `name value` pairs.
    pub fn row(&self) -> String {
        let figures: Vec<String> = self
            .metrics
            .iter()
            .map(|(k, v)| format!("{k} {}", human(*v)))
            .collect();
        format!("{:<36} {}", self.label, figures.join("  "))
    }
}

/// A figure with as many digits as it deserves.
pub fn human(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_has_label_and_figures() {
        let mut r = Report::new("latency", "latency 1k/s".into());
        r.push("p50_us", 81.25);
        r.push("cpu", f64::NAN);
        let v: Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(v["scenario"], "latency");
        assert_eq!(v["p50_us"], 81.25);
        assert!(v["cpu"].is_null());
        assert!(r.row().contains("p50_us 81.2"));
    }
}
