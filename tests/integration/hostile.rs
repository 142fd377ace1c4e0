//! Documents built to break parsers: the ingress must answer them with a 4xx and keep serving.

use std::io::Write;

use flate2::Compression;
use flate2::write::ZlibEncoder;
use reqwest::multipart::{Form, Part};
use serde_json::json;

use crate::helpers::{job_description, spawn_app};

/// A valid one-page PDF whose object stream (compressed, with a PNG "Sub" predictor that hides
/// the bytes from a scan of the inflated data) holds an array nested `depth` levels deep. A
/// recursive parser overflows its stack on it, which aborts the whole process.
fn deeply_nested_pdf(depth: usize) -> Vec<u8> {
    let content = b"BT /F1 11 Tf 72 720 Td (Ada Quinlan, senior backend engineer: Rust, RabbitMQ, PostgreSQL) Tj ET".to_vec();
    let resources = b"<< /Font << /F1 5 0 R >> /Extra 8 0 R >>".to_vec();
    let mut nested = vec![b'['; depth];
    nested.extend(std::iter::repeat_n(b']', depth));
    let header = format!("6 0 8 {} ", resources.len() + 1).into_bytes();
    let first = header.len();
    let mut raw = header;
    raw.extend_from_slice(&resources);
    raw.push(b' ');
    raw.extend_from_slice(&nested);
    // PNG Sub predictor, 64 columns: each row stores differences from the previous byte.
    let columns = 64;
    let mut predicted = Vec::new();
    for row in raw.chunks(columns) {
        let mut row = row.to_vec();
        row.resize(columns, b' ');
        predicted.push(1);
        let mut previous = 0u8;
        for byte in row {
            predicted.push(byte.wrapping_sub(previous));
            previous = byte;
        }
    }
    let mut encoder = ZlibEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(&predicted).unwrap();
    let data = encoder.finish().unwrap();

    let mut objects: Vec<(u32, Vec<u8>)> = vec![
        (1, b"<< /Type /Catalog /Pages 2 0 R >>".to_vec()),
        (2, b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec()),
        (3, b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources 6 0 R >>".to_vec()),
        (4, [format!("<< /Length {} >>\nstream\n", content.len()).into_bytes(), content.clone(), b"\nendstream".to_vec()].concat()),
        (5, b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_vec()),
    ];
    let stream_dict = format!(
        "<< /Type /ObjStm /N 2 /First {first} /Length {} /Filter /FlateDecode /DecodeParms << /Predictor 11 /Columns {columns} >> >>\nstream\n",
        data.len()
    );
    objects.push((
        7,
        [stream_dict.into_bytes(), data, b"\nendstream".to_vec()].concat(),
    ));

    let mut out = b"%PDF-1.5\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = std::collections::BTreeMap::new();
    for (number, body) in &objects {
        offsets.insert(*number, out.len());
        out.extend_from_slice(format!("{number} 0 obj\n").as_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(b"\nendobj\n");
    }
    // A cross-reference stream: objects 6 and 8 live in object stream 7.
    let xref_offset = out.len();
    let mut rows = Vec::new();
    for number in 0..10u32 {
        let (kind, field2, field3): (u8, u32, u16) = match number {
            0 => (0, 0, 65535),
            6 => (2, 7, 0),
            8 => (2, 7, 1),
            n => match offsets.get(&n) {
                Some(offset) => (1, u32::try_from(*offset).unwrap(), 0),
                None => (0, 0, 0),
            },
        };
        rows.push(kind);
        rows.extend_from_slice(&field2.to_be_bytes());
        rows.extend_from_slice(&field3.to_be_bytes());
    }
    out.extend_from_slice(
        format!(
            "9 0 obj\n<< /Type /XRef /Size 10 /W [1 4 2] /Root 1 0 R /Length {} >>\nstream\n",
            rows.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(&rows);
    out.extend_from_slice(
        format!("\nendstream\nendobj\nstartxref\n{xref_offset}\n%%EOF\n").as_bytes(),
    );
    out
}

#[tokio::test]
async fn a_pdf_that_crashes_the_parser_costs_one_422_and_the_server_keeps_serving() {
    let app = spawn_app().await;
    let hostile = Form::new()
        .part(
            "resume",
            Part::bytes(deeply_nested_pdf(100_000)).file_name("cv.pdf"),
        )
        .text("job_description", job_description());
    let answer = app.post_form(hostile).await;
    assert_eq!(answer.status, 422, "{}", answer.body);
    assert_eq!(answer.body["error"]["code"], "unreadable_document");
    assert_eq!(app.stub.request_count(), 0);

    // The same process answers the next request with a letter.
    let answer = app
        .post_json(&json!({
            "resume_text": "Ada Quinlan\nBackend engineer: Rust services on RabbitMQ and PostgreSQL",
            "job_description": job_description(),
        }))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    app.stop().await;
}

#[tokio::test]
async fn the_same_file_without_the_deep_nesting_is_read() {
    let app = spawn_app().await;
    let form = Form::new()
        .part(
            "resume",
            Part::bytes(deeply_nested_pdf(3)).file_name("cv.pdf"),
        )
        .text("job_description", job_description());
    let answer = app.post_form(form).await;
    // Proves the hostile file above is refused for its nesting, not for being malformed.
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        app.stub.requests()[0]
            .user
            .contains("Ada Quinlan, senior backend engineer: Rust")
    );
    app.stop().await;
}
