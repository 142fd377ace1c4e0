//! The last gate before a prompt: is there enough real text to write a letter from? An empty or
//! garbled resume makes the LLM invent one, so refusing with a clear message is the better answer.

use crate::{ExtractError, Limits};

/// Below this share of letters among visible characters the text is mostly symbols or digits:
/// what a font without a usable character map produces. Real resumes sit well above 0.7.
const MIN_LETTER_SHARE: f64 = 0.5;

/// More U+FFFD than this share of all characters means a decoder gave up on large parts.
const MAX_REPLACEMENT_SHARE: f64 = 0.01;

/// Word-level checks need enough words to mean anything.
const MIN_WORDS_FOR_SPLIT_CHECK: usize = 20;

/// Checks already normalized text and returns its length in characters. Letters of every
/// script count, so CJK, Cyrillic or Arabic resumes pass like Latin ones. One pass counts
/// everything the checks need.
pub(crate) fn check(text: &str, limits: &Limits) -> Result<usize, ExtractError> {
    let mut letters = 0usize;
    let mut visible = 0usize;
    let mut replacements = 0usize;
    let mut total = 0usize;
    let mut words = WordCount::default();
    for c in text.chars() {
        total += 1;
        if c.is_whitespace() {
            words.end_word();
            continue;
        }
        visible += 1;
        let letter = c.is_alphabetic();
        if letter {
            letters += 1;
        } else if c == char::REPLACEMENT_CHARACTER {
            replacements += 1;
        }
        words.add(c, letter);
    }
    words.end_word();

    if letters == 0 || letters < limits.min_letters {
        return Err(ExtractError::NoText);
    }
    if (letters as f64) < MIN_LETTER_SHARE * visible as f64 {
        return Err(ExtractError::Garbled);
    }
    if replacements as f64 > MAX_REPLACEMENT_SHARE * total as f64 {
        return Err(ExtractError::Garbled);
    }
    if words.mostly_single_letters() {
        return Err(ExtractError::Garbled);
    }
    Ok(total)
}

/// Words with a letter, and those that are one lone letter ("J o h n  D o e" that the
/// letter-spacing repair could not rejoin reads as noise). Scripts written without spaces are
/// not counted as lone letters: a lone ideograph is a legitimate word.
#[derive(Default)]
struct WordCount {
    words: usize,
    single: usize,
    /// The word being read: its characters and its first letter.
    chars: usize,
    first_letter: Option<char>,
}

impl WordCount {
    fn add(&mut self, c: char, letter: bool) {
        self.chars += 1;
        if letter {
            self.first_letter.get_or_insert(c);
        }
    }

    fn end_word(&mut self) {
        if let Some(first) = self.first_letter.take() {
            self.words += 1;
            if self.chars == 1 && !is_spaceless_script(first) {
                self.single += 1;
            }
        }
        self.chars = 0;
    }

    fn mostly_single_letters(&self) -> bool {
        self.words >= MIN_WORDS_FOR_SPLIT_CHECK && self.single * 2 > self.words
    }
}

/// CJK ideographs, kana, Hangul and the like all live above U+2E80.
fn is_spaceless_script(c: char) -> bool {
    c >= '\u{2E80}'
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    #[test]
    fn an_ordinary_resume_passes() {
        let text = "Jane Doe\nSenior Rust engineer, 8 years building payment systems at Acme.";
        // The length in characters comes back with the verdict.
        assert_eq!(check(text, &limits()), Ok(72));
    }

    #[test]
    fn too_few_letters_is_no_text() {
        assert_eq!(check("", &limits()), Err(ExtractError::NoText));
        assert_eq!(check("Page 1 of 2", &limits()), Err(ExtractError::NoText));
    }

    #[test]
    fn symbol_soup_is_garbled() {
        let text = "Jane Doe, senior engineer at Acme Corporation since 2019, payments team. "
            .to_owned()
            + &"#$%&()*+,-./:;<=>?@[]^_{|}~ ".repeat(4);
        assert_eq!(check(&text, &limits()), Err(ExtractError::Garbled));
    }

    #[test]
    fn replacement_characters_beyond_one_percent_are_garbled() {
        let mut text = "Experienced engineer building reliable distributed systems. ".repeat(3);
        text.push_str(&"\u{FFFD}".repeat(5));
        assert_eq!(check(&text, &limits()), Err(ExtractError::Garbled));
        text.truncate(text.len() - 4 * '\u{FFFD}'.len_utf8());
        assert_eq!(check(&text, &limits()), Ok(60 * 3 + 1));
    }

    #[test]
    fn words_split_into_letters_are_garbled() {
        let letters: Vec<String> = "Software engineer with experience in Rust and Go systems"
            .chars()
            .filter(|c| *c != ' ')
            .map(String::from)
            .collect();
        let text = letters.join(" ");
        assert_eq!(check(&text, &limits()), Err(ExtractError::Garbled));
        // The same letters as words pass.
        let text = "Software engineer with experience in Rust and Go systems";
        assert_eq!(check(text, &limits()), Ok(text.len()));
    }

    #[test]
    fn other_scripts_pass() {
        let japanese = "山田太郎。ソフトウェアエンジニアとして十年の経験があります。分散システムと決済基盤の設計、開発、運用を担当しました。";
        let chinese = "张伟，高级软件工程师，拥有八年分布式系统开发经验，负责支付平台的架构设计与性能优化工作，并带领五人团队。";
        let russian = "Иван Петров, старший инженер-программист. Восемь лет разработки распределённых систем.";
        for text in [japanese, chinese, russian] {
            assert_eq!(check(text, &limits()), Ok(text.chars().count()), "{text}");
        }
    }
}
