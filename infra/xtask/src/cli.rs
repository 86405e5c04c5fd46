//! The few flags the commands take. Hand-parsed: four commands with one to
//! three flags each do not justify an argument-parsing dependency.

use anyhow::{bail, Result};

/// A command's `--name value` / `--name=value` flags.
pub struct Flags {
    given: Vec<(String, String)>,
}

impl Flags {
    /// Parses `args`, rejecting any flag not in `known` so a typo is an error
    /// rather than a silently ignored option.
    pub fn parse(command: &str, args: &[String], known: &[&str]) -> Result<Self> {
        let mut given = Vec::new();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let Some(flag) = arg.strip_prefix("--") else {
                bail!("{command}: unexpected argument `{arg}` (see `cargo xtask help`)");
            };
            let (name, value) = match flag.split_once('=') {
                Some((name, value)) => (name, value.to_owned()),
                None => match args.next() {
                    Some(value) => (flag, value.clone()),
                    None => bail!("{command}: --{flag} needs a value"),
                },
            };
            if !known.contains(&name) {
                bail!("{command}: unknown flag --{name} (see `cargo xtask help`)");
            }
            given.push((name.to_owned(), value));
        }
        Ok(Self { given })
    }

    /// The last value given for `name`, so a later flag overrides an earlier one.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.given
            .iter()
            .rev()
            .find(|(given, _)| given == name)
            .map(|(_, value)| value.as_str())
    }
}
