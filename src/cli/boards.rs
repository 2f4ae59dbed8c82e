//! `ledge boards`: the board profiles built into the binary.

use super::CliError;
use crate::board::Board;

pub fn boards(name: Option<&str>) -> Result<(), CliError> {
    match name {
        None => {
            list(&crate::board::all());
            Ok(())
        }
        Some(name) => match crate::board::find(name) {
            Some(board) => {
                show(&board);
                Ok(())
            }
            None => Err(CliError::Usage(anyhow::anyhow!(
                "unknown board `{name}` (known: {})",
                crate::board::names().join(", ")
            ))),
        },
    }
}

fn list(boards: &[Board]) {
    println!(
        "{:<16} {:<32} {:<7} {:<16} description",
        "board", "target", "ram", "gpio chip"
    );
    for board in boards {
        println!(
            "{:<16} {:<32} {:<7} {:<16} {}",
            board.name,
            board.target,
            board.ram_class,
            board.gpio_chip(),
            board.description
        );
    }
}

fn show(board: &Board) {
    let d = &board.defaults;
    println!("board        {} ({})", board.name, board.description);
    println!("target       {}", board.target);
    println!("ram          {} ({})", board.ram, board.ram_class);
    match &board.gpio.label {
        Some(label) => println!(
            "gpio chip    labelled {label} (usually {})",
            board.gpio.chip
        ),
        None => println!("gpio chip    {}", board.gpio.chip),
    }
    println!(
        "paths        w1 {}, i2c {}, thermal {}",
        board.paths.w1.display(),
        board.paths.i2c.display(),
        board.paths.thermal.display()
    );
    println!(
        "defaults     data_dir {}, spool max_bytes {}, max_concurrency {}, function memory {}",
        d.data_dir.display(),
        d.spool_max_bytes,
        d.max_concurrency,
        d.function_memory
    );
    if board.gpio.pins.is_empty() {
        println!("pins         none named: use chip and line");
        return;
    }
    println!("pins");
    for name in board.pin_names() {
        println!("  {name:<8} line {}", board.gpio.pins[name]);
    }
}
