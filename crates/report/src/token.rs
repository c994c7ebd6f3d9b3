//! Replay tokens: a short printable string that names the scenario, the kernel, the parameter
//! overrides and the schedule, so that a violation replays exactly:
//! `mmc1/madv-free-dio/5.16/pages=1/0*12.2*30.1*7` (thread*steps, run-length encoded).

use mmcheck_explorer::ThreadId;
use mmcheck_model::{KernelConfig, KernelVersion, Patch};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayToken {
    pub scenario: String,
    pub kernel: KernelConfig,
    pub overrides: Vec<(String, i64)>,
    pub schedule: Vec<ThreadId>,
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
        let mut runs: Vec<(ThreadId, usize)> = Vec::new();
        for &thread in &self.schedule {
            match runs.last_mut() {
                Some((last, count)) if *last == thread => *count += 1,
                _ => runs.push((thread, 1)),
            }
        }
        let schedule: Vec<String> =
            runs.iter().map(|(t, n)| if *n == 1 { t.to_string() } else { format!("{t}*{n}") }).collect();
        format!("mmc1/{}/{}/{}/{}", self.scenario, kernel, overrides, schedule.join("."))
    }

    pub fn decode(text: &str) -> Result<ReplayToken, String> {
        let parts: Vec<&str> = text.trim().split('/').collect();
        let [version, scenario, kernel, overrides, schedule] = parts[..] else {
            return Err("a replay token has five parts: mmc1/SCENARIO/KERNEL/SETS/SCHEDULE".to_string());
        };
        if version != "mmc1" {
            return Err(format!("unknown token version `{version}` (this mmcheck reads mmc1)"));
        }
        let mut kernel_parts = kernel.split(',');
        let version_text = kernel_parts.next().unwrap_or_default();
        let version = KernelVersion::parse(version_text)
            .ok_or_else(|| format!("bad kernel version `{version_text}` in the token"))?;
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
        let overrides = if overrides == "-" {
            Vec::new()
        } else {
            overrides.split(',').map(parse_set).collect::<Result<Vec<_>, _>>()?
        };
        let mut threads = Vec::new();
        for run in schedule.split('.').filter(|r| !r.is_empty()) {
            let (thread, count) = run.split_once('*').unwrap_or((run, "1"));
            let thread: ThreadId = thread.parse().map_err(|_| format!("bad thread `{thread}` in the schedule"))?;
            let count: usize = count.parse().map_err(|_| format!("bad count `{count}` in the schedule"))?;
            threads.extend(std::iter::repeat_n(thread, count));
        }
        Ok(ReplayToken { scenario: scenario.to_string(), kernel: config, overrides, schedule: threads })
    }
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
        let token = ReplayToken {
            scenario: "madv-free-dio".into(),
            kernel,
            overrides: vec![("pages".into(), 4)],
            schedule: vec![0, 0, 0, 2, 1, 1],
        };
        let text = token.encode();
        assert_eq!(text, "mmc1/madv-free-dio/6.18,-madv-free-gup-race/pages=4/0*3.2.1*2");
        assert_eq!(ReplayToken::decode(&text).unwrap(), token);
        assert!(ReplayToken::decode("mmc2/x/5.16/-/0").is_err());
        assert!(ReplayToken::decode("mmc1/x/5.x/-/0").is_err());
    }
}
