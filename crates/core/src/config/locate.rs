//! Where plans.toml is read from: the one explicit choice, else the first file that exists in
//! the usual places. `doctor` prints the reason, so nobody has to guess which file is in use.

use std::path::{Path, PathBuf};

/// The example plans shipped with meterline: what `init` writes and what `--demo` and `demo`
/// use when there is no plans file.
pub const EXAMPLE_PLANS: &str = include_str!("../../../../plans.toml");
/// What `meterline init` writes: an AI API's plans over three meters, commented.
pub const INIT_PLANS: &str = include_str!("../../../../examples/plans-ai-api.toml");

/// Which plans.toml is used, and why (what `doctor` prints).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlansLocation {
    pub path: PathBuf,
    /// Why this file: "--plans / METERLINE_PLANS", "current directory", …
    pub reason: &'static str,
}

/// The places looked at, in order, when neither `--plans` nor `METERLINE_PLANS` is given.
pub(crate) fn search_path(
    xdg_config_home: Option<&Path>,
    home: Option<&Path>,
) -> Vec<(PathBuf, &'static str)> {
    let mut places = vec![(PathBuf::from("plans.toml"), "current directory")];
    let user_config = xdg_config_home
        .map(Path::to_path_buf)
        .or_else(|| home.map(|h| h.join(".config")));
    if let Some(dir) = user_config {
        places.push((
            dir.join("meterline/plans.toml"),
            "user configuration ($XDG_CONFIG_HOME)",
        ));
    }
    places.push((
        PathBuf::from("/etc/meterline/plans.toml"),
        "system configuration",
    ));
    places
}

/// The explicit path if given, else the first existing file of [`search_path`], else
/// `./plans.toml` (whose absence then produces the usual "cannot read" error).
pub fn locate(explicit: Option<&Path>) -> PlansLocation {
    if let Some(path) = explicit {
        return PlansLocation {
            path: path.to_path_buf(),
            reason: "--plans / METERLINE_PLANS",
        };
    }
    let xdg = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty());
    let home = std::env::var_os("HOME").filter(|v| !v.is_empty());
    let places = search_path(
        xdg.as_deref().map(Path::new),
        home.as_deref().map(Path::new),
    );
    places
        .iter()
        .find(|(path, _)| path.is_file())
        .map(|(path, reason)| PlansLocation {
            path: path.clone(),
            reason,
        })
        .unwrap_or_else(|| PlansLocation {
            path: PathBuf::from("plans.toml"),
            reason: "not found in ., $XDG_CONFIG_HOME/meterline or /etc/meterline",
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_order_is_cwd_then_user_then_system() {
        let places = search_path(Some(Path::new("/x")), Some(Path::new("/home/u")));
        let paths: Vec<_> = places.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(
            paths,
            [
                PathBuf::from("plans.toml"),
                PathBuf::from("/x/meterline/plans.toml"),
                PathBuf::from("/etc/meterline/plans.toml"),
            ]
        );
        let without_xdg = search_path(None, Some(Path::new("/home/u")));
        assert_eq!(
            without_xdg[1].0,
            PathBuf::from("/home/u/.config/meterline/plans.toml")
        );
    }

    #[test]
    fn an_explicit_path_wins() {
        let found = locate(Some(Path::new("/nowhere/p.toml")));
        assert_eq!(found.path, PathBuf::from("/nowhere/p.toml"));
    }

    #[test]
    fn the_example_plans_are_valid() {
        crate::Config::parse(EXAMPLE_PLANS, "example").unwrap();
        let init = crate::Config::parse(INIT_PLANS, "init").unwrap();
        assert_eq!(init.meters.len(), 3);
        // It teaches rolling windows too: a plan with a 5-hour and a weekly window.
        let windows: Vec<String> = init
            .plans
            .iter()
            .flat_map(|p| p.meters.values())
            .flat_map(|t| &t.limits)
            .map(|l| l.name())
            .collect();
        assert_eq!(windows, ["5h sliding", "7d fixed"]);
    }
}
