//! Serial numbers (`PP-MMMM-NNNNNN-C` with a Luhn check digit), models (`PP-MMMM`) and
//! the model catalog that decides which swaps are allowed.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Why a serial or a model was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SerialError {
    #[error("{0:?} is not a standard serial: expected PP-MMMM-NNNNNN-C, such as NR-2000-123456-4")]
    Format(String),
    #[error(
        "serial {serial:?} has check digit {got}, but the Luhn digit of {digits} is {expected}"
    )]
    CheckDigit {
        serial: String,
        digits: String,
        expected: u8,
        got: u8,
    },
    #[error("{0:?} is not a model name: expected PP-MMMM, such as NR-2000")]
    ModelFormat(String),
}

/// The Luhn check digit for a string of ASCII digits.
pub fn luhn_check_digit(digits: &str) -> u8 {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let dd = d * 2;
                if dd > 9 {
                    dd - 9
                } else {
                    dd
                }
            } else {
                d
            }
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

fn is_family(s: &str) -> bool {
    s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase())
}

fn is_digits(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_digit())
}

/// A standard serial number whose check digit is right.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial(String);

impl Serial {
    /// Parses and checks a serial such as `NR-2000-123456-4`.
    pub fn parse(s: &str) -> Result<Self, SerialError> {
        let parts: Vec<&str> = s.split('-').collect();
        let [pp, mmmm, nnnnnn, c] = parts.as_slice() else {
            return Err(SerialError::Format(s.chars().take(64).collect()));
        };
        if !(is_family(pp) && is_digits(mmmm, 4) && is_digits(nnnnnn, 6) && is_digits(c, 1)) {
            return Err(SerialError::Format(s.chars().take(64).collect()));
        }
        let digits = format!("{mmmm}{nnnnnn}");
        let expected = luhn_check_digit(&digits);
        let got = c.as_bytes()[0] - b'0';
        if expected != got {
            return Err(SerialError::CheckDigit {
                serial: s.to_owned(),
                digits,
                expected,
                got,
            });
        }
        Ok(Serial(s.to_owned()))
    }

    /// The serial as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The model the serial names (`PP-MMMM`).
    pub fn model(&self) -> Model {
        Model(self.0[..7].to_owned())
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({})", self.0)
    }
}

impl std::str::FromStr for Serial {
    type Err = SerialError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Serial::parse(s)
    }
}

impl Serialize for Serial {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Serial {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Serial::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A model name `PP-MMMM`, such as `NR-2000`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Model(String);

impl Model {
    /// Parses a model name.
    pub fn parse(s: &str) -> Result<Self, SerialError> {
        match s.split_once('-') {
            Some((pp, mmmm)) if is_family(pp) && is_digits(mmmm, 4) => Ok(Model(s.to_owned())),
            _ => Err(SerialError::ModelFormat(s.chars().take(64).collect())),
        }
    }

    /// The model as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Model({})", self.0)
    }
}

impl Serialize for Model {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Model {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Model::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// One model of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogEntry {
    pub model: Model,
    /// Product family, such as `N-Reporter`.
    pub family: String,
    /// Higher is better; a swap may go to the same or a higher tier.
    pub tier: u32,
}

/// Why a model was refused for a device or a swap.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    #[error("model {0} is not in the model catalog")]
    Unknown(Model),
    #[error("model {given} contradicts serial {serial}, which names model {named}")]
    ContradictsSerial {
        serial: Serial,
        named: Model,
        given: Model,
    },
    #[error("a swap must stay in the same family: {from} is {from_family}, {to} is {to_family}")]
    FamilyDiffers {
        from: Model,
        from_family: String,
        to: Model,
        to_family: String,
    },
    #[error("a swap must go to the same or a higher tier: {from} is tier {from_tier}, {to} is tier {to_tier}")]
    LowerTier {
        from: Model,
        from_tier: u32,
        to: Model,
        to_tier: u32,
    },
}

/// The models the vendor sells, with family and tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    pub models: Vec<CatalogEntry>,
}

impl Default for Catalog {
    /// NR-1000..NR-3000 (N-Reporter, tiers 1-3) and NC-1000, NC-2000 (N-Cloud, tiers 1-2).
    fn default() -> Self {
        let e = |m: &str, family: &str, tier| CatalogEntry {
            model: Model(m.to_owned()),
            family: family.to_owned(),
            tier,
        };
        Catalog {
            models: vec![
                e("NR-1000", "N-Reporter", 1),
                e("NR-2000", "N-Reporter", 2),
                e("NR-3000", "N-Reporter", 3),
                e("NC-1000", "N-Cloud", 1),
                e("NC-2000", "N-Cloud", 2),
            ],
        }
    }
}

impl Catalog {
    /// The catalog entry of `model`.
    pub fn get(&self, model: &Model) -> Result<&CatalogEntry, ModelError> {
        self.models
            .iter()
            .find(|e| &e.model == model)
            .ok_or_else(|| ModelError::Unknown(model.clone()))
    }

    /// The model of a device with this serial: `given` if any, else the one the serial
    /// names. The model must be in the catalog. A given model must agree with the serial.
    pub fn device_model(
        &self,
        serial: &Serial,
        given: Option<&Model>,
    ) -> Result<Model, ModelError> {
        let named = serial.model();
        if let Some(g) = given {
            if g != &named {
                return Err(ModelError::ContradictsSerial {
                    serial: serial.clone(),
                    named,
                    given: g.clone(),
                });
            }
        }
        self.get(&named)?;
        Ok(named)
    }

    /// A failed `from` box may be swapped for `to` only within its family and at the
    /// same or a higher tier.
    pub fn check_swap(&self, from: &Model, to: &Model) -> Result<(), ModelError> {
        let f = self.get(from)?;
        let t = self.get(to)?;
        if f.family != t.family {
            return Err(ModelError::FamilyDiffers {
                from: from.clone(),
                from_family: f.family.clone(),
                to: to.clone(),
                to_family: t.family.clone(),
            });
        }
        if t.tier < f.tier {
            return Err(ModelError::LowerTier {
                from: from.clone(),
                from_tier: f.tier,
                to: to.clone(),
                to_tier: t.tier,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn spec_example_serials() {
        let s = Serial::parse("NR-2000-123456-4").expect("valid");
        assert_eq!(s.model().as_str(), "NR-2000");
        assert!(matches!(
            Serial::parse("NR-2000-123456-5"),
            Err(SerialError::CheckDigit {
                expected: 4,
                got: 5,
                ..
            })
        ));
        for bad in [
            "",
            "NR2000-123456-4",
            "nr-2000-123456-4",
            "NR-200-123456-4",
            "NR-2000-12345-4",
            "NR-2000-123456-44",
            "NR-2000-123456-4-",
        ] {
            assert!(
                matches!(Serial::parse(bad), Err(SerialError::Format(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn catalog_rules() {
        let c = Catalog::default();
        let m = |s| Model::parse(s).expect("valid");
        let s = Serial::parse("NR-2000-123456-4").expect("valid");
        assert_eq!(c.device_model(&s, None), Ok(m("NR-2000")));
        assert!(matches!(
            c.device_model(&s, Some(&m("NR-3000"))),
            Err(ModelError::ContradictsSerial { .. })
        ));
        let unknown = Serial::parse(&format!(
            "NR-9000-000001-{}",
            luhn_check_digit("9000000001")
        ))
        .expect("valid");
        assert!(matches!(
            c.device_model(&unknown, None),
            Err(ModelError::Unknown(_))
        ));
        assert_eq!(c.check_swap(&m("NR-2000"), &m("NR-2000")), Ok(()));
        assert_eq!(c.check_swap(&m("NR-2000"), &m("NR-3000")), Ok(()));
        assert!(matches!(
            c.check_swap(&m("NR-2000"), &m("NR-1000")),
            Err(ModelError::LowerTier { .. })
        ));
        assert!(matches!(
            c.check_swap(&m("NR-1000"), &m("NC-2000")),
            Err(ModelError::FamilyDiffers { .. })
        ));
        assert!(matches!(
            c.check_swap(&m("NR-1000"), &m("NX-2000")),
            Err(ModelError::Unknown(_))
        ));
    }

    proptest! {
        #[test]
        fn serial_round_trips(fam in "[A-Z]{2}", model in 0u32..10000, n in 0u32..1_000_000) {
            let digits = format!("{model:04}{n:06}");
            let text = format!("{fam}-{model:04}-{n:06}-{}", luhn_check_digit(&digits));
            let s = Serial::parse(&text).expect("valid by construction");
            prop_assert_eq!(s.as_str(), text.as_str());
            let back: Serial = serde_json::from_str(&serde_json::to_string(&s).expect("ser")).expect("de");
            prop_assert_eq!(&back, &s);
            // Any other check digit is refused.
            let good = luhn_check_digit(&digits);
            let wrong = (good + 1) % 10;
            let bad_text = format!("{fam}-{model:04}-{n:06}-{wrong}");
            prop_assert!(Serial::parse(&bad_text).is_err());
        }

        #[test]
        fn arbitrary_strings_never_panic(s in ".{0,40}") {
            let _ = Serial::parse(&s);
            let _ = Model::parse(&s);
        }
    }
}
