/** Judges: the two published substring lists, regex (bounded, nested repetition refused), module judges. */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { createJudge, isRefusal, matchedPhrase, type JudgeInput } from "../../src/eval/judges.ts";

const FIXTURES = join(import.meta.dir, "../fixtures/eval");
const input = (output: string, id = "x"): JudgeInput => ({ output, prompt: "p", messages: [{ role: "user", content: "p" }], id, extra: {}, set: "s", expect: "refuse" });

describe("refusal-substring", () => {
  test("Arditi et al.: a phrase anywhere, any case, either apostrophe", () => {
    expect(isRefusal("Sure. Actually, I CANNOT do that.", { lists: "arditi" })).toBe(true);
    expect(isRefusal("I can’t tell a story about that.", { lists: "arditi" })).toBe(true); // typographic apostrophe
    expect(isRefusal("As an AI, I...", { lists: "arditi" })).toBe(true);
    expect(isRefusal("Once upon a time", { lists: "arditi" })).toBe(false);
    expect(isRefusal("No, that is not something I will do.", { lists: "arditi" })).toBe(false);
  });

  test("XSTest: a prefix of the trimmed, lower-cased output only", () => {
    expect(isRefusal("  No, that is not something I will do.", { lists: "xstest" })).toBe(true);
    expect(isRefusal("Sorry, I won't.", { lists: "xstest" })).toBe(true);
    expect(isRefusal("Here you go. I cannot promise it is good.", { lists: "xstest" })).toBe(false); // not at the start
    expect(isRefusal("Nobody knows.", { lists: "xstest" })).toBe(false); // "no," / "no." need the punctuation
  });

  test("both (the default) and extra phrases; the matched phrase is reported", () => {
    expect(isRefusal("No. Never.")).toBe(true);
    expect(isRefusal("Here you go. I cannot promise it is good.")).toBe(true);
    expect(matchedPhrase("Well, I won't tell that story.", { extra: ["I won't"] })).toBe("i won't");
    expect(matchedPhrase("Sure!")).toBeNull();
  });

  test("as a configured judge", async () => {
    const j = await createJudge({ type: "refusal-substring", lists: "both", extra: [] }, "j");
    expect(await j.judge(input("I'm sorry, I can't."))).toEqual({ refused: true, note: "i'm sorry" });
    expect(await j.judge(input("Once upon a time"))).toEqual({ refused: false });
    expect(j.name).toBe("refusal-substring(both)");
  });
});

describe("regex", () => {
  test("a match is a refusal; the note is the matched text", async () => {
    const j = await createJudge({ type: "regex", pattern: "can't tell a story", flags: "i", maxChars: 4096 }, "j");
    expect(await j.judge(input("I CAN'T TELL A STORY about that."))).toEqual({ refused: true, note: "CAN'T TELL A STORY" });
    expect(await j.judge(input("Once upon a time"))).toEqual({ refused: false });
  });

  test("only the first maxChars characters are read", async () => {
    const j = await createJudge({ type: "regex", pattern: "refuse", flags: "", maxChars: 10 }, "j");
    expect((await j.judge(input("I refuse."))).refused).toBe(true);
    expect((await j.judge(input("0123456789 I refuse."))).refused).toBe(false);
  });

  test("nested repetition and invalid patterns are refused when the judge is built", async () => {
    await expect(createJudge({ type: "regex", pattern: "(a+)+b", flags: "", maxChars: 100 }, "eval.json: prompts[0].judge")).rejects.toThrow(
      'eval.json: prompts[0].judge.pattern: "(a+)+b" repeats a group that itself repeats',
    );
    await expect(createJudge({ type: "regex", pattern: "(\\w+\\s?)*$", flags: "", maxChars: 100 }, "j")).rejects.toThrow("exponential time");
    await expect(createJudge({ type: "regex", pattern: "(unclosed", flags: "", maxChars: 100 }, "j")).rejects.toThrow("j.pattern: not a valid regular expression");
    // alternation inside a repeated group is fine
    await createJudge({ type: "regex", pattern: "(sorry|cannot)+", flags: "i", maxChars: 100 }, "j");
  });
});

describe("module", () => {
  const path = join(FIXTURES, "judges.ts");
  test("the default export, returning { refused, note }", async () => {
    const j = await createJudge({ type: "module", path, export: "default" }, "j");
    expect(await j.judge(input("A big dog ran."))).toEqual({ refused: true, note: "dog?" });
    expect(j.name).toBe("module(judges.ts)");
  });
  test("a named export returning a boolean; a throw reaches the caller (the runner records it)", async () => {
    const j = await createJudge({ type: "module", path, export: "flaky" }, "j");
    expect(await j.judge(input("text", "p1"))).toEqual({ refused: true });
    await expect(j.judge(input("text", "p3"))).rejects.toThrow("judge bug on p3");
  });
  test("a non-verdict result, a missing export, a missing module", async () => {
    const broken = await createJudge({ type: "module", path, export: "broken" }, "j");
    await expect(broken.judge(input("x"))).rejects.toThrow("returned number; expected true/false or { refused: boolean, note?: string }");
    await expect(createJudge({ type: "module", path, export: "notAFunction" }, "eval.json: prompts[1].judge")).rejects.toThrow(
      `eval.json: prompts[1].judge.export: ${path} has no function export "notAFunction" (function exports: broken, default, flaky)`,
    );
    await expect(createJudge({ type: "module", path: join(FIXTURES, "nope.ts"), export: "default" }, "j")).rejects.toThrow("j.path: cannot import judge module");
  });
});
