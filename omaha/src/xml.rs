//! A tiny, bounded element tree over quick-xml events.
//!
//! Omaha responses are small and carry all data in attributes, so the tree
//! keeps element names, unescaped attributes and children; text is checked
//! for bad escapes and dropped. No DTD is processed: a `<!DOCTYPE>` is an
//! error, and only the predefined entities and character references are
//! understood.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use crate::error::ResponseError;
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
    let mut reader = Reader::from_str(input);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.check_comments = true;
    config.expand_empty_elements = false;
    config.trim_text(true);

    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;

    loop {
        let event = reader.read_event().map_err(|source| ResponseError::Xml {
            offset: reader.error_position(),
            source,
        })?;
        match event {
            Event::Start(_) | Event::Empty(_) if root.is_some() => {
                return Err(ResponseError::BadStructure {
                    reason: "more than one root element",
                });
            }
            Event::Start(start) => {
                count += 1;
                if count > MAX_ELEMENTS {
                    return Err(ResponseError::TooManyElements { max: MAX_ELEMENTS });
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(ResponseError::TooDeep { max: MAX_DEPTH });
                }
                stack.push(element(&start, reader.buffer_position())?);
            }
            Event::Empty(start) => {
                count += 1;
                if count > MAX_ELEMENTS {
                    return Err(ResponseError::TooManyElements { max: MAX_ELEMENTS });
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(ResponseError::TooDeep { max: MAX_DEPTH });
                }
                let el = element(&start, reader.buffer_position())?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::End(_) => {
                // check_end_names guarantees the name matches the top.
                let Some(el) = stack.pop() else {
                    return Err(ResponseError::BadStructure {
                        reason: "end tag without start tag",
                    });
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(text) => {
                let unescaped = text
                    .unescape()
                    .map_err(|e| escape_error(e, "text", reader.buffer_position()))?;
                if stack.is_empty() && !unescaped.trim().is_empty() {
                    return Err(ResponseError::BadStructure {
                        reason: "text outside the root element",
                    });
                }
            }
            Event::CData(_) if stack.is_empty() => {
                return Err(ResponseError::BadStructure {
                    reason: "CDATA outside the root element",
                });
            }
            Event::DocType(_) => return Err(ResponseError::Doctype),
            Event::CData(_) | Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }

    if let Some(open) = stack.last() {
        return Err(ResponseError::Truncated {
            open_element: open.name.clone(),
        });
    }
    root.ok_or(ResponseError::BadStructure {
        reason: "no root element",
    })
}

fn element(start: &BytesStart<'_>, offset: u64) -> Result<Element, ResponseError> {
    // The input is a &str, so names are valid UTF-8 slices of it.
    let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
    let mut attrs = Vec::new();
    for attr in start.attributes().with_checks(true) {
        let attr = attr.map_err(|e| ResponseError::Xml {
            offset,
            source: e.into(),
        })?;
        let key = String::from_utf8_lossy(attr.key.as_ref()).into_owned();
        let value = attr
            .unescape_value()
            .map_err(|e| escape_error(e, &format!("attribute {key} of <{name}>"), offset))?
            .into_owned();
        attrs.push((key, value));
    }
    Ok(Element {
        name,
        attrs,
        children: Vec::new(),
    })
}

fn escape_error(err: quick_xml::Error, context: &str, offset: u64) -> ResponseError {
    match err {
        quick_xml::Error::Escape(source) => ResponseError::BadEscape {
            context: context.to_string(),
            source,
        },
        source => ResponseError::Xml { offset, source },
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
    fn bom_and_comments() {
        let root = parse_document("\u{feff}<!-- hi --><a><!-- x --></a><!-- bye -->").unwrap();
        assert_eq!(root.name, "a");
    }
}
