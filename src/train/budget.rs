//! A run sized to a wall-clock budget (`dinoscope train --time-limit 15m`): the first steps are
//! timed, then the schedule's length becomes what fits in the time left, evaluations included,
//! with as many evaluations and checkpoints along it as the config had along its own length.
//! Steps rarely keep one pace (a shared machine, a GPU's clocks), so at each later pause (an
//! evaluation or a checkpoint, nothing in flight) the length is fitted again from the pace since
//! the first fit. The limit is also a hard stop: a run that still falls behind ends at the limit
//! with a checkpoint, from which it can be resumed.

use super::config::TrainConfig;
use std::time::Duration;
use web_time::Instant;

/// Steps before the timing starts: the first ones build pipelines and fill the pools.
const WARM_UP: u64 = 3;
/// Steps timed.
const TIMED: u64 = 20;
/// Steps done in a process after which a time limit fits the schedule (the warm-up and timed
/// steps): the steps before run on the config's own schedule.
pub const FIT_AFTER: u64 = WARM_UP + TIMED;
/// Steps after the last fit before the pace is measured again.
const REFIT_STEPS: u64 = 100;
/// Least change of the length (a share of it) that a refit applies: the schedules do not jitter.
const REFIT_CHANGE: f64 = 0.01;
/// Share of the time left that the fitted schedule plans to fill; the rest absorbs the spread
/// of step times and the checkpoints' writes.
const PLANNED: f64 = 0.95;

/// Most of the time left that evaluations may take: past it, the fitted run evaluates fewer
/// times than its config says (at least once, at its end).
const EVAL_SHARE: f64 = 0.15;

/// Parses a duration: `900`, `90s`, `15m`, `1.5h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, unit) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let scale = match unit.trim() {
        "s" | "sec" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        u => {
            return Err(format!(
            "{s}: unknown unit {u:?}; write seconds (900 or 900s), minutes (15m) or hours (1.5h)"
        ))
        }
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s}: not a duration; write e.g. 900s, 15m or 1.5h"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("{s}: a time limit must be positive"));
    }
    Duration::try_from_secs_f64(v * scale).map_err(|e| format!("{s}: {e}"))
}

/// What the timing found and the schedule it chose.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fit {
    /// The run's new length in steps.
    pub steps: u64,
    /// The config's length before.
    pub planned_steps: u64,
    /// Seconds a step took (loader waits included), measured over the timed steps.
    pub step_s: f64,
    /// Seconds an evaluation took (the longest so far; 0 without evaluation sets).
    pub eval_s: f64,
}

/// The config whose run, from `done` steps on at `step_s` a step with evaluations of `eval_s`
/// each, ends within `left_s` seconds. The evaluations keep their count along the new length
/// where they fit in `EVAL_SHARE` of the time, the checkpoints theirs; the warm-ups keep their
/// length in steps, unless one would fill more than half of a shorter run (then they all scale
/// with the run, as `--steps` scales them).
pub fn fitted(cfg: &TrainConfig, done: u64, step_s: f64, eval_s: f64, left_s: f64) -> TrainConfig {
    let count = |every: u64| {
        if every == 0 {
            1
        } else {
            cfg.steps.div_ceil(every)
        }
    };
    let evals = if eval_s > 0.0 {
        let fit = (EVAL_SHARE * left_s / eval_s).floor().max(1.0);
        count(cfg.eval_every).min(fit as u64)
    } else {
        count(cfg.eval_every)
    };
    let budget = left_s * PLANNED - evals as f64 * eval_s;
    let more = (budget / step_s.max(1e-6)).floor();
    // At least one more step, so the run ends on a step of the new schedule.
    let more = if more.is_finite() && more >= 1.0 {
        more.min(1e12) as u64
    } else {
        1
    };
    let mut c = cfg.clone();
    let steps = done + more;
    // Warm-ups keep their length unless they would fill more than half of a shorter run.
    if steps < cfg.steps {
        c.shrink_warm_ups(steps, done, |w| w.saturating_mul(2) > steps);
    }
    c.steps = steps;
    let spread = |every: u64, n: u64| {
        if every == 0 {
            0
        } else {
            c.steps.div_ceil(n).max(1)
        }
    };
    c.eval_every = spread(cfg.eval_every, evals);
    c.checkpoint_every = spread(cfg.checkpoint_every, count(cfg.checkpoint_every));
    c
}

/// The length of a run that, from `done` steps on at `step_s` a step with an evaluation of
/// `eval_s` every `eval_every` steps (0: none) and one at its end, ends within `left_s` seconds;
/// at least one step more.
pub fn refitted_steps(done: u64, step_s: f64, eval_s: f64, eval_every: u64, left_s: f64) -> u64 {
    let per_step = step_s.max(1e-6)
        + if eval_every > 0 {
            eval_s / eval_every as f64
        } else {
            0.0
        };
    let more = ((left_s * PLANNED - eval_s) / per_step).floor();
    done + if more.is_finite() && more >= 1.0 {
        more.min(1e12) as u64
    } else {
        1
    }
}

/// A run's wall-clock budget: when to time, when to fit, when to stop.
#[derive(Debug)]
pub struct Budget {
    limit: Duration,
    started: Instant,
    /// When the timed steps began: the instant, the pauses (evaluations, checkpoints) up to
    /// then, and the steps done in this process.
    window: Option<(Instant, f64, u64)>,
    /// Seconds spent in evaluations and checkpoints.
    paused_s: f64,
    /// The longest evaluation.
    eval_s: f64,
    /// The fit, once made.
    pub fit: Option<Fit>,
}

impl Budget {
    /// A budget of `limit`, counted from now.
    pub fn new(limit: Duration) -> Budget {
        Budget::starting_at(limit, Instant::now())
    }

    /// A budget of `limit`, counted from `now`.
    fn starting_at(limit: Duration, now: Instant) -> Budget {
        Budget {
            limit,
            started: now,
            window: None,
            paused_s: 0.0,
            eval_s: 0.0,
            fit: None,
        }
    }

    /// Records `seconds` spent outside the steps: an evaluation (`eval`) or a checkpoint.
    pub fn paused(&mut self, seconds: f64, eval: bool) {
        self.paused_s += seconds;
        if eval {
            self.eval_s = self.eval_s.max(seconds);
        }
    }

    /// Stops the clock for `seconds` the user held the run (paused): the limit moves by as much,
    /// and the step timing leaves them out.
    pub fn hold(&mut self, seconds: f64) {
        self.paused_s += seconds;
        self.limit += Duration::from_secs_f64(seconds.max(0.0));
    }

    /// Whether the limit has passed.
    pub fn expired(&self) -> bool {
        self.started.elapsed() >= self.limit
    }

    /// The step count (done in this process) after which the run pauses to fit its schedule,
    /// while no step is in flight; none once fitted.
    pub fn fits_after(&self) -> Option<u64> {
        self.fit.is_none().then_some(FIT_AFTER)
    }

    /// Called after steps: `here` steps done in this process, `done` in the run; `quiet` when no
    /// step is in flight (a new length applies only then). Returns the fitted config once the
    /// timed steps are done, and again when a later pace changes the length by 1% or more. A
    /// caller that skips calls (the browser's, while a snapshot holds the trainer) times and fits
    /// at the next one.
    pub fn after_step(
        &mut self,
        here: u64,
        done: u64,
        cfg: &TrainConfig,
        quiet: bool,
    ) -> Option<TrainConfig> {
        self.after_step_at(here, done, cfg, quiet, Instant::now())
    }

    /// [`Budget::after_step`] at the instant `now`.
    fn after_step_at(
        &mut self,
        here: u64,
        done: u64,
        cfg: &TrainConfig,
        quiet: bool,
        now: Instant,
    ) -> Option<TrainConfig> {
        if self.fit.is_some() {
            return self.refit(here, done, cfg, quiet, now);
        }
        if here >= WARM_UP && self.window.is_none() {
            self.window = Some((now, self.paused_s, here));
            return None;
        }
        let (t0, paused0, here0) = self.window?;
        if here < here0 + TIMED {
            return None;
        }
        let window_s = now.saturating_duration_since(t0).as_secs_f64();
        let step_s = (window_s - (self.paused_s - paused0)) / (here - here0) as f64;
        let left_s =
            self.limit.as_secs_f64() - now.saturating_duration_since(self.started).as_secs_f64();
        let c = fitted(cfg, done, step_s.max(1e-6), self.eval_s, left_s);
        self.fit = Some(Fit {
            steps: c.steps,
            planned_steps: cfg.steps,
            step_s,
            eval_s: self.eval_s,
        });
        // From here the window measures the pace since the fit.
        self.window = Some((now, self.paused_s, here));
        Some(c)
    }

    /// The schedule of a run that ends before its first fit (a signal, `--stop-after`, data
    /// that stopped reading, or a limit too short for the timed steps), so that the checkpoint
    /// a resumption continues from holds a fitted schedule rather than the config's own: the
    /// length that fits the time left at the pace of the steps after the warm-up, or the steps
    /// done where no time is left. None once fitted, before any step, and for a run with time
    /// left that took no step past the warm-up (no pace to go by: the config's schedule stays).
    pub fn fit_early(&mut self, here: u64, done: u64, cfg: &TrainConfig) -> Option<TrainConfig> {
        self.fit_early_at(here, done, cfg, Instant::now())
    }

    /// [`Budget::fit_early`] at the instant `now`.
    fn fit_early_at(
        &mut self,
        here: u64,
        done: u64,
        cfg: &TrainConfig,
        now: Instant,
    ) -> Option<TrainConfig> {
        if self.fit.is_some() || here == 0 {
            return None;
        }
        let left_s =
            self.limit.as_secs_f64() - now.saturating_duration_since(self.started).as_secs_f64();
        // The pace counts only steps after the warm-up (the first build pipelines, and the
        // budget started before the data and the model were ready): without one, a run with
        // time left keeps the config's schedule.
        let timed = self.window.filter(|w| here > w.2);
        let c = if left_s > 0.0 {
            let (t0, paused0, here0) = timed?;
            let window_s = now.saturating_duration_since(t0).as_secs_f64();
            let step_s = (window_s - (self.paused_s - paused0)).max(0.0) / (here - here0) as f64;
            fitted(cfg, done, step_s.max(1e-6), self.eval_s, left_s)
        } else {
            let mut c = cfg.clone();
            c.shrink_warm_ups(done.max(1), done, |w| w.saturating_mul(2) > done);
            c.steps = done.max(1);
            c
        };
        let step_s = match timed {
            Some((t0, paused0, here0)) => {
                let window_s = now.saturating_duration_since(t0).as_secs_f64();
                (window_s - (self.paused_s - paused0)).max(0.0) / (here - here0) as f64
            }
            None => 0.0,
        };
        self.fit = Some(Fit {
            steps: c.steps,
            planned_steps: cfg.steps,
            step_s,
            eval_s: self.eval_s,
        });
        Some(c)
    }

    /// A new length from the pace since the first fit, at a quiet point at least
    /// [`REFIT_STEPS`] steps after the last fit; the evaluations keep their interval.
    fn refit(
        &mut self,
        here: u64,
        done: u64,
        cfg: &TrainConfig,
        quiet: bool,
        now: Instant,
    ) -> Option<TrainConfig> {
        let (t0, paused0, here0) = self.window?;
        let last = self.fit?;
        if !quiet || done >= cfg.steps || here < here0 + REFIT_STEPS {
            return None;
        }
        let window_s = now.saturating_duration_since(t0).as_secs_f64();
        let step_s = (window_s - (self.paused_s - paused0)) / (here - here0) as f64;
        let left_s =
            self.limit.as_secs_f64() - now.saturating_duration_since(self.started).as_secs_f64();
        let steps = refitted_steps(done, step_s, self.eval_s, cfg.eval_every, left_s);
        if (steps as f64 - cfg.steps as f64).abs() < REFIT_CHANGE * cfg.steps as f64 {
            return None;
        }
        let mut c = cfg.clone();
        c.steps = steps;
        self.fit = Some(Fit {
            steps,
            step_s,
            eval_s: self.eval_s,
            ..last
        });
        Some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_and_without_units() {
        assert_eq!(parse_duration("900"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration(" 1.5h "), Ok(Duration::from_secs(5400)));
        for bad in ["", "m", "-5m", "0", "15 parsecs", "nan", "1e400s"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.starts_with(bad), "{bad:?}: {e}");
        }
    }

    #[test]
    fn a_fit_fills_the_time_left_and_keeps_the_evaluation_count() {
        let mut cfg = TrainConfig::preset("fmnist").unwrap();
        cfg.steps = 11_700;
        cfg.eval_every = 1_170;
        cfg.checkpoint_every = 0;
        // 10 evaluations of 2 s, 1/256 s a step, 600 s left: (570 − 20) · 256 more steps.
        let c = fitted(&cfg, 23, 1.0 / 256.0, 2.0, 600.0);
        assert_eq!(c.steps, 23 + 140_800);
        assert_eq!(c.eval_every, c.steps.div_ceil(10));
        assert_eq!(c.steps.div_ceil(c.eval_every), 10);
        assert_eq!(c.checkpoint_every, 0);
        assert_eq!(c.warmup_steps, cfg.warmup_steps);
        assert!(c.validate().is_ok());
        // Evaluations that would take most of the time: as many as fit in 15% of it.
        let c = fitted(&cfg, 23, 0.25, 10.0, 200.0);
        assert_eq!(c.eval_every, c.steps.div_ceil(3));
        assert_eq!(
            c.steps,
            23 + ((200.0 * 0.95 - 30.0) / 0.25f64).floor() as u64
        );
        assert_eq!(c.warmup_steps, cfg.warmup_steps);
        // Too little time: one more step, so the run still ends on its own schedule, and the
        // warm-up, which would outlast it, scales with it, though not into the steps done.
        let c = fitted(&cfg, 23, 0.5, 30.0, 10.0);
        assert_eq!(c.steps, 24);
        assert!(c.eval_every >= 1);
        assert_eq!(c.warmup_steps, 23);
        // A Gram loss planned to start at step 100 of 1,000 still starts, after the 23 done.
        let mut gram = TrainConfig::preset("debug_v3").unwrap();
        gram.steps = 1000;
        gram.gram = Some(crate::train::config::GramConfig {
            weight: 1.0,
            start: 100,
            refresh_every: 0,
            ramp: 400,
            local_weight: 1.0,
            max_refreshes: None,
        });
        let c = fitted(&gram, 23, 0.5, 0.0, 20.0);
        let start = c.gram.as_ref().map(|g| g.start);
        assert!(
            start.is_some_and(|s| (23..100).contains(&s)),
            "{start:?} of {}",
            c.steps
        );
        // Its ramp, still to come, shrinks with the run; one under way keeps its length.
        let ramp = c.gram.as_ref().map_or(0, |g| g.ramp);
        assert!((1..400).contains(&ramp), "{ramp} of {}", c.steps);
        let c = fitted(&gram, 150, 0.5, 0.0, 20.0);
        assert_eq!(c.gram.as_ref().map(|g| g.ramp), Some(400));
    }

    #[test]
    fn a_run_ended_before_its_fit_gets_a_schedule_from_its_pace() {
        let cfg = TrainConfig::preset("fmnist").unwrap();
        let t0 = Instant::now();
        let s = Duration::from_secs;
        // Stopped (a signal) after 10 steps of 1 s, 3 of them warm-up, with 100 s left.
        let mut b = Budget::starting_at(s(110), t0);
        for here in 1..=10u64 {
            assert_eq!(b.after_step_at(here, here, &cfg, true, t0 + s(here)), None);
        }
        let c = b
            .fit_early_at(10, 10, &cfg, t0 + s(10))
            .expect("a schedule");
        assert_eq!(c.steps, 10 + (100.0 * PLANNED) as u64);
        assert!(c.steps < cfg.steps);
        assert_eq!(b.fit.map(|f| f.steps), Some(c.steps));
        // Once fitted, no second schedule.
        assert_eq!(b.fit_early_at(10, 10, &cfg, t0 + s(10)), None);
        // Stopped by the limit itself before the timing ended: the schedule ends where it is.
        let mut b = Budget::starting_at(s(5), t0);
        let c = b.fit_early_at(7, 7, &cfg, t0 + s(6)).expect("a schedule");
        assert_eq!(c.steps, 7);
        assert!(c.warmup_steps <= c.steps);
        // No step, no schedule.
        assert_eq!(
            Budget::starting_at(s(5), t0).fit_early_at(0, 0, &cfg, t0),
            None
        );
        // Stopped with time left before a step past the warm-up: no pace, the config's stays.
        let mut b = Budget::starting_at(s(110), t0);
        for here in 1..=3u64 {
            assert_eq!(b.after_step_at(here, here, &cfg, true, t0 + s(here)), None);
        }
        assert_eq!(b.fit_early_at(3, 3, &cfg, t0 + s(3)), None);
        assert_eq!(b.fit, None);
    }

    #[test]
    fn a_hold_moves_the_limit_and_leaves_the_step_timing() {
        let mut b = Budget::starting_at(Duration::from_secs(10), Instant::now());
        b.hold(5.0);
        assert_eq!(b.limit, Duration::from_secs(15));
        assert_eq!((b.paused_s, b.eval_s), (5.0, 0.0));
    }

    #[test]
    fn the_timed_steps_exclude_pauses() {
        let mut cfg = TrainConfig::preset("debug").unwrap();
        cfg.eval_every = 100;
        cfg.steps = 1000;
        let t = Instant::now();
        let at = |s: f64| t + Duration::from_secs_f64(s);
        let mut b = Budget::starting_at(Duration::from_secs(1000), t);
        // A 4-second baseline evaluation, then steps of 0.1 s with a 5-second checkpoint
        // inside the timed window.
        b.paused(4.0, true);
        assert_eq!(b.fits_after(), Some(WARM_UP + TIMED));
        let mut now = 4.0;
        for here in 1..WARM_UP + TIMED {
            now += 0.1;
            assert!(b.after_step_at(here, here, &cfg, true, at(now)).is_none());
            if here == WARM_UP + 2 {
                b.paused(5.0, false);
                now += 5.0;
            }
        }
        now += 0.1;
        let c = b
            .after_step_at(WARM_UP + TIMED, WARM_UP + TIMED, &cfg, true, at(now))
            .unwrap();
        let f = b.fit.unwrap();
        assert!((f.step_s - 0.1).abs() < 1e-9, "{f:?}");
        assert_eq!(f.eval_s, 4.0);
        assert_eq!(f.planned_steps, 1000);
        // (95 % of what is left − 10 evaluations of 4 s) at 0.1 s a step.
        let left = 1000.0 - now;
        let more = ((left * 0.95 - 40.0) / 0.1f64).floor() as u64;
        assert_eq!(c.steps, WARM_UP + TIMED + more);
        assert_eq!(f.steps, c.steps);
        assert_eq!(b.fits_after(), None);
        assert!(b.after_step_at(30, 30, &c, true, at(now + 1.0)).is_none());
    }

    #[test]
    fn a_slower_pace_refits_at_quiet_points_only() {
        let mut cfg = TrainConfig::preset("debug").unwrap();
        cfg.eval_every = 0;
        cfg.steps = 100_000;
        let t = Instant::now();
        let at = |s: f64| t + Duration::from_secs_f64(s);
        let mut b = Budget::starting_at(Duration::from_secs(1000), t);
        let mut now = 0.0;
        let mut c = cfg.clone();
        for here in 1..=FIT_AFTER {
            now += 0.1;
            if let Some(f) = b.after_step_at(here, here, &c, true, at(now)) {
                c = f;
            }
        }
        let first = c.steps;
        assert_eq!(
            first,
            FIT_AFTER + ((1000.0 - now) * 0.95 / 0.1f64).floor() as u64
        );
        // The steps then take twice as long.
        let mut refits = Vec::new();
        for here in FIT_AFTER + 1..=FIT_AFTER + 2 * REFIT_STEPS {
            now += 0.2;
            let quiet = here % 50 == 0;
            if let Some(f) = b.after_step_at(here, here, &c, quiet, at(now)) {
                assert!(quiet, "refitted with a step in flight");
                refits.push((here, f.steps));
                c = f;
            }
        }
        // The first quiet point 100 steps after the fit, at 0.2 s a step.
        let here = 150;
        assert!(here >= FIT_AFTER + REFIT_STEPS && here - 50 < FIT_AFTER + REFIT_STEPS);
        let want = here
            + ((1000.0 - (0.1 * FIT_AFTER as f64 + 0.2 * (here - FIT_AFTER) as f64)) * 0.95 / 0.2)
                .floor() as u64;
        assert_eq!(refits.first().copied(), Some((here, want)));
        assert!(want < first);
        assert_eq!(b.fit.unwrap().steps, c.steps);
        assert!((b.fit.unwrap().step_s - 0.2).abs() < 1e-9);
        // The pace holds: the later quiet points leave the length alone.
        assert_eq!(refits.len(), 1, "{refits:?}");
    }
}
