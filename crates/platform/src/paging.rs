//! Page sizes for list endpoints: every list is bounded.

/// How many items one page holds: 1..=[`PageLimit::MAX`], default [`PageLimit::DEFAULT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit(u32);

/// A `limit` outside 1..=[`PageLimit::MAX`] (or not a number).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("limit must be between 1 and {max}; got '{got}'")]
pub struct InvalidLimit {
    /// What was given (at most 32 characters of it).
    pub got: String,
    /// The largest limit allowed ([`PageLimit::MAX`]).
    pub max: u32,
}

impl PageLimit {
    /// The page size when a request gives no `limit`.
    pub const DEFAULT: u32 = 100;
    /// The largest page a request may ask for.
    pub const MAX: u32 = 1000;
    /// The largest page, for scans that read a whole store page by page.
    pub const LARGEST: PageLimit = PageLimit(Self::MAX);

    /// Parses the `limit` query parameter; absent means the default.
    pub fn parse(text: Option<&str>) -> Result<Self, InvalidLimit> {
        let Some(text) = text else {
            return Ok(Self(Self::DEFAULT));
        };
        match text.parse::<u32>() {
            Ok(n) if (1..=Self::MAX).contains(&n) => Ok(Self(n)),
            _ => Err(InvalidLimit {
                got: text.chars().take(32).collect(),
                max: Self::MAX,
            }),
        }
    }

    /// The number of items, as given.
    pub fn get(&self) -> u32 {
        self.0
    }

    /// The number of items, for sizing and slicing.
    pub fn as_usize(&self) -> usize {
        self.0 as usize
    }

    /// Cuts `items`, fetched as up to one more than the limit, to the page,
    /// and answers the key of its last item when there was more (the next
    /// page's cursor), `None` on the last page.
    pub fn cut<T, K>(&self, items: &mut Vec<T>, key: impl FnOnce(&T) -> K) -> Option<K> {
        if items.len() > self.as_usize() {
            items.truncate(self.as_usize());
            items.last().map(key)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_limit_bounds() {
        assert_eq!(
            PageLimit::parse(None).expect("default").get(),
            PageLimit::DEFAULT
        );
        assert!(PageLimit::parse(Some("0")).is_err());
        assert!(PageLimit::parse(Some("1001")).is_err());
        assert!(PageLimit::parse(Some("ten")).is_err());
        assert_eq!(PageLimit::parse(Some("1000")).expect("max").get(), 1000);
    }
}
