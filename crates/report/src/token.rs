//! Replay tokens: a short printable string that names the scenario, the kernel, the parameter
//! overrides, the memory model and the schedule, so that a violation replays exactly.
//!
//! - `mmc1/madv-free-dio/5.16/pages=1/0*12.2*30.1*7`: sequential consistency, every step with
//!   its only outcome (thread*steps, run-length encoded). Written whenever it says everything.
//! - `mmc2/madv-free-dio/5.16/pages=1/arm64/0*12.2:1.1*7`: a memory model, and a step's outcome
//!   after a colon when it is not 0 (which store a load read).

use mmcheck_explorer::memory::MemoryModel;
use mmcheck_explorer::{Choice, ThreadId};
use mmcheck_model::{KernelConfig, KernelVersion, Patch};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayToken {
    pub scenario: String,
    pub kernel: KernelConfig,
    pub overrides: Vec<(String, i64)>,
    pub memory_model: MemoryModel,
    pub schedule: Vec<Choice>,
}

impl ReplayToken {
    pub fn encode(&self) -> String {
        let mut kernel = self.kernel.version.to_string();
        for (patch, on) in &self.kernel.overrides {
            kernel.push_str(&format!(",{}{}", if *on { '+' } else { '-' }, patch.info().name));
        }
        let overrides = if self.overrides.is_empty() {
            "-".to_string()
        } else {
            self.overrides.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
        };
        let mut runs: Vec<(Choice, usize)> = Vec::new();
        for &choice in &self.schedule {
            match runs.last_mut() {
                Some((last, count)) if *last == choice => *count += 1,
                _ => runs.push((choice, 1)),
            }
        }
        let schedule: Vec<String> =
            runs.iter().map(|(c, n)| if *n == 1 { c.to_string() } else { format!("{c}*{n}") }).collect();
        let schedule = schedule.join(".");
        let choices = self.schedule.iter().any(|choice| choice.outcome != 0);
        match self.memory_model {
            MemoryModel::Sc if !choices => format!("mmc1/{}/{kernel}/{overrides}/{schedule}", self.scenario),
            model => format!("mmc2/{}/{kernel}/{overrides}/{model}/{schedule}", self.scenario),
        }
    }

    pub fn decode(text: &str) -> Result<ReplayToken, String> {
        let parts: Vec<&str> = text.trim().split('/').collect();
        let (scenario, kernel, overrides, memory_model, schedule) = match parts[..] {
            ["mmc1", scenario, kernel, overrides, schedule] => (scenario, kernel, overrides, "sc", schedule),
            ["mmc2", scenario, kernel, overrides, model, schedule] => (scenario, kernel, overrides, model, schedule),
            ["mmc1" | "mmc2", ..] => {
                return Err("a replay token has five parts, mmc1/SCENARIO/KERNEL/SETS/SCHEDULE, or six, \
                            mmc2/SCENARIO/KERNEL/SETS/MEMORY-MODEL/SCHEDULE"
                    .to_string())
            }
            [version, ..] => {
                return Err(format!("unknown token version `{version}` (this mmcheck reads mmc1 and mmc2)"))
            }
            [] => unreachable!("split yields at least one part"),
        };
        let memory_model = MemoryModel::parse(memory_model)
            .ok_or_else(|| format!("unknown memory model `{memory_model}` in the token (sc, x86, arm64, lkmm)"))?;
        let mut kernel_parts = kernel.split(',');
        let version_text = kernel_parts.next().unwrap_or_default();
        let version = KernelVersion::parse(version_text)
            .ok_or_else(|| format!("bad kernel version `{version_text}` in the token: {}", KernelVersion::FORM))?;
        if version > KernelVersion::NEWEST {
            return Err(format!(
                "kernel {version} in the token: the newest modelled kernel is {}",
                KernelVersion::NEWEST
            ));
        }
        let mut config = KernelConfig::for_version(version);
        for part in kernel_parts {
            let (on, name) = match part.split_at_checked(1) {
                Some(("+", name)) => (true, name),
                Some(("-", name)) => (false, name),
                _ => return Err(format!("bad patch override `{part}` in the token")),
            };
            let patch = Patch::by_name(name).ok_or_else(|| format!("unknown patch `{name}` in the token"))?;
            config.set(patch, on);
        }
        if let Some(conflict) = config.conflict() {
            return Err(format!("kernel {} in the token: {conflict}", config.label()));
        }
        if overrides.split(',').count() > SETS_MAX {
            return Err(format!("the token sets more than {SETS_MAX} parameters"));
        }
        let overrides = if overrides == "-" {
            Vec::new()
        } else {
            overrides.split(',').map(parse_set).collect::<Result<Vec<_>, _>>()?
        };
        for (index, (name, _)) in overrides.iter().enumerate() {
            if overrides[..index].iter().any(|(earlier, _)| earlier == name) {
                return Err(format!("the token sets `{name}` twice"));
            }
        }
        let schedule = decode_schedule(schedule)?;
        Ok(ReplayToken { scenario: scenario.to_string(), kernel: config, overrides, memory_model, schedule })
    }
}

/// The most steps a token may name: a longer schedule is not one this mmcheck wrote (the
/// search's depth limit is far below), and is refused before anything is allocated for it.
pub const SCHEDULE_STEPS_MAX: usize = 1 << 24;

/// The most `name=value` parameter overrides a token may set (a scenario has a few; each value
/// then goes through the scenario's size limits like a `--set` value).
pub const SETS_MAX: usize = 64;

/// `0*3.2:1.1*2`: runs of `thread[:outcome][*count]`.
fn decode_schedule(text: &str) -> Result<Vec<Choice>, String> {
    let mut choices = Vec::new();
    for run in text.split('.').filter(|r| !r.is_empty()) {
        let (choice, count) = run.split_once('*').unwrap_or((run, "1"));
        let (thread, outcome) = choice.split_once(':').unwrap_or((choice, "0"));
        let thread: ThreadId = thread.parse().map_err(|_| format!("bad thread `{thread}` in the schedule"))?;
        let outcome: u32 = outcome.parse().map_err(|_| format!("bad outcome `{outcome}` in the schedule"))?;
        let count: usize = count.parse().map_err(|_| format!("bad count `{count}` in the schedule"))?;
        if count > SCHEDULE_STEPS_MAX - choices.len() {
            return Err(format!("the schedule names more than {SCHEDULE_STEPS_MAX} steps"));
        }
        choices.extend(std::iter::repeat_n(Choice::new(thread, outcome), count));
    }
    Ok(choices)
}

/// `name=value` as `--set` takes it.
pub fn parse_set(text: &str) -> Result<(String, i64), String> {
    let (name, value) = text.split_once('=').ok_or_else(|| format!("`{text}` is not name=value"))?;
    let value = parse_number(value).ok_or_else(|| format!("`{value}` is not a number"))?;
    Ok((name.to_string(), value))
}

/// A number as scenarios write them: decimal, 0x hexadecimal, with a K/M/G suffix.
pub fn parse_number(text: &str) -> Option<i64> {
    let (digits, multiplier) = match text.chars().last()? {
        'K' | 'k' => (&text[..text.len() - 1], 1 << 10),
        'M' => (&text[..text.len() - 1], 1 << 20),
        'G' => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    let value = match digits.strip_prefix("0x") {
        Some(hex) => i64::from_str_radix(hex, 16).ok()?,
        None => digits.parse::<i64>().ok()?,
    };
    value.checked_mul(multiplier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trips() {
        let mut kernel = KernelConfig::for_version(KernelVersion::new(6, 18));
        kernel.set(Patch::MadvFreeGupRace, false);
        let mut token = ReplayToken {
            scenario: "madv-free-dio".into(),
            kernel,
            overrides: vec![("pages".into(), 4)],
            memory_model: MemoryModel::Sc,
            schedule: [0, 0, 0, 2, 1, 1].map(Choice::from).to_vec(),
        };
        let text = token.encode();
        assert_eq!(text, "mmc1/madv-free-dio/6.18,-madv-free-gup-race/pages=4/0*3.2.1*2");
        assert_eq!(ReplayToken::decode(&text).unwrap(), token);
        assert!(ReplayToken::decode("mmc2/x/5.16/-/0").is_err(), "mmc2 names a memory model");
        assert!(ReplayToken::decode("mmc1/x/5.x/-/0").is_err());
        assert!(ReplayToken::decode("mmc3/x/5.16/-/0").is_err());
        // Outcomes or a weak model: mmc2.
        token.memory_model = MemoryModel::Arm64;
        token.schedule[3] = Choice::new(2, 1);
        let text = token.encode();
        assert_eq!(text, "mmc2/madv-free-dio/6.18,-madv-free-gup-race/pages=4/arm64/0*3.2:1.1*2");
        assert_eq!(ReplayToken::decode(&text).unwrap(), token);
        assert!(ReplayToken::decode("mmc2/x/5.16/-/power/0").unwrap_err().contains("power"));
        assert!(ReplayToken::decode("mmc1/x/5.16/-/0*18446744073709551615").unwrap_err().contains("more than"));
        // One past 2^24 is refused before anything is allocated for the run.
        assert!(ReplayToken::decode("mmc1/x/5.16/-/0*16777217").unwrap_err().contains("more than"));
        assert_eq!(ReplayToken::decode("mmc1/x/5.16/-/0*1000.1*24").unwrap().schedule.len(), 1024);
        assert!(ReplayToken::decode("mmc1/x/6.19/-/0").unwrap_err().contains("newest"));
        assert!(ReplayToken::decode("mmc1/x/05.16/-/0").unwrap_err().contains("leading zeros"));
        assert!(ReplayToken::decode("mmc1/x/5.16/a=1,a=2/0").unwrap_err().contains("twice"));
        let sets = |count: usize| (0..count).map(|i| format!("p{i}=1")).collect::<Vec<_>>().join(",");
        assert_eq!(
            ReplayToken::decode(&format!("mmc1/x/5.16/{}/0", sets(SETS_MAX))).unwrap().overrides.len(),
            SETS_MAX
        );
        assert!(ReplayToken::decode(&format!("mmc1/x/5.16/{}/0", sets(SETS_MAX + 1)))
            .unwrap_err()
            .contains("more than 64"));
    }
}
