//! Real documents made by other tools, uploaded as a client would: what reaches the LLM must hold
//! their text, and what cannot be read must be refused before any LLM call.

use reqwest::multipart::{Form, Part};
use serde_json::json;

use crate::helpers::{corpus, example, job_description, spawn_app};

fn form(file_name: &str, bytes: Vec<u8>) -> Form {
    Form::new()
        .part("resume", Part::bytes(bytes).file_name(file_name.to_owned()))
        .text("job_description", job_description())
        .text("tone", "enthusiastic")
}

#[tokio::test]
async fn every_readable_corpus_document_reaches_the_llm_with_its_text() {
    let app = spawn_app().await;
    let cases: [(&str, &[&str]); 3] = [
        (
            "rendercv_John_Doe_ClassicTheme_CV.pdf",
            &["John Doe", "Princeton University", "Boğaziçi"],
        ),
        (
            "scorelia_sample_resume.docx",
            &["John Doe", "Software Engineer at Google", "CareerPilot AI"],
        ),
        ("rendercv_sample_cv_text.txt", &["SARAH JOHNSON"]),
    ];
    for (index, (name, phrases)) in cases.iter().enumerate() {
        let answer = app.post_form(form(name, corpus(name))).await;
        assert_eq!(answer.status, 200, "{name}: {}", answer.body);
        let requests = app.stub.requests();
        assert_eq!(requests.len(), index + 1);
        let prompt = &requests[index].user;
        let resume = prompt.split("<resume id=").nth(1).unwrap();
        for phrase in *phrases {
            assert!(
                resume.contains(phrase),
                "{name}: {phrase:?} missing from the resume block"
            );
        }
        assert!(prompt.contains("Tone: enthusiastic\n"));
        assert!(
            !prompt
                .chars()
                .any(|c| ('\u{E000}'..='\u{F8FF}').contains(&c)),
            "{name}: private-use glyphs reached the prompt"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn the_generated_example_resume_pdf_is_read_back() {
    let app = spawn_app().await;
    let form = Form::new()
        .part(
            "resume",
            Part::bytes(example("resume.pdf")).file_name("resume.pdf"),
        )
        .part(
            "job_description",
            Part::bytes(example("job_description.txt")).file_name("jd.txt"),
        );
    let answer = app.post_form(form).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let sent = &app.stub.requests()[0].user;
    let markdown = String::from_utf8(example("resume.md")).unwrap();
    let name = markdown
        .lines()
        .next()
        .unwrap()
        .trim_start_matches('#')
        .trim();
    assert!(sent.contains(name), "{name} missing");
    assert!(sent.contains("Zürich"));
    app.stop().await;
}

#[tokio::test]
async fn unreadable_documents_are_refused_before_any_llm_call() {
    let app = spawn_app().await;
    let image_only = app
        .post_form(form("scan.pdf", corpus("larpmyresume_image_only.pdf")))
        .await;
    assert_eq!(image_only.status, 422, "{}", image_only.body);
    assert_eq!(image_only.body["error"]["code"], "no_text");

    let corrupt = app
        .post_form(form("cv.pdf", corpus("scorelia_corrupt_file.pdf")))
        .await;
    assert!((400..500).contains(&corrupt.status), "{}", corrupt.body);
    assert!(corrupt.body["error"]["code"].is_string());

    let png = app
        .post_form(form("photo.pdf", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec()))
        .await;
    assert_eq!(png.status, 415, "{}", png.body);
    assert_eq!(png.body["error"]["code"], "unsupported_media_type");

    let empty = app.post_form(form("empty.txt", Vec::new())).await;
    assert_eq!(empty.status, 400, "{}", empty.body);
    assert_eq!(empty.body["error"]["code"], "empty_field");

    let unknown = app
        .post_form(form("cv.txt", corpus("rendercv_sample_cv_text.txt")).text("colour", "blue"))
        .await;
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.body["error"]["code"], "unknown_field");

    let twice = app
        .post_form(form("cv.txt", corpus("rendercv_sample_cv_text.txt")).text("tone", "formal"))
        .await;
    assert_eq!(twice.status, 400);
    assert_eq!(
        twice.body,
        json!({"error": {"code": "duplicate_field", "message": "tone was sent twice"}})
    );

    assert_eq!(app.stub.request_count(), 0);
    app.stop().await;
}
