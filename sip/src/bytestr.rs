//! A UTF-8 string that shares the buffer it was received in.
//!
//! The parser validates a message's head as UTF-8 once; every header value, URI
//! part and parameter after that is a `ByteStr` pointing into the same `Bytes`,
//! so taking a value apart costs a reference count, not a copy.

use bytes::Bytes;
use std::fmt;
use std::ops::Deref;

/// Immutable, cheaply cloneable UTF-8 text backed by [`Bytes`].
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ByteStr(Bytes);

impl ByteStr {
    /// Wraps a buffer after checking it is UTF-8.
    pub fn from_utf8(bytes: Bytes) -> Result<Self, std::str::Utf8Error> {
        std::str::from_utf8(&bytes)?;
        Ok(Self(bytes))
    }

    pub const fn from_static(s: &'static str) -> Self {
        Self(Bytes::from_static(s.as_bytes()))
    }

    pub fn as_str(&self) -> &str {
        // Every constructor checked or inherited UTF-8 validity; `slice_ref` is only
        // handed sub-slices of `as_str()`, which are UTF-8 by construction.
        #[allow(unsafe_code)]
        // SAFETY: the invariant of this type is that `self.0` holds valid UTF-8.
        unsafe {
            std::str::from_utf8_unchecked(&self.0)
        }
    }

    /// A view of `sub`, which must be a sub-slice of `self.as_str()`; anything
    /// else is copied, so a mistake costs an allocation rather than memory safety.
    pub fn slice_ref(&self, sub: &str) -> ByteStr {
        let base = self.0.as_ptr() as usize;
        let start = sub.as_ptr() as usize;
        if start >= base && start + sub.len() <= base + self.0.len() {
            ByteStr(self.0.slice_ref(sub.as_bytes()))
        } else {
            ByteStr::from(sub)
        }
    }

    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }
}

impl Deref for ByteStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for ByteStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<String> for ByteStr {
    fn from(s: String) -> Self {
        Self(Bytes::from(s))
    }
}

impl From<&str> for ByteStr {
    fn from(s: &str) -> Self {
        Self(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl PartialEq<str> for ByteStr {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ByteStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for ByteStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ByteStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
