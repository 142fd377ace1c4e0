//! The stub LLM over real HTTP: each test starts its own stub on a free port and talks to it
//! with the same client library the worker uses.

use std::net::SocketAddr;

use letterbox_bench::stub::{
    self, Api, CUT_AFTER_CHUNKS, Failure, RateLimit, RecordedRequest, RetryAfter, StubConfig,
    StubHandle, letter,
};
use serde_json::{Value, json};

const KEY: &str = "sk-stub-test-key";

const SYSTEM: &str = "You write cover letters for job applications.";

const USER: &str = "Write a cover letter for the position in the job description below.

Tone: confident
Length: about 250 words
Language: en
Company: Acme Robotics
Hiring manager: Jane Roe

<job_description id=\"0f3a\">
Backend Engineer
We build fleet software in Rust on Kubernetes, with PostgreSQL and RabbitMQ.
</job_description id=\"0f3a\">

<resume id=\"0f3a\">
# Robin Example
Five years of Rust, PostgreSQL and rabbitmq; some Kubernetes.
</resume id=\"0f3a\">";

/// What the stub must write for `USER`: names from the labels and the resume's first line,
/// technical spellings first among the shared words, the tone in the closing.
const LETTER: &str = "Dear Jane Roe,

I am writing to apply for the Backend Engineer position at Acme Robotics.

My name is Robin Example. My experience with PostgreSQL, RabbitMQ, Rust and Kubernetes matches \
what you are looking for, and I would bring it to the team from day one.

I hope this confident note conveys how much I would like to contribute to Acme Robotics. I would \
welcome the chance to discuss the role with you.

Sincerely,
Robin Example";

async fn start(config: StubConfig) -> anyhow::Result<StubHandle> {
    letterbox::install_crypto_provider();
    stub::spawn(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
}

fn request(stream: bool) -> Value {
    json!({
        "model": "gpt-test",
        "messages": [
            { "role": "system", "content": SYSTEM },
            { "role": "user", "content": USER },
        ],
        "max_tokens": 1256,
        "temperature": 0.7,
        "stream": stream,
    })
}

async fn post(stub: &StubHandle, key: &str, body: &Value) -> anyhow::Result<reqwest::Response> {
    Ok(reqwest::Client::new()
        .post(format!("{}/chat/completions", stub.base_url))
        .bearer_auth(key)
        .json(body)
        .send()
        .await?)
}

#[tokio::test]
async fn wrong_key_is_refused_with_401_and_recorded_as_unauthorized() -> anyhow::Result<()> {
    let stub = start(StubConfig::new(KEY)).await?;

    let response = post(&stub, "sk-wrong", &request(false)).await?;

    assert_eq!(response.status(), 401);
    let body: Value = response.json().await?;
    assert_eq!(
        body,
        json!({ "error": {
            "message": "Incorrect API key provided.",
            "type": "invalid_request_error",
            "param": null,
            "code": "invalid_api_key",
        }})
    );
    let recorded = stub.requests();
    assert_eq!(recorded.len(), 1);
    assert!(!recorded[0].authorized);
    assert_eq!(recorded[0].user, USER);
    stub.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn missing_key_is_refused_with_401() -> anyhow::Result<()> {
    let stub = start(StubConfig::new(KEY)).await?;

    let response = reqwest::Client::new()
        .post(format!("{}/chat/completions", stub.base_url))
        .json(&request(false))
        .send()
        .await?;

    assert_eq!(response.status(), 401);
    assert_eq!(stub.request_count(), 1);
    stub.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn malformed_json_is_answered_400_in_the_openai_error_shape() -> anyhow::Result<()> {
    let stub = start(StubConfig::new(KEY)).await?;

    let response = reqwest::Client::new()
        .post(format!("{}/chat/completions", stub.base_url))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body("{\"model\": ")
        .send()
        .await?;

    assert_eq!(response.status(), 400);
    let body: Value = response.json().await?;
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("We could not parse"))
    );
    assert_eq!(
        stub.requests(),
        [RecordedRequest {
            authorized: true,
            ..RecordedRequest::default()
        }]
    );
    stub.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn letter_names_the_candidate_the_company_and_shared_keywords() -> anyhow::Result<()> {
    let stub = start(StubConfig::new(KEY)).await?;

    let response = post(&stub, KEY, &request(false)).await?;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await?;
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], stub::DEFAULT_MODEL);
    assert!(
        body["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("chatcmpl-"))
    );
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(body["choices"][0]["message"]["content"], LETTER);
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let prompt_tokens = (SYSTEM.chars().count() + USER.chars().count()).div_ceil(4);
    let completion_tokens = LETTER.chars().count().div_ceil(4);
    assert_eq!(
        body["usage"],
        json!({
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        })
    );
    assert_eq!(
        stub.requests(),
        [RecordedRequest {
            api: Api::OpenAi,
            model: "gpt-test".to_owned(),
            system: SYSTEM.to_owned(),
            user: USER.to_owned(),
            stream: false,
            authorized: true,
            max_tokens: Some(1256),
            anthropic_version: None,
        }]
    );
    stub.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn streamed_deltas_concatenate_to_the_letter_and_end_with_done() -> anyhow::Result<()> {
    let mut config = StubConfig::new(KEY);
    config.latency = stub::Latency::Fixed(std::time::Duration::from_millis(50));
    let stub = start(config).await?;

    let response = post(&stub, KEY, &request(true)).await?;

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await?;
    let data: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d))
        .collect::<Result<_, _>>()?;
    assert!(
        chunks
            .iter()
            .all(|chunk| chunk["object"] == "chat.completion.chunk")
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let letter: String = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(letter, LETTER);
    // One chunk for the role, one per word, one to finish.
    assert_eq!(chunks.len(), LETTER.split_whitespace().count() + 2);
    let last = &chunks[chunks.len() - 1]["choices"][0];
    assert_eq!(last["finish_reason"], "stop");
    assert_eq!(last["delta"], json!({}));
    assert!(stub.requests()[0].stream);
    stub.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn failure_every_two_calls_gives_exactly_one_500_in_two() -> anyhow::Result<()> {
    let mut config = StubConfig::new(KEY);
    config.failure = Some(Failure::Status {
        status: 500,
        every: 2,
    });
    let stub = start(config).await?;

    let first = post(&stub, KEY, &request(false)).await?;
    let first_status = first.status().as_u16();
    let first_body: Value = first.json().await?;
    let second = post(&stub, KEY, &request(false)).await?.status().as_u16();

    assert_eq!([first_status, second], [500, 200]);
    assert_eq!(first_body["error"]["type"], "server_error");
    assert_eq!(stub.request_count(), 2);
    stub.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn injected_rate_limit_carries_retry_after() -> anyhow::Result<()> {
    let mut config = StubConfig::new(KEY);
    config.failure = Some(Failure::Status {
        status: 429,
        every: 1,
    });
    let stub = start(config).await?;

    let response = post(&stub, KEY, &request(false)).await?;

    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await?;
    assert_eq!(body["error"]["type"], "rate_limit_exceeded");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");

    // Lifting the failure takes effect on the next call.
    stub.set_failure(None)?;
    assert_eq!(post(&stub, KEY, &request(false)).await?.status(), 200);
    assert_eq!((stub.rate_limited_count(), stub.letter_count()), (1, 1));
    stub.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn calls_over_the_rate_limit_get_429_with_the_wait_and_are_counted() -> anyhow::Result<()> {
    let mut config = StubConfig::new(KEY);
    // One call a second after a burst of two: the third call in a row is over it.
    config.rate_limit = Some(RateLimit {
        per_second: 1.try_into()?,
        burst: 2.try_into()?,
    });
    let stub = start(config).await?;

    let mut statuses = Vec::new();
    for stream in [false, true, false] {
        statuses.push(post(&stub, KEY, &request(stream)).await?.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429]);
    let response = post(&stub, KEY, &request(false)).await?;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    let wait_ms: u64 = response.headers()["retry-after-ms"].to_str()?.parse()?;
    assert!((1..=1000).contains(&wait_ms), "{wait_ms}");
    let body: Value = response.json().await?;
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    // A wrong key is refused before the rate limit counts the call.
    assert_eq!(
        post(&stub, "sk-wrong", &request(false)).await?.status(),
        401
    );
    assert_eq!((stub.letter_count(), stub.rate_limited_count()), (2, 2));
    assert_eq!(stub.request_count(), 5);
    stub.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_small_max_tokens_cuts_the_letter_with_finish_reason_length() -> anyhow::Result<()> {
    let stub = start(StubConfig::new(KEY)).await?;
    let mut body = request(false);
    body["max_tokens"] = json!(5);

    let response: Value = post(&stub, KEY, &body).await?.json().await?;

    // Five tokens are twenty characters: the words that fit whole.
    assert_eq!(
        response["choices"][0]["message"]["content"],
        "Dear Jane Roe,\n\nI "
    );
    assert_eq!(response["choices"][0]["finish_reason"], "length");
    stub.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn health_and_models_answer_and_unknown_routes_get_openai_errors() -> anyhow::Result<()> {
    let stub = start(StubConfig::new(KEY)).await?;
    let client = reqwest::Client::new();

    let health = client
        .get(format!("http://{}/healthz", stub.addr))
        .send()
        .await?;
    let models: Value = client
        .get(format!("{}/models", stub.base_url))
        .send()
        .await?
        .json()
        .await?;
    let unknown = client
        .post(format!("{}/completions", stub.base_url))
        .send()
        .await?;

    assert_eq!(health.status(), 200);
    assert_eq!(models["data"][0]["id"], stub::DEFAULT_MODEL);
    assert_eq!(unknown.status(), 404);
    let error: Value = unknown.json().await?;
    assert_eq!(
        error["error"]["message"],
        "Invalid URL (POST /v1/completions)"
    );
    assert_eq!(stub.request_count(), 0);
    stub.shutdown().await;
    Ok(())
}

async fn start_failing(failure: Failure) -> anyhow::Result<StubHandle> {
    let mut config = StubConfig::new(KEY);
    config.failure = Some(failure);
    start(config).await
}

/// The `data` of every event of an SSE body, in order.
fn events(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .collect()
}

/// The letter's first chunks, as a broken answer sends them.
fn cut_letter() -> Vec<&'static str> {
    letter::chunks(LETTER)[..CUT_AFTER_CHUNKS].to_vec()
}

#[tokio::test]
async fn rate_limit_in_seconds_sends_retry_after_and_no_milliseconds() -> anyhow::Result<()> {
    let stub = start_failing(Failure::RateLimited {
        every: 1,
        retry_after: RetryAfter::Seconds(3),
    })
    .await?;

    let response = post(&stub, KEY, &request(false)).await?;

    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "3");
    assert!(response.headers().get("retry-after-ms").is_none());
    let body: Value = response.json().await?;
    assert_eq!(
        body,
        json!({ "error": {
            "message": "Rate limit reached for requests. Please try again in 3s.",
            "type": "rate_limit_exceeded",
            "param": null,
            "code": "rate_limit_exceeded",
        }})
    );
    stub.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn rate_limit_as_an_http_date_points_the_given_seconds_ahead() -> anyhow::Result<()> {
    let stub = start_failing(Failure::RateLimited {
        every: 1,
        retry_after: RetryAfter::HttpDate(30),
    })
    .await?;

    let before = std::time::SystemTime::now();
    let response = post(&stub, KEY, &request(false)).await?;
    let after = std::time::SystemTime::now();

    assert_eq!(response.status(), 429);
    let date = response.headers()["retry-after"].to_str()?.to_owned();
    assert!(date.ends_with(" GMT"), "{date}");
    let at = httpdate::parse_http_date(&date)?;
    // An HTTP date counts whole seconds: the date is 30 s after the answer, rounded down.
    let earliest = before + std::time::Duration::from_secs(29);
    let latest = after + std::time::Duration::from_secs(30);
    assert!(earliest <= at && at <= latest, "{date}");
    assert!(response.headers().get("retry-after-ms").is_none());
    let body: Value = response.json().await?;
    assert_eq!(
        body["error"]["message"],
        "Rate limit reached for requests. Please try again in 30s."
    );
    stub.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn rate_limit_in_milliseconds_sends_only_retry_after_ms() -> anyhow::Result<()> {
    let stub = start_failing(Failure::RateLimited {
        every: 1,
        retry_after: RetryAfter::Millis(1500),
    })
    .await?;

    let response = post(&stub, KEY, &request(false)).await?;

    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after-ms"], "1500");
    assert!(response.headers().get("retry-after").is_none());
    let body: Value = response.json().await?;
    assert_eq!(
        body["error"]["message"],
        "Rate limit reached for requests. Please try again in 1500ms."
    );
    stub.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn rate_limit_without_a_hint_sends_neither_header() -> anyhow::Result<()> {
    let stub = start_failing(Failure::RateLimited {
        every: 2,
        retry_after: RetryAfter::None,
    })
    .await?;

    let limited = post(&stub, KEY, &request(false)).await?;
    let headers = limited.headers().clone();
    let body: Value = limited.json().await?;
    let next = post(&stub, KEY, &request(false)).await?.status();

    assert!(headers.get("retry-after").is_none());
    assert!(headers.get("retry-after-ms").is_none());
    assert_eq!(
        body["error"]["message"],
        "Rate limit reached for requests. Please try again later."
    );
    assert_eq!(next, 200);
    stub.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_hung_call_is_never_answered_and_the_next_one_is() -> anyhow::Result<()> {
    let stub = start_failing(Failure::Hang { every: 2 }).await?;
    let impatient = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(300))
        .build()?;

    let hung = impatient
        .post(format!("{}/chat/completions", stub.base_url))
        .bearer_auth(KEY)
        .json(&request(false))
        .send()
        .await;
    let answered = post(&stub, KEY, &request(false)).await?;

    assert!(
        hung.as_ref().is_err_and(reqwest::Error::is_timeout),
        "{hung:?}"
    );
    assert_eq!(answered.status(), 200);
    assert_eq!(stub.request_count(), 2);
    stub.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn shutting_down_closes_a_hung_call_without_an_answer() -> anyhow::Result<()> {
    let stub = start_failing(Failure::Hang { every: 1 }).await?;
    let url = format!("{}/chat/completions", stub.base_url);
    let waiting = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .bearer_auth(KEY)
            .json(&request(false))
            .send()
            .await
    });
    while stub.request_count() == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    stub.shutdown().await;
    let outcome = waiting.await?;

    let error = outcome.err().map(|error| error.to_string());
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("error sending request")),
        "{error:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_cut_stream_sends_the_first_chunks_then_ends_without_finish_or_done() -> anyhow::Result<()>
{
    let stub = start_failing(Failure::CutStream { every: 1 }).await?;

    let response = post(&stub, KEY, &request(true)).await?;

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await?;
    let chunks: Vec<Value> = events(&text)
        .iter()
        .map(|data| serde_json::from_str(data))
        .collect::<Result<_, _>>()?;
    assert_eq!(chunks.len(), 1 + CUT_AFTER_CHUNKS);
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({ "role": "assistant", "content": "" })
    );
    let contents: Vec<&str> = chunks[1..]
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(contents, cut_letter());
    assert!(
        chunks
            .iter()
            .all(|chunk| chunk["choices"][0]["finish_reason"].is_null())
    );
    stub.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_cut_plain_answer_is_a_200_whose_json_ends_inside_the_letter() -> anyhow::Result<()> {
    let stub = start_failing(Failure::CutStream { every: 1 }).await?;

    let response = post(&stub, KEY, &request(false)).await?;

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = response.text().await?;
    let prefix: String = cut_letter().concat();
    let escaped = serde_json::to_string(&prefix)?;
    let expected = format!(
        "{{\"choices\":[{{\"finish_reason\":\"stop\",\"index\":0,\"message\":{{\"content\":{}",
        &escaped[..escaped.len() - 1]
    );
    assert_eq!(body, expected);
    assert_eq!(
        body,
        "{\"choices\":[{\"finish_reason\":\"stop\",\"index\":0,\"message\":{\"content\":\"Dear Jane Roe,\\n\\nI am "
    );
    assert!(serde_json::from_str::<Value>(&body).is_err());
    stub.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_error_event_follows_the_first_chunks_and_ends_the_stream() -> anyhow::Result<()> {
    let stub = start_failing(Failure::ErrorEvent { every: 1 }).await?;

    let response = post(&stub, KEY, &request(true)).await?;

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await?;
    let data = events(&text);
    assert_eq!(data.len(), 1 + CUT_AFTER_CHUNKS + 1);
    let contents: Vec<String> = data[1..=CUT_AFTER_CHUNKS]
        .iter()
        .map(|d| serde_json::from_str::<Value>(d))
        .map(|chunk| {
            Ok(chunk?["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap_or_default()
                .to_owned())
        })
        .collect::<Result<_, serde_json::Error>>()?;
    assert_eq!(contents, cut_letter());
    let error: Value = serde_json::from_str(data[data.len() - 1])?;
    assert_eq!(error, stream_error());
    assert!(!text.contains("[DONE]"));
    stub.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_error_event_on_a_plain_answer_is_a_200_with_an_error_body() -> anyhow::Result<()> {
    let stub = start_failing(Failure::ErrorEvent { every: 1 }).await?;

    let response = post(&stub, KEY, &request(false)).await?;

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await?;
    assert_eq!(body, stream_error());
    stub.shutdown().await;
    Ok(())
}

fn stream_error() -> Value {
    json!({ "error": {
        "message": "The server had an error while processing your request. Sorry about that!",
        "type": "server_error",
        "param": null,
        "code": "internal_error",
    }})
}

// Anthropic's Messages API, on the same stub.

fn messages_request(stream: bool) -> Value {
    json!({
        "model": "claude-test",
        "max_tokens": 1256,
        "system": SYSTEM,
        "messages": [{ "role": "user", "content": USER }],
        "stream": stream,
    })
}

async fn post_messages(
    stub: &StubHandle,
    key: &str,
    version: Option<&str>,
    body: &Value,
) -> anyhow::Result<reqwest::Response> {
    let mut request = reqwest::Client::new()
        .post(format!("{}/messages", stub.base_url))
        .header("x-api-key", key)
        .json(body);
    if let Some(version) = version {
        request = request.header("anthropic-version", version);
    }
    Ok(request.send().await?)
}

/// `(event name, data)` of every event of an SSE body, in order.
fn named_events(text: &str) -> anyhow::Result<Vec<(String, Value)>> {
    let mut events = Vec::new();
    let mut name = String::new();
    for line in text.lines() {
        if let Some(value) = line.strip_prefix("event: ") {
            name = value.to_owned();
        } else if let Some(data) = line.strip_prefix("data: ") {
            events.push((std::mem::take(&mut name), serde_json::from_str(data)?));
        }
    }
    Ok(events)
}

#[tokio::test]
async fn a_message_holds_the_letter_in_one_text_block_and_the_request_is_recorded()
-> anyhow::Result<()> {
    let stub = start(StubConfig::new(KEY)).await?;

    let response = post_messages(&stub, KEY, Some("2023-06-01"), &messages_request(false)).await?;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await?;
    let input_tokens = (SYSTEM.chars().count() + USER.chars().count()).div_ceil(4);
    assert_eq!(
        body,
        json!({
            "id": "msg_stub00000000000",
            "type": "message",
            "role": "assistant",
            "model": stub::DEFAULT_MODEL,
            "content": [{ "type": "text", "text": LETTER }],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": { "input_tokens": input_tokens, "output_tokens": LETTER.chars().count().div_ceil(4) },
        })
    );
    assert_eq!(
        stub.requests(),
        [RecordedRequest {
            api: Api::Anthropic,
            model: "claude-test".to_owned(),
            system: SYSTEM.to_owned(),
            user: USER.to_owned(),
            stream: false,
            authorized: true,
            max_tokens: Some(1256),
            anthropic_version: Some("2023-06-01".to_owned()),
        }]
    );
    assert_eq!(stub.letter_count(), 1);
    stub.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_streamed_message_sends_anthropic_events_in_order_and_the_whole_letter()
-> anyhow::Result<()> {
    let mut config = StubConfig::new(KEY);
    config.latency = stub::Latency::Fixed(std::time::Duration::from_millis(50));
    let stub = start(config).await?;

    let response = post_messages(&stub, KEY, Some("2023-06-01"), &messages_request(true)).await?;

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = named_events(&response.text().await?)?;
    // Every event's name is the type its data repeats.
    assert!(
        events
            .iter()
            .all(|(name, data)| data["type"] == name.as_str())
    );
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    let words = letter::chunks(LETTER).len();
    let mut expected = vec!["message_start", "content_block_start", "ping"];
    expected.extend(std::iter::repeat_n("content_block_delta", words));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, expected);
    assert_eq!(events[0].1["message"]["model"], stub::DEFAULT_MODEL);
    let letter: String = events
        .iter()
        .filter(|(name, _)| name == "content_block_delta")
        .map(|(_, data)| {
            assert_eq!(data["delta"]["type"], "text_delta");
            data["delta"]["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(letter, LETTER);
    assert_eq!(
        events[events.len() - 2].1["delta"],
        json!({ "stop_reason": "end_turn", "stop_sequence": null })
    );
    stub.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn messages_need_the_key_in_x_api_key_and_an_anthropic_version() -> anyhow::Result<()> {
    let stub = start(StubConfig::new(KEY)).await?;

    let wrong = post_messages(
        &stub,
        "sk-wrong",
        Some("2023-06-01"),
        &messages_request(false),
    )
    .await?;
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        wrong.json::<Value>().await?,
        json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}})
    );
    // A bearer key is OpenAI's way, not Anthropic's.
    let bearer = reqwest::Client::new()
        .post(format!("{}/messages", stub.base_url))
        .bearer_auth(KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&messages_request(false))
        .send()
        .await?;
    assert_eq!(bearer.status(), 401);
    let unversioned = post_messages(&stub, KEY, None, &messages_request(false)).await?;
    assert_eq!(unversioned.status(), 400);
    assert_eq!(
        unversioned.json::<Value>().await?,
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": "anthropic-version: header is required"}})
    );
    let mut no_limit = messages_request(false);
    no_limit
        .as_object_mut()
        .map(|body| body.remove("max_tokens"));
    let refused = post_messages(&stub, KEY, Some("2023-06-01"), &no_limit).await?;
    assert_eq!(refused.status(), 400);
    assert_eq!(
        refused.json::<Value>().await?["error"]["message"],
        "max_tokens: Field required"
    );
    let authorized: Vec<bool> = stub.requests().iter().map(|r| r.authorized).collect();
    assert_eq!(authorized, [false, false, true, true]);
    assert_eq!(stub.letter_count(), 0);
    stub.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn anthropic_failures_come_in_anthropic_shapes() -> anyhow::Result<()> {
    let stub = start_failing(Failure::RateLimited {
        every: 1,
        retry_after: RetryAfter::Seconds(2),
    })
    .await?;
    let limited = post_messages(&stub, KEY, Some("2023-06-01"), &messages_request(false)).await?;
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "2");
    assert_eq!(
        limited.json::<Value>().await?,
        json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limit reached for requests. Please try again in 2s."}})
    );

    stub.set_failure(Some(Failure::Status {
        status: 529,
        every: 1,
    }))?;
    let overloaded = post_messages(&stub, KEY, Some("2023-06-01"), &messages_request(true)).await?;
    assert_eq!(overloaded.status().as_u16(), 529);
    assert_eq!(overloaded.headers()["retry-after"], "1");
    let body: Value = overloaded.json().await?;
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "overloaded_error");
    assert_eq!(stub.rate_limited_count(), 1);

    // A whole answer cut inside its letter.
    stub.set_failure(Some(Failure::CutStream { every: 1 }))?;
    let cut = post_messages(&stub, KEY, Some("2023-06-01"), &messages_request(false)).await?;
    assert_eq!(cut.status(), 200);
    assert_eq!(
        cut.text().await?,
        "{\"content\":[{\"text\":\"Dear Jane Roe,\\n\\nI am "
    );
    stub.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_cut_message_stream_ends_after_the_first_words_without_its_stop() -> anyhow::Result<()> {
    let stub = start_failing(Failure::CutStream { every: 1 }).await?;

    let response = post_messages(&stub, KEY, Some("2023-06-01"), &messages_request(true)).await?;

    assert_eq!(response.status(), 200);
    let events = named_events(&response.text().await?)?;
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    let mut expected = vec!["message_start", "content_block_start", "ping"];
    expected.extend(std::iter::repeat_n("content_block_delta", CUT_AFTER_CHUNKS));
    assert_eq!(names, expected);
    let words: Vec<&str> = events[3..]
        .iter()
        .filter_map(|(_, data)| data["delta"]["text"].as_str())
        .collect();
    assert_eq!(words, cut_letter());
    stub.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_error_event_ends_a_message_stream_after_the_first_words() -> anyhow::Result<()> {
    let stub = start_failing(Failure::ErrorEvent { every: 1 }).await?;

    let response = post_messages(&stub, KEY, Some("2023-06-01"), &messages_request(true)).await?;

    assert_eq!(response.status(), 200);
    let events = named_events(&response.text().await?)?;
    assert_eq!(events.len(), 3 + CUT_AFTER_CHUNKS + 1);
    assert_eq!(
        events[events.len() - 1],
        (
            "error".to_owned(),
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
        )
    );
    // A whole answer that fails so is a 200 carrying the error object.
    let whole = post_messages(&stub, KEY, Some("2023-06-01"), &messages_request(false)).await?;
    assert_eq!(whole.status(), 200);
    assert_eq!(
        whole.json::<Value>().await?,
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    );
    stub.shutdown().await;
    Ok(())
}
