// Browser test of kaos's web console in a real headless Chromium (Debian's), driven by
// playwright-core. Usage: node console.test.mjs ADMIN_URL SCREENSHOT_PATH, with NODE_PREFIX set to
// the npm prefix that holds playwright-core (make test installs it into the cache).
// It checks the form offers the fields GET /features lists, that bad values are caught (by the
// form, or by the API's 400 naming the field), adds a broken-broker rule through the form, sees it listed, waits for its counter to rise
// (the caller keeps a producer running) and its events to appear in the tail, deletes it, and sees
// it gone. Exit 0 on success.
import { createRequire } from "node:module";

const prefix = process.env.NODE_PREFIX ? `${process.env.NODE_PREFIX.replace(/\/$/, "")}/` : import.meta.url;
const require = createRequire(prefix);
const { chromium } = require("playwright-core");

const [admin, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const step = (message) => console.log(message);
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(30_000);
  await page.goto(admin);
  await page.waitForSelector("#feature option", { state: "attached" });
  step("CONSOLE_LOADED");

  // The form is built from GET /features: every field of the feature is there.
  await page.selectOption("#feature", "broken-broker");
  await page.waitForSelector("#f-errors");
  await page.waitForSelector("#f-rateInPercent");
  // A value out of the schema's range is caught by the form before it reaches the API.
  await page.fill("#f-minLatencyToAddInMilliseconds", "-5");
  await page.click("#add");
  await page.waitForFunction(() => document.querySelector("#message").textContent.includes("must be at least 0"));
  // A value only the API can judge comes back as a 400 naming the field, and the field is marked.
  await page.fill("#f-minLatencyToAddInMilliseconds", "50");
  await page.fill("#f-maxLatencyToAddInMilliseconds", "10");
  await page.click("#add");
  await page.waitForFunction(() => document.querySelector("#message").textContent.includes("config.minLatencyToAddInMilliseconds"));
  await page.waitForSelector("#f-minLatencyToAddInMilliseconds.invalid");
  step("VALIDATION_SHOWN");

  await page.fill("#f-minLatencyToAddInMilliseconds", "0");
  await page.fill("#f-maxLatencyToAddInMilliseconds", "0");
  await page.fill("#f-errors", "NOT_ENOUGH_REPLICAS");
  await page.selectOption("#apiKeys", "PRODUCE");
  await page.click("#add");
  await page.waitForFunction(() => document.querySelector("#message").textContent === "added broken-broker");
  await page.waitForSelector('#rules tr[data-feature="broken-broker"]');
  step("RULE_ADDED");

  await page.waitForFunction(() => Number(document.querySelector("#counter-broken-broker")?.textContent) > 0);
  step("COUNTER_ROSE");
  // The event tail shows what the rule did to which request.
  await page.waitForFunction(() => document.querySelector('#events tr[data-feature="broken-broker"]')?.textContent.includes("NOT_ENOUGH_REPLICAS"));
  step("EVENT_SHOWN");
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });

  await page.click('#rules button.delete[data-feature="broken-broker"]');
  await page.waitForFunction(() => !document.querySelector('#rules tr[data-feature="broken-broker"]'));
  step("RULE_DELETED");
} catch (error) {
  console.error(`console test failed: ${error.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
