// The pages people look at, in a real headless browser (Debian's chromium, driven by playwright-core)
// against a real `wrangler dev` in development mode: a template preview shows each locale's subject, the
// HTML as a mail client renders it and the text part; /docs renders every operation. Where no browser
// is installed (`apt-get install chromium`; .ci/run installs it), these tests are skipped and say why.
import { existsSync } from "node:fs";
import { chromium, type Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startWranglerDev, type WranglerDev } from "../../scripts/wrangler-dev.mjs";
import { createStack, type Stack } from "../helpers/e2e-stack";

const CHROMIUM = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((path) => existsSync(path));
if (!CHROMIUM) console.warn("browser-pages e2e: skipped — no chromium at /usr/bin/chromium (apt-get install chromium)");

describe.skipIf(!CHROMIUM)("pages in a real browser", () => {
  let stack: Stack;
  let wrangler: WranglerDev | undefined;
  let browser: Browser | undefined;

  beforeAll(async () => {
    stack = await createStack({ vars: { ENVIRONMENT: "development" } });
    wrangler = await startWranglerDev(stack.options);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
    });
  });

  afterAll(async () => {
    await browser?.close();
    await wrangler?.stop();
    await stack?.close();
  });

  it("previews a template in every locale: subject, rendered HTML and text, from its sample data", async () => {
    const page = await browser!.newPage();
    await page.goto(`${wrangler!.url}/preview/welcome`);
    const english = page.locator('section[data-locale="default"]');
    await expect.poll(() => english.locator(".subject").textContent()).toBe("Welcome to Acme, Ada Lovelace!");
    const englishHtml = english.frameLocator("iframe").locator("body");
    await expect.poll(() => englishHtml.innerText()).toContain("Welcome, Ada Lovelace!");
    expect(await englishHtml.locator("a").getAttribute("href")).toBe("https://acme.example/start");
    expect(await english.locator("pre.text").textContent()).toContain("Get started: https://acme.example/start");

    const chinese = page.locator('section[data-locale="zh"]');
    expect(await chinese.locator(".subject").textContent()).toBe("新用户注册通知：欢迎加入Acme，张伟！");
    await expect.poll(() => chinese.frameLocator("iframe").locator("body").innerText()).toContain("欢迎，张伟！");
    await page.close();
  });

  it("lists the templates, each linked to its preview", async () => {
    const page = await browser!.newPage();
    await page.goto(`${wrangler!.url}/preview`);
    await page.getByRole("link", { name: "password-reset" }).click();
    await expect.poll(() => page.locator('section[data-locale="default"] .subject').textContent()).toBe("Reset your Acme password");
    await page.close();
  });

  it("renders the API reference at /docs from /openapi.json: sending first, the operational routes last, each with a curl to copy", async () => {
    const page = await browser!.newPage();
    await page.goto(`${wrangler!.url}/docs`);
    const headings = page.locator("h2");
    await expect.poll(() => headings.count()).toBeGreaterThan(10);
    const titles = await headings.allInnerTexts();
    expect(titles.slice(0, 4)).toEqual(["POST /v1/emails", "GET /v1/emails", "POST /v1/emails/batch", "GET /v1/emails/{id}"]);
    expect(titles.slice(-6)).toEqual(["GET /preview", "GET /preview/{name}", "GET /healthz", "GET /openapi.json", "GET /docs", "Error"]);
    expect(titles).toEqual(expect.arrayContaining(["POST /v1/templates/{name}/render", "POST /send-notification"]));
    const examples = await page.locator("pre.example").allInnerTexts();
    expect(examples).toHaveLength(titles.length - 1); // every operation, not the Error schema
    for (const example of examples) expect(example).toMatch(new RegExp(`^curl -s( -X [A-Z]+)? "${wrangler!.url}/`));
    // The first one, as a user would paste it: its URL, its key header and its body send a mail.
    const send = examples[0]!;
    expect(send).toContain('-H "Authorization: Bearer $MAILROOM_API_KEY"');
    const url = /"(http[^"]+)"/.exec(send)![1]!;
    const body = /-d '([\s\S]*)'$/.exec(send)![1]!;
    const res = await fetch(url, { method: "POST", headers: { Authorization: `Bearer ${stack.apiKey}`, "Content-Type": "application/json" }, body });
    expect(res.status).toBe(202);
    const render = examples[titles.indexOf("POST /v1/templates/{name}/render")]!;
    expect(render).toContain(`"${wrangler!.url}/v1/templates/welcome/render"`);
    await page.close();
  });
});
