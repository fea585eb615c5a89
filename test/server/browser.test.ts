/**
 * The page in headless Chromium (Debian's `chromium`, driven by playwright-core through
 * `executablePath`; `.ci/run` installs it): `bun examples/chat.ts` on the embedded model with a
 * plugin package, the steering panel built from /v1/plugins, both columns streaming from one seed,
 * and tokens shaded by a trace. A screenshot is saved for a person to look at (its path is printed).
 * Skipped, saying so, where no Chromium is found (set STEERKIT_CHROMIUM to its path).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";

// The functions given to page.evaluate run in the page; the project's types have no DOM library.
declare const document: any, window: any, MutationObserver: any;

const executable = process.env.STEERKIT_CHROMIUM ?? Bun.which("chromium") ?? Bun.which("chromium-browser");
if (!executable) console.warn("browser test skipped: no chromium on PATH (apt-get install chromium, or set STEERKIT_CHROMIUM)");

let server: Bun.Subprocess<"ignore", "pipe", "inherit"> | undefined;
let browser: Browser | undefined;
let page: Page;
let url = "";

beforeAll(async () => {
  if (!executable) return;
  server = Bun.spawn(["bun", "examples/chat.ts", "--port", "0", "--plugin", "steerkit-plugin-logit-bias"], { stdin: "ignore", stdout: "pipe", stderr: "inherit" });
  const reader = server.stdout.getReader();
  let out = "";
  while (!/http:\/\/\S+/.test(out)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`examples/chat.ts exited before printing its URL: ${out}`);
    out += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  url = /(http:\/\/\S+)/.exec(out)![1]!;
  // --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start; /dev/shm may be small in a container.
  browser = await chromium.launch({ executablePath: executable, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
  page = await browser.newPage({ viewport: { width: 1400, height: 950 } });
  page.on("pageerror", (e) => console.error("page error:", e.message));
  await page.goto(url);
  await page.waitForSelector("body[data-state=ready]", { timeout: 10_000 });
});

afterAll(async () => {
  await browser?.close();
  server?.kill();
});

/** Count the tokens in each column every time the page changes, to see that they arrive over time. */
async function watchStreaming() {
  await page.evaluate(() => {
    const seen: number[][] = [[], []];
    (window as any).seen = seen;
    for (const col of [0, 1]) {
      const out = document.getElementById("out" + col);
      new MutationObserver(() => seen[col]!.push(out.querySelectorAll(".tok").length)).observe(out, { childList: true });
    }
  });
}

async function generate() {
  await page.click("#send");
  await page.waitForSelector("body[data-state=done]", { timeout: 10_000 });
}

/** Each column's text, and the trace value of each shaded token. */
async function columns() {
  return page.evaluate(() =>
    [0, 1].map((col) => {
      const out = document.getElementById("out" + col);
      const toks: any[] = [...out.querySelectorAll(".tok")];
      return {
        text: out.textContent ?? "",
        stats: document.getElementById("stats" + col).textContent ?? "",
        tokens: toks.length,
        values: toks.filter((t) => t.dataset.value !== undefined).map((t) => Number(t.dataset.value)),
        shaded: toks.filter((t) => (t.style.backgroundColor || "").startsWith("rgba")).length,
      };
    }),
  );
}

describe.skipIf(!executable)("the page in headless Chromium", () => {
  test("the steering panel is built from /v1/plugins: a plugin package's plugin is offered, recorders are not", async () => {
    const offered = await page.$$eval(".entry select.plugin option", (os) => [...new Set(os.map((o: any) => o.value as string))]);
    expect(offered).toEqual(["ablate-direction", "add-vector", "sae-clamp", "steerkit-plugin-logit-bias"]);
    // The first entry: add-vector with the registered "dog" direction, its scale a slider and a box.
    expect(await page.inputValue(".entry [name=vector][type=text]")).toBe("dog");
    expect(await page.locator(".entry input[type=range][aria-label=scale]").count()).toBe(1);
  });

  test("both columns stream from the same seed; the steered one differs, follows the panel, and tokens are shaded by the trace", async () => {
    await page.fill("#seed", "7");
    await page.fill("#maxTokens", "200");
    // Steer with the panel: a scale, and a second plugin from the package banning a word.
    await page.fill(".entry input[type=number][name=scale]", "1.2");
    await page.click("#addEntry");
    const second = page.locator(".entry").nth(1);
    await second.locator("select.plugin").selectOption("steerkit-plugin-logit-bias");
    await second.locator("select[name=ban]").selectOption({ label: "list" });
    await second.locator("input[name=ban]").fill("Tim");
    const recipe = JSON.parse((await page.textContent("#recipeView"))!);
    expect(recipe).toEqual([
      { plugin: "add-vector", options: { vector: "dog", scale: 1.2 } },
      { plugin: "steerkit-plugin-logit-bias", options: { ban: ["Tim"] } },
    ]);
    await watchStreaming();
    await generate();
    const [plain, steered] = await columns();
    const seen: number[][] = await page.evaluate(() => (window as any).seen);
    // Tokens arrived over several reads of the stream (one read appends all it holds at once: a
    // page that waited for the whole answer would change once).
    for (const counts of seen) expect(new Set(counts).size).toBeGreaterThanOrEqual(2);
    expect(plain!.stats).toContain("seed 7");
    expect(steered!.stats).toContain("seed 7");
    expect(plain!.text.length).toBeGreaterThan(20);
    expect(steered!.text).not.toBe(plain!.text);
    expect(steered!.text).not.toContain("Tim");
    // Shading: every token but the last has a value (the last one of a length-cut answer is never read back).
    for (const col of [plain!, steered!]) {
      expect(col.values.length).toBeGreaterThanOrEqual(col.tokens - 2);
      expect(col.shaded).toBe(col.values.length);
    }
    // The steered column adds "dog" at resid_post.1-3: its projection onto "dog" at resid_post.2 is higher.
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(mean(steered!.values)).toBeGreaterThan(mean(plain!.values) + 0.5);
    expect(await page.isVisible("#legend")).toBe(true);
    const shot = join(tmpdir(), "steerkit-page.png");
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`page screenshot: ${shot}`);
  });

  test("without steering both columns are the same text from the same seed; SAE shading reads the chosen latent", async () => {
    for (let n = await page.locator(".entry").count(); n > 0; n--) await page.locator(".entry .entry-head .remove").first().click();
    expect(JSON.parse((await page.textContent("#recipeView"))!)).toEqual([]);
    await page.selectOption("#shade", "sae");
    await page.fill("#shadeLatent", "88");
    await generate();
    const [plain, steered] = await columns();
    expect(steered!.text).toBe(plain!.text);
    expect(steered!.values).toEqual(plain!.values);
    expect(plain!.values.length).toBeGreaterThanOrEqual(plain!.tokens - 2);
    expect(plain!.values.every((v) => v >= 0)).toBe(true); // a TopK latent's activation
    expect(await page.textContent("#legendText")).toContain('latent 88 of SAE "sae"');
  });

  test("a list of option objects (sae-clamp's latents) and an optional group left empty make the recipe the server accepts", async () => {
    await page.click("#addEntry");
    const entry = page.locator(".entry").last();
    await entry.locator("select.plugin").selectOption("sae-clamp");
    await entry.locator("input[name=sae]").fill("sae");
    await entry.locator(".item input[name=index]").fill("88");
    await entry.locator(".item select[name=mode]").selectOption("clamp");
    await entry.locator(".item input[type=number][name=value]").fill("4");
    expect(JSON.parse((await page.textContent("#recipeView"))!)).toEqual([{ plugin: "sae-clamp", options: { sae: "sae", latents: [{ index: 88, mode: "clamp", value: 4 }] } }]);
    await generate();
    const [plain, steered] = await columns();
    expect(await page.textContent("#stats1")).not.toContain("steering:");
    expect(steered!.text).not.toBe(plain!.text);
    // Clamping latent 88 raises what the trace of latent 88 reads in the steered column.
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(mean(steered!.values)).toBeGreaterThan(mean(plain!.values) + 1);
    await entry.locator(".entry-head .remove").click();
  });

  test("chat mode sends the message as a chat completion; both columns answer it", async () => {
    await page.check("input[name=mode][value=chat]");
    await page.fill("#input", "Tell me a story about a cat.");
    const requests: string[] = [];
    page.on("request", (r) => void (r.method() === "POST" && requests.push(new URL(r.url()).pathname)));
    await generate();
    expect(requests).toEqual(["/v1/chat/completions", "/v1/chat/completions"]);
    const [plain, steered] = await columns();
    expect(plain!.text.length).toBeGreaterThan(10);
    expect(steered!.text).toBe(plain!.text); // still no steering: the same seed gives the same answer
    expect(plain!.values.length).toBeGreaterThanOrEqual(plain!.tokens - 2); // shaded in chat mode too
  });
});
