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

    /// The purchase's `transaction-id`.
    pub fn transaction_id(&self) -> &str {
        self.purchase
            .get("transaction-id")
            .map_or("", String::as_str)
    }

    /// Whether the receipt says it is from the sandbox.
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
    use proptest::prelude::*;
    use testkit::fuzz;

    use super::*;
    use std::fmt::Write as _;

    /// `map` as an old-style text dictionary, `space` between its tokens.
    fn dictionary(map: &BTreeMap<String, String>, space: &str) -> String {
        let quote = |text: &str| text.replace('\\', "\\\\").replace('"', "\\\"");
        let mut out = format!("{{{space}");
        for (key, value) in map {
            let _ = write!(
                out,
                "\"{}\"{space}={space}\"{}\";{space}",
                quote(key),
                quote(value)
            );
        }
        out.push('}');
        out
    }

    fn space() -> impl Strategy<Value = &'static str> {
        proptest::sample::select(vec!["", " ", "\n\t", " \r\n  "])
    }

    fn purchase() -> impl Strategy<Value = BTreeMap<String, String>> {
        (
            proptest::collection::btree_map(fuzz::text(10), fuzz::text(16), 0..4),
            "[0-9]{1,20}",
        )
            .prop_map(|(mut map, id)| {
                map.insert("transaction-id".into(), id);
                map
            })
    }

    proptest! {
        #![proptest_config(fuzz::config(256))]

        /// Any receipt text, and base64 of any bytes or of a receipt with
        /// one change: never a panic; a receipt read names its transaction.
        #[test]
        fn fuzz_legacy_receipt_decode(
            text in prop_oneof![
                fuzz::text(80),
                fuzz::bytes(120).prop_map(|b| fuzz::base64(&b)),
                (purchase(), space(), fuzz::mutation()).prop_map(|(map, space, mutation)| {
                    let inner = fuzz::base64(&mutation.apply(dictionary(&map, space).into_bytes()));
                    let outer = BTreeMap::from([("purchase-info".to_owned(), inner)]);
                    fuzz::base64(dictionary(&outer, space).as_bytes())
                }),
                (fuzz::text(60), fuzz::mutation()).prop_map(|(text, mutation)| {
                    fuzz::base64(&mutation.apply(format!("{{ \"purchase-info\" = \"{text}\"; }}").into_bytes()))
                }),
            ],
        ) {
            if let Some(receipt) = LegacyReceipt::decode(&text) {
                prop_assert!(receipt.purchase.contains_key("transaction-id"));
            }
            let _ = parse_dictionary(&text);
        }

        /// Every well-formed legacy receipt (any keys and values, escapes
        /// included, any spacing) reads back as what it holds.
        #[test]
        fn fuzz_legacy_receipt_round_trip(
            purchase in purchase(),
            environment in proptest::option::of(prop_oneof![Just("Sandbox".to_owned()), fuzz::text(10)]),
            extra in proptest::collection::btree_map("[a-z]{1,8}", fuzz::text(10), 0..3),
            space in space(),
        ) {
            let mut outer = extra;
            outer.insert("purchase-info".into(), fuzz::base64(dictionary(&purchase, space).as_bytes()));
            match &environment {
                Some(environment) => outer.insert("environment".into(), environment.clone()),
                None => outer.remove("environment"),
            };
            let text = fuzz::base64(dictionary(&outer, space).as_bytes());
            let receipt = LegacyReceipt::decode(&text).expect("a well-formed receipt");
            prop_assert_eq!(receipt.transaction_id(), purchase["transaction-id"].as_str());
            prop_assert_eq!(receipt.purchase, purchase);
            prop_assert_eq!(receipt.environment, environment.unwrap_or_else(|| "Production".into()));
        }
    }

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
