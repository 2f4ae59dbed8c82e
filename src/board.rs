//! Board profiles: what ledge knows about a kind of gateway, as data.
//!
//! One TOML file per board in `boards/` (adding a board is adding a file),
//! embedded in the binary so `ledge boards` and `--board` work on a gateway
//! without the repository. A profile gives the Rust target (read by
//! `cross/build.sh`), the header's GPIO controller and its pin names, the
//! usual 1-wire/I2C/thermal paths, and defaults sized for the board's RAM
//! and storage. Config keys the user writes always win over a profile.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// The profiles shipped in the binary, by name.
const PROFILES: [(&str, &str); 9] = [
    ("zero2w", include_str!("../boards/zero2w.toml")),
    ("rpi-zero", include_str!("../boards/rpi-zero.toml")),
    ("rpi3", include_str!("../boards/rpi3.toml")),
    ("rpi4", include_str!("../boards/rpi4.toml")),
    ("cm4", include_str!("../boards/cm4.toml")),
    ("rpi5", include_str!("../boards/rpi5.toml")),
    (
        "generic-aarch64",
        include_str!("../boards/generic-aarch64.toml"),
    ),
    (
        "generic-armv7",
        include_str!("../boards/generic-armv7.toml"),
    ),
    (
        "generic-x86_64",
        include_str!("../boards/generic-x86_64.toml"),
    ),
];

/// One board profile.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Board {
    #[serde(skip)]
    pub name: String,
    /// Rust target triple of the binary for this board.
    pub target: String,
    pub description: String,
    /// RAM as sold ("1-8 GiB").
    pub ram: String,
    /// `small` (≤ 512 MiB), `medium` (~1 GiB) or `large` (≥ 2 GiB).
    pub ram_class: String,
    pub gpio: BoardGpio,
    pub paths: BoardPaths,
    pub defaults: BoardDefaults,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardGpio {
    /// The usual device name of the header's controller (`gpiochip0`).
    pub chip: String,
    /// Its label, which ledge looks for (stable where numbers are not).
    pub label: Option<String>,
    /// Pin name (`GPIO17`, `PIN11`) → line offset on the chip.
    #[serde(default)]
    pub pins: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardPaths {
    pub w1: PathBuf,
    pub i2c: PathBuf,
    pub thermal: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardDefaults {
    pub data_dir: PathBuf,
    /// `[spool] max_bytes`, as a size.
    pub spool_max_bytes: String,
    /// `[device] max_concurrency`.
    pub max_concurrency: usize,
    /// A function's `memory` when it sets none.
    pub function_memory: String,
}

impl Board {
    /// Parses one profile.
    pub fn parse(name: &str, text: &str) -> Result<Self, String> {
        let mut board: Board =
            toml::from_str(text).map_err(|e| format!("board {name}: {}", e.message()))?;
        board.name = name.to_owned();
        for pin in board.gpio.pins.keys() {
            if pin.is_empty()
                || !pin
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            {
                return Err(format!(
                    "board {name}: pin name `{pin}` must be upper-case letters and digits"
                ));
            }
        }
        Ok(board)
    }

    /// The chip the header's pins are on: its label if known, else its
    /// device name.
    pub fn gpio_chip(&self) -> &str {
        self.gpio.label.as_deref().unwrap_or(&self.gpio.chip)
    }

    /// The line of pin `name` (case-insensitive).
    pub fn pin(&self, name: &str) -> Option<u32> {
        self.gpio.pins.get(&name.to_ascii_uppercase()).copied()
    }

    /// The pin names, in a readable order (`GPIO2` before `GPIO10`).
    pub fn pin_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.gpio.pins.keys().map(String::as_str).collect();
        names.sort_by_key(|n| {
            let digits = n.trim_start_matches(|c: char| !c.is_ascii_digit());
            (
                n[..n.len() - digits.len()].to_owned(),
                digits.parse::<u32>().unwrap_or(0),
            )
        });
        names
    }
}

/// Every embedded profile, in table order.
pub fn all() -> Vec<Board> {
    PROFILES
        .iter()
        .map(|(name, text)| Board::parse(name, text).unwrap_or_else(|e| panic!("embedded {e}")))
        .collect()
}

/// The embedded profile `name`.
pub fn find(name: &str) -> Option<Board> {
    PROFILES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, text)| Board::parse(n, text).unwrap_or_else(|e| panic!("embedded {e}")))
}

/// The names of every embedded profile.
pub fn names() -> Vec<&'static str> {
    PROFILES.iter().map(|(n, _)| *n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_profile_parses_and_every_file_is_embedded() {
        let boards = all();
        assert_eq!(boards.len(), 9);
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("boards");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let mut embedded = names();
        embedded.sort();
        assert_eq!(files, embedded, "a boards/*.toml is not in PROFILES");
        for board in &boards {
            crate::units::parse_size(&board.defaults.spool_max_bytes).unwrap();
            crate::units::parse_size(&board.defaults.function_memory).unwrap();
        }
    }

    #[test]
    fn pin_maps_resolve_bcm_names_and_header_pins() {
        let rpi4 = find("rpi4").unwrap();
        assert_eq!(rpi4.pin("GPIO17"), Some(17));
        assert_eq!(rpi4.pin("gpio17"), Some(17));
        assert_eq!(rpi4.pin("PIN11"), Some(17));
        assert_eq!(rpi4.pin("PIN40"), Some(21));
        assert_eq!(rpi4.pin("GPIO28"), None);
        assert_eq!(rpi4.pin("PIN1"), None, "3.3 V is not a GPIO");
        assert_eq!(rpi4.pin_names()[..3], ["GPIO2", "GPIO3", "GPIO4"]);
        // Every Pi header: GPIO2..GPIO27 and a header pin for each.
        for name in ["zero2w", "rpi-zero", "rpi3", "rpi4", "cm4", "rpi5"] {
            let board = find(name).unwrap();
            for line in 2..=27 {
                assert_eq!(board.pin(&format!("GPIO{line}")), Some(line), "{name}");
                assert_eq!(
                    board.gpio.pins.values().filter(|l| **l == line).count(),
                    2,
                    "{name} GPIO{line}"
                );
            }
        }
        assert!(find("generic-aarch64").unwrap().gpio.pins.is_empty());
    }

    #[test]
    fn the_pi_5_header_is_found_by_the_rp1_label() {
        assert_eq!(find("rpi5").unwrap().gpio_chip(), "pinctrl-rp1");
        assert_eq!(find("rpi4").unwrap().gpio_chip(), "pinctrl-bcm2711");
        assert_eq!(find("generic-x86_64").unwrap().gpio_chip(), "gpiochip0");
    }

    #[test]
    fn a_pin_map_with_a_bad_name_or_line_is_refused() {
        let base = "target = \"t\"\ndescription = \"d\"\nram = \"1\"\nram_class = \"small\"\n\
            [paths]\nw1 = \"/a\"\ni2c = \"/b\"\nthermal = \"/c\"\n\
            [defaults]\ndata_dir = \"/d\"\nspool_max_bytes = \"1MiB\"\nmax_concurrency = 1\nfunction_memory = \"1MiB\"\n\
            [gpio]\nchip = \"gpiochip0\"\n[gpio.pins]\n";
        assert_eq!(
            Board::parse("x", &format!("{base}GPIO4 = 4\n"))
                .unwrap()
                .pin("GPIO4"),
            Some(4)
        );
        assert!(Board::parse("x", &format!("{base}\"gpio 4\" = 4\n")).is_err());
        assert!(Board::parse("x", &format!("{base}GPIO4 = -1\n")).is_err());
        assert!(Board::parse("x", &format!("{base}GPIO4 = \"four\"\n")).is_err());
    }
}
