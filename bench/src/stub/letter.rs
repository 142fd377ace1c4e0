//! The letter the stub writes: built only from the prompt, so a test or a demo can see which
//! documents reached the "LLM", and deterministic, so tests can assert on the exact text.
//!
//! The prompt is read tolerantly, the way a model would: the documents sit in
//! `<job_description …>…</job_description …>` and `<resume …>…</resume …>` blocks, and labelled
//! lines outside them (`Company: Acme`, `Hiring manager: Jane Roe`, `Role: …`, `Tone: …`) steer the
//! letter. Anything missing falls back to something generic rather than failing: a real model
//! answers whatever it is sent. `Length:` and `Language:` are understood by the worker's prompt
//! but not acted on; the stub always writes the same short English letter.

use rustc_hash::{FxHashMap, FxHashSet};
use std::borrow::Cow;
use std::sync::LazyLock;

/// The documents and instructions found in a prompt.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Prompt {
    pub job_description: Option<String>,
    pub resume: Option<String>,
    pub company: Option<String>,
    pub hiring_manager: Option<String>,
    pub role: Option<String>,
    pub tone: Option<String>,
}

/// How many shared keywords the letter cites.
const MAX_KEYWORDS: usize = 5;
/// Caps on values lifted from the documents, so a resume without line breaks does not become a
/// thousand-character "name".
const MAX_NAME_CHARS: usize = 60;
const MAX_ROLE_CHARS: usize = 80;
const MAX_TONE_CHARS: usize = 40;

impl Prompt {
    /// Reads the user message; labelled lines may also come from the system message.
    pub fn parse(system: &str, user: &str) -> Self {
        let job = block(user, "job_description");
        let resume = block(user, "resume");
        // Labels are looked up outside the documents: a resume line such as "Language: German"
        // describes the candidate, not the letter.
        let mut spans: Vec<_> = [&job, &resume]
            .into_iter()
            .flatten()
            .map(|b| b.span.clone())
            .collect();
        spans.sort_by_key(|span| span.start);
        let mut instructions = String::with_capacity(user.len());
        let mut kept_from = 0;
        // Spans may overlap when a closing tag is missing; the union is what gets skipped.
        for span in spans {
            if span.start > kept_from {
                instructions.push_str(&user[kept_from..span.start]);
                instructions.push('\n');
            }
            kept_from = kept_from.max(span.end);
        }
        instructions.push_str(&user[kept_from..]);
        let sources = [instructions.as_str(), system];
        Self {
            job_description: job.map(|b| b.content.to_owned()),
            resume: resume.map(|b| b.content.to_owned()),
            company: label(&sources, &["company", "company name"], MAX_ROLE_CHARS),
            hiring_manager: label(&sources, &["hiring manager", "recipient"], MAX_NAME_CHARS),
            role: label(&sources, &["role", "job title", "position"], MAX_ROLE_CHARS),
            tone: label(&sources, &["tone"], MAX_TONE_CHARS),
        }
    }
}

/// Writes the letter for a prompt.
pub fn compose(system: &str, user: &str) -> String {
    let prompt = Prompt::parse(system, user);
    // Without delimited documents, the whole message stands in for both, so the letter still
    // echoes the words it was given.
    let (job, resume) = match (&prompt.job_description, &prompt.resume) {
        (None, None) => (user, None),
        (job, resume) => (job.as_deref().unwrap_or(""), resume.as_deref()),
    };
    let name = resume.and_then(candidate_name);
    // A job post opens with its title far more often than not.
    let role = prompt.role.clone().or_else(|| {
        prompt
            .job_description
            .as_deref()
            .and_then(|job| first_line(job, MAX_ROLE_CHARS))
    });
    let keywords = shared_keywords(job, resume.unwrap_or(job));
    write_letter(&prompt, name.as_deref(), role.as_deref(), &keywords)
}

fn write_letter(
    prompt: &Prompt,
    name: Option<&str>,
    role: Option<&str>,
    keywords: &[String],
) -> String {
    let manager = prompt.hiring_manager.as_deref().unwrap_or("Hiring Manager");
    let role = role.unwrap_or("open");
    let mut letter = format!("Dear {manager},\n\nI am writing to apply for the {role} position");
    if let Some(company) = &prompt.company {
        letter.push_str(&format!(" at {company}"));
    }
    letter.push_str(".\n\n");

    if let Some(name) = name {
        letter.push_str(&format!("My name is {name}. "));
    }
    if keywords.is_empty() {
        letter.push_str("I believe my experience is a strong match for what you describe.");
    } else {
        letter.push_str(&format!(
            "My experience with {} matches what you are looking for, and I would bring it to the team from day one.",
            join_list(keywords)
        ));
    }

    let tone = prompt.tone.as_deref().unwrap_or("professional");
    let audience = prompt.company.as_deref().unwrap_or("your team");
    letter.push_str(&format!(
        "\n\nI hope this {tone} note conveys how much I would like to contribute to {audience}. \
         I would welcome the chance to discuss the role with you.\n\nSincerely,\n{}",
        name.unwrap_or("The applicant")
    ));
    letter
}

/// "A", "A and B", "A, B and C".
fn join_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

struct Block<'a> {
    content: &'a str,
    /// From the opening `<` to the end of the closing tag, so labels can be searched outside it.
    span: std::ops::Range<usize>,
}

/// The text between the first `<tag…>` and the next `</tag…`. Attributes on either tag (an id
/// against prompt injection, say) are skipped; a missing closing tag runs to the end.
fn block<'a>(text: &'a str, tag: &str) -> Option<Block<'a>> {
    // ASCII lowercasing keeps byte offsets, so positions found in `lower` index `text`.
    let lower = text.to_ascii_lowercase();
    let open = lower.find(&format!("<{tag}"))?;
    let start = open + lower[open..].find('>')? + 1;
    let close_tag = format!("</{tag}");
    let (end, span_end) = match lower[start..].find(&close_tag) {
        Some(offset) => {
            let end = start + offset;
            let after = end + close_tag.len();
            let span_end = lower[after..].find('>').map_or(after, |gt| after + gt + 1);
            (end, span_end)
        }
        None => (text.len(), text.len()),
    };
    Some(Block {
        content: text[start..end].trim(),
        span: open..span_end,
    })
}

/// The value of the first `Label: value` line (case-insensitive label, optional list marker).
fn label(sources: &[&str], names: &[&str], limit: usize) -> Option<String> {
    sources
        .iter()
        .flat_map(|text| text.lines())
        .find_map(|line| {
            let line = line.trim().trim_start_matches(['-', '*']).trim_start();
            let (key, value) = line.split_once(':')?;
            let key = key.trim().to_lowercase();
            if !names.contains(&key.as_str()) {
                return None;
            }
            let value = value.trim().trim_matches(['"', '\'']).trim();
            let placeholder = ["", "-", "none", "n/a", "unknown", "not given"];
            if placeholder.contains(&value.to_lowercase().as_str()) {
                return None;
            }
            Some(truncate(value, limit))
        })
}

/// The first line of a resume is, by overwhelming convention, the candidate's name.
fn candidate_name(resume: &str) -> Option<String> {
    first_line(resume, MAX_NAME_CHARS)
}

/// The first non-empty line without Markdown heading or emphasis markers.
fn first_line(text: &str, limit: usize) -> Option<String> {
    text.lines()
        .map(|line| {
            line.trim()
                .trim_start_matches('#')
                .trim()
                .trim_matches(['*', '_'])
                .trim()
        })
        .find(|line| !line.is_empty())
        .map(|line| truncate(line.trim_end_matches(':'), limit))
}

fn truncate(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((cut, _)) => text[..cut].trim_end().to_owned(),
        None => text.to_owned(),
    }
}

/// Up to five words found in both documents, most specific first: technical spellings
/// (PostgreSQL, gRPC, AWS, Node.js), then words both documents always capitalise (Rust,
/// Kubernetes), then the rest; ties go in the job description's order, which is the employer's
/// own ranking. Each word is shown as the job description spells it.
pub fn shared_keywords(job: &str, resume: &str) -> Vec<String> {
    let in_job = vocabulary(job);
    // Only the job's words matter on the resume's side: the resume is scanned against them
    // rather than collected whole.
    let mut in_resume: FxHashMap<&str, Seen> = FxHashMap::default();
    candidates(resume, |key, _, word| {
        if let Some((job_key, _)) = in_job.get_key_value(key.as_ref()) {
            let capitalised = starts_capitalised(word);
            in_resume
                .entry(job_key.as_ref())
                .and_modify(|seen| seen.always_capitalised &= capitalised)
                .or_insert_with(|| Seen {
                    technical: is_technical(word),
                    always_capitalised: capitalised,
                });
        }
    });
    let mut shared: Vec<(u8, usize, &str)> = in_job
        .iter()
        .filter_map(|(key, job_word)| {
            let resume_word = in_resume.get(key.as_ref())?;
            let tier = if job_word.seen.technical || resume_word.technical {
                0
            } else if job_word.seen.always_capitalised && resume_word.always_capitalised {
                1
            } else {
                2
            };
            Some((tier, job_word.first, job_word.spelling))
        })
        .collect();
    shared.sort_unstable();
    shared
        .into_iter()
        .take(MAX_KEYWORDS)
        .map(|(_, _, word)| word.to_owned())
        .collect()
}

/// What a document says about one word: judged on its first spelling, and whether every
/// spelling is capitalised.
struct Seen {
    technical: bool,
    always_capitalised: bool,
}

struct Occurrence<'a> {
    /// Position among the document's words, for a stable order.
    first: usize,
    spelling: &'a str,
    seen: Seen,
}

/// Candidate keywords of a document, keyed by their lowercase form.
fn vocabulary(text: &str) -> FxHashMap<Cow<'_, str>, Occurrence<'_>> {
    let mut words: FxHashMap<Cow<'_, str>, Occurrence<'_>> = FxHashMap::default();
    candidates(text, |key, index, word| {
        let capitalised = starts_capitalised(word);
        words
            .entry(key)
            .and_modify(|seen| seen.seen.always_capitalised &= capitalised)
            .or_insert_with(|| Occurrence {
                first: index,
                spelling: word,
                seen: Seen {
                    technical: is_technical(word),
                    always_capitalised: capitalised,
                },
            });
    });
    words
}

/// Calls `found` with the lowercase key, the position and the spelling of every word of `text`
/// that could be a keyword: three letters or more, not a stop word.
fn candidates<'a>(text: &'a str, mut found: impl FnMut(Cow<'a, str>, usize, &'a str)) {
    for (index, word) in tokens(text).enumerate() {
        if word.chars().filter(|c| c.is_alphabetic()).nth(2).is_none() {
            continue;
        }
        // Most words are lowercase already: no copy for them.
        let key = if word.is_ascii() {
            if word.bytes().any(|b| b.is_ascii_uppercase()) {
                Cow::Owned(word.to_ascii_lowercase())
            } else {
                Cow::Borrowed(word)
            }
        } else if word.chars().any(|c| c.to_lowercase().ne([c])) {
            Cow::Owned(word.to_lowercase())
        } else {
            Cow::Borrowed(word)
        };
        if stop_words().contains(key.as_ref()) {
            continue;
        }
        found(key, index, word);
    }
}

fn starts_capitalised(word: &str) -> bool {
    word.chars().next().is_some_and(char::is_uppercase)
}

/// Runs of letters and digits; a dot between two of them stays inside the word (Node.js).
fn tokens(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        let start = rest.find(char::is_alphanumeric)?;
        let tail = &rest[start..];
        let mut end = tail.len();
        let mut chars = tail.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            let joins = c == '.' && chars.peek().is_some_and(|(_, next)| next.is_alphanumeric());
            if !c.is_alphanumeric() && !joins {
                end = i;
                break;
            }
        }
        rest = &tail[end..];
        Some(&tail[..end])
    })
}

/// A spelling no ordinary word has: an inner capital (gRPC, PostgreSQL), a short acronym (AWS),
/// a digit or a dot. Long all-capital words are shouted headings, not acronyms.
fn is_technical(word: &str) -> bool {
    let letters = word.chars().filter(|c| c.is_alphabetic()).count();
    let all_caps = word
        .chars()
        .filter(|c| c.is_alphabetic())
        .all(char::is_uppercase);
    let inner_capital = word.chars().skip(1).any(char::is_uppercase);
    (inner_capital && !(all_caps && letters > 5))
        || word.chars().any(|c| c.is_ascii_digit() || c == '.')
}

/// [`STOP_WORDS`] as a set: the stub looks every word of every prompt up in it.
fn stop_words() -> &'static FxHashSet<&'static str> {
    static SET: LazyLock<FxHashSet<&'static str>> =
        LazyLock::new(|| STOP_WORDS.iter().copied().collect());
    &SET
}

/// Words that any resume and any job post share, so they say nothing about the match.
const STOP_WORDS: &[&str] = &[
    // Function words.
    "about",
    "above",
    "across",
    "after",
    "again",
    "all",
    "also",
    "among",
    "and",
    "any",
    "are",
    "around",
    "because",
    "been",
    "before",
    "being",
    "both",
    "but",
    "can",
    "could",
    "did",
    "does",
    "doing",
    "down",
    "during",
    "each",
    "either",
    "etc",
    "every",
    "few",
    "for",
    "from",
    "further",
    "had",
    "has",
    "have",
    "having",
    "her",
    "here",
    "hers",
    "him",
    "his",
    "how",
    "into",
    "its",
    "itself",
    "just",
    "like",
    "many",
    "may",
    "more",
    "most",
    "much",
    "must",
    "nor",
    "not",
    "now",
    "off",
    "once",
    "one",
    "only",
    "onto",
    "other",
    "our",
    "ours",
    "out",
    "over",
    "own",
    "per",
    "same",
    "she",
    "should",
    "some",
    "such",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "three",
    "through",
    "too",
    "two",
    "under",
    "until",
    "upon",
    "very",
    "via",
    "was",
    "way",
    "well",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "whose",
    "why",
    "will",
    "with",
    "within",
    "without",
    "would",
    "yet",
    "you",
    "your",
    "yours",
    // The vocabulary of job posts and resumes themselves.
    "ability",
    "able",
    "api",
    "apis",
    "apply",
    "background",
    "benefits",
    "bonus",
    "build",
    "building",
    "built",
    "candidate",
    "candidates",
    "company",
    "cover",
    "contact",
    "current",
    "day",
    "days",
    "degree",
    "description",
    "design",
    "designed",
    "developer",
    "developers",
    "education",
    "email",
    "engineer",
    "engineering",
    "engineers",
    "excellent",
    "experience",
    "experienced",
    "familiarity",
    "full",
    "good",
    "great",
    "help",
    "helped",
    "hiring",
    "including",
    "job",
    "junior",
    "letter",
    "knowledge",
    "lead",
    "led",
    "looking",
    "manager",
    "months",
    "new",
    "nice",
    "offer",
    "office",
    "part",
    "phone",
    "please",
    "plus",
    "position",
    "present",
    "preferred",
    "principal",
    "profile",
    "qualifications",
    "requirements",
    "responsibilities",
    "resume",
    "role",
    "salary",
    "senior",
    "skills",
    "staff",
    "strong",
    "summary",
    "team",
    "teams",
    "time",
    "understanding",
    "use",
    "used",
    "using",
    "want",
    "work",
    "worked",
    "working",
    "write",
    "year",
    "years",
    // Months, which every dated entry carries.
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
    "january",
    "february",
    "march",
    "april",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// The letter cut into word-sized pieces (each word with the whitespace after it), the way a
/// model streams tokens. Concatenated, the pieces are the letter.
pub fn chunks(letter: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut after_space = false;
    for (i, c) in letter.char_indices() {
        if c.is_whitespace() {
            after_space = true;
        } else if after_space {
            pieces.push(&letter[start..i]);
            start = i;
            after_space = false;
        }
    }
    if start < letter.len() {
        pieces.push(&letter[start..]);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: &str = "Platform Engineer\nWe run PostgreSQL and RabbitMQ on Kubernetes, \
                       mostly in Rust. Experience with gRPC is a plus.";
    const RESUME: &str = "# Robin Example\nBuilt services in Rust on Kubernetes; \
                          tuned PostgreSQL; ran rabbitmq clusters.";

    #[test]
    fn blocks_are_found_with_attributes_on_both_tags() {
        let user = "Tone: warm\n<resume id=\"r1\">\n# Robin\n</resume r1>\nCompany: Acme";
        let found = block(user, "resume").map(|b| b.content);
        assert_eq!(found, Some("# Robin"));
        let prompt = Prompt::parse("", user);
        assert_eq!(prompt.company.as_deref(), Some("Acme"));
        assert_eq!(prompt.tone.as_deref(), Some("warm"));
        assert_eq!(prompt.job_description, None);
    }

    #[test]
    fn labels_inside_documents_are_not_instructions() {
        let user = "<resume>\nRobin\nCompany: Former Employer Ltd\n</resume>\nRole: Analyst";
        let prompt = Prompt::parse("Company: Acme", user);
        assert_eq!(prompt.company.as_deref(), Some("Acme"));
        assert_eq!(prompt.role.as_deref(), Some("Analyst"));
    }

    #[test]
    fn documents_in_any_order_are_skipped_when_reading_labels() {
        let user = "<resume>\nRobin\nRole: Former Role\n</resume>\nRole: Analyst\n\
                    <job_description>\nTone: shouty\n</job_description>\nTone: calm";
        let prompt = Prompt::parse("", user);
        assert_eq!(prompt.role.as_deref(), Some("Analyst"));
        assert_eq!(prompt.tone.as_deref(), Some("calm"));
        assert_eq!(prompt.job_description.as_deref(), Some("Tone: shouty"));
    }

    #[test]
    fn a_missing_closing_tag_runs_to_the_end() {
        let prompt = Prompt::parse(
            "",
            "Company: Acme\n<resume id=\"x\">\nRobin\nCompany: Other",
        );
        assert_eq!(prompt.resume.as_deref(), Some("Robin\nCompany: Other"));
        assert_eq!(prompt.company.as_deref(), Some("Acme"));
    }

    #[test]
    fn technical_spellings_rank_before_capitalised_words_then_job_order() {
        assert_eq!(
            shared_keywords(JOB, RESUME),
            ["PostgreSQL", "RabbitMQ", "Kubernetes", "Rust"]
        );
    }

    #[test]
    fn stop_words_and_short_words_are_never_keywords() {
        let keywords = shared_keywords("The team uses Go and AWS", "the team, Go, AWS");
        assert_eq!(keywords, ["AWS"]);
    }

    #[test]
    fn letter_without_blocks_still_echoes_the_prompt() {
        let letter = compose("", "Please write about Terraform and Grafana.");
        assert_eq!(
            letter,
            "Dear Hiring Manager,\n\nI am writing to apply for the open position.\n\nMy \
             experience with Terraform and Grafana matches what you are looking for, and I would bring it to the team from day one.\n\nI hope \
             this professional note conveys how much I would like to contribute to your team. I \
             would welcome the chance to discuss the role with you.\n\nSincerely,\nThe applicant"
        );
    }

    #[test]
    fn chunks_concatenate_to_the_letter() {
        let letter = "Dear Jo,\n\nHello  world.\nBye";
        let pieces = chunks(letter);
        assert_eq!(pieces, ["Dear ", "Jo,\n\n", "Hello  ", "world.\n", "Bye"]);
        assert_eq!(pieces.concat(), letter);
    }

    #[test]
    fn tokens_keep_inner_dots_and_drop_trailing_ones() {
        let found: Vec<&str> = tokens("Node.js, Rust. Zürich!").collect();
        assert_eq!(found, ["Node.js", "Rust", "Zürich"]);
    }
}
