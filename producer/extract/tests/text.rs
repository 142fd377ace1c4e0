//! Plain text, Markdown and text pasted by clients.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use letterbox_extract::{DocumentKind, ExtractError, Limits, extract, prepare_text, sniff};

const RESUME: &str = "Jane Doe\nSenior Rust engineer with eight years of payments experience.";

fn utf16(text: &str, bom: [u8; 2], to_bytes: fn(u16) -> [u8; 2]) -> Vec<u8> {
    let mut bytes = bom.to_vec();
    bytes.extend(text.encode_utf16().flat_map(to_bytes));
    bytes
}

#[test]
fn utf16_with_a_byte_order_mark_is_decoded() {
    let text =
        "Jane Doe\r\nİstanbul — senior Rust engineer with eight years of payments experience.";
    let expected =
        "Jane Doe\nİstanbul — senior Rust engineer with eight years of payments experience.";
    for bytes in [
        utf16(text, [0xFF, 0xFE], u16::to_le_bytes),
        utf16(text, [0xFE, 0xFF], u16::to_be_bytes),
    ] {
        let extracted = extract(&bytes, &Limits::default()).unwrap();
        assert_eq!(extracted.kind, DocumentKind::Text);
        assert_eq!(extracted.text, expected);
    }
}

#[test]
fn utf8_byte_order_mark_is_dropped() {
    let bytes = [b"\xEF\xBB\xBF".as_slice(), RESUME.as_bytes()].concat();
    assert_eq!(extract(&bytes, &Limits::default()).unwrap().text, RESUME);
}

#[test]
fn markdown_is_kept_as_markdown() {
    let markdown = "# Jane Doe\n\n## Experience\n\n- **Acme**: built the [payments API](https://acme.example) in Rust\n- Eight years of backend work";
    let extracted = extract(markdown.as_bytes(), &Limits::default()).unwrap();
    assert_eq!(extracted.kind, DocumentKind::Markdown);
    assert_eq!(extracted.text, markdown);
}

#[test]
fn japanese_chinese_and_cyrillic_resumes_pass_the_quality_check() {
    let resumes = [
        "山田太郎\nソフトウェアエンジニアとして十年の経験があります。分散システムと決済基盤の設計、開発、運用を担当しました。",
        "张伟\n高级软件工程师，拥有八年分布式系统开发经验，负责支付平台的架构设计与性能优化工作，并带领五人团队。",
        "Иван Петров\nСтарший инженер-программист. Восемь лет разработки распределённых платёжных систем на Rust.",
    ];
    for resume in resumes {
        let extracted = extract(resume.as_bytes(), &Limits::default()).unwrap();
        assert_eq!(extracted.kind, DocumentKind::Text);
        assert_eq!(extracted.text, resume);
        assert_eq!(prepare_text(resume, &Limits::default()).unwrap(), resume);
    }
}

#[test]
fn random_bytes_are_unsupported() {
    let mut state = 0x2545_F491_u32;
    let bytes: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[0]
        })
        .collect();
    let unsupported = ExtractError::Unsupported {
        what: "binary data",
    };
    assert_eq!(sniff(&bytes), Err(unsupported.clone()));
    assert_eq!(extract(&bytes, &Limits::default()), Err(unsupported));
}

#[test]
fn images_are_unsupported_with_a_message_that_names_them() {
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0";
    let error = extract(png, &Limits::default()).unwrap_err();
    assert_eq!(
        error,
        ExtractError::Unsupported {
            what: "an image (PNG)"
        }
    );
    assert_eq!(error.code(), "unsupported_media_type");
    assert_eq!(
        error.to_string(),
        "This file is an image (PNG), which cannot be read here. Upload a PDF, a Word .docx file, Markdown or plain text (UTF-8)."
    );
}

#[test]
fn uploads_over_the_size_limit_are_refused_before_parsing() {
    let limits = Limits {
        max_bytes: 16,
        ..Limits::default()
    };
    assert_eq!(
        extract(RESUME.as_bytes(), &limits),
        Err(ExtractError::TooLarge { limit_bytes: 16 })
    );
    assert_eq!(
        prepare_text(RESUME, &limits),
        Err(ExtractError::TooLarge { limit_bytes: 16 })
    );
}

#[test]
fn text_over_the_character_limit_is_too_long() {
    let limits = Limits {
        max_chars: 50,
        ..Limits::default()
    };
    assert_eq!(
        prepare_text(RESUME, &limits),
        Err(ExtractError::TooLong { limit_chars: 50 })
    );
    // The limit counts characters after normalisation, not bytes or raw whitespace.
    let padded = format!("  {}  \n\n\n\n", RESUME.replace(' ', "     "));
    let limits = Limits {
        max_chars: RESUME.chars().count(),
        ..Limits::default()
    };
    assert_eq!(prepare_text(&padded, &limits).unwrap(), RESUME);
}

#[test]
fn pasted_text_is_normalized_and_checked() {
    assert_eq!(
        prepare_text(
            "\u{FEFF}Jane Doe\r\n\r\n\r\nS E N I O R   E N G I N E E R\r\nEight years of oﬃce-free remote work in Rust\u{00A0}and Go.",
            &Limits::default()
        ),
        Ok(
            "Jane Doe\n\nSENIOR ENGINEER\nEight years of office-free remote work in Rust and Go."
                .to_owned()
        )
    );
    assert_eq!(
        prepare_text("   \n\t ", &Limits::default()),
        Err(ExtractError::NoText)
    );
    assert_eq!(
        prepare_text("Rust, Go", &Limits::default()),
        Err(ExtractError::NoText)
    );
    let symbols = format!("{RESUME} {}", "|#|*|=|+|-|~|".repeat(10));
    assert_eq!(
        prepare_text(&symbols, &Limits::default()),
        Err(ExtractError::Garbled)
    );
}

#[test]
fn text_in_a_legacy_encoding_gets_a_message_saying_how_to_fix_it() {
    let latin1 = b"Jos\xE9 Garc\xEDa, ingeniero de software con ocho a\xF1os de experiencia.";
    assert_eq!(
        extract(latin1, &Limits::default()),
        Err(ExtractError::Unsupported {
            what: "text that is not UTF-8 encoded (save it as UTF-8)"
        })
    );
}
