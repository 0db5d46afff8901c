//! A tiny, bounded element tree over quick-xml events.
//!
//! Omaha responses are small and carry all data in attributes, so the tree
//! keeps element names, unescaped attributes and children; text is checked
//! for bad escapes and dropped. No DTD is processed: a `<!DOCTYPE>` is an
//! error, and only the predefined entities and character references are
//! understood.
//!
//! Characters XML 1.0 forbids are refused wherever they appear, raw or as a
//! character reference, and element and attribute names must be XML names:
//! everything the tree hands out can be logged without smuggling terminal
//! control sequences or fake log lines.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use crate::error::{ResponseError, describe, quote_cut};
use crate::response::{MAX_DEPTH, MAX_ELEMENTS};

/// One element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
}

impl Element {
    /// The value of attribute `name`, if present.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first child element called `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// All child elements called `name`, in document order.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
}

/// Parses `input` into its root element.
pub(crate) fn parse_document(input: &str) -> Result<Element, ResponseError> {
    let input = input.strip_prefix('\u{feff}').unwrap_or(input);
    // One scan of the raw text covers names, comments, CDATA and PIs too;
    // references are checked after unescaping, below.
    if let Some((offset, c)) = input.char_indices().find(|&(_, c)| !is_xml_char(c)) {
        return Err(ResponseError::ForbiddenChar {
            code_point: u32::from(c),
            location: format!("at byte {offset}"),
        });
    }
    let mut reader = Reader::from_str(input);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.check_comments = true;
    config.expand_empty_elements = false;
    config.trim_text(true);

    let mut tree = Tree::default();
    loop {
        let event = reader.read_event().map_err(|e| ResponseError::Xml {
            offset: reader.error_position(),
            reason: describe(&e),
        })?;
        match event {
            Event::Start(_) | Event::Empty(_) if tree.root.is_some() => {
                return Err(ResponseError::BadStructure {
                    reason: "more than one root element",
                });
            }
            Event::Start(start) => {
                tree.check_limits()?;
                tree.stack.push(element(&start, reader.buffer_position())?);
            }
            Event::Empty(start) => {
                tree.check_limits()?;
                tree.attach(element(&start, reader.buffer_position())?);
            }
            Event::End(_) => {
                // check_end_names guarantees the name matches the top.
                let el = tree.stack.pop().ok_or(ResponseError::BadStructure {
                    reason: "end tag without start tag",
                })?;
                tree.attach(el);
            }
            Event::Text(text) => {
                let unescaped = text
                    .unescape()
                    .map_err(|e| escape_error(e, "text", reader.buffer_position()))?;
                check_chars(&unescaped, || "in text".to_string())?;
                if tree.stack.is_empty() && !unescaped.trim().is_empty() {
                    return Err(ResponseError::BadStructure {
                        reason: "text outside the root element",
                    });
                }
            }
            Event::CData(_) if tree.stack.is_empty() => {
                return Err(ResponseError::BadStructure {
                    reason: "CDATA outside the root element",
                });
            }
            Event::DocType(_) => return Err(ResponseError::Doctype),
            Event::CData(_) | Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    tree.finish()
}

/// The element tree being built, with the parser's bounds.
#[derive(Default)]
struct Tree {
    stack: Vec<Element>,
    root: Option<Element>,
    count: usize,
}

impl Tree {
    /// Before a new element: at most [`MAX_ELEMENTS`], [`MAX_DEPTH`] deep.
    fn check_limits(&mut self) -> Result<(), ResponseError> {
        self.count += 1;
        if self.count > MAX_ELEMENTS {
            return Err(ResponseError::TooManyElements { max: MAX_ELEMENTS });
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(ResponseError::TooDeep { max: MAX_DEPTH });
        }
        Ok(())
    }

    /// A finished element goes to its parent, or becomes the root.
    fn attach(&mut self, el: Element) {
        match self.stack.last_mut() {
            Some(parent) => parent.children.push(el),
            None => self.root = Some(el),
        }
    }

    fn finish(self) -> Result<Element, ResponseError> {
        if let Some(open) = self.stack.last() {
            return Err(ResponseError::Truncated {
                open_element: quote_cut(&open.name),
            });
        }
        self.root.ok_or(ResponseError::BadStructure {
            reason: "no root element",
        })
    }
}

fn element(start: &BytesStart<'_>, offset: u64) -> Result<Element, ResponseError> {
    // The input is a &str, so names are valid UTF-8 slices of it.
    let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
    check_name(&name, offset)?;
    let mut attrs = Vec::new();
    for attr in start.attributes().with_checks(true) {
        let attr = attr.map_err(|e| ResponseError::Xml {
            offset,
            reason: describe(&quick_xml::Error::from(e)),
        })?;
        let key = String::from_utf8_lossy(attr.key.as_ref()).into_owned();
        check_name(&key, offset)?;
        let value = attr
            .unescape_value()
            .map_err(|e| {
                let context = format!("attribute {} of <{}>", quote_cut(&key), quote_cut(&name));
                escape_error(e, &context, offset)
            })?
            .into_owned();
        check_chars(&value, || format!("in attribute {key} of <{name}>"))?;
        attrs.push((key, value));
    }
    Ok(Element {
        name,
        attrs,
        children: Vec::new(),
    })
}

/// XML 1.0's `Char` production (surrogates cannot occur in a `str`).
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{fffd}' | '\u{10000}'..)
}

/// Refuses characters XML 1.0 forbids in unescaped text or values: `&#1;`
/// passes the raw scan but decodes to a control character.
fn check_chars(value: &str, location: impl FnOnce() -> String) -> Result<(), ResponseError> {
    match value.chars().find(|&c| !is_xml_char(c)) {
        Some(c) => Err(ResponseError::ForbiddenChar {
            code_point: u32::from(c),
            location: location(),
        }),
        None => Ok(()),
    }
}

/// XML 1.0's `NameStartChar`.
fn is_name_start_char(c: char) -> bool {
    matches!(c,
        ':' | 'A'..='Z' | '_' | 'a'..='z'
        | '\u{c0}'..='\u{d6}' | '\u{d8}'..='\u{f6}' | '\u{f8}'..='\u{2ff}'
        | '\u{370}'..='\u{37d}' | '\u{37f}'..='\u{1fff}' | '\u{200c}'..='\u{200d}'
        | '\u{2070}'..='\u{218f}' | '\u{2c00}'..='\u{2fef}' | '\u{3001}'..='\u{d7ff}'
        | '\u{f900}'..='\u{fdcf}' | '\u{fdf0}'..='\u{fffd}' | '\u{10000}'..='\u{effff}')
}

/// XML 1.0's `NameChar`.
fn is_name_char(c: char) -> bool {
    is_name_start_char(c)
        || matches!(c, '-' | '.' | '0'..='9' | '\u{b7}' | '\u{300}'..='\u{36f}' | '\u{203f}'..='\u{2040}')
}

/// Names end up in error messages: refusing non-names keeps bidi overrides
/// and C1 controls (allowed in text, not in names) out of them.
fn check_name(name: &str, offset: u64) -> Result<(), ResponseError> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(is_name_start_char) && chars.all(is_name_char);
    if valid {
        Ok(())
    } else {
        Err(ResponseError::BadName {
            name: quote_cut(name),
            offset,
        })
    }
}

fn escape_error(err: quick_xml::Error, context: &str, offset: u64) -> ResponseError {
    match err {
        quick_xml::Error::Escape(e) => ResponseError::BadEscape {
            context: context.to_string(),
            reason: describe(&e),
        },
        e => ResponseError::Xml {
            offset,
            reason: describe(&e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_tree() {
        let root = parse_document(
            "<?xml version=\"1.0\"?>\n<a x=\"1&amp;2\"><b/><c>t</c><b y='z'></b></a>",
        )
        .unwrap();
        assert_eq!(root.name, "a");
        assert_eq!(root.attr("x"), Some("1&2"));
        assert_eq!(root.children.len(), 3);
        assert_eq!(root.children_named("b").count(), 2);
        assert_eq!(root.child("b").unwrap().attr("y"), None);
        assert_eq!(
            root.children_named("b").nth(1).unwrap().attr("y"),
            Some("z")
        );
    }

    #[test]
    fn xml_chars() {
        for ok in [
            '\t',
            '\n',
            '\r',
            ' ',
            '\u{85}',
            '\u{d7ff}',
            '\u{e000}',
            '\u{fffd}',
            '\u{10ffff}',
        ] {
            assert!(is_xml_char(ok), "{ok:?}");
        }
        for bad in [
            '\0', '\u{1}', '\u{8}', '\u{b}', '\u{c}', '\u{1f}', '\u{fffe}', '\u{ffff}',
        ] {
            assert!(!is_xml_char(bad), "{bad:?}");
        }
    }

    #[test]
    fn names() {
        for ok in ["a", "_x", "ns:app", "a-b.c9", "\u{e9}t\u{e9}"] {
            assert!(check_name(ok, 0).is_ok(), "{ok:?}");
        }
        for bad in ["", "9a", "-a", "a\u{202e}b", "a\u{9b}b", "a b"] {
            assert!(check_name(bad, 0).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bom_and_comments() {
        let root = parse_document("\u{feff}<!-- hi --><a><!-- x --></a><!-- bye -->").unwrap();
        assert_eq!(root.name, "a");
    }
}
