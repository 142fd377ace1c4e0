//! The style sheet (`word/styles.xml`) and the run properties it contributes.
//!
//! Checking only the properties written on a run leaves the obvious next move open: put
//! `w:vanish`, white text or a one-point size in a style (or in the document defaults) and
//! reference it. So every run is judged on the properties Word would give it, combined from four
//! levels: document defaults, then the paragraph style, then the character style, then the run's
//! own properties; each style includes the styles it is based on (`w:basedOn`).
//!
//! Table and numbering styles are not applied: their run properties come with conditional
//! formatting and cell shading (a dark header row with white text, say) that would have to be
//! resolved too, or white text on a shaded table would be dropped.

use std::collections::HashMap;
use std::time::Instant;

use quick_xml::NsReader;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{Namespace, ResolveResult};

use super::{
    EVENTS_PER_DEADLINE_CHECK, WORDPROCESSING_NS, attribute, is_whitish, shading_is_visible,
    toggle_is_on,
};
use crate::ExtractError;

pub(super) const BAD_STYLES: ExtractError = ExtractError::Unreadable {
    reason: "the DOCX file's style part is not well-formed",
};

/// Word's own style sheets never come near this; a longer chain is treated as a broken style
/// part rather than cut short, because cutting it would ignore whatever the deepest ancestors
/// set, and that is where a `w:vanish` would be put to slip past the check.
const MAX_BASED_ON_DEPTH: usize = 20;

/// Half-points (100 pt) up or down: far enough to leave the line and usually the page. Real
/// documents shift text by a few points at most (superscript-like effects, icon alignment).
const OFF_LINE_HALF_POINTS: f64 = 200.0;

/// The run properties that decide whether text can be seen, as one level of the hierarchy sets
/// them; `None` leaves the property to the levels below.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct RunFormat {
    vanish: Option<bool>,
    web_hidden: Option<bool>,
    spec_vanish: Option<bool>,
    white: Option<bool>,
    /// One point or less.
    tiny: Option<bool>,
    /// Raised or lowered off the line by `w:position`.
    displaced: Option<bool>,
    shaded: Option<bool>,
    highlighted: Option<bool>,
}

impl RunFormat {
    /// Reads one child of a `w:rPr`. A property repeated in the same `w:rPr` is invalid; should it
    /// happen, the occurrence that hides the text wins.
    pub(super) fn read(&mut self, name: &str, element: &BytesStart<'_>) {
        match name {
            "vanish" => hide(&mut self.vanish, toggle_is_on(element)),
            "webHidden" => hide(&mut self.web_hidden, toggle_is_on(element)),
            "specVanish" => hide(&mut self.spec_vanish, toggle_is_on(element)),
            "color" => hide(&mut self.white, colour_is_whitish(element)),
            // Half-points: 2 is one point, unreadable on paper.
            "sz" => {
                if let Some(size) = attribute(element, "val").and_then(|v| half_points(&v)) {
                    hide(&mut self.tiny, size <= 2.0);
                }
            }
            "position" => {
                if let Some(offset) = attribute(element, "val").and_then(|v| half_points(&v)) {
                    hide(&mut self.displaced, offset.abs() >= OFF_LINE_HALF_POINTS);
                }
            }
            "shd" => reveal(&mut self.shaded, shading_is_visible(element)),
            "highlight" => reveal(
                &mut self.highlighted,
                attribute(element, "val").is_some_and(|v| v != "none" && v != "white"),
            ),
            _ => {}
        }
    }

    /// `self` as a level above `base`: whatever `self` sets wins.
    fn over(self, base: Self) -> Self {
        Self {
            vanish: self.vanish.or(base.vanish),
            web_hidden: self.web_hidden.or(base.web_hidden),
            spec_vanish: self.spec_vanish.or(base.spec_vanish),
            white: self.white.or(base.white),
            tiny: self.tiny.or(base.tiny),
            displaced: self.displaced.or(base.displaced),
            shaded: self.shaded.or(base.shaded),
            highlighted: self.highlighted.or(base.highlighted),
        }
    }
}

fn hide(slot: &mut Option<bool>, value: bool) {
    *slot = Some(slot.unwrap_or(false) || value);
}

fn reveal(slot: &mut Option<bool>, value: bool) {
    *slot = Some(slot.unwrap_or(true) && value);
}

/// White on a white page. `w:themeColor` takes precedence over `w:val` when Word draws the text,
/// so "Background 1" is white even when `w:val` claims black; the theme itself is not read, so
/// it is assumed to be one whose light background colour is white, as in Office's own themes.
fn colour_is_whitish(element: &BytesStart<'_>) -> bool {
    let themed_white = attribute(element, "themeColor")
        .is_some_and(|theme| matches!(theme.as_str(), "background1" | "light1"))
        && attribute(element, "themeShade")
            .and_then(|shade| u8::from_str_radix(&shade, 16).ok())
            .is_none_or(|shade| shade >= 0xF0);
    themed_white || attribute(element, "val").is_some_and(|v| is_whitish(&v))
}

/// A size or offset in half-points: a bare number of half-points, or a number with a unit
/// ("-100pt", "3.5mm"), which ISO 29500 allows as well.
fn half_points(value: &str) -> Option<f64> {
    const UNITS: &[(&str, f64)] = &[
        ("pt", 2.0),
        ("pc", 24.0),
        ("pi", 24.0),
        ("in", 144.0),
        ("cm", 144.0 / 2.54),
        ("mm", 14.4 / 2.54),
    ];
    let value = value.trim();
    let (number, factor) = UNITS
        .iter()
        .find_map(|&(unit, factor)| value.strip_suffix(unit).map(|number| (number, factor)))
        .unwrap_or((value, 1.0));
    number
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite())
        .map(|n| n * factor)
}

/// What one run ends up with once every level is combined.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Effective {
    /// `w:vanish` and its relatives.
    pub(super) vanished: bool,
    /// Too small or too far off the line to read.
    pub(super) unreadable: bool,
    pub(super) white: bool,
    /// The run's own shading or highlighting.
    pub(super) on_background: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Paragraph,
    Character,
    /// Table and numbering styles, which are not applied.
    Other,
}

/// What a style, or the document defaults, set.
#[derive(Clone, Copy, Debug, Default)]
struct Format {
    run: RunFormat,
    /// A paragraph's `w:shd`: white text is visible on it.
    paragraph_shaded: Option<bool>,
}

impl Format {
    fn over(self, base: Self) -> Self {
        Self {
            run: self.run.over(base.run),
            paragraph_shaded: self.paragraph_shaded.or(base.paragraph_shaded),
        }
    }
}

#[derive(Debug)]
struct Style {
    id: String,
    kind: Kind,
    default: bool,
    based_on: Option<String>,
    own: Format,
    /// `own` over the formats of the styles it is based on; set once the whole sheet is read.
    resolved: Format,
}

#[derive(Debug, Default)]
pub(crate) struct Styles {
    defaults: Format,
    styles: Vec<Style>,
    by_id: HashMap<String, usize>,
    /// Style ids are compared exactly first; this catches a reference that differs only in case.
    by_folded_id: HashMap<String, usize>,
    default_paragraph: Option<usize>,
    default_character: Option<usize>,
}

impl Styles {
    /// The properties of a run in a paragraph of style `paragraph_style` with character style
    /// `character_style` (each as referenced, `None` when not referenced) and its own `direct`
    /// properties.
    ///
    /// Non-toggle properties (colour, size, position, shading) take the value of the highest
    /// level that sets them. `w:vanish` is a toggle property: set on the run it is absolute,
    /// `w:val="0"` included; set in styles, ISO 29500 makes each "on" flip the state inherited
    /// from the levels below and each "off" leave it alone. Not every renderer implements that
    /// combination, so a run is hidden when any style level turns it on and the run itself does
    /// not turn it off: an "off" in a character style does not reveal text that the paragraph
    /// style hides. The price is that two style levels that both hide a run, which no ordinary
    /// document does, are not taken to cancel out.
    ///
    /// Word does not offer highlighting in styles, so only a run's own highlight counts as a
    /// background (`read_styles` leaves it out of styles).
    pub(super) fn run(
        &self,
        paragraph_style: Option<&str>,
        character_style: Option<&str>,
        direct: &RunFormat,
    ) -> Effective {
        let levels = [
            self.defaults.run,
            self.style(paragraph_style, Kind::Paragraph).run,
            self.style(character_style, Kind::Character).run,
        ];
        let toggle = |field: fn(&RunFormat) -> Option<bool>| {
            field(direct).unwrap_or_else(|| levels.iter().any(|level| field(level) == Some(true)))
        };
        let combined = levels
            .iter()
            .rev()
            .fold(*direct, |above, &level| above.over(level));
        Effective {
            vanished: toggle(|f| f.vanish) || toggle(|f| f.web_hidden) || toggle(|f| f.spec_vanish),
            unreadable: combined.tiny == Some(true) || combined.displaced == Some(true),
            white: combined.white == Some(true),
            on_background: combined.shaded == Some(true) || combined.highlighted == Some(true),
        }
    }

    /// Whether a paragraph of style `paragraph_style` is shaded, unless it sets shading itself.
    pub(super) fn paragraph_shaded(&self, paragraph_style: Option<&str>) -> Option<bool> {
        self.style(paragraph_style, Kind::Paragraph)
            .paragraph_shaded
            .or(self.defaults.paragraph_shaded)
    }

    /// The resolved style a reference points to. A reference to no style, to a missing one or to
    /// one of another type gets the type's default style. ISO 29500 applies no style in the last
    /// two cases, which Word never writes; taking the default instead means such a reference
    /// cannot be used to step around a default style that hides text.
    fn style(&self, id: Option<&str>, kind: Kind) -> Format {
        let named = id
            .and_then(|id| self.find(id))
            .filter(|&index| self.styles[index].kind == kind);
        let default = match kind {
            Kind::Paragraph => self.default_paragraph,
            Kind::Character => self.default_character,
            Kind::Other => None,
        };
        named
            .or(default)
            .map(|index| self.styles[index].resolved)
            .unwrap_or_default()
    }

    fn find(&self, id: &str) -> Option<usize> {
        self.by_id
            .get(id)
            .or_else(|| self.by_folded_id.get(&id.to_ascii_lowercase()))
            .copied()
    }

    fn add(&mut self, style: Style) {
        let index = self.styles.len();
        if !style.id.is_empty() {
            // With duplicate ids the first definition is the one referenced.
            self.by_id.entry(style.id.clone()).or_insert(index);
            self.by_folded_id
                .entry(style.id.to_ascii_lowercase())
                .or_insert(index);
        }
        // ISO 29500: when several styles of a type claim to be the default, the last one is.
        if style.default {
            match style.kind {
                Kind::Paragraph => self.default_paragraph = Some(index),
                Kind::Character => self.default_character = Some(index),
                Kind::Other => {}
            }
        }
        self.styles.push(style);
    }

    /// The parent `w:basedOn` names, if it exists and has the same type (ISO 29500 ignores a
    /// `w:basedOn` that points to a style of another type).
    fn parent(&self, index: usize) -> Option<usize> {
        let style = &self.styles[index];
        let parent = self.find(style.based_on.as_deref()?)?;
        (self.styles[parent].kind == style.kind).then_some(parent)
    }

    fn resolve(&mut self, deadline: Instant) -> Result<(), ExtractError> {
        let mut chain = Vec::with_capacity(MAX_BASED_ON_DEPTH + 1);
        for index in 0..self.styles.len() {
            if index % 1024 == 1023 && Instant::now() > deadline {
                return Err(ExtractError::TimedOut);
            }
            chain.clear();
            chain.push(index);
            let mut format = self.styles[index].own;
            let mut current = index;
            while let Some(parent) = self.parent(current) {
                // A cycle ends the chain where it closes: every style on it has been applied once.
                if chain.contains(&parent) {
                    break;
                }
                if chain.len() > MAX_BASED_ON_DEPTH {
                    tracing::debug!("DOCX style inheritance too deep");
                    return Err(BAD_STYLES);
                }
                format = format.over(self.styles[parent].own);
                chain.push(parent);
                current = parent;
            }
            self.styles[index].resolved = format;
        }
        Ok(())
    }
}

/// Where the reader is in the style part; only the elements that lead to run properties matter.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Node {
    Root,
    DocDefaults,
    RunDefault,
    ParagraphDefault,
    DefaultRunProps,
    DefaultParagraphProps,
    Style,
    StyleRunProps,
    StyleParagraphProps,
    Other,
}

/// Reads a style part. Anything that is not well-formed XML is an error rather than "no styles":
/// falling back would let a deliberately broken part switch the checks above off, and a style
/// sheet Word repairs on opening can still hide text.
pub(crate) fn read_styles(xml: &str, deadline: Instant) -> Result<Styles, ExtractError> {
    let mut reader = NsReader::from_str(xml);
    let mut styles = Styles::default();
    let mut path: Vec<Node> = Vec::new();
    let mut current: Option<Style> = None;
    let mut events = 0u32;
    loop {
        events = events.wrapping_add(1);
        if events.is_multiple_of(EVENTS_PER_DEADLINE_CHECK) && Instant::now() > deadline {
            return Err(ExtractError::TimedOut);
        }
        let (namespace, event) = reader.read_resolved_event().map_err(|_| {
            tracing::debug!("DOCX style XML error");
            BAD_STYLES
        })?;
        let (element, empty) = match event {
            Event::Start(element) => (element, false),
            Event::Empty(element) => (element, true),
            Event::End(_) => {
                if path.pop() == Some(Node::Style)
                    && let Some(style) = current.take()
                {
                    styles.add(style);
                }
                continue;
            }
            // A part cut short is as broken as a mangled one.
            Event::Eof if !path.is_empty() => return Err(BAD_STYLES),
            Event::Eof => break,
            _ => continue,
        };
        let is_word = matches!(namespace, ResolveResult::Bound(Namespace(uri)) if WORDPROCESSING_NS.contains(&uri));
        let local = element.local_name();
        let name: &str = local.as_ref();
        let parent = path.last().copied();
        let node = if !is_word {
            Node::Other
        } else {
            match (parent, name) {
                (None, "styles") => Node::Root,
                (Some(Node::Root), "docDefaults") => Node::DocDefaults,
                (Some(Node::DocDefaults), "rPrDefault") => Node::RunDefault,
                (Some(Node::DocDefaults), "pPrDefault") => Node::ParagraphDefault,
                (Some(Node::RunDefault), "rPr") => Node::DefaultRunProps,
                (Some(Node::ParagraphDefault), "pPr") => Node::DefaultParagraphProps,
                (Some(Node::Root), "style") => {
                    current = Some(Style {
                        id: attribute(&element, "styleId").unwrap_or_default(),
                        kind: match attribute(&element, "type").as_deref() {
                            // ISO 29500: a style without a type is a paragraph style.
                            None | Some("paragraph") => Kind::Paragraph,
                            Some("character") => Kind::Character,
                            Some(_) => Kind::Other,
                        },
                        default: attribute(&element, "default")
                            .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "on")),
                        based_on: None,
                        own: Format::default(),
                        resolved: Format::default(),
                    });
                    Node::Style
                }
                (Some(Node::Style), "rPr") => Node::StyleRunProps,
                (Some(Node::Style), "pPr") => Node::StyleParagraphProps,
                (Some(Node::Style), "basedOn") => {
                    if let Some(style) = current.as_mut() {
                        style.based_on = attribute(&element, "val");
                    }
                    Node::Other
                }
                (Some(Node::DefaultRunProps), _) => {
                    if name != "highlight" {
                        styles.defaults.run.read(name, &element);
                    }
                    Node::Other
                }
                (Some(Node::DefaultParagraphProps), "shd") => {
                    styles.defaults.paragraph_shaded = Some(shading_is_visible(&element));
                    Node::Other
                }
                (Some(Node::StyleRunProps), _) => {
                    if let Some(style) = current.as_mut()
                        && name != "highlight"
                    {
                        style.own.run.read(name, &element);
                    }
                    Node::Other
                }
                (Some(Node::StyleParagraphProps), "shd") => {
                    if let Some(style) = current.as_mut() {
                        style.own.paragraph_shaded = Some(shading_is_visible(&element));
                    }
                    Node::Other
                }
                _ => Node::Other,
            }
        };
        if empty {
            if node == Node::Style
                && let Some(style) = current.take()
            {
                styles.add(style);
            }
        } else {
            path.push(node);
        }
    }
    styles.resolve(deadline)?;
    Ok(styles)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn sheet(inner: &str) -> Styles {
        let xml = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><w:styles xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">{inner}</w:styles>"#
        );
        read_styles(&xml, Instant::now() + std::time::Duration::from_secs(10)).unwrap()
    }

    #[test]
    fn measures_in_half_points() {
        assert_eq!(half_points("-2000"), Some(-2000.0));
        assert_eq!(half_points("2"), Some(2.0));
        assert_eq!(half_points("-100pt"), Some(-200.0));
        assert_eq!(half_points("1in"), Some(144.0));
        assert_eq!(half_points("0.5pt"), Some(1.0));
        assert_eq!(half_points("big"), None);
        assert_eq!(half_points("NaN"), None);
        assert_eq!(half_points("inf"), None);
    }

    #[test]
    fn toggle_levels_combine_and_direct_formatting_is_absolute() {
        let styles = sheet(
            r#"<w:style w:type="paragraph" w:styleId="Hidden"><w:rPr><w:vanish/></w:rPr></w:style>
               <w:style w:type="character" w:styleId="Shown"><w:rPr><w:vanish w:val="0"/></w:rPr></w:style>"#,
        );
        let direct_off = {
            let mut format = RunFormat::default();
            let element = BytesStart::from_content(r#"vanish w:val="off""#, 6);
            format.read("vanish", &element);
            format
        };
        let hidden = |p, c, d: &RunFormat| styles.run(p, c, d).vanished;
        assert!(hidden(Some("Hidden"), None, &RunFormat::default()));
        assert!(hidden(Some("Hidden"), Some("Shown"), &RunFormat::default()));
        assert!(!hidden(Some("Hidden"), Some("Shown"), &direct_off));
        assert!(!hidden(None, Some("Shown"), &RunFormat::default()));
    }

    #[test]
    fn last_default_style_wins_and_unknown_references_fall_back_to_it() {
        let styles = sheet(
            r#"<w:style w:type="paragraph" w:default="1" w:styleId="A"/>
               <w:style w:type="paragraph" w:default="1" w:styleId="B"><w:rPr><w:sz w:val="1"/></w:rPr></w:style>
               <w:style w:type="character" w:styleId="C"><w:rPr><w:sz w:val="24"/></w:rPr></w:style>"#,
        );
        let unreadable = |p| styles.run(p, None, &RunFormat::default()).unreadable;
        assert!(unreadable(None));
        assert!(unreadable(Some("Missing")));
        // A character style named by `w:pStyle` is not a paragraph style.
        assert!(unreadable(Some("C")));
        assert!(!unreadable(Some("A")));
        assert!(unreadable(Some("b")));
    }

    #[test]
    fn based_on_a_style_of_another_type_is_ignored() {
        let styles = sheet(
            r#"<w:style w:type="character" w:styleId="Base"><w:rPr><w:vanish/></w:rPr></w:style>
               <w:style w:type="paragraph" w:styleId="P"><w:basedOn w:val="Base"/></w:style>"#,
        );
        assert!(!styles.run(Some("P"), None, &RunFormat::default()).vanished);
    }
}
