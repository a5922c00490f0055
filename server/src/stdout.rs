//! Printing for the command lines (`np-server`, `np-vendor`) that survives a closed pipe:
//! `np-vendor device list | head -1` ends quietly with exit 0 once `head` has gone, as Unix
//! tools do, instead of panicking in `println!`. Use [`outln!`](crate::outln) and
//! [`out!`](crate::out) for standard output and [`errln!`](crate::errln) for standard
//! error.

use std::io::Write as _;

/// Writes to standard output; a closed pipe ends the process quietly (exit 0), another
/// write failure ends it with exit 3 (I/O) and a sentence on standard error.
pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        write_stderr(format_args!(
            "error: cannot write to standard output: {e}\n"
        ));
        std::process::exit(3);
    }
}

/// Writes to standard error, ignoring a closed one (there is nobody left to tell).
pub fn write_stderr(args: std::fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(args);
}

/// `println!` that ends the process quietly on a closed pipe.
#[macro_export]
macro_rules! outln {
    () => { $crate::stdout::write_stdout(format_args!("\n")) };
    ($($arg:tt)*) => {
        $crate::stdout::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that ends the process quietly on a closed pipe.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::stdout::write_stdout(format_args!($($arg)*)) };
}

/// `eprintln!` that never panics.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::stdout::write_stderr(format_args!("{}\n", format_args!($($arg)*)))
    };
}
