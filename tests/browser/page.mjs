// Drives Letterbox's page in headless Chromium as a user would: choose a resume, paste a job
// post, pick a tone, write, watch the letter stream in. Then checks that no secret reached the
// browser: not in the page, its script, any response it received (headers included) nor in what
// its scripts can read of the cookies.
//
// Environment: LETTERBOX_PAGE_URL, LETTERBOX_RESUME (a file), LETTERBOX_JOB_POST (text),
// LETTERBOX_SECRETS (one per line), CHROMIUM (default /usr/bin/chromium), and optionally
// LETTERBOX_SCREENSHOT (a PNG path). Prints a JSON summary; exits 1 on any failure.
import { chromium } from "playwright-core";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

const url = env("LETTERBOX_PAGE_URL");
const secrets = env("LETTERBOX_SECRETS").split("\n").filter((s) => s.length >= 8);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  // Root in a container has no user namespace for Chromium's sandbox.
  args: ["--no-sandbox"],
});
let failure = null;
const seen = [];
try {
  const context = await browser.newContext({ viewport: { width: 900, height: 1300 } });
  const page = await context.newPage();
  page.on("response", async (response) => {
    const headers = JSON.stringify(await response.allHeaders());
    const body = await response.text().catch(() => "");
    seen.push({ url: response.url(), status: response.status(), headers, body });
  });
  const opened = await page.goto(url);
  if (opened.status() !== 200) throw new Error(`the page answered ${opened.status()}`);

  // The letter is watched as it grows: one count per change of its text.
  await page.evaluate(() => {
    window.__updates = 0;
    new MutationObserver(() => window.__updates++).observe(document.getElementById("letter"), {
      childList: true,
      characterData: true,
      subtree: true,
    });
  });
  await page.setInputFiles("#resume", env("LETTERBOX_RESUME"));
  await page.fill("#job", env("LETTERBOX_JOB_POST"));
  await page.selectOption("#tone", "friendly");
  await page.selectOption("#length", "short");
  await page.click("#write");
  await page.waitForSelector('#letter[data-done="true"]', { timeout: 30000 });

  const letter = await page.textContent("#letter");
  const status = await page.textContent("#status");
  const updates = await page.evaluate(() => window.__updates);
  const cookies = await page.evaluate(() => document.cookie);
  const copyEnabled = await page.isEnabled("#copy");
  if (process.env.LETTERBOX_SCREENSHOT) {
    await page.screenshot({ path: process.env.LETTERBOX_SCREENSHOT, fullPage: true });
  }
  const everything = [await page.content(), cookies, ...seen.flatMap((r) => [r.url, r.headers, r.body])].join("\n");
  const leaked = secrets.filter((secret) => everything.includes(secret));
  if (leaked.length) throw new Error(`${leaked.length} secret(s) reached the browser`);
  if (cookies.includes("letterbox_session")) throw new Error("the session cookie is readable by scripts");
  console.log(JSON.stringify({
    letter_chars: letter.length,
    letter_start: letter.slice(0, 40),
    status,
    updates,
    copy_enabled: copyEnabled,
    responses: seen.map((r) => `${r.status} ${new URL(r.url).pathname}`),
  }));
} catch (error) {
  failure = error;
} finally {
  await browser.close();
}
if (failure) {
  console.error(`page test failed: ${failure.message}`);
  process.exit(1);
}
