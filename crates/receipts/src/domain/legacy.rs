//! Apple's legacy (iOS 6 style) transaction receipts, as far as reading them
//! goes: base64 of an old-style text dictionary (`{ "key" = "value"; … }`)
//! whose `purchase-info` is base64 of another such dictionary holding the
//! transaction, and whose `environment` says `Sandbox` (absent: production).
//!
//! Only `quintet apple-sim` reads receipts this way: the worker itself never
//! trusts a receipt's content, it asks Apple (or the simulator).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// A decoded legacy receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyReceipt {
    /// `Sandbox` or `Production`.
    pub environment: String,
    /// The `purchase-info` dictionary (`transaction-id`, `product-id`, `bid`, …).
    pub purchase: BTreeMap<String, String>,
}

impl LegacyReceipt {
    /// Decodes base64 `text`; `None` when it is not a legacy receipt.
    pub fn decode(text: &str) -> Option<Self> {
        let outer = STANDARD.decode(text.trim_ascii()).ok()?;
        let outer = parse_dictionary(std::str::from_utf8(&outer).ok()?)?;
        let info = STANDARD.decode(outer.get("purchase-info")?).ok()?;
        let purchase = parse_dictionary(std::str::from_utf8(&info).ok()?)?;
        purchase.get("transaction-id")?;
        Some(Self {
            environment: outer
                .get("environment")
                .cloned()
                .unwrap_or_else(|| "Production".to_owned()),
            purchase,
        })
    }

    pub fn transaction_id(&self) -> &str {
        self.purchase
            .get("transaction-id")
            .map_or("", String::as_str)
    }

    pub fn is_sandbox(&self) -> bool {
        self.environment.eq_ignore_ascii_case("sandbox")
    }
}

/// Parses `{ "k" = "v"; … }` (quoted keys and values, `\"` and `\\` escapes).
pub fn parse_dictionary(text: &str) -> Option<BTreeMap<String, String>> {
    let body = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut chars = body.chars().peekable();
    let mut map = BTreeMap::new();
    loop {
        skip_space(&mut chars);
        if chars.peek().is_none() {
            return Some(map);
        }
        let key = quoted(&mut chars)?;
        skip_space(&mut chars);
        if chars.next()? != '=' {
            return None;
        }
        skip_space(&mut chars);
        let value = quoted(&mut chars)?;
        skip_space(&mut chars);
        if chars.next()? != ';' {
            return None;
        }
        map.insert(key, value);
    }
}

fn skip_space(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while chars.peek().is_some_and(|c| c.is_whitespace()) {
        chars.next();
    }
}

fn quoted(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<String> {
    if chars.next()? != '"' {
        return None;
    }
    let mut out = String::new();
    loop {
        match chars.next()? {
            '"' => return Some(out),
            '\\' => out.push(chars.next()?),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(n: u8) -> String {
        let path = format!(
            "{}/tests/fixtures/apple-sandbox-receipt-{n}.b64",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn the_fixture_receipts_decode_to_their_transactions() {
        let one = LegacyReceipt::decode(&fixture(1)).expect("receipt 1");
        assert!(one.is_sandbox());
        assert_eq!(one.transaction_id(), "1000000042928567");
        assert_eq!(
            one.purchase.get("product-id").map(String::as_str),
            Some("com.miniclip.animalshelter.currencyPack1")
        );
        let two = LegacyReceipt::decode(&fixture(2)).expect("receipt 2");
        assert_eq!(two.transaction_id(), "1000000181492557");
    }

    #[test]
    fn other_text_is_not_a_receipt() {
        assert_eq!(LegacyReceipt::decode("not base64!"), None);
        assert_eq!(
            LegacyReceipt::decode(&STANDARD.encode("{ \"a\" = \"b\"; }")),
            None
        );
        assert_eq!(parse_dictionary("{ \"a\" = \"b\" }"), None);
        assert_eq!(
            parse_dictionary("{ \"a\\\"\" = \"b\"; }").expect("escapes")["a\""],
            "b"
        );
    }
}
