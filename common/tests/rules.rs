//! The update rule: one test per `Refusal`, each asserting the exact variant.

mod support;

use jiff::civil::date;
use np_common::docs::Status;
use np_common::{check_update, Model, Refusal, Serial, UpdateInputs};
use support::*;

fn inputs<'a>(
    release: &'a np_common::docs::Release,
    ent: Option<&'a np_common::docs::Entitlement>,
    running: &'a np_common::Version,
    serial: &'a Serial,
    model: &'a Model,
) -> UpdateInputs<'a> {
    UpdateInputs {
        serial,
        model,
        release,
        entitlement: ent,
        now: ts("2026-11-23T10:00:00Z"),
        running_version: running,
        running_security_version: 3,
    }
}

#[test]
fn a_covered_box_may_install_a_newer_release() {
    let (r, e, run, s, m) = (release(), entitlement(), v("5.2.1"), serial(), model());
    assert_eq!(check_update(&inputs(&r, Some(&e), &run, &s, &m)), Ok(()));
}

#[test]
fn every_rule_names_itself() {
    let (r, e, run, s, m) = (release(), entitlement(), v("5.2.1"), serial(), model());
    let base = inputs(&r, Some(&e), &run, &s, &m);

    let other_model = Model::parse("NR-3000").expect("valid");
    let got = check_update(&UpdateInputs {
        model: &other_model,
        ..base
    });
    assert!(
        matches!(got, Err(Refusal::ModelNotListed { .. })),
        "{got:?}"
    );

    let got = check_update(&UpdateInputs {
        entitlement: None,
        ..base
    });
    assert!(matches!(got, Err(Refusal::NoEntitlement { .. })), "{got:?}");

    let other_serial = Serial::parse("NR-1000-000001-7").expect("valid");
    let got = check_update(&UpdateInputs {
        serial: &other_serial,
        ..base
    });
    assert!(
        matches!(got, Err(Refusal::EntitlementOtherSerial { .. })),
        "{got:?}"
    );

    let mut e2 = entitlement();
    e2.model = Model::parse("NR-1000").expect("valid");
    let got = check_update(&UpdateInputs {
        entitlement: Some(&e2),
        ..base
    });
    assert!(
        matches!(got, Err(Refusal::EntitlementOtherModel { .. })),
        "{got:?}"
    );

    for status in [Status::Revoked, Status::Replaced] {
        let mut e3 = entitlement();
        e3.status = status;
        let got = check_update(&UpdateInputs {
            entitlement: Some(&e3),
            ..base
        });
        assert_eq!(
            got,
            Err(Refusal::EntitlementNotActive {
                serial: serial(),
                status
            })
        );
    }

    // Coverage ends at the start of coverage_end (UTC midnight): the last covered instant
    // is the second before.
    let got = check_update(&UpdateInputs {
        now: ts("2027-03-01T00:00:00Z"),
        ..base
    });
    assert_eq!(
        got,
        Err(Refusal::WarrantyExpired {
            serial: serial(),
            coverage_end: date(2027, 3, 1),
            version: v("5.3.0")
        })
    );
    assert!(got
        .expect_err("refused")
        .to_string()
        .contains("ended on 2027-03-01"));
    assert_eq!(
        check_update(&UpdateInputs {
            now: ts("2027-02-28T23:59:59Z"),
            ..base
        }),
        Ok(())
    );

    let mut late = release();
    late.released_at = ts("2027-03-01T00:00:00Z");
    let got = check_update(&UpdateInputs {
        release: &late,
        ..base
    });
    assert!(
        matches!(got, Err(Refusal::ReleasedAfterCoverage { .. })),
        "{got:?}"
    );

    let got = check_update(&UpdateInputs {
        running_security_version: 5,
        ..base
    });
    assert_eq!(
        got,
        Err(Refusal::SecurityDowngrade {
            version: v("5.3.0"),
            running: 5,
            offered: 4
        })
    );

    for running in ["5.3.0", "5.4.0"] {
        let rv = v(running);
        let got = check_update(&UpdateInputs {
            running_version: &rv,
            ..base
        });
        assert_eq!(
            got,
            Err(Refusal::NotNewer {
                running: rv.clone(),
                offered: v("5.3.0")
            })
        );
    }

    let old = v("4.9.9");
    let got = check_update(&UpdateInputs {
        running_version: &old,
        ..base
    });
    assert_eq!(
        got,
        Err(Refusal::FromVersionTooOld {
            version: v("5.3.0"),
            running: old.clone(),
            min_from: v("5.0.0")
        })
    );
}

#[test]
fn rule_names_are_stable_snake_case() {
    let r = Refusal::NotNewer {
        running: v("1.0.0"),
        offered: v("1.0.0"),
    };
    assert_eq!(r.rule(), "not_newer");
    let r = Refusal::WarrantyExpired {
        serial: serial(),
        coverage_end: date(2026, 3, 1),
        version: v("5.3.0"),
    };
    assert_eq!(r.rule(), "warranty_expired");
    assert_eq!(
        r.to_string(),
        "warranty for NR-2000-123456-4 ended on 2026-03-01; extend it to install 5.3.0"
    );
}

#[test]
fn build_metadata_is_not_newer_than_the_same_version() {
    let (mut r, e, s, m) = (release(), entitlement(), serial(), model());
    r.version = v("5.3.0+b1");
    let running = v("5.3.0");
    let got = check_update(&inputs(&r, Some(&e), &running, &s, &m));
    assert_eq!(
        got,
        Err(Refusal::NotNewer {
            running: running.clone(),
            offered: v("5.3.0+b1")
        })
    );
}
