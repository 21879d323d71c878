//! Training curves: the logged series, smoothing, log scale, CSV export, and their plots.

use super::session::LogPoint;
use eframe::egui;
use egui_plot::{Legend, Line, Plot, PlotPoints};

/// Reads one series' value from a log point (`None` where the step did not measure it).
pub type Getter = fn(&LogPoint) -> Option<f64>;

/// Every series the curves panel can show, with how to read it from a log point.
pub const SERIES: [(&str, Getter); 14] = [
    ("loss", |p| Some(p.metrics.loss as f64)),
    ("dino", |p| Some(p.metrics.dino as f64)),
    ("ibot", |p| Some(p.metrics.ibot as f64)),
    ("koleo", |p| Some(p.metrics.koleo as f64)),
    ("lr", |p| Some(p.metrics.lr as f64)),
    ("weight_decay", |p| Some(p.metrics.weight_decay as f64)),
    ("momentum", |p| Some(p.metrics.momentum as f64)),
    ("teacher_temp", |p| Some(p.metrics.teacher_temp as f64)),
    ("images_per_s", |p| Some(p.images_per_s as f64)),
    ("teacher_entropy", |p| {
        p.metrics.teacher_entropy.map(f64::from)
    }),
    ("teacher_kl_uniform", |p| {
        p.metrics.teacher_kl_uniform.map(f64::from)
    }),
    ("feature_std", |p| p.metrics.feature_std.map(f64::from)),
    ("gram", |p| p.metrics.gram.map(f64::from)),
    ("loss_scale", |p| p.metrics.loss_scale.map(f64::from)),
];

/// The logged history of a run.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// One point per step.
    pub points: Vec<LogPoint>,
    /// k-NN accuracy (step, accuracy in [0, 1]).
    pub knn: Vec<(u64, f32)>,
    /// Linear-probe accuracy (step, accuracy in [0, 1]).
    pub probe: Vec<(u64, f32)>,
}

impl History {
    /// The (step, value) pairs of a named series.
    pub fn series(&self, name: &str) -> Vec<[f64; 2]> {
        let evals = match name {
            "knn" => Some(&self.knn),
            "probe" => Some(&self.probe),
            _ => None,
        };
        if let Some(evals) = evals {
            return evals
                .iter()
                .map(|&(s, a)| [s as f64, 100.0 * a as f64])
                .collect();
        }
        let Some((_, get)) = SERIES.iter().find(|(n, _)| *n == name) else {
            return Vec::new();
        };
        self.points
            .iter()
            .filter_map(|p| get(p).map(|v| [(p.metrics.step + 1) as f64, v]))
            .collect()
    }

    /// The history as CSV: one row per step, k-NN accuracy where measured.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("step");
        for (n, _) in SERIES {
            out.push(',');
            out.push_str(n);
        }
        out.push_str(",knn_accuracy,probe_accuracy\n");
        for p in &self.points {
            let done = p.metrics.step + 1;
            out.push_str(&done.to_string());
            for (_, get) in SERIES {
                out.push(',');
                if let Some(v) = get(p) {
                    out.push_str(&format!("{v}"));
                }
            }
            for evals in [&self.knn, &self.probe] {
                out.push(',');
                if let Some((_, a)) = evals.iter().find(|(s, _)| *s == done) {
                    out.push_str(&format!("{a}"));
                }
            }
            out.push('\n');
        }
        out
    }
}

/// Exponential moving average with weight `w` on the past (0 = raw).
pub fn smooth(points: &[[f64; 2]], w: f32) -> Vec<[f64; 2]> {
    let w = f64::from(w.clamp(0.0, 0.999));
    let mut acc: Option<f64> = None;
    points
        .iter()
        .map(|&[x, y]| {
            let v = match acc {
                Some(a) if y.is_finite() => w * a + (1.0 - w) * y,
                _ => y,
            };
            acc = Some(v);
            [x, v]
        })
        .collect()
}

/// log10 of positive values; others are dropped (they have no place on a log axis).
pub fn log10(points: &[[f64; 2]]) -> Vec<[f64; 2]> {
    points
        .iter()
        .filter(|p| p[1] > 0.0)
        .map(|&[x, y]| [x, y.log10()])
        .collect()
}

/// The plots the curves panel shows: title and the series in it.
pub const PLOTS: [(&str, &[&str]); 6] = [
    ("Losses", &["loss", "dino", "ibot", "koleo", "gram"]),
    ("k-NN and linear probe accuracy (%)", &["knn", "probe"]),
    ("Learning rate", &["lr"]),
    (
        "Schedules: weight decay, momentum, teacher temp",
        &["weight_decay", "momentum", "teacher_temp"],
    ),
    ("Throughput (img/s)", &["images_per_s"]),
    (
        "Collapse diagnostics",
        &["teacher_entropy", "teacher_kl_uniform", "feature_std"],
    ),
];

/// Draws one plot of the history.
#[allow(clippy::too_many_arguments)]
pub fn plot(
    ui: &mut egui::Ui,
    history: &History,
    title: &str,
    series: &[&str],
    log_scale: bool,
    smoothing: f32,
    width: f32,
    height: f32,
) {
    ui.label(egui::RichText::new(title).strong());
    let mut plot = Plot::new(title)
        .width(width)
        .height(height)
        .x_axis_label("step");
    if series.len() > 1 {
        plot = plot.legend(
            Legend::default()
                .position(egui_plot::Corner::LeftBottom)
                .background_alpha(0.5),
        );
    }
    if log_scale {
        plot = plot.y_axis_formatter(|m, _| format!("{:.3e}", 10f64.powf(m.value)));
    }
    plot.show(ui, |pui| {
        for name in series {
            let raw = history.series(name);
            // The Gram loss is drawn only in runs that use it.
            if *name == "gram" && raw.is_empty() {
                continue;
            }
            let pts = if *name == "knn" || *name == "probe" {
                raw
            } else {
                smooth(&raw, smoothing)
            };
            let pts = if log_scale { log10(&pts) } else { pts };
            pui.line(Line::new(*name, PlotPoints::from(pts)));
        }
    });
}
