//! Manual pages rendered from a command line's clap definition (`clap_mangen`), one page
//! per command and subcommand (`np-vendor`, `np-vendor-device`, `np-vendor-device-add`, ...),
//! each with the tool's exit status and where the rest of the documentation is. Rendering
//! only: the binaries write the pages (their hidden `generate-man` command, which
//! `deploy/build-debs.sh` runs). Built with the `man` feature.

use clap_mangen::roff::{roman, Roff};
use clap_mangen::Man;

/// One rendered page: its file name (`np-vendor-device.1`) and its roff text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManPage {
    /// `NAME.SECTION`.
    pub file_name: String,
    /// The page in roff.
    pub roff: Vec<u8>,
}

/// What every page of one tool ends with.
#[derive(Debug, Clone, Copy)]
pub struct ManFooter<'a> {
    /// The manual section: "1" for user commands, "8" for daemons and admin tools.
    pub section: &'a str,
    /// One line per exit code, such as `0  done`.
    pub exit_status: &'a [&'a str],
    /// Where the rest is documented (man pages, files).
    pub see_also: &'a str,
}

/// Renders the page of `cmd` and of each of its visible subcommands, depth first.
pub fn pages(cmd: clap::Command, footer: &ManFooter<'_>) -> Vec<ManPage> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    render(&cmd, footer, &mut out);
    out
}

fn render(cmd: &clap::Command, footer: &ManFooter<'_>, out: &mut Vec<ManPage>) {
    let name = cmd.get_display_name().unwrap_or(cmd.get_name()).to_owned();
    let man = Man::new(cmd.clone()).section(footer.section);
    let mut roff = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = man.render_title(&mut roff);
    let _ = man.render_name_section(&mut roff);
    let _ = man.render_synopsis_section(&mut roff);
    let _ = man.render_description_section(&mut roff);
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        let _ = man.render_options_section(&mut roff);
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        let _ = man.render_subcommands_section(&mut roff);
    }
    let mut tail = Roff::default();
    tail.control("SH", ["EXIT STATUS"]);
    for line in footer.exit_status {
        tail.control("TP", []);
        let (code, what) = line.split_once(' ').unwrap_or((line, ""));
        tail.text([roman(code)]);
        tail.text([roman(what.trim())]);
    }
    tail.control("SH", ["SEE ALSO"]);
    tail.text([roman(footer.see_also)]);
    let _ = tail.to_writer(&mut roff);
    if cmd.get_version().is_some() {
        let _ = man.render_version_section(&mut roff);
    }
    out.push(ManPage {
        file_name: format!("{name}.{}", footer.section),
        roff,
    });
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        render(sub, footer, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool() -> clap::Command {
        clap::Command::new("np-tool")
            .version("1.2.3")
            .about("Does things")
            .arg(
                clap::Arg::new("config")
                    .long("config")
                    .help("The config file"),
            )
            .subcommand(
                clap::Command::new("run")
                    .about("Runs")
                    .subcommand(clap::Command::new("fast").about("Runs fast")),
            )
            .subcommand(clap::Command::new("secret").hide(true))
    }

    const FOOTER: ManFooter<'static> = ManFooter {
        section: "8",
        exit_status: &["0 done", "2 bad usage"],
        see_also: "np-other(1)",
    };

    #[test]
    fn one_page_per_visible_command_with_exit_status_and_see_also() {
        let pages = pages(tool(), &FOOTER);
        let names: Vec<_> = pages.iter().map(|p| p.file_name.as_str()).collect();
        assert_eq!(names, ["np-tool.8", "np-tool-run.8", "np-tool-run-fast.8"]);
        let top = String::from_utf8(pages[0].roff.clone()).expect("utf-8");
        assert!(top.contains("\n.TH np-tool 8 "), "{top}");
        assert!(top.contains("\\-\\-config"), "{top}");
        assert!(top.contains("np\\-tool\\-run(8)"), "{top}");
        assert!(top.contains(".SH \"EXIT STATUS\""), "{top}");
        assert!(top.contains("bad usage"), "{top}");
        assert!(top.contains("np\\-other(1)"), "{top}");
        assert!(!top.contains("secret"), "{top}");
        assert!(!top.contains("np\\-tool\\-help"), "{top}");
    }
}
