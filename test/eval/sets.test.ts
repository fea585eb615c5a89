/** JSONL sets: the three formats, malformed lines with file and line number, skip mode, duplicate ids, empty sets. */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readChoiceSet, readPromptSet, readTextSet, type SkippedLine } from "../../src/eval/sets.ts";

const FIXTURES = join(import.meta.dir, "../fixtures/eval");
const dir = mkdtempSync(join(tmpdir(), "steerkit-eval-sets-"));
const file = (name: string, lines: string[]) => {
  const p = join(dir, name);
  writeFileSync(p, lines.join("\n") + "\n");
  return p;
};

describe("the committed fixtures", () => {
  test("read in all three formats", () => {
    const prompts = readPromptSet(join(FIXTURES, "prompts.jsonl"));
    expect(prompts.items.length).toBe(8);
    expect(prompts.items[0]).toEqual({ id: "p1", prompt: "Once upon a time", messages: null, extra: {} });
    const chats = readPromptSet(join(FIXTURES, "conversations.jsonl"));
    expect(chats.items[0]!.prompt).toBeNull();
    expect(chats.items[0]!.messages!.map((m) => m.role)).toEqual(["user", "assistant", "user"]);
    expect(chats.items[2]!.extra).toEqual({ category: "follow-up" });
    const cloze = readChoiceSet(join(FIXTURES, "cloze.jsonl"));
    expect(cloze.items.length).toBe(10);
    expect(cloze.items[0]).toEqual({ id: "q1", question: "Once upon a", choices: [" time", " table", " green"], answer: 0, extra: {} });
    expect(readTextSet(join(FIXTURES, "stories.jsonl")).items.length).toBe(6);
  });

  test("limit keeps the first n items", () => {
    expect(readPromptSet(join(FIXTURES, "prompts.jsonl"), { limit: 3 }).items.map((i) => i.id)).toEqual(["p1", "p2", "p3"]);
  });
});

describe("malformed lines", () => {
  const bad = file("bad.jsonl", [
    '{"id": "a", "prompt": "fine"}',
    "",
    '{"id": "b", "prompt": ', // line 3: not JSON
    '{"id": 4, "prompt": "x"}', // line 4: id not a string
    '{"id": "c", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}', // 5: ends with assistant
    '{"id": "d", "messages": [{"role": "robot", "content": "hi"}]}', // 6: bad role
    '{"id": "a", "prompt": "again"}', // 7: duplicate id
    '{"id": "e", "prompt": "x", "messages": [{"role": "user", "content": "hi"}]}', // 8: both
    '"just a string"', // 9
    '{"id": "f", "prompt": "ok"}',
  ]);

  test('stop (the default): the first bad line is an error naming file and line', () => {
    expect(() => readPromptSet(bad)).toThrow(`${bad}:3: not valid JSON`);
  });

  test("skip: every bad line is reported with its line number and reason; good lines are kept", () => {
    const seen: SkippedLine[] = [];
    const set = readPromptSet(bad, { onInvalidLine: "skip", onSkip: (s) => seen.push(s) });
    expect(set.items.map((i) => i.id)).toEqual(["a", "f"]);
    expect(set.skipped).toEqual(seen);
    const byLine = Object.fromEntries(set.skipped.map((s) => [s.line, s.reason]));
    expect(Object.keys(byLine).map(Number)).toEqual([3, 4, 5, 6, 7, 8, 9]);
    expect(byLine[4]).toContain("id: Invalid type: Expected string but received 4");
    expect(byLine[5]).toContain('the last message must be the user turn the model answers');
    expect(byLine[6]).toContain('messages.0.role: role: "user", "assistant" or "system"');
    expect(byLine[7]).toContain('id "a" was already used on line 1');
    expect(byLine[8]).toContain('either "prompt" or "messages", not both');
    expect(byLine[9]).toContain("Expected Object");
  });

  test("multiple choice: answer out of range, one choice, empty choice", () => {
    const p = file("mc.jsonl", [
      '{"id": "a", "question": "q", "choices": ["x", "y"], "answer": 2}',
      '{"id": "b", "question": "q", "choices": ["x"], "answer": 0}',
      '{"id": "c", "question": "q", "choices": ["x", ""], "answer": 0}',
      '{"id": "d", "question": "q", "choices": ["x", "y"], "answer": 1.5}',
      '{"id": "e", "question": "q", "choices": ["x", "y"], "answer": 1}',
    ]);
    const set = readChoiceSet(p, { onInvalidLine: "skip" });
    expect(set.items.map((i) => i.id)).toEqual(["e"]);
    expect(set.skipped.map((s) => s.reason)).toEqual([
      expect.stringContaining("answer must index choices"),
      expect.stringContaining("at least two choices"),
      expect.stringContaining("a choice must not be empty"),
      expect.stringContaining("answer: Invalid integer"),
    ]);
  });

  test("perplexity: empty text", () => {
    const p = file("ppl.jsonl", ['{"id": "a", "text": ""}']);
    expect(() => readTextSet(p)).toThrow(`${p}:1: text: text must not be empty`);
  });
});

describe("empty and missing sets", () => {
  test("a set with no items is an error, saying when every line was skipped", () => {
    expect(() => readPromptSet(file("empty.jsonl", ["", "  "]))).toThrow("the prompt set has no items");
    expect(() => readPromptSet(file("allbad.jsonl", ["{", "["]), { onInvalidLine: "skip" })).toThrow("has no items (all 2 non-blank lines were skipped as invalid)");
  });
  test("a missing file or a directory names the path", () => {
    expect(() => readTextSet(join(dir, "missing.jsonl"))).toThrow(`${join(dir, "missing.jsonl")}: cannot read the perplexity set`);
    expect(() => readChoiceSet(dir)).toThrow(`${dir}: cannot read the multiple-choice set`);
  });
});

test("item hashes change with the item's content only", () => {
  const a = readPromptSet(file("h1.jsonl", ['{"id": "x", "prompt": "one", "tag": 1}', '{"id": "y", "prompt": "two"}']));
  const b = readPromptSet(file("h2.jsonl", ['{"id": "y", "prompt": "two"}', '{"id": "x", "prompt": "ONE", "tag": 1}']));
  expect(a.hashes.get("y")).toBe(b.hashes.get("y")!);
  expect(a.hashes.get("x")).not.toBe(b.hashes.get("x")!);
});
