//! The strict reader: serde's reading of the common bodies, by hand.

use std::borrow::Cow;

use super::keys::{key_of, key_of_bytes, Key};
use super::object::{Found, Object, Scalar};
use super::scan::{digits_end, string_stop};

/// A reader of the common JSON body that does serde's work without serde: it reads the same
/// [`Object`]s that the serde visitors build, from the same text, but accepts only a part of what serde
/// accepts and gives up (`None`) on anything else, and the caller then reads the text with serde as
/// before. So a text it reads is one that serde reads the same way (same facts), and every text serde
/// rejects, or might read differently, goes to serde (same errors).
///
/// It gives up on: an escape in a key or in a string it keeps (serde may reject a lone surrogate there,
/// or decode it), a number it would keep that is not a plain integer of at most 18 digits (serde may
/// reject an overflowing float), nesting deeper than [`Strict::MAX_DEPTH`] (serde's recursion limit),
/// anything the JSON grammar does not allow (a bad escape, a control character in a string, a trailing
/// comma, a leading zero, a cut text), and a top-level value that is not an object.
pub(super) struct Strict<'de> {
    b: &'de [u8],
    /// Values are skipped at most this deep.
    skip_cap: usize,
    /// Set when a reading needed bytes past the end of `b`.
    ran_out: bool,
    /// The longest prefix of `b` known to be UTF-8 (all of it when the input is text), as text. A
    /// window of bytes is checked ahead as far as needed, doubling, so that each byte is checked at most
    /// about twice.
    valid: &'de str,
    /// `b` holds a byte sequence that is not UTF-8 right after `valid`: `valid` cannot grow, and no
    /// text reaches past it (checked once: not again for each text asked for later).
    not_utf8: bool,
    i: usize,
}

impl<'de> Strict<'de> {
    /// Objects nest at most this deep (serde's limit is 128), values skipped whole at most twice that.
    const MAX_DEPTH: usize = 32;

    /// A whole body: one object, then only whitespace.
    pub(super) fn body(text: &'de str) -> Option<Box<Object<'de>>> {
        let mut r = Strict {
            b: text.as_bytes(),
            ran_out: false,
            valid: text,
            not_utf8: false,
            i: 0,
            skip_cap: 2 * Self::MAX_DEPTH,
        };
        let top = r.top()?;
        r.ws();
        (r.i == text.len()).then_some(top)
    }

    /// The object at `b[0]` (what a stream reading of `b` reads first) and the index after it, when all
    /// its bytes are UTF-8. `Err(true)` when `b` ends inside it (before anything that made the reader
    /// give up): no reading of `b` can find its end then.
    pub(super) fn object_at_start(b: &'de [u8]) -> Result<(usize, Box<Object<'de>>), bool> {
        let mut r = Strict {
            b,
            ran_out: false,
            valid: "",
            not_utf8: false,
            i: 0,
            skip_cap: 2 * Self::MAX_DEPTH,
        };
        match r.top().and_then(|top| Some((r.span(0, r.i)?.len(), top))) {
            Some(read) => Ok(read),
            None => Err(r.ran_out),
        }
    }

    fn top(&mut self) -> Option<Box<Object<'de>>> {
        if self.peek()? != b'{' {
            return None;
        }
        self.object(1)
    }

    #[inline]
    fn peek(&mut self) -> Option<u8> {
        let next = self.b.get(self.i).copied();
        self.ran_out |= next.is_none();
        next
    }

    /// `b[from..to]`, noting when the input ends first.
    #[inline]
    fn bytes(&mut self, from: usize, to: usize) -> Option<&'de [u8]> {
        let bytes = self.b.get(from..to);
        self.ran_out |= bytes.is_none();
        bytes
    }

    /// Where the string text starting at `from` stops (see [`string_stop`]), noting when the input
    /// ends first.
    #[inline]
    fn stop(&mut self, from: usize) -> Option<usize> {
        let stop = self.b.get(from..).and_then(string_stop);
        self.ran_out |= stop.is_none();
        stop
    }

    #[inline]
    fn ws(&mut self) {
        while matches!(self.b.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// The text of the string at the quote at `i`, which must have no escape (and no control character).
    #[inline]
    fn plain_str(&mut self) -> Option<&'de str> {
        let start = self.i + 1;
        let len = self.plain_bytes()?.len();
        self.span(start, start + len)
    }

    /// The bytes of the string at the quote at `i`, which must have no escape (and no control
    /// character); not checked as UTF-8 (a reading of a window checks all its bytes in the end).
    #[inline]
    fn plain_bytes(&mut self) -> Option<&'de [u8]> {
        let start = self.i + 1;
        let len = self.stop(start)?;
        if self.b[start + len] != b'"' {
            return None;
        }
        self.i = start + len + 1;
        self.b.get(start..start + len)
    }

    /// Skips the string at the quote at `i`, checking its escapes as serde does.
    fn skip_str(&mut self) -> Option<()> {
        self.i += 1;
        loop {
            self.i += self.stop(self.i)?;
            match self.b[self.i] {
                b'"' => {
                    self.i += 1;
                    return Some(());
                }
                b'\\' => match self.bytes(self.i + 1, self.i + 2)?[0] {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 2,
                    b'u' => {
                        let hex = self.bytes(self.i + 2, self.i + 6)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        self.i += 6;
                    }
                    _ => return None,
                },
                _ => return None,
            }
        }
    }

    /// Skips a number (JSON grammar); says whether it was a plain integer.
    fn skip_number(&mut self) -> Option<bool> {
        let b = self.b;
        let mut i = self.i;
        let digits = |i: &mut usize| {
            let start = *i;
            *i = digits_end(b, *i);
            *i - start
        };
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                digits(&mut i);
            }
            next => {
                self.ran_out |= next.is_none();
                return None;
            }
        }
        let mut integer = true;
        if b.get(i) == Some(&b'.') {
            i += 1;
            if digits(&mut i) == 0 {
                self.ran_out |= i == b.len();
                return None;
            }
            integer = false;
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if digits(&mut i) == 0 {
                self.ran_out |= i == b.len();
                return None;
            }
            integer = false;
        }
        self.i = i;
        Some(integer)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.bytes(self.i, self.i + word.len())? != word {
            return None;
        }
        self.i += word.len();
        Some(())
    }

    /// Skips any value, as serde's `IgnoredAny` and `RawValue` do (no depth limit there; here one).
    fn skip_value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.skip_str(),
            b'{' => self.entries(b'}', depth, |r, depth| {
                if r.peek()? != b'"' {
                    return None;
                }
                r.skip_str()?;
                r.ws();
                r.eat(b':')?;
                r.ws();
                r.skip_value(depth)
            }),
            b'[' => self.entries(b']', depth, |r, depth| r.skip_value(depth)),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.skip_number().map(drop),
            _ => None,
        }
    }

    /// The comma-separated entries of the object or array opening at `i`, up to `close`.
    fn entries(
        &mut self,
        close: u8,
        depth: usize,
        mut entry: impl FnMut(&mut Self, usize) -> Option<()>,
    ) -> Option<()> {
        if depth >= self.skip_cap {
            return None;
        }
        self.i += 1;
        self.ws();
        if self.peek()? == close {
            self.i += 1;
            return Some(());
        }
        loop {
            self.ws();
            entry(self, depth + 1)?;
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                c if c == close => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// The raw text of the value at `i`, skipped.
    fn raw(&mut self) -> Option<&'de str> {
        let start = self.i;
        self.skip_value(0)?;
        self.span(start, self.i)
    }

    /// `b[from..to]` as text (`None` when it is not UTF-8).
    #[inline]
    fn span(&mut self, from: usize, to: usize) -> Option<&'de str> {
        if to > self.valid.len() && !self.not_utf8 {
            let ahead = to.max(2 * self.valid.len()).max(256).min(self.b.len());
            #[cfg(test)]
            super::tests::UTF8_CHECKED.with(|c| c.set(c.get() + ahead));
            self.valid = match std::str::from_utf8(self.b.get(..ahead)?) {
                Ok(text) => text,
                Err(e) => {
                    // An invalid sequence (not one cut by the end of `ahead`): no later check gets past it.
                    self.not_utf8 = e.error_len().is_some();
                    std::str::from_utf8(&self.b[..e.valid_up_to()]).ok()?
                }
            };
        }
        self.valid.get(from..to)
    }

    /// A string at `i` with no escape: its text; with an escape: skipped (checked), `Some(None)`.
    fn key_str(&mut self) -> Option<Option<&'de str>> {
        let at = self.i;
        if let Some(text) = self.plain_str() {
            return Some(Some(text));
        }
        self.i = at;
        self.skip_str()?;
        Some(None)
    }

    /// [`Strict::key_str`] for bytes.
    fn key_bytes(&mut self) -> Option<Option<&'de [u8]>> {
        let at = self.i;
        if let Some(bytes) = self.plain_bytes() {
            return Some(Some(bytes));
        }
        self.i = at;
        self.skip_str()?;
        Some(None)
    }

    /// An event's `Data` object, checked and skipped like [`Strict::raw`], and read at the same time as
    /// [`data_found`] reads it: `Some(found)` when sure (see [`scan_data`] for when it is not), `None`
    /// when `data_found` must read the raw text again. The outer `None`: not valid (give up).
    ///
    /// [`data_found`]: super::serde_read::data_found
    /// [`scan_data`]: super::scan::scan_data
    fn data_object(&mut self) -> Option<Option<Found<'de>>> {
        let mut found = Some(Found::default());
        self.entries(b'}', 0, |r, depth| {
            if r.peek()? != b'"' {
                return None;
            }
            let name = r.key_bytes()?;
            r.ws();
            r.eat(b':')?;
            r.ws();
            let key = match name {
                Some(name) => key_of_bytes(name),
                None => {
                    // An escape in a key: serde's reading may reject or decode it.
                    found = None;
                    Key::Other
                }
            };
            match key {
                Key::Data | Key::Other | Key::Result => r.skip_value(depth),
                Key::Params | Key::EventList => {
                    found = None;
                    r.skip_value(depth)
                }
                key => match r.peek()? {
                    b'"' => {
                        match r.key_str()? {
                            Some(text) => {
                                if let Some(found) = &mut found {
                                    found.set(key, Scalar::Str(Cow::Borrowed(text)));
                                }
                            }
                            None => found = None,
                        }
                        Some(())
                    }
                    b'-' | b'0'..=b'9' => {
                        // Its value does not matter (`Found` keeps text only); whether serde's float
                        // reading of it could fail does.
                        let start = r.i;
                        r.skip_number()?;
                        let number = r.b.get(start..r.i)?;
                        if number.len() > 17 || number.iter().any(|&c| c | 0x20 == b'e') {
                            found = None;
                        }
                        Some(())
                    }
                    b'{' | b'[' => {
                        found = None;
                        r.skip_value(depth)
                    }
                    _ => r.skip_value(depth),
                },
            }
        })?;
        Some(found)
    }

    /// A value as [`Scalar`] reads it.
    fn scalar(&mut self) -> Option<Scalar<'de>> {
        Some(match self.peek()? {
            b'"' => Scalar::Str(Cow::Borrowed(self.plain_str()?)),
            b'-' | b'0'..=b'9' => {
                let start = self.i;
                if !self.skip_number()? || self.i - start > 18 {
                    return None;
                }
                let text = std::str::from_utf8(&self.b[start..self.i]).ok()?;
                Scalar::Int(text.parse().ok()?)
            }
            b'{' => {
                // serde reads the keys (as strings) and skips the values.
                self.entries(b'}', 0, |r, depth| {
                    if r.peek()? != b'"' {
                        return None;
                    }
                    r.plain_str()?;
                    r.ws();
                    r.eat(b':')?;
                    r.ws();
                    r.skip_value(depth)
                })?;
                Scalar::Other
            }
            _ => {
                self.skip_value(0)?;
                Scalar::Other
            }
        })
    }

    /// A value as [`MaybeObject`](super::serde_read::MaybeObject) reads it.
    fn maybe_object(&mut self, depth: usize) -> Option<Option<Box<Object<'de>>>> {
        match self.peek()? {
            b'{' => self.object(depth + 1).map(Some),
            b'[' => self.skip_value(0).map(|()| None),
            _ => self.scalar().map(|_| None),
        }
    }

    /// A value as `MaybeList` (in `serde_read`) reads it.
    fn maybe_list(&mut self, depth: usize) -> Option<Option<Vec<Box<Object<'de>>>>> {
        match self.peek()? {
            b'[' => {
                if depth + 1 > Self::MAX_DEPTH {
                    return None;
                }
                let mut items = Vec::new();
                self.entries(b']', 0, |r, _| {
                    items.extend(r.maybe_object(depth + 1)?);
                    Some(())
                })?;
                Some(Some(items))
            }
            // an object's keys are read as strings, its values skipped: as `scalar` does
            _ => self.scalar().map(|_| None),
        }
    }

    /// The object opening at `i`, at nesting `depth`, as `ObjectVisitor` (in `serde_read`) reads it.
    fn object(&mut self, depth: usize) -> Option<Box<Object<'de>>> {
        if depth > Self::MAX_DEPTH {
            return None;
        }
        let mut o = Box::<Object<'de>>::default();
        let start = self.i;
        let mut others = false;
        self.entries(b'}', 0, |r, _| {
            if r.peek()? != b'"' {
                return None;
            }
            let name_at = r.i + 1;
            let name = r.plain_bytes()?;
            r.ws();
            r.eat(b':')?;
            r.ws();
            match key_of_bytes(name) {
                Key::Params => o.params = r.maybe_object(depth)?,
                Key::EventList => o.event_list = r.maybe_list(depth)?,
                Key::Data => {
                    let start = r.i;
                    o.data_read = if r.peek()? == b'{' {
                        r.data_object()?.map(Some)
                    } else {
                        r.skip_value(0)?;
                        Some(None)
                    };
                    o.data = Some(r.span(start, r.i)?);
                }
                // The top level is where XM objects are: listed now. Below, an XM object is rare and the
                // values are listed again from the object's text only if they are needed.
                Key::Other if depth == 1 => {
                    let name = r.span(name_at, name_at + name.len())?;
                    o.others.push((Cow::Borrowed(name), r.raw()?));
                }
                Key::Other => {
                    r.skip_value(0)?;
                    others = true;
                }
                Key::Result => {
                    r.skip_value(0)?;
                    o.has_result = true;
                }
                key => {
                    let value = r.scalar()?;
                    o.set(key, value);
                }
            }
            Some(())
        })?;
        if others {
            o.text = Some(self.span(start, self.i)?);
        }
        Some(o)
    }

    /// The keys of a (valid) object that [`Object`] keeps in `others`, with their raw values, in order,
    /// as [`Strict::object`] would have listed them.
    pub(super) fn others_of(text: &'de str) -> Option<Vec<(Cow<'de, str>, &'de str)>> {
        let mut r = Strict {
            b: text.as_bytes(),
            ran_out: false,
            valid: text,
            not_utf8: false,
            i: 0,
            // The object was read nested at most `MAX_DEPTH` deep, with values skipped at most twice
            // that below any level: all of it is skipped here.
            skip_cap: 4 * Self::MAX_DEPTH,
        };
        // An XM alarm has four or five such keys.
        let mut others = Vec::with_capacity(8);
        r.peek()?;
        r.entries(b'}', 0, |r, _| {
            if r.peek()? != b'"' {
                return None;
            }
            let name = r.plain_str()?;
            r.ws();
            r.eat(b':')?;
            r.ws();
            if key_of(name) == Key::Other {
                others.push((Cow::Borrowed(name), r.raw()?));
                Some(())
            } else {
                r.skip_value(0)
            }
        })?;
        Some(others)
    }
}
