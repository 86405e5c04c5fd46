//! How a ticket order's tickets reach their buyer (seed 003's delivery options): by email,
//! the codes in a mail, or by courier, printed and shipped to an address the buyer gives
//! when confirming the cart.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Longest address line, in characters.
pub const MAX_LINE_LEN: usize = 200;

/// Longest name, postal code or city, in characters.
pub const MAX_FIELD_LEN: usize = 100;

/// Email when a ticket order was stored before buyers could choose (and when a
/// confirmation names nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Delivery {
    #[default]
    Email,
    /// Boxed: an address would otherwise make every order command as large as itself.
    Courier { address: Box<Address> },
}

impl Delivery {
    /// The method without the address: what a ticket records.
    pub fn method(&self) -> Method {
        match self {
            Self::Email => Method::Email,
            Self::Courier { .. } => Method::Courier,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Email,
    Courier,
}

/// A postal address for printed tickets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Address {
    /// Who receives the parcel.
    pub name: String,
    pub line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    pub postal_code: String,
    pub city: String,
    /// ISO 3166-1 alpha-2, upper case (`DE`).
    pub country: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error(
        "address field `{0}` must be 1 to {1} characters, not only spaces, no control characters"
    )]
    InvalidField(&'static str, usize),
    #[error("country must be an ISO 3166-1 alpha-2 code such as `DE`")]
    InvalidCountry,
}

impl AddressError {
    pub fn code(&self) -> &'static str {
        "invalid_address"
    }
}

impl Address {
    /// The address trimmed, or what is wrong with it.
    pub fn validate(self) -> Result<Self, AddressError> {
        fn field(value: String, name: &'static str, max: usize) -> Result<String, AddressError> {
            let value = value.trim().to_owned();
            let length = value.chars().count();
            if !(1..=max).contains(&length) || value.chars().any(char::is_control) {
                return Err(AddressError::InvalidField(name, max));
            }
            Ok(value)
        }
        let country = self.country.trim().to_owned();
        if country.len() != 2 || !country.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(AddressError::InvalidCountry);
        }
        Ok(Self {
            name: field(self.name, "name", MAX_FIELD_LEN)?,
            line1: field(self.line1, "line1", MAX_LINE_LEN)?,
            line2: match self.line2 {
                Some(line) if line.trim().is_empty() => None,
                Some(line) => Some(field(line, "line2", MAX_LINE_LEN)?),
                None => None,
            },
            postal_code: field(self.postal_code, "postal_code", MAX_FIELD_LEN)?,
            city: field(self.city, "city", MAX_FIELD_LEN)?,
            country,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address() -> Address {
        Address {
            name: " Ana Lima ".into(),
            line1: "Hauptstraße 1".into(),
            line2: Some("  ".into()),
            postal_code: "10115".into(),
            city: "Berlin".into(),
            country: "DE".into(),
        }
    }

    #[test]
    fn an_address_is_trimmed_and_an_empty_second_line_dropped() {
        let valid = address().validate().unwrap();
        assert_eq!(valid.name, "Ana Lima");
        assert_eq!(valid.line2, None);
    }

    #[test]
    fn an_address_without_a_city_or_with_a_bad_country_is_refused() {
        let no_city = Address {
            city: " ".into(),
            ..address()
        };
        assert_eq!(
            no_city.validate(),
            Err(AddressError::InvalidField("city", MAX_FIELD_LEN))
        );
        let country = Address {
            country: "Germany".into(),
            ..address()
        };
        assert_eq!(country.validate(), Err(AddressError::InvalidCountry));
    }

    #[test]
    fn orders_stored_before_the_choice_deliver_by_email() {
        #[derive(Deserialize)]
        struct Stored {
            #[serde(default)]
            delivery: Delivery,
        }
        let stored: Stored = serde_json::from_str("{}").unwrap();
        assert_eq!(stored.delivery, Delivery::Email);
    }
}
