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

/// Checks already normalized text. Letters of every script count, so CJK, Cyrillic or Arabic
/// resumes pass like Latin ones.
pub(crate) fn check(text: &str, limits: &Limits) -> Result<(), ExtractError> {
    let mut letters = 0usize;
    let mut visible = 0usize;
    let mut replacements = 0usize;
    let mut total = 0usize;
    for c in text.chars() {
        total += 1;
        if c.is_whitespace() {
            continue;
        }
        visible += 1;
        if c.is_alphabetic() {
            letters += 1;
        } else if c == char::REPLACEMENT_CHARACTER {
            replacements += 1;
        }
    }

    if letters == 0 || letters < limits.min_letters {
        return Err(ExtractError::NoText);
    }
    if (letters as f64) < MIN_LETTER_SHARE * visible as f64 {
        return Err(ExtractError::Garbled);
    }
    if replacements as f64 > MAX_REPLACEMENT_SHARE * total as f64 {
        return Err(ExtractError::Garbled);
    }
    if mostly_single_letter_words(text) {
        return Err(ExtractError::Garbled);
    }
    Ok(())
}

/// Text whose words are mostly lone letters ("J o h n  D o e" that the letter-spacing repair
/// could not rejoin) reads as noise. Scripts written without spaces are not counted: a lone
/// ideograph is a legitimate word.
fn mostly_single_letter_words(text: &str) -> bool {
    let mut words = 0usize;
    let mut single = 0usize;
    for word in text.split_whitespace() {
        let mut letters = word.chars().filter(|c| c.is_alphabetic());
        let Some(first) = letters.next() else {
            continue;
        };
        words += 1;
        if letters.next().is_none() && word.chars().count() == 1 && !is_spaceless_script(first) {
            single += 1;
        }
    }
    words >= MIN_WORDS_FOR_SPLIT_CHECK && single * 2 > words
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
        assert_eq!(check(text, &limits()), Ok(()));
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
        assert_eq!(check(&text, &limits()), Ok(()));
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
        assert_eq!(check(text, &limits()), Ok(()));
    }

    #[test]
    fn other_scripts_pass() {
        let japanese = "山田太郎。ソフトウェアエンジニアとして十年の経験があります。分散システムと決済基盤の設計、開発、運用を担当しました。";
        let chinese = "张伟，高级软件工程师，拥有八年分布式系统开发经验，负责支付平台的架构设计与性能优化工作，并带领五人团队。";
        let russian = "Иван Петров, старший инженер-программист. Восемь лет разработки распределённых систем.";
        for text in [japanese, chinese, russian] {
            assert_eq!(check(text, &limits()), Ok(()), "{text}");
        }
    }
}
