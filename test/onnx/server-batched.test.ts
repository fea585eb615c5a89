/**
 * The chat server on an ONNX model whose export batches: it takes `model.batched` (as it does for
 * llama.cpp), and eight differently steered requests give the answers they give one pass each.
 */
import { afterAll, beforeAll, describe, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { onnx, type OnnxRuntimeModel } from "../../src/adapters/onnx/index.ts";
import { convertGgufToOnnx } from "../../src/convert/gguf-to-onnx.ts";
import { DEFAULT_MODEL_PATH } from "../../src/default-model.ts";
import { expectBatchedAnswersLikeUnbatched } from "../server/helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "steerkit-onnx-server-batched-"));
let model: OnnxRuntimeModel;
const servers: ReturnType<typeof Bun.serve>[] = [];
beforeAll(async () => {
  await convertGgufToOnnx(DEFAULT_MODEL_PATH, dir);
  model = await onnx.load(dir, { threads: 1, contextLength: 256 });
});
afterAll(() => {
  for (const s of servers) s.stop(true);
  model?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

describe("the chat server on a batched ONNX model", () => {
  test("eight requests with their own steering, together: the same answers as one pass per request", async () => {
    await expectBatchedAnswersLikeUnbatched(model, servers);
  });
});
